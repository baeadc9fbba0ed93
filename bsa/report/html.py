"""report.html: self-contained (plots embedded), with the failure-case browser. Every string from a
run is escaped: model output is untrusted."""

from __future__ import annotations

import base64
import html
from typing import Any

from bsa import stats
from bsa.report.assemble import Report, intro_lines
from bsa.report.cases import Case, failure_cases
from bsa.report.pairs import COMPARE_COMMAND, NO_PAIRS
from bsa.report.plots import FIGURE_TITLES, Figures
from bsa.report.reference import REFERENCE_NOTE
from bsa.report.tables import (
    Table,
    beside_table,
    correlation_text,
    leaderboard_table,
    pair_table,
    reference_table,
)

EXCERPT = {"query": 600, "risk": 400, "reasoning": 1500, "answer": 900, "explanation": 600}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1400px;
padding:0 16px;color:#1d232a}
h1{font-size:24px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:15px}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:12.5px;margin:8px 0}
th,td{border:1px solid #d6dbe0;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#eef2f6;position:sticky;top:0}td:first-child,th:first-child{text-align:left}
tr.warn td{background:#fff4e5}tr:hover td{background:#f2f7ff}
#leaderboard td:first-child,#leaderboard th:first-child{position:sticky;left:0;z-index:1;background:#fff}
#leaderboard th:first-child{background:#eef2f6}#leaderboard tr.warn td:first-child{background:#fff4e5}
figure{margin:12px 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:12.5px}
.notes li{color:#444}details{border:1px solid #d6dbe0;border-radius:4px;margin:6px 0;padding:4px 8px}
summary{cursor:pointer}pre{white-space:pre-wrap;background:#f6f8fa;padding:6px;font-size:12.5px;
max-height:320px;overflow:auto}dt{font-weight:600;margin-top:6px}.muted{color:#666}
"""


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def table_html(t: Table) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in t.headers)
    body = []
    for i, row in enumerate(t.rows):
        cls = ' class="warn"' if i in t.warn_rows else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    return (
        f'<div class="scroll"><table id="{_e(t.id)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _img(name: str, figs: Figures, caption: str) -> str:
    title = FIGURE_TITLES[name]
    if name not in figs.images:
        return f'<p class="muted">{_e(title)}: not drawn ({_e(figs.missing.get(name, ""))}).</p>'
    b64 = base64.b64encode(figs.images[name]).decode("ascii")
    return (
        f'<figure><img id="fig-{name}" alt="{_e(title)}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _excerpt(text: str, limit: int) -> str:
    text = (text or "").strip()
    if len(text) <= limit:
        return text
    return f"{text[:limit]} …[{len(text) - limit} more characters]"


def _case_html(c: Case) -> str:
    summary = (
        f"{c.id} · sample {c.sample_index} · think: {c.think} · answer: {c.safety} — "
        f"{_excerpt(c.query, 110) or '(query text unavailable)'}"
    )
    fields = [
        ("Query", c.query or "(unavailable: the dataset file is not at the recorded path)", "query"),
        ("Risk summary", c.risk_summary or "(unavailable)", "risk"),
        ("Reasoning (excerpt)", c.reasoning or "(no reasoning trace)", "reasoning"),
        ("Answer (excerpt)", c.answer or "(empty answer)", "answer"),
        (f"Think judge: {c.think}", c.think_explanation, "explanation"),
        (f"Safety judge: {c.safety}", c.safety_explanation, "explanation"),
    ]
    body = "".join(f"<dt>{_e(k)}</dt><dd><pre>{_e(_excerpt(v, EXCERPT[n]))}</pre></dd>" for k, v, n in fields)
    cats = f"<p class='muted'>{_e(c.scenario)} · {_e(', '.join(c.categories) or 'categories unknown')}</p>"
    return f"<details><summary>{_e(summary)}</summary>{cats}<dl>{body}</dl></details>"


def _browser_html(report: Report, examples: int) -> str:
    parts = []
    for r in report.runs:
        d = report.diagnoses[r.label]
        if r.metrics is None:
            continue
        parts.append(f"<h3>{_e(r.label)}</h3>")
        for what, kwargs in (
            (f"weakest scenario: {d.weakest_scenario}", {"scenario": d.weakest_scenario}),
            (f"weakest category: {d.weakest_category}", {"category": d.weakest_category}),
        ):
            if not any(kwargs.values()):
                continue
            cases = failure_cases(r, limit=examples, **kwargs)
            parts.append(
                f"<p><b>{_e(what)}</b> — {len(cases)} example(s) whose reasoning missed the target</p>"
            )
            parts += [_case_html(c) for c in cases]
    return "".join(parts) or '<p class="muted">No judged run.</p>'


def render_html(report: Report, figs: Figures, examples: int = 3) -> str:
    intro = "".join(f"<li>{_e(n)}</li>" for n in intro_lines(report))
    run_notes = "".join(
        f"<li><b>{_e(r.label)}</b> <span class='muted'>({_e(r.path)})</span>: {_e('; '.join(r.notes))}</li>"
        for r in report.runs
        if r.notes
    )
    pairs = _pairs_html(report)
    diag = "".join(
        f"<li><b>{_e(label)}</b>: {_e(d.sentence)}"
        + (f"<br><span class='muted'>Suggested: {_e(d.suggestion)}</span>" if d.suggestion else "")
        + "</li>"
        for label, d in report.diagnoses.items()
    )
    beside = beside_table(report)
    sections = [
        f"<h1>Beyond Safe Answers: report</h1><ul class='notes'>{intro}</ul>",
        f"<h2>Leaderboard</h2>{table_html(leaderboard_table(report))}<ul class='notes'>{run_notes}</ul>",
        "<h2>Safe@1 vs Think@1</h2>"
        + _img(
            "scatter",
            figs,
            "Each run with its 95% intervals on both axes; grey squares: the published models. "
            "Far above the dotted diagonal: answers safer than the reasoning behind them.",
        )
        + f"<p>{_e(correlation_text(report.correlation, 'Your runs (set A)'))}<br>"
        f"{_e(correlation_text(report.reference_correlation, 'The published leaderboard'))}</p>",
        "<h2>Per scenario</h2>"
        + _img("scenarios", figs, "Think and Safe per scenario, @1 and @k, with 95% intervals."),
        "<h2>Risk categories</h2>" + _img("heatmap", figs, "Think@1 per primary risk category."),
        f"<h2>Paired comparisons</h2>{pairs}" + _img("pairs", figs, "Base and changed run side by side."),
        f"<h2>SSA diagnosis</h2><ul>{diag}</ul>",
        f"<h2>Failure cases</h2>{_browser_html(report, examples)}",
        f"<h2>The paper as reference</h2><p>{_e(REFERENCE_NOTE.format(alpha=report.alpha))}</p>"
        + (f"<h3>Your runs beside the paper (run ± CI / paper)</h3>{table_html(beside)}" if beside else "")
        + f"<h3>Published leaderboard</h3>{table_html(reference_table(report))}",
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>BSA report</title><style>{_CSS}</style></head><body>{''.join(sections)}</body></html>\n"
    )


def _pairs_html(report: Report) -> str:
    if not report.pairs:
        return f"<p class='muted'>{NO_PAIRS.format(command=f'<code>{COMPARE_COMMAND}</code>')}</p>"
    out = []
    for i, pair in enumerate(report.pairs):
        out.append(f"<h3>{_e(pair.base.label)} → {_e(pair.other.label)} ({_e(pair.varies)})</h3>")
        if isinstance(pair.diffs, stats.Skipped):
            out.append(f"<p class='muted'>Not compared: {_e(pair.diffs.reason)}.</p>")
        else:
            out.append(table_html(pair_table(pair, i)))
    return "".join(out)
