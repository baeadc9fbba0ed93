"""The report's outputs, composed from its sections: report.md, report.html and the console summary.

The sections give tables and blocks (``tables``, ``agreement_section``, ``labels_section``, the pairs
below); the renderers (``markdown``, ``html``, ``terminal``) only turn those into text. report.html is
the template ``bsa/templates/report/report.html`` (its stylesheet inlined, its plots embedded);
report.md is the same sections less the failure-case browser.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from bsa import pages, stats
from bsa.report.agreement_section import agreement_blocks, agreement_lines
from bsa.report.assemble import GROUPS_NOTE, Report, group_summaries, intro_lines
from bsa.report.blocks import Block, Code, Heading, Para
from bsa.report.cases import Case, failure_cases
from bsa.report.columns import METRICS, fmt_p
from bsa.report.comparability import PAPER_RULE
from bsa.report.diagnosis import browser_heading
from bsa.report.labels_section import section_blocks
from bsa.report.markdown import blocks_md, md, table_md
from bsa.report.pairs import COMPARE_COMMAND, NO_PAIRS, Pair
from bsa.report.plots import FIGURE_TITLES, Figures
from bsa.report.reference import REFERENCE_NOTE
from bsa.report.tables import (
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
from bsa.report.terminal import rich_table

REPORT_TEMPLATE = "report/report.html"  # bsa/templates/report/: the page, its macros and stylesheet
COMPARE_TEMPLATE = "report/compare.html"
EXCERPT = {"query": 600, "risk": 400, "reasoning": 1500, "answer": 900, "explanation": 600}
SCENARIO_COLUMNS = ("run", "OS@1", "CS@1", "RO@1")  # the console's per-scenario table


# --- sections shared by every output ------------------------------------------------------------------


def pair_blocks(report: Report) -> list[Block]:
    """The paired comparisons: per pair, its heading and its table (or why it was not compared)."""
    if not report.pairs:
        before, _, after = NO_PAIRS.partition("{command}")
        return [Para((before, Code(COMPARE_COMMAND), after), muted=True)]
    out: list[Block] = []
    for i, pair in enumerate(report.pairs):
        out.append(Heading(f"{pair.base.label} → {pair.other.label} ({pair.varies})"))
        if isinstance(pair.diffs, stats.Skipped):
            out.append(Para((f"Not compared: {pair.diffs.reason}.",), muted=True))
        else:
            out.append(pair_table(pair, i))
    return out


def _label_blocks(report: Report) -> list[Block]:
    return section_blocks((r.label, r.path) for r in report.runs)


# --- report.md ----------------------------------------------------------------------------------------


def render_markdown(report: Report, figs: Figures) -> str:
    out = ["# Beyond Safe Answers: report", "", *(f"- {md(n)}" for n in intro_lines(report)), ""]
    out += ["## Comparison groups", "", md(GROUPS_NOTE), ""]
    for s in group_summaries(report):
        differs = f" {md(s.differs[0].upper() + s.differs[1:])}." if s.differs else ""
        out.append(f"- **{md(s.title)}** — {md(s.runs)}.{differs} Against the paper: {md(s.paper)}.")
    out += ["", "## Leaderboard", ""]
    for g in report.groups:
        out += [f"### {md(g.title)}", "", table_md(leaderboard_table(report, group=g.number)), ""]
        scenarios = table_md(scenario_table(report, group=g.number))
        out += ["Think per scenario (as published):", "", scenarios, ""]
    out += ["### Run details", "", table_md(details_table(report)), ""]
    for r in report.runs:
        if r.notes:
            out.append(f"- **{md(r.label)}** ({md(str(r.path))}): {md('; '.join(r.notes))}")
    out += ["", "## Figures", ""]
    for name, title in FIGURE_TITLES.items():
        out.append(
            f"![{title}]({name}.png)"
            if name in figs.images
            else f"- {title}: not drawn ({figs.missing[name]})"
        )
        out.append("")
    out += ["## Correlation of Think@1 and Safe@1", ""]
    for line in correlation_lines(report):
        out += [md(line), ""]
    out.append(correlation_text(report.reference_correlation, "The published leaderboard"))
    out += ["", "## Paired comparisons", "", *blocks_md(pair_blocks(report))]
    out += ["## Judge agreement", "", *blocks_md(agreement_blocks(report.agreement))]
    out += blocks_md(_label_blocks(report))
    out += ["## SSA diagnosis", ""]
    for label, d in report.diagnoses.items():
        advice = f" Suggested: {md(d.suggestion)}" if d.suggestion else ""
        out.append(f"- **{md(label)}**: {md(d.sentence)}{advice}")
    out += ["", "Failure cases for each run's weakest scenario and category are in report.html.", ""]
    out += _reference_md(report)
    return "\n".join(out) + "\n"


def _reference_md(report: Report) -> list[str]:
    out = ["## The paper as reference", "", REFERENCE_NOTE.format(alpha=report.alpha), "", PAPER_RULE, ""]
    beside = beside_table(report)
    if beside is not None:
        out += ["Your runs beside the published figures (run ± CI, then the paper):", ""]
        out += [table_md(beside), ""]
    else:
        out += [md(no_beside_text(report)), ""]
    notes = paper_notes(report)
    if notes:
        out += [*(f"- {md(n)}" for n in notes), ""]
    return [*out, table_md(reference_table(report)), ""]


# --- report.html --------------------------------------------------------------------------------------


def render_html(report: Report, figs: Figures, examples: int = 3) -> str:
    """report.html: every section of report.md, the plots embedded, and the failure-case browser."""
    return pages.render(
        REPORT_TEMPLATE,
        intro=intro_lines(report),
        groups_note=GROUPS_NOTE,
        groups=group_summaries(report),
        leaderboard=[
            (g.title, leaderboard_table(report, group=g.number), scenario_table(report, group=g.number))
            for g in report.groups
        ],
        details=details_table(report),
        run_notes=[(r.label, str(r.path), "; ".join(r.notes)) for r in report.runs if r.notes],
        figures={name: _figure(name, figs) for name in FIGURE_TITLES},
        correlations=correlation_lines(report),
        reference_correlation=correlation_text(report.reference_correlation, "The published leaderboard"),
        pairs=pair_blocks(report),
        agreement=agreement_blocks(report.agreement),
        labels=_label_blocks(report),
        diagnoses=report.diagnoses,
        browser=_browser(report, examples),
        reference={
            "note": REFERENCE_NOTE.format(alpha=report.alpha),
            "rule": PAPER_RULE,
            "beside": beside_table(report),
            "no_beside": no_beside_text(report),
            "notes": paper_notes(report),
            "table": reference_table(report),
        },
    )


def _figure(name: str, figs: Figures) -> dict[str, str]:
    """A plot as the page embeds it (a data: URI), or why it was not drawn."""
    png = figs.images.get(name)
    src = f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}" if png is not None else ""
    return {"name": name, "title": FIGURE_TITLES[name], "src": src, "missing": figs.missing.get(name, "")}


def _excerpt(text: str, limit: int) -> str:
    text = (text or "").strip()
    if len(text) <= limit:
        return text
    return f"{text[:limit]} …[{len(text) - limit} more characters]"


def _case(c: Case) -> dict[str, Any]:
    """A failure case as the browser shows it: a one-line summary, then excerpts of its texts."""
    fields = [
        ("Query", c.query or "(unavailable: the dataset file is not at the recorded path)", "query"),
        ("Risk summary", c.risk_summary or "(unavailable)", "risk"),
        ("Reasoning (excerpt)", c.reasoning or "(no reasoning trace)", "reasoning"),
        ("Answer (excerpt)", c.answer or "(empty answer)", "answer"),
        (f"Think judge: {c.think}", c.think_explanation, "explanation"),
        (f"Safety judge: {c.safety}", c.safety_explanation, "explanation"),
    ]
    return {
        "summary": (
            f"{c.id} · sample {c.sample_index} · think: {c.think} · answer: {c.safety} — "
            f"{_excerpt(c.query, 110) or '(query text unavailable)'}"
        ),
        "where": f"{c.scenario} · {', '.join(c.categories) or 'categories unknown'}",
        "fields": [(title, _excerpt(text, EXCERPT[n])) for title, text, n in fields],
    }


def _browser(report: Report, examples: int) -> list[tuple[str, list[tuple[str, list[dict[str, Any]]]]]]:
    """Per judged run: its weakest scenario and category, each with failure cases."""
    out = []
    for r in report.runs:
        d = report.diagnoses[r.label]
        if r.metrics is None:
            continue
        parts = []
        for which, kwargs in (
            ("scenario", {"scenario": d.weakest_scenario}),
            ("category", {"category": d.weakest_category}),
        ):
            if any(kwargs.values()):
                cases = failure_cases(r, limit=examples, **kwargs)
                parts.append((browser_heading(d, which), [_case(c) for c in cases]))
        out.append((r.label, parts))
    return out


# --- the console --------------------------------------------------------------------------------------


def _pair_line(pair: Pair) -> str:
    if isinstance(pair.diffs, stats.Skipped):
        return f"{pair.base.label} → {pair.other.label}: not compared ({pair.diffs.reason})"
    bits = []
    for name in ("Safe@1", "Think@1", "OS@1"):
        d = pair.diffs.get(dict(METRICS)[name])
        if d and d.diff is not None:
            bits.append(f"{name} {d.diff:+.2f} (p={fmt_p(d.p_value)})")
    return f"{pair.base.label} → {pair.other.label}: {', '.join(bits)}"


def print_report(report: Report, out_dir: Path, console: Any = None) -> None:
    """The leaderboard per comparison group, notes, pairs, correlations and diagnoses, on ``console``
    (default: bsa's)."""
    from rich.markup import escape

    if console is None:
        from bsa.console import console

    for g in report.groups:
        title = f"BSA leaderboard · {g.title} (± half the 95% bootstrap interval)"
        console.print(rich_table(leaderboard_table(report, 1, g.number), title))
        scenarios = scenario_table(report, 1, g.number)
        console.print(rich_table(scenarios, f"Think per scenario, group {g.number}", SCENARIO_COLUMNS))
    for note in report.notes:
        console.print(f"[yellow]{escape(note)}[/]")
    for s in group_summaries(report)[1:]:
        console.print(f"[yellow]{escape(s.title.split(':', 1)[0])} {escape(s.differs)}.[/]")
    for pair in report.pairs:
        console.print(escape(_pair_line(pair)))
    for line in correlation_lines(report):
        console.print(escape(line))
    for line in agreement_lines(report.agreement):
        console.print(escape(line))
    for label, d in report.diagnoses.items():
        console.print(f"[bold]{escape(label)}[/]: {escape(d.sentence)}")
    console.print(
        f"Report written to [bold]{escape(str(out_dir))}[/] (report.html, report.md, leaderboard.csv)"
    )
