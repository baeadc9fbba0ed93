"""report.md: the sections of report.html, less the failure-case browser."""

from __future__ import annotations

import html

from bsa import stats
from bsa.report.agreement_section import agreement_markdown
from bsa.report.assemble import GROUPS_NOTE, Report, group_summaries, intro_lines
from bsa.report.comparability import PAPER_RULE
from bsa.report.labels_section import section_markdown
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


def _md(s: str) -> str:
    """Run-derived text in Markdown: many renderers pass HTML through, and model names are untrusted."""
    return html.escape(s, quote=False)


def _md_cell(s: str) -> str:
    return _md(s).replace("|", "\\|").replace("\n", " ")


def table_md(t: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in t.headers) + " |", "|" + "---|" * len(t.headers)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def render_markdown(report: Report, figs: Figures) -> str:
    out = ["# Beyond Safe Answers: report", "", *(f"- {_md(n)}" for n in intro_lines(report)), ""]
    out += ["## Comparison groups", "", _md(GROUPS_NOTE), ""]
    for g in group_summaries(report):
        differs = f" {_md(g.differs[0].upper() + g.differs[1:])}." if g.differs else ""
        out.append(f"- **{_md(g.title)}** — {_md(g.runs)}.{differs} Against the paper: {_md(g.paper)}.")
    out += ["", "## Leaderboard", ""]
    for g in report.groups:
        out += [f"### {_md(g.title)}", "", table_md(leaderboard_table(report, group=g.number)), ""]
        scenarios = table_md(scenario_table(report, group=g.number))
        out += ["Think per scenario (as published):", "", scenarios, ""]
    out += ["### Run details", "", table_md(details_table(report)), ""]
    for r in report.runs:
        if r.notes:
            out.append(f"- **{_md(r.label)}** ({_md(str(r.path))}): {_md('; '.join(r.notes))}")
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
        out += [_md(line), ""]
    out.append(correlation_text(report.reference_correlation, "The published leaderboard"))
    out += ["", "## Paired comparisons", ""]
    out += _pairs_md(report)
    out += ["## Judge agreement", "", *agreement_markdown(report.agreement)]
    out += section_markdown((r.label, r.path) for r in report.runs)
    out += ["## SSA diagnosis", ""]
    for label, d in report.diagnoses.items():
        advice = f" Suggested: {_md(d.suggestion)}" if d.suggestion else ""
        out.append(f"- **{_md(label)}**: {_md(d.sentence)}{advice}")
    out += ["", "Failure cases for each run's weakest scenario and category are in report.html.", ""]
    out += _reference_md(report)
    return "\n".join(out) + "\n"


def _pairs_md(report: Report) -> list[str]:
    if not report.pairs:
        return [NO_PAIRS.format(command=f"`{COMPARE_COMMAND}`"), ""]
    out = []
    for i, pair in enumerate(report.pairs):
        out.append(f"### {_md(pair.base.label)} → {_md(pair.other.label)} ({pair.varies})")
        out.append("")
        if isinstance(pair.diffs, stats.Skipped):
            out += [f"Not compared: {_md(pair.diffs.reason)}.", ""]
            continue
        out += [table_md(pair_table(pair, i)), ""]
    return out


def _reference_md(report: Report) -> list[str]:
    out = ["## The paper as reference", "", REFERENCE_NOTE.format(alpha=report.alpha), "", PAPER_RULE, ""]
    beside = beside_table(report)
    if beside is not None:
        out += ["Your runs beside the published figures (run ± CI, then the paper):", ""]
        out += [table_md(beside), ""]
    else:
        out += [_md(no_beside_text(report)), ""]
    notes = paper_notes(report)
    if notes:
        out += [*(f"- {_md(n)}" for n in notes), ""]
    return [*out, table_md(reference_table(report)), ""]
