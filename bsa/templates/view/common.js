// Shared by samples.html and compare.html (bsa.view), inlined before each page's own script: element
// helpers and the box of prompts a sample was sent. Model, judge and prompt text is untrusted: it is
// only ever set with textContent, never parsed as HTML.
"use strict";
const BSAView = (function () {
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function pre(parent, title, text, empty, cls) {
    parent.appendChild(el("h3", "", title));
    const p = el("pre", cls || "");
    if (text) p.textContent = text;
    else p.appendChild(el("span", "muted", empty));
    parent.appendChild(p);
    return p;
  }
  // A judge prompt travels as parts: a number is an entry of the page's literal table (a template's
  // text, stored once), a letter one of the sample's own texts, already in the page.
  const FIELD = { q: (s, q) => q.q, r: (s, q) => q.r, a: (s) => s.a, t: (s) => s.r };
  function promptText(parts, lit, s, q) {
    return parts.map((p) => (typeof p === "number" ? lit[p] : FIELD[p](s, q))).join("");
  }
  const KINDS = [["safety", "Judge prompt: safety of the answer"], ["think", "Judge prompt: risk in the reasoning"]];
  // A collapsed box; its texts are built when it is first opened.
  function promptsBox(lit, system, judgeNote, s, q) {
    const det = el("details", "prompts");
    det.appendChild(el("summary", "", "Prompts sent: the model's system prompt and the judge's prompts"));
    const body = el("div", "pbody");
    det.appendChild(body);
    det.addEventListener("toggle", () => {
      if (!det.open || body.dataset.done) return;
      body.dataset.done = "1";
      if (system.text) {
        const p = pre(body, "System prompt (sent with the query)", system.text, "", "system");
        if (system.note) p.before(el("p", "kv note", system.note));
      } else {
        body.appendChild(el("h3", "", "System prompt"));
        body.appendChild(el("p", "kv muted system", system.note || "none: the model was sent the query alone"));
      }
      KINDS.forEach(([kind, title], n) => {
        const parts = s.p ? s.p[n] : null;
        if (parts === null || parts === undefined) {
          body.appendChild(el("h3", "", title));
          body.appendChild(el("p", "kv muted jp-" + kind, judgeNote || "unavailable"));
        } else if (typeof parts === "string") {
          body.appendChild(el("h3", "", title));
          body.appendChild(el("p", "kv muted jp-" + kind, parts));
        } else {
          const p = pre(body, title + " (the first request)", promptText(parts, lit, s, q), "", "jp-" + kind);
          if (judgeNote) p.before(el("p", "kv note", judgeNote));
        }
      });
    });
    return det;
  }
  return { el, pre, promptText, promptsBox };
})();
