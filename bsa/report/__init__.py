"""The report: ``python -m bsa.report`` (see ``bsa.report.cli``) compares runs with error bars.

Read runs (``runs``, ``loading``), pair them (``pairs``), diagnose them (``diagnosis``, ``cases``),
assemble a ``Report`` (``assemble``) against the published leaderboard (``reference``), then write
its outputs (``outputs``): the sections give tables and blocks (``tables``, ``agreement_section``,
``labels_section``, ``blocks``) and plots (``plots``); the renderers (``markdown``, ``html``,
``terminal``) turn them into text and import no section. report.html and compare.html are templates
in ``bsa/templates/report/``. The names below are the package's public API, as ``bsa.report``
offered them when it was one module.
"""

from __future__ import annotations

from bsa.report.assemble import Report, build
from bsa.report.blocks import Table
from bsa.report.cases import Case, failure_cases
from bsa.report.cli import main, run_compare, write_report
from bsa.report.columns import METRICS
from bsa.report.comparability import Group, PaperMatch, assign_groups, paper_match
from bsa.report.diagnosis import Diagnosis, diagnose, difference_intervals
from bsa.report.html import table_html
from bsa.report.loading import load_run
from bsa.report.markdown import table_md
from bsa.report.outputs import print_report, render_html, render_markdown
from bsa.report.pairs import Pair, compare, find_pairs, unpaired_notes
from bsa.report.plots import Figures, make_figures, plot_heatmap, plot_pairs, plot_scatter, plot_scenarios
from bsa.report.reference import (
    REFERENCE_ALPHA_0_7639,
    REFERENCE_CSV,
    REFERENCE_NAMES,
    load_reference,
    reference_medians,
    reference_name,
)
from bsa.report.runs import JudgePrompts, QuerySet, ReportError, Run, assign_labels, discover, find_runs
from bsa.report.tables import (
    beside_table,
    correlation_text,
    details_table,
    leaderboard_frame,
    leaderboard_table,
    pair_table,
    paper_notes,
    reference_table,
    scenario_table,
)

__all__ = [
    "METRICS",
    "REFERENCE_ALPHA_0_7639",
    "REFERENCE_CSV",
    "REFERENCE_NAMES",
    "Case",
    "Diagnosis",
    "Figures",
    "Group",
    "JudgePrompts",
    "Pair",
    "PaperMatch",
    "QuerySet",
    "Report",
    "ReportError",
    "Run",
    "Table",
    "assign_groups",
    "assign_labels",
    "beside_table",
    "build",
    "compare",
    "correlation_text",
    "details_table",
    "diagnose",
    "difference_intervals",
    "discover",
    "failure_cases",
    "find_pairs",
    "find_runs",
    "leaderboard_frame",
    "leaderboard_table",
    "load_reference",
    "load_run",
    "main",
    "make_figures",
    "pair_table",
    "paper_match",
    "paper_notes",
    "plot_heatmap",
    "plot_pairs",
    "plot_scatter",
    "plot_scenarios",
    "print_report",
    "reference_medians",
    "reference_name",
    "reference_table",
    "render_html",
    "render_markdown",
    "run_compare",
    "scenario_table",
    "table_html",
    "table_md",
    "unpaired_notes",
    "write_report",
]
