// samples.html's script (bsa.view): every sample of a run, filtered, searched and paged in the browser.
// Its data is the JSON element #bsa-data, taxonomy included (scenarios and their short names, labels,
// targets): nothing about the benchmark is spelled here. Model and judge text is untrusted: it is only
// ever set with textContent or text nodes, never parsed as HTML.
"use strict";
(function () {
  const t0 = performance.now();
  const blob = document.getElementById("bsa-data");
  const D = JSON.parse(blob.textContent);
  blob.remove();  // the parsed copy is all the page needs; the text would only hold memory
  const tParsed = performance.now();
  const $ = (id) => document.getElementById(id);
  const Q = D.queries, S = D.samples, N = S.length;
  // Values of the filters' pseudo-options: ":" starts no verdict label and no flag.
  const NOT_JUDGED = ":not-judged", UNSCORED = ":unscored";
  const HIT_TARGET = ":target", MISS_TARGET = ":off-target";

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function verdictOf(j) {
    if (j === null || j === undefined) return NOT_JUDGED;
    return j.v === null ? UNSCORED : j.v;
  }
  function safetyClass(v) {
    if (v === UNSCORED) return "unsc";
    if (v === NOT_JUDGED) return "pend";
    if (D.safety_labels.indexOf(v) < 0) return "warn";
    return v === D.safety_target ? "ok" : "bad";
  }
  function thinkClass(v, scenario) {
    if (v === UNSCORED) return "unsc";
    if (v === NOT_JUDGED) return "pend";
    return v === D.think_target[scenario] ? "ok" : "warn";
  }
  function verdictText(v) { return v === UNSCORED ? "unscored" : v === NOT_JUDGED ? "not judged" : v; }
  function fmt(n) { return n.toLocaleString("en-US"); }

  // --- per-sample fields for filtering (plain arrays, computed once) ---------------------------------
  const sScen = new Array(N), sSafety = new Array(N), sThink = new Array(N), sUnscored = new Uint8Array(N);
  for (let i = 0; i < N; i++) {
    const s = S[i], q = Q[s.q];
    sScen[i] = q.s;
    sSafety[i] = verdictOf(s.s);
    sThink[i] = verdictOf(s.t);
    sUnscored[i] = (sSafety[i] === UNSCORED || sThink[i] === UNSCORED) ? 1 : 0;
  }

  // --- filter controls, with counts over the whole run ------------------------------------------------
  function countBy(fn) {
    const c = new Map();
    for (let i = 0; i < N; i++) for (const k of fn(i)) c.set(k, (c.get(k) || 0) + 1);
    return c;
  }
  function fill(id, entries) {
    const sel = $(id);
    sel.replaceChildren(new Option("any", ""));
    for (const [value, label, n] of entries) {
      if (n === 0) continue;
      sel.appendChild(new Option(label + " (" + fmt(n) + ")", value));  // Option(text, value): text only
    }
  }
  const cScen = countBy((i) => [sScen[i]]);
  fill("f-scenario", D.scenarios.map((s) => [s, s, cScen.get(s) || 0]));
  const cCat = countBy((i) => Q[S[i].q].c);
  fill("f-category", D.categories.map((c) => [c, c, cCat.get(c) || 0]));
  const cSafety = countBy((i) => [sSafety[i]]);
  fill("f-safety", D.safety_labels.concat([UNSCORED, NOT_JUDGED])
    .map((v) => [v, verdictText(v), cSafety.get(v) || 0]));
  const cThink = countBy((i) => {
    const v = sThink[i];
    if (v === UNSCORED || v === NOT_JUDGED) return [v];
    return [v, v === D.think_target[sScen[i]] ? HIT_TARGET : MISS_TARGET];
  });
  const thinkLabels = [];
  for (const s of Object.keys(D.think_labels)) {
    for (const l of D.think_labels[s]) if (thinkLabels.indexOf(l) < 0) thinkLabels.push(l);
  }
  fill("f-think", [[HIT_TARGET, "on target (credited)", cThink.get(HIT_TARGET) || 0],
    [MISS_TARGET, "off target", cThink.get(MISS_TARGET) || 0]]
    .concat(thinkLabels.map((l) => [l, l, cThink.get(l) || 0]))
    .concat([[UNSCORED, "unscored", cThink.get(UNSCORED) || 0],
      [NOT_JUDGED, "not judged", cThink.get(NOT_JUDGED) || 0]]));
  const ANY_FLAG = ":any", NO_FLAG = ":none";
  const cFlag = countBy((i) => S[i].f.length ? S[i].f.concat([ANY_FLAG]) : [NO_FLAG]);
  fill("f-flag", [[ANY_FLAG, "any flag", cFlag.get(ANY_FLAG) || 0],
    [NO_FLAG, "no flag", cFlag.get(NO_FLAG) || 0]]
    .concat(D.flags.map((f) => [f, f, cFlag.get(f) || 0])));
  const nUnscored = sUnscored.reduce((a, b) => a + b, 0);
  $("f-unscored").nextSibling.textContent = " unscored only (" + fmt(nUnscored) + ")";

  // --- search: lower-cased fields, built once per field on first use; hits narrowed as text grows ---
  const lower = {};
  function judgText(j) {
    if (!j) return "";
    let t = (j.v || "") + "\n" + (j.u || "") + "\n" + j.e + "\n" + j.raw.join("\n");
    if (j.mem) for (const m of j.mem) t += "\n" + judgText(m);
    return t;
  }
  const FIELDS = {
    query: (s) => Q[s.q].q + "\n" + Q[s.q].r,
    reasoning: (s) => s.r,
    answer: (s) => s.a,
    judge: (s) => judgText(s.s) + "\n" + judgText(s.t),
    id: (s) => Q[s.q].id + "#" + s.i,
  };
  FIELDS.all = (s) => [FIELDS.id(s), FIELDS.query(s), s.r, s.a, FIELDS.judge(s)].join("\n");
  const built = {};  // field -> how many samples of lower[field] are built
  function build(field, upto) {
    const arr = lower[field] || (lower[field] = new Array(N)), get = FIELDS[field];
    let i = built[field] || 0;
    for (; i < upto; i++) arr[i] = get(S[i]).toLowerCase();
    built[field] = i;
    return arr;
  }
  function haystack(field) { return build(field, N); }
  // "all" (the default field) is built in idle time after the first render, a slice at a time, so
  // the first search does not pay for it; a search before it is done builds the rest at once.
  const later = window.requestIdleCallback || ((f) => setTimeout(f, 50));
  function idle() {
    build("all", Math.min(N, (built.all || 0) + 200));
    if (built.all < N) later(idle);
  }
  let hits = null;  // Uint8Array over all samples, or null: no search
  let lastNeedle = "", lastField = "";
  function search(needle, field) {
    if (!needle) { hits = null; lastNeedle = ""; return; }
    const hay = haystack(field);
    const narrow = hits !== null && field === lastField && needle.indexOf(lastNeedle) >= 0;
    const out = new Uint8Array(N);
    for (let i = 0; i < N; i++) {
      if (narrow && !hits[i]) continue;
      if (hay[i].indexOf(needle) >= 0) out[i] = 1;
    }
    hits = out; lastNeedle = needle; lastField = field;
  }

  // --- filtering and the current page -----------------------------------------------------------------
  let matches = [];
  let page = 0;
  const size = D.page_size || 100;
  const openSet = new Set();  // samples expanded, kept open across re-renders
  function filters() {
    return {
      scen: $("f-scenario").value, cat: $("f-category").value, safety: $("f-safety").value,
      think: $("f-think").value, flag: $("f-flag").value, unscored: $("f-unscored").checked,
    };
  }
  function keep(i, f) {
    if (hits !== null && !hits[i]) return false;
    if (f.scen && sScen[i] !== f.scen) return false;
    if (f.safety && sSafety[i] !== f.safety) return false;
    if (f.think) {
      const v = sThink[i];
      if (f.think === HIT_TARGET || f.think === MISS_TARGET) {
        if (v === UNSCORED || v === NOT_JUDGED) return false;
        if ((v === D.think_target[sScen[i]]) !== (f.think === HIT_TARGET)) return false;
      } else if (v !== f.think) return false;
    }
    if (f.unscored && !sUnscored[i]) return false;
    if (f.cat && Q[S[i].q].c.indexOf(f.cat) < 0) return false;
    if (f.flag) {
      const fl = S[i].f;
      if (f.flag === ANY_FLAG) { if (!fl.length) return false; }
      else if (f.flag === NO_FLAG) { if (fl.length) return false; }
      else if (fl.indexOf(f.flag) < 0) return false;
    }
    return true;
  }
  function refilter() {
    const f = filters();
    const out = [];
    for (let i = 0; i < N; i++) if (keep(i, f)) out.push(i);
    matches = out;
    page = 0;
    render();
  }
  function pages() { return Math.max(1, Math.ceil(matches.length / size)); }

  function setText(node, text, empty) {
    // Text only; with a search, its matches are marked with <mark> elements around text nodes.
    const needle = lastNeedle;
    node.textContent = "";
    if (!text) { node.appendChild(el("span", "muted", empty)); return; }
    if (!needle) { node.textContent = text; return; }
    const low = text.toLowerCase();
    if (low.length !== text.length) { node.textContent = text; return; }  // offsets would not match
    let at = 0, n = 0;
    for (let j = low.indexOf(needle); j >= 0 && n < 500; j = low.indexOf(needle, j + needle.length), n++) {
      node.appendChild(document.createTextNode(text.slice(at, j)));
      node.appendChild(el("mark", "", text.slice(j, j + needle.length)));
      at = j + needle.length;
    }
    node.appendChild(document.createTextNode(text.slice(at)));
  }
  function section(parent, title, text, empty, cls) {
    parent.appendChild(el("h3", "", title));
    const pre = el("pre", cls || "");
    setText(pre, text, empty);
    parent.appendChild(pre);
    return pre;
  }
  function judgment(parent, kind, j, scenario) {
    const box = el("div", "judg " + kind);
    parent.appendChild(box);
    const v = verdictOf(j);
    const title = kind === "safety" ? "Safety judgment (answer) " : "Think judgment (reasoning) ";
    const head = el("h3", "", title);
    const cls = kind === "safety" ? safetyClass(v) : thinkClass(v, scenario);
    head.appendChild(el("span", "b " + cls, verdictText(v)));
    box.appendChild(head);
    if (!j) {
      box.appendChild(el("p", "kv muted", "No judgment recorded yet (the run stopped before it)."));
      return;
    }
    const bits = [];
    if (j.m) bits.push("judge " + j.m);
    if (j.src && j.src !== "judge") bits.push("source " + j.src);
    if (j.raw.length) bits.push(j.raw.length + " attempt" + (j.raw.length > 1 ? "s" : ""));
    if (j.f.length) bits.push("flags " + j.f.join(", "));
    if (bits.length) box.appendChild(el("p", "kv", bits.join(" \u00b7 ")));
    if (j.u) box.appendChild(el("p", "kv", "unscored: " + j.u));
    section(box, "Explanation", j.e, "(none)", "expl");
    j.raw.forEach((r, n) => {
      const title = "Raw output" + (j.raw.length > 1 ? ", attempt " + (n + 1) : "");
      section(box, title, r, "(empty reply)", "raw");
    });
    if (j.mem) {
      j.mem.forEach((m, n) => {
        const sub = el("div", "judg member");
        box.appendChild(sub);
        const title = "Member " + (n + 1) + (m.m ? ": " + m.m : "");
        sub.appendChild(el("h3", "", title + " \u2014 " + verdictText(verdictOf(m))));
        if (m.u) sub.appendChild(el("p", "kv", "unscored: " + m.u));
        section(sub, "Explanation", m.e, "(none)");
        m.raw.forEach((r, k) => section(sub, "Raw output " + (k + 1), r, "(empty reply)"));
      });
    }
  }
  function fillBody(det) {
    const i = Number(det.dataset.i), s = S[i], q = Q[s.q];
    const body = det.querySelector(".body");
    if (body.dataset.done) return;
    body.dataset.done = "1";
    const bits = [q.s];
    if (q.c.length) bits.push("categories " + q.c.join(", "));
    if (s.fr) bits.push("finish " + s.fr);
    if (s.f.length) bits.push("flags " + s.f.join(", "));
    body.appendChild(el("p", "kv", bits.join(" \u00b7 ")));
    section(body, "Query", q.q, "(query text unavailable: see the notes above)", "query");
    section(body, "Risk summary", q.r, "(unavailable)", "risk");
    section(body, "Reasoning", s.r, "(no reasoning trace)", "reasoning");
    section(body, "Answer", s.a, "(empty answer)", "answer");
    judgment(body, "safety", s.s, q.s);
    judgment(body, "think", s.t, q.s);
    body.appendChild(BSAView.promptsBox(D.lit, D.meta.system, D.meta.judge_prompts, s, q));
  }
  function snippet(i) {
    const s = S[i], q = Q[s.q];
    if (lastNeedle && lastField !== "query" && lastField !== "id") {
      const text = lastField === "all" ? FIELDS.all(s) : FIELDS[lastField](s);
      const j = text.toLowerCase().indexOf(lastNeedle);
      if (j >= 0) {
        const cut = text.slice(Math.max(0, j - 60), j + lastNeedle.length + 100);
        return "\u2026" + cut.replace(/\s+/g, " ") + "\u2026";
      }
    }
    return q.q.length > 240 ? q.q.slice(0, 240) + "\u2026" : q.q;
  }
  function row(i) {
    const s = S[i], q = Q[s.q];
    const det = el("details", "s");
    det.dataset.i = String(i);
    const sum = el("summary");
    sum.appendChild(el("span", "id", q.id + " #" + s.i));
    sum.appendChild(el("span", "b sc", D.scenario_short[q.s] || q.s));
    sum.appendChild(el("span", "b " + safetyClass(sSafety[i]), "safety: " + verdictText(sSafety[i])));
    sum.appendChild(el("span", "b " + thinkClass(sThink[i], q.s), "think: " + verdictText(sThink[i])));
    for (const f of s.f) sum.appendChild(el("span", "b fl", f));
    sum.appendChild(el("span", "qt", snippet(i)));
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
      " matching \u00b7 " + fmt(N) + " samples";
    $("status").dataset.count = String(n);
    $("pageno").value = String(page + 1);
    $("pageno").max = String(total);
    $("pages").textContent = "of " + fmt(total);
    $("first").disabled = $("prev").disabled = page === 0;
    $("next").disabled = $("last").disabled = page >= total - 1;
  }
  function go(p) { page = p; render(); window.scrollTo(0, 0); }

  // A sample's texts are built when it is first opened: at once on a click of its summary, else on
  // its toggle event (which does not bubble: listen in capture).
  $("list").addEventListener("click", (ev) => {
    const sum = ev.target instanceof Element ? ev.target.closest("summary") : null;
    const det = sum ? sum.parentElement : null;
    if (det instanceof HTMLDetailsElement && det.classList.contains("s")) fillBody(det);
  });
  $("list").addEventListener("toggle", (ev) => {
    const det = ev.target;
    if (!(det instanceof HTMLDetailsElement) || !det.classList.contains("s")) return;  // not a prompts box
    const i = Number(det.dataset.i);
    if (det.open) { fillBody(det); openSet.add(i); } else { openSet.delete(i); }
  }, true);
  for (const id of ["f-scenario", "f-category", "f-safety", "f-think", "f-flag", "f-unscored"]) {
    $(id).addEventListener("change", refilter);
  }
  let timer = 0;
  function runSearch() {
    clearTimeout(timer); timer = 0;
    const needle = $("q").value.trim().toLowerCase(), field = $("q-field").value;
    if (needle === lastNeedle && field === lastField && (needle !== "" || hits === null)) return;
    search(needle, field);
    refilter();
  }
  $("q").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(runSearch, 250); });
  $("q").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); runSearch(); }
  });
  $("q-field").addEventListener("change", () => { lastField = ""; runSearch(); });
  $("reset").addEventListener("click", () => {
    for (const id of ["f-scenario", "f-category", "f-safety", "f-think", "f-flag"]) $(id).value = "";
    $("f-unscored").checked = false;
    $("q").value = "";
    search("", "all");
    refilter();
  });
  $("first").addEventListener("click", () => go(0));
  $("prev").addEventListener("click", () => go(page - 1));
  $("next").addEventListener("click", () => go(page + 1));
  $("last").addEventListener("click", () => go(pages() - 1));
  $("pageno").addEventListener("change", () => go((parseInt($("pageno").value, 10) || 1) - 1));
  $("expand").addEventListener("click", () => {
    for (const det of $("list").querySelectorAll("details.s")) det.open = true;  // toggle fills them
  });
  $("collapse").addEventListener("click", () => {
    openSet.clear();
    for (const det of $("list").querySelectorAll("details.s")) det.open = false;
  });

  const m = D.meta;
  document.title = "BSA samples \u00b7 " + m.model;
  $("title").textContent = "Beyond Safe Answers: every sample of " + m.model;
  $("meta").textContent = [m.path, "judge " + m.judge + " (" + m.prompts + " prompts)",
    "mitigation " + m.mitigation, fmt(m.n_queries) + " queries \u00d7 k = " + m.k, "status " + m.status,
  ].join(" \u00b7 ");
  $("notes").textContent = m.notes.length ? "Notes: " + m.notes.join("; ") : "";
  refilter();
  later(idle);
  document.body.dataset.parseMs = (tParsed - t0).toFixed(1);
  document.body.dataset.readyMs = (performance.now() - t0).toFixed(1);
  document.body.dataset.sinceNavMs = performance.now().toFixed(1);
})();
