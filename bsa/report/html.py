"""report.html: self-contained (plots embedded), with the failure-case browser. Every string from a
run is escaped: model output is untrusted."""

from __future__ import annotations

import base64
import html
from typing import Any

from bsa import stats
from bsa.report.agreement_section import agreement_html
from bsa.report.assemble import GROUPS_NOTE, Report, group_summaries, intro_lines
from bsa.report.cases import Case, failure_cases
from bsa.report.comparability import PAPER_RULE
from bsa.report.diagnosis import browser_heading
from bsa.report.labels_section import section_html
from bsa.report.pairs import COMPARE_COMMAND, NO_PAIRS
from bsa.report.plots import FIGURE_TITLES, Figures
from bsa.report.reference import REFERENCE_NOTE
from bsa.report.tables import (
    Table,
    beside_table,
    correlation_lines,
    correlation_text,
    details_table,
    leaderboard_table,
    no_beside_text,
    pair_table,
    paper_notes,
    reference_table,
    scenario_table,
)

EXCERPT = {"query": 600, "risk": 400, "reasoning": 1500, "answer": 900, "explanation": 600}

# Sized for a laptop: at 1,280 px every table fits without a scrollbar. Numbers never wrap; run
# labels, model names and headers do (overflow-wrap: anywhere breaks a long model path too).
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1400px;
padding:0 16px;color:#1d232a}
h1{font-size:24px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:15px}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:12.5px;margin:8px 0}
th,td{border:1px solid #d6dbe0;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#eef2f6;white-space:normal;vertical-align:bottom}td:first-child,th:first-child{text-align:left}
td.w{white-space:normal;overflow-wrap:anywhere;min-width:6em;max-width:22em}.w{text-align:left}
tr.warn td{background:#fff4e5}tr:hover td{background:#f2f7ff}
caption{text-align:left;font-weight:600;padding:2px 0;color:#333}
.groups li{margin:6px 0}.groups .title{font-weight:600}
figure{margin:12px 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:12.5px}
.notes li{color:#444}details{border:1px solid #d6dbe0;border-radius:4px;margin:6px 0;padding:4px 8px}
summary{cursor:pointer}pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fa;padding:6px;
font-size:12.5px;max-height:320px;overflow:auto}dt{font-weight:600;margin-top:6px}.muted{color:#666}
"""


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def table_html(t: Table, caption: str = "") -> str:
    head = "".join(
        f'<th class="w">{_e(h)}</th>' if j in t.wrap else f"<th>{_e(h)}</th>" for j, h in enumerate(t.headers)
    )
    body = []
    for i, row in enumerate(t.rows):
        cls = ' class="warn"' if i in t.warn_rows else ""
        cells = "".join(
            f'<td class="w">{_e(c)}</td>' if j in t.wrap else f"<td>{_e(c)}</td>" for j, c in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return (
        f'<div class="scroll"><table id="{_e(t.id)}">{cap}<thead><tr>{head}</tr></thead>'
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
            (browser_heading(d, "scenario"), {"scenario": d.weakest_scenario}),
            (browser_heading(d, "category"), {"category": d.weakest_category}),
        ):
            if not any(kwargs.values()):
                continue
            cases = failure_cases(r, limit=examples, **kwargs)
            parts.append(
                f"<p><b>{_e(what)}</b> — {len(cases)} example(s) whose reasoning missed the target</p>"
            )
            parts += [_case_html(c) for c in cases]
    return "".join(parts) or '<p class="muted">No judged run.</p>'


def _groups_html(report: Report) -> str:
    items = []
    for g in group_summaries(report):
        differs = (
            f"<br><span class='muted'>{_e(g.differs[0].upper() + g.differs[1:])}.</span>" if g.differs else ""
        )
        items.append(
            f"<li><span class='title'>{_e(g.title)}</span><br>{_e(g.runs)}{differs}<br>"
            f"<span class='muted'>Against the paper: {_e(g.paper)}.</span></li>"
        )
    return f"<ul class='groups'>{''.join(items)}</ul>"


def _leaderboard_html(report: Report) -> str:
    parts = []
    for g in report.groups:
        parts.append(f"<h3>{_e(g.title)}</h3>")
        parts.append(table_html(leaderboard_table(report, group=g.number), "Headline metrics"))
        parts.append(table_html(scenario_table(report, group=g.number), "Think per scenario (as published)"))
    run_notes = "".join(
        f"<li><b>{_e(r.label)}</b> <span class='muted'>({_e(r.path)})</span>: {_e('; '.join(r.notes))}</li>"
        for r in report.runs
        if r.notes
    )
    parts.append(f"<h3>Run details</h3>{table_html(details_table(report))}<ul class='notes'>{run_notes}</ul>")
    return "".join(parts)


def _reference_html(report: Report) -> str:
    beside = beside_table(report)
    notes = "".join(f"<li>{_e(n)}</li>" for n in paper_notes(report))
    return (
        f"<h2>The paper as reference</h2><p>{_e(REFERENCE_NOTE.format(alpha=report.alpha))}</p>"
        f"<p>{_e(PAPER_RULE)}</p>"
        + (
            f"<h3>Your runs beside the paper (run ± CI, then the paper)</h3>{table_html(beside)}"
            if beside
            else f"<p class='muted'>{_e(no_beside_text(report))}</p>"
        )
        + (f"<ul class='notes'>{notes}</ul>" if notes else "")
        + f"<h3>Published leaderboard</h3>{table_html(reference_table(report))}"
    )


def render_html(report: Report, figs: Figures, examples: int = 3) -> str:
    intro = "".join(f"<li>{_e(n)}</li>" for n in intro_lines(report))
    diag = "".join(
        f"<li><b>{_e(label)}</b>: {_e(d.sentence)}"
        + (f"<br><span class='muted'>Suggested: {_e(d.suggestion)}</span>" if d.suggestion else "")
        + "</li>"
        for label, d in report.diagnoses.items()
    )
    correlations = "<br>".join(_e(line) for line in correlation_lines(report))
    sections = [
        f"<h1>Beyond Safe Answers: report</h1><ul class='notes'>{intro}</ul>",
        f"<h2>Comparison groups</h2><p>{_e(GROUPS_NOTE)}</p>{_groups_html(report)}",
        f"<h2>Leaderboard</h2>{_leaderboard_html(report)}",
        "<h2>Safe@1 vs Think@1</h2>"
        + _img(
            "scatter",
            figs,
            "Each run with its 95% intervals on both axes; grey squares: the published models (judged by "
            "GPT-4o with the published prompts). Far above the dotted diagonal: answers safer than the "
            "reasoning behind them.",
        )
        + f"<p>{correlations}<br>"
        f"{_e(correlation_text(report.reference_correlation, 'The published leaderboard'))}</p>",
        "<h2>Per scenario</h2>"
        + _img("scenarios", figs, "Think and Safe per scenario, @1 and @k, with 95% intervals."),
        "<h2>Risk categories</h2>" + _img("heatmap", figs, "Think@1 per primary risk category."),
        f"<h2>Paired comparisons</h2>{_pairs_html(report)}"
        + _img("pairs", figs, "Base and changed run side by side."),
        f"<h2>Judge agreement</h2>{agreement_html(report.agreement)}",
        section_html((r.label, r.path) for r in report.runs),
        f"<h2>SSA diagnosis</h2><ul>{diag}</ul>",
        f"<h2>Failure cases</h2>{_browser_html(report, examples)}",
        _reference_html(report),
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
