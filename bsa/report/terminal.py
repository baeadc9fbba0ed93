"""The console summary, with Rich."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bsa import stats
from bsa.report.assemble import Report
from bsa.report.columns import METRICS, fmt_p
from bsa.report.pairs import Pair
from bsa.report.tables import Table, correlation_text, leaderboard_table


def rich_table(t: Table, title: str, columns: Iterable[str] | None = None) -> Any:
    """A Rich table of ``t``'s ``columns``; "x ±y" cells break before ± to stay narrow. Cells are
    Text, not markup: a model name with brackets must print as written, not as a style."""
    from rich.table import Table as RichTable
    from rich.text import Text

    keep = [i for i, h in enumerate(t.headers) if columns is None or h in columns]
    rt = RichTable(title=Text(title), title_justify="left")
    for i in keep:
        rt.add_column(Text(t.headers[i]), justify="left" if i == 0 else "right")
    for n, row in enumerate(t.rows):
        cells = (Text(row[i].replace(" ±", "\n±")) for i in keep)
        rt.add_row(*cells, style="yellow" if n in t.warn_rows else None)
    return rt


CONSOLE_COLUMNS = tuple("run status queries Safe@1 Safe@k Think@1 Think@k F-score OS@1 CS@1 RO@1".split())


def _pair_line(pair: Pair) -> str:
    if isinstance(pair.diffs, stats.Skipped):
        return f"{pair.base.label} → {pair.other.label}: not compared ({pair.diffs.reason})"
    bits = []
    for name in ("Safe@1", "Think@1", "OS@1"):
        d = pair.diffs.get(dict(METRICS)[name])
        if d and d.diff is not None:
            bits.append(f"{name} {d.diff:+.2f} (p={fmt_p(d.p_value)})")
    return f"{pair.base.label} → {pair.other.label}: {', '.join(bits)}"


def print_report(report: Report, out_dir: Path) -> None:
    from rich.markup import escape

    from bsa.console import console

    table = leaderboard_table(report, digits=1)
    columns = CONSOLE_COLUMNS + (("set",) if len(report.sets) > 1 else ())
    console.print(rich_table(table, "BSA leaderboard (± half the 95% bootstrap interval)", columns))
    for note in report.notes:
        console.print(f"[yellow]{escape(note)}[/]")
    for pair in report.pairs:
        console.print(escape(_pair_line(pair)))
    console.print(escape(correlation_text(report.correlation, "Think@1 vs Safe@1 across your runs")))
    for label, d in report.diagnoses.items():
        console.print(f"[bold]{escape(label)}[/]: {escape(d.sentence)}")
    console.print(
        f"Report written to [bold]{escape(str(out_dir))}[/] (report.html, report.md, leaderboard.csv)"
    )
