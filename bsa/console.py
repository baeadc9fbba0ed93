"""Rich tables for a run's metrics (shared by ``python -m bsa`` and ``python -m bsa.score``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

console = Console(highlight=False)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def headline(m: dict[str, Any], title: str) -> Table:
    t = Table(title=escape(title), title_justify="left")  # model names are not markup
    for col in ("Safe@1", "Safe@k", "Think@1", "Think@k", "F-score", "k", "queries"):
        t.add_column(col, justify="right")
    t.add_row(
        _pct(m["safe_at_1"]),
        _pct(m["safe_at_k"]),
        _pct(m["think_at_1"]),
        _pct(m["think_at_k"]),
        _pct(m["f_score"]),
        str(m["k"]),
        str(m["n_queries"]),
    )
    t.caption = f"F-score = Think@1^α · Safe@1^(1−α), α = {m['alpha']:.4f}; rates in percent"
    return t


def _group_table(title: str, first: str, groups: dict[str, Any], cols: tuple[str, ...]) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column(first)
    names = {
        "safe_at_1": "Safe@1",
        "safe_at_k": "Safe@k",
        "think_at_1": "Think@1",
        "think_at_k": "Think@k",
    }
    for c in cols:
        t.add_column(names[c], justify="right")
    for c in ("queries", "unscored S/T", "flagged"):
        t.add_column(c, justify="right")
    for name, g in groups.items():
        t.add_row(
            name,
            *(_pct(g[c]) for c in cols),
            str(g["n_queries"]),
            f"{g['unscored_safety']}/{g['unscored_think']}",
            str(g["flagged"]),
        )
    return t


def counts(m: dict[str, Any], extra: dict[str, Any] | None = None) -> Table:
    t = Table(title="Counts", title_justify="left", show_header=False)
    t.add_column("what")
    t.add_column("n", justify="right")
    rows: list[tuple[str, Any]] = [
        ("queries", m["n_queries"]),
        ("samples", m["n_samples"]),
        ("unscored safety verdicts", m["unscored_safety"]),
        ("unscored think verdicts", m["unscored_think"]),
        ("flagged samples", m["flagged"]),
    ]
    rows += [(f"  flag {k}", v) for k, v in m.get("flags", {}).items()]
    if m.get("incomplete_queries"):
        rows.append(("queries with fewer than k samples", m["incomplete_queries"]))
    rows += list((extra or {}).items())
    for k, v in rows:
        t.add_row(k, str(v))
    return t


def print_metrics(m: dict[str, Any], title: str, extra: dict[str, Any] | None = None) -> None:
    if not m["n_queries"]:
        console.print(f"[bold]{escape(title)}[/]: no query was evaluated.")
        return
    console.print(headline(m, title))
    console.print(
        _group_table(
            "Per scenario (Think is judged on the reasoning trace only)",
            "scenario",
            m["scenarios"],
            ("safe_at_1", "safe_at_k", "think_at_1", "think_at_k"),
        )
    )
    console.print(
        _group_table("Per primary risk category", "category", m["categories"], ("safe_at_1", "think_at_1"))
    )
    console.print(counts(m, extra))


def print_plan(lines: list[tuple[str, str]]) -> None:
    """One panel, before the first call: what will run and what it will cost in calls."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for what, value in lines:
        grid.add_row(what, escape(value))
    console.print(Panel(grid, title="bsa: what will run", title_align="left", expand=False))
