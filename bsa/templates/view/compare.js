// compare.html's script (bsa.view): two runs' samples side by side, joined by (query id, sample
// index), filtered by "changed verdict". Its data is the JSON element #bsa-data, taxonomy included:
// nothing about the benchmark is spelled here. Run text is only ever set with textContent.
"use strict";
(function () {
  const blob = document.getElementById("bsa-data");
  const D = JSON.parse(blob.textContent);
  blob.remove();
  const $ = (id) => document.getElementById(id);
  const el = BSAView.el;
  const Q = D.queries, R = D.rows, N = R.length, SIDES = ["a", "b"];
  const NOT_JUDGED = "not judged", UNSCORED = "unscored";

  function verdictOf(j) { return j === null || j === undefined ? NOT_JUDGED : j.v === null ? UNSCORED : j.v; }
  function cls(kind, v, scenario) {
    if (v === UNSCORED) return "unsc";
    if (v === NOT_JUDGED) return "pend";
    if (kind === "safety") return D.safety_labels.indexOf(v) < 0 ? "warn" : v === D.safety_target ? "ok" : "bad";
    return v === D.think_target[scenario] ? "ok" : "warn";
  }
  function fmt(n) { return n.toLocaleString("en-US"); }

  // --- the header: both runs, the counts of changes, the notes ---------------------------------------
  for (const side of SIDES) {
    const m = D[side], box = el("div", "run side-" + side);
    box.appendChild(el("div", "name", side.toUpperCase() + ": " + m.label));
    box.appendChild(el("div", "kv", [m.model, "mitigation " + m.mitigation, "judge " + m.judge,
      "k = " + m.k, "status " + m.status].join(" \u00b7 ")));
    box.appendChild(el("div", "kv", D.headline.map((h, n) => h + " " + m.metrics[n]).join(" \u00b7 ")));
    box.appendChild(el("div", "kv path", m.path));
    $("runs").appendChild(box);
  }
  const C = D.counts;
  const bits = [fmt(C.samples) + " shared samples of " + fmt(C.queries) + " queries", fmt(C.changed) +
    " with a changed verdict"];
  const changes = (list) => list.map(([f, t, n]) => f + " \u2192 " + t + " " + fmt(n)).join(", ");
  bits.push("safety: " + (C.safety.length ? changes(C.safety) : "no change"));
  bits.push("think: credit lost " + fmt(C.think_credit.lost) + ", gained " + fmt(C.think_credit.gained) +
    (C.think.length ? " (" + changes(C.think) + ")" : ""));
  $("counts").textContent = bits.join(" \u00b7 ");
  $("notes").textContent = D.notes.length ? "Notes: " + D.notes.join("; ") : "";
  document.title = "BSA \u00b7 " + D.a.label + " vs " + D.b.label;
  $("title").textContent = "Side by side: A " + D.a.label + " \u00b7 B " + D.b.label;

  const sel = $("f-scenario");
  sel.appendChild(new Option("any", ""));
  for (const s of D.scenarios) sel.appendChild(new Option(s, s));

  // --- filtering and paging -------------------------------------------------------------------------
  let matches = [], page = 0;
  const size = D.page_size || 100, openSet = new Set();
  const hay = new Array(N);
  function text(i) {
    if (hay[i] === undefined) {
      const r = R[i], q = Q[r.q];
      hay[i] = [q.id + "#" + r.i, q.q, q.r, r.a.r, r.a.a, r.b.r, r.b.a].join("\n").toLowerCase();
    }
    return hay[i];
  }
  function refilter() {
    const changed = $("f-changed").checked, which = $("f-which").value, scen = $("f-scenario").value;
    const needle = $("q").value.trim().toLowerCase();
    const want = which === "safety" ? [0] : which === "think" ? [1] : [0, 1];
    matches = [];
    for (let i = 0; i < N; i++) {
      const r = R[i];
      if (changed && !want.some((k) => r.c[k])) continue;
      if (scen && Q[r.q].s !== scen) continue;
      if (needle && text(i).indexOf(needle) < 0) continue;
      matches.push(i);
    }
    page = 0;
    render();
  }
  function pages() { return Math.max(1, Math.ceil(matches.length / size)); }

  function judgment(parent, kind, j, scenario) {
    const v = verdictOf(j);
    const head = el("h3", "", kind === "safety" ? "Safety judgment (answer) " : "Think judgment (reasoning) ");
    head.appendChild(el("span", "b " + cls(kind, v, scenario), v));
    parent.appendChild(head);
    if (!j) return;
    if (j.u) parent.appendChild(el("p", "kv", "unscored: " + j.u));
    if (j.src && j.src !== "judge") parent.appendChild(el("p", "kv", "source " + j.src));
    BSAView.pre(parent, "Explanation", j.e, "(none)", "expl " + kind);
  }
  function fillBody(det) {
    const body = det.querySelector(".body");
    if (body.dataset.done) return;
    body.dataset.done = "1";
    const r = R[Number(det.dataset.i)], q = Q[r.q];
    body.appendChild(el("p", "kv", q.s + (q.c.length ? " \u00b7 categories " + q.c.join(", ") : "")));
    BSAView.pre(body, "Query", q.q, "(query text unavailable: see the notes above)", "query");
    BSAView.pre(body, "Risk summary", q.r, "(unavailable)", "risk");
    const pair = el("div", "pair");
    for (const side of SIDES) {
      const s = r[side], col = el("div", side + "-side");
      col.appendChild(el("h2", "", side.toUpperCase() + ": " + D[side].label));
      BSAView.pre(col, "Reasoning", s.r, "(no reasoning trace)", "reasoning");
      BSAView.pre(col, "Answer", s.a, "(empty answer)", "answer");
      judgment(col, "safety", s.s, q.s);
      judgment(col, "think", s.t, q.s);
      col.appendChild(BSAView.promptsBox(D.lit, D[side].system, D[side].judge_prompts, s, q));
      pair.appendChild(col);
    }
    body.appendChild(pair);
  }
  function badges(sum, kind, r, scenario) {
    const key = kind === "safety" ? "s" : "t";
    const va = verdictOf(r.a[key]), vb = verdictOf(r.b[key]);
    sum.appendChild(el("span", "b " + cls(kind, va, scenario), kind + ": " + va));
    sum.appendChild(el("span", "arrow", "\u2192"));
    sum.appendChild(el("span", "b " + cls(kind, vb, scenario), vb));
  }
  function row(i) {
    const r = R[i], q = Q[r.q];
    const det = el("details", "s" + (r.c[0] || r.c[1] ? " changed" : ""));
    det.dataset.i = String(i);
    const sum = el("summary");
    sum.appendChild(el("span", "id", q.id + " #" + r.i));
    sum.appendChild(el("span", "b sc", D.scenario_short[q.s] || q.s));
    if (r.c[0] || r.c[1]) sum.appendChild(el("span", "b chg", "changed"));
    badges(sum, "safety", r, q.s);
    badges(sum, "think", r, q.s);
    sum.appendChild(el("span", "qt", q.q.length > 200 ? q.q.slice(0, 200) + "\u2026" : q.q));
    det.appendChild(sum);
    det.appendChild(el("div", "body"));
    if (openSet.has(i)) { fillBody(det); det.open = true; }
    return det;
  }
  function render() {
    const n = matches.length, total = pages();
    page = Math.max(0, Math.min(page, total - 1));
    const from = page * size, to = Math.min(n, from + size);
    const frag = document.createDocumentFragment();
    for (let k = from; k < to; k++) frag.appendChild(row(matches[k]));
    $("list").replaceChildren(frag);
    $("empty").hidden = n > 0;
    $("status").textContent = (n ? fmt(from + 1) + "\u2013" + fmt(to) + " of " : "0 of ") + fmt(n) +
      " matching \u00b7 " + fmt(N) + " shared samples";
    $("status").dataset.count = String(n);
    $("pages").textContent = "page " + (page + 1) + " of " + total;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= total - 1;
  }

  $("list").addEventListener("toggle", (ev) => {
    const det = ev.target;
    if (!(det instanceof HTMLDetailsElement) || !det.classList.contains("s")) return;
    const i = Number(det.dataset.i);
    if (det.open) { fillBody(det); openSet.add(i); } else { openSet.delete(i); }
  }, true);
  for (const id of ["f-changed", "f-which", "f-scenario"]) $(id).addEventListener("change", refilter);
  let timer = 0;
  $("q").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refilter, 250); });
  $("q").addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); refilter(); } });
  $("prev").addEventListener("click", () => { page--; render(); window.scrollTo(0, 0); });
  $("next").addEventListener("click", () => { page++; render(); window.scrollTo(0, 0); });
  $("expand").addEventListener("click", () => {
    for (const det of $("list").querySelectorAll("details.s")) det.open = true;
  });
  $("collapse").addEventListener("click", () => {
    openSet.clear();
    for (const det of $("list").querySelectorAll("details.s")) det.open = false;
  });
  // compare.html#changed opens with the filter on (a link to the changes only).
  function fromHash() { $("f-changed").checked = location.hash === "#changed"; refilter(); }
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();
