// label.html's script (bsa.labels export): label each sample blind to the judge, keep the work in
// localStorage, save labels.csv. The labels and columns come from the JSON element #bsa-data; sample
// text is set with textContent only. #selftest=[[position, kind, label], ...] drives it in a test.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("bsa-data").textContent);
  const items = DATA.items;
  const KEY = "bsa-labels:" + DATA.key;
  const SELFTEST = location.hash.indexOf("#selftest=") === 0;
  const $ = (id) => document.getElementById(id);
  let state = {};  // sample position -> {safety: label, think: label}
  let cur = 0;
  let lastBlob = null;
  let store = null;
  try { store = window.localStorage; } catch (e) { store = null; }
  try { state = JSON.parse((store && store.getItem(KEY)) || "{}") || {}; } catch (e) { state = {}; }

  function choices(kind, item) {
    return kind === "safety" ? DATA.safety_labels : DATA.think_labels[item.scenario];
  }
  function persist() {
    try { if (store) store.setItem(KEY, JSON.stringify(state)); } catch (e) { /* full or blocked */ }
  }
  function done(i) {
    const s = state[i] || {};
    return (s.safety ? 1 : 0) + (s.think ? 1 : 0);
  }
  function choose(kind, label) {
    const s = state[cur] || (state[cur] = {});
    if (label) { s[kind] = label; } else { delete s[kind]; }
    persist();
    render();
  }
  function buttons(kind) {
    const box = $("buttons-" + kind);
    box.replaceChildren();
    const chosen = (state[cur] || {})[kind] || "";
    for (const label of choices(kind, items[cur])) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "label";
      b.textContent = label;
      b.dataset.kind = kind;
      b.dataset.label = label;
      b.setAttribute("aria-pressed", String(label === chosen));
      b.addEventListener("click", () => choose(kind, label));
      box.appendChild(b);
    }
    const clear = document.createElement("button");
    clear.type = "button";
    clear.className = "clear";
    clear.textContent = "clear";
    clear.addEventListener("click", () => choose(kind, ""));
    box.appendChild(clear);
  }
  function go(i) {
    cur = Math.max(0, Math.min(items.length - 1, i));
    render();
  }
  function render() {
    if (!items.length) { $("meta").textContent = "No samples in this file."; return; }
    const it = items[cur];
    $("pos").textContent = " " + (cur + 1) + " / " + items.length + " ";
    $("meta").textContent = it.scenario + " \u00b7 query " + it.id + " \u00b7 sample " + it.sample_index;
    $("query").textContent = it.query || "(query text unavailable: the dataset file was not found)";
    $("risk").textContent = it.risk_summary || "(unavailable)";
    $("reasoning").textContent = it.reasoning || "(no reasoning trace)";
    $("answer").textContent = it.answer || "(empty answer)";
    buttons("think");
    buttons("safety");
    let full = 0;
    const map = $("map");
    map.replaceChildren();
    items.forEach((_, i) => {
      const n = done(i);
      if (n === 2) full += 1;
      const b = document.createElement("button");
      b.type = "button";
      b.title = String(i + 1);
      b.className = (n === 2 ? "done" : n === 1 ? "part" : "") + (i === cur ? " cur" : "");
      b.addEventListener("click", () => go(i));
      map.appendChild(b);
    });
    $("bar").max = items.length;
    $("bar").value = full;
    $("progress").textContent = full + " of " + items.length + " fully labelled";
  }
  function cell(v) {
    const s = String(v);
    return /[",\r\n]|^\s|\s$/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function csv() {
    const lines = [DATA.columns.join(",")];
    items.forEach((it, i) => {
      const s = state[i] || {};
      lines.push([it.id, it.sample_index, s.safety || "", s.think || ""].map(cell).join(","));
    });
    return lines.join("\n") + "\n";
  }
  function save() {
    lastBlob = new Blob([csv()], { type: "text/csv;charset=utf-8" });
    const a = $("download");
    if (a.href && a.href.indexOf("blob:") === 0) URL.revokeObjectURL(a.href);
    a.href = URL.createObjectURL(lastBlob);
    a.hidden = false;
    if (!SELFTEST) a.click();
  }
  $("prev").addEventListener("click", () => go(cur - 1));
  $("next").addEventListener("click", () => go(cur + 1));
  $("next-open").addEventListener("click", () => {
    for (let d = 1; d <= items.length; d++) {
      const i = (cur + d) % items.length;
      if (done(i) < 2) { go(i); return; }
    }
  });
  $("save").addEventListener("click", save);
  document.addEventListener("keydown", (ev) => {
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    if (ev.key === "ArrowLeft") go(cur - 1);
    else if (ev.key === "ArrowRight") go(cur + 1);
    else if (/^[1-9]$/.test(ev.key) && items.length) {
      const all = DATA.safety_labels.map((l) => ["safety", l])
        .concat(choices("think", items[cur]).map((l) => ["think", l]));
      const pick = all[Number(ev.key) - 1];
      if (pick) choose(pick[0], pick[1]);
    }
  });
  render();

  // #selftest=[[position, kind, label], ...] (URL-encoded JSON): click through the real controls,
  // save, and write the saved file into the page, so a headless browser's DOM dump shows the result.
  async function selftest(actions) {
    const out = $("selftest-status");
    try {
      for (const [index, kind, label] of actions) {
        let guard = 0;
        while (cur !== index) {
          $(cur < index ? "next" : "prev").click();
          if (++guard > items.length + 1) throw new Error("navigation stuck at " + cur);
        }
        const b = Array.from(document.querySelectorAll("#buttons-" + kind + " button.label"))
          .find((x) => x.dataset.label === label);
        if (!b) throw new Error("no " + kind + " button " + label + " on sample " + index);
        b.click();
        if (b.isConnected || (state[cur] || {})[kind] !== label) {
          // render() replaces the buttons: the clicked one must be gone and the label recorded.
          throw new Error("clicking " + label + " did not record it");
        }
      }
      $("save").click();
      if (!lastBlob) throw new Error("Save CSV made no file");
      $("selftest-csv").textContent = await lastBlob.text();
      let stored = -1;
      try { stored = Object.keys(JSON.parse(store.getItem(KEY))).length; } catch (e) { stored = -1; }
      $("selftest-stored").textContent = String(stored);
      out.textContent = "ok";
    } catch (e) {
      out.textContent = "error: " + e.message;
    }
  }
  if (SELFTEST) selftest(JSON.parse(decodeURIComponent(location.hash.slice("#selftest=".length))));
})();
