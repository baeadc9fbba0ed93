"""The report's tables on the console, with Rich, sized for an 80-column terminal (cells fold, never
end in an ellipsis; numbers keep their width). A leaf: it imports nothing of the report's sections
(``outputs.print_report`` composes the console summary)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from bsa.report.blocks import Table

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
