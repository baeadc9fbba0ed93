// index.html's script (bsa.view): filter and sort the table of runs in the browser. The table is
// written by the template (escaped); this only hides and reorders its rows.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const body = document.querySelector("#runs tbody");
  const rows = Array.from(body.rows);
  const text = rows.map((r) => r.textContent.toLowerCase());
  function refilter() {
    const needle = $("filter").value.trim().toLowerCase(), group = $("f-group").value;
    let shown = 0;
    rows.forEach((r, n) => {
      const hide = (needle && text[n].indexOf(needle) < 0) || (group && r.dataset.group !== group);
      r.hidden = Boolean(hide);
      if (!hide) shown++;
    });
    $("shown").textContent = shown + " of " + rows.length + " runs shown";
    $("shown").dataset.count = String(shown);
  }
  function key(cell, type) {
    const t = cell.textContent.trim();
    if (type !== "num") return t.toLowerCase();
    const v = parseFloat(t.replace(/^G/, ""));
    return isNaN(v) ? -Infinity : v;
  }
  document.querySelectorAll("#runs th").forEach((th, col) => {
    th.addEventListener("click", () => {
      const desc = th.classList.contains("asc");
      document.querySelectorAll("#runs th").forEach((h) => h.classList.remove("asc", "desc"));
      th.classList.add(desc ? "desc" : "asc");
      const type = th.dataset.type;
      const sorted = Array.from(body.rows).sort((a, b) => {
        const x = key(a.cells[col], type), y = key(b.cells[col], type);
        return (x < y ? -1 : x > y ? 1 : 0) * (desc ? -1 : 1);
      });
      body.replaceChildren(...sorted);
    });
  });
  $("filter").addEventListener("input", refilter);
  $("f-group").addEventListener("change", refilter);
  refilter();
})();
