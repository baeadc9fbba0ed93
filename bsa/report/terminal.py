"""The console summary, with Rich: one headline table and one per-scenario table per comparison group,
sized for an 80-column terminal (cells fold, never end in an ellipsis; numbers keep their width)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bsa import stats
from bsa.report.agreement_section import agreement_lines
from bsa.report.assemble import Report, group_summaries
from bsa.report.columns import METRICS, fmt_p
from bsa.report.pairs import Pair
from bsa.report.tables import Table, correlation_lines, leaderboard_table, scenario_table

# A cell of numbers: "83.3", "±4.1", "2,000", "[+1.20, +3.40]", "—"; anything else is text.
_NUMBERS = re.compile(r"[\d.,±+\-−—\[\]e\s]*")


def rich_table(t: Table, title: str, columns: Iterable[str] | None = None) -> Any:
    """A Rich table of ``t``'s ``columns``; "x ±y" cells break before ± to stay narrow. Cells are
    Text, not markup: a model name with brackets must print as written, not as a style. Every
    column folds what does not fit (Rich's default cuts it with an ellipsis), and a column of
    numbers is at least as wide as its widest line, so that text columns give way first."""
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    wanted = None if columns is None else set(columns)
    keep = [i for i, h in enumerate(t.headers) if wanted is None or h in wanted]
    rt = RichTable(
        title=Text(title),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    cells = [[row[i].replace(" ±", "\n±") for i in keep] for row in t.rows]
    for n, i in enumerate(keep):
        numbers = n > 0 and all(_NUMBERS.fullmatch(row[n]) for row in cells)
        widest = max((len(line) for row in cells for line in row[n].split("\n")), default=1)
        rt.add_column(
            Text(t.headers[i]),
            justify="right" if numbers else "left",
            overflow="fold",
            min_width=widest if numbers else None,
        )
    for n, row in enumerate(cells):
        rt.add_row(*(Text(c) for c in row), style="yellow" if n in t.warn_rows else None)
    return rt


SCENARIO_COLUMNS = ("run", "OS@1", "CS@1", "RO@1")


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
    for g in group_summaries(report)[1:]:
        console.print(f"[yellow]{escape(g.title.split(':', 1)[0])} {escape(g.differs)}.[/]")
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
