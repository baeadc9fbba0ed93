"""Rich tables for a run's metrics (shared by ``python -m bsa`` and ``python -m bsa.score``)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bsa.contract import F_SCORE, METRIC_NAMES, RATES, SAFE_AT_1, THINK_AT_1
from bsa.forecast import hours

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bsa.metrics import SampleScore
    from bsa.showcase import Example
    from bsa.stats import Interval

console = Console(highlight=False)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _table(title: str, **kwargs: Any) -> Table:
    """Sized for an 80-column terminal, as the report's tables (bsa/report/terminal.py): no vertical
    rules, so the per-scenario table fits in 80 columns; on a narrower one cells fold onto more lines
    (Rich's default cuts them with an ellipsis)."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        **kwargs,
    )


def _text_column(t: Table, header: str) -> None:
    t.add_column(header, overflow="fold")


def _number_column(t: Table, header: str, cells: list[str]) -> None:
    # As wide as its widest number, so that text columns give way first and a number stays whole.
    t.add_column(header, justify="right", overflow="fold", min_width=max(map(len, cells), default=1))


def intervals(samples: Sequence[SampleScore], m: dict[str, Any]) -> dict[str, Interval] | str:
    """The headline's 95 % intervals (``bsa.stats``, as the report computes them: a bootstrap over
    queries, each query's k samples kept together), or why there are none."""
    if m.get("fixed_denominators"):
        # The bootstrap's per-query rates leave unscored samples out; judge.protocol=paper counts them
        # as misses over fixed denominators, so its intervals would not be around these numbers.
        return "no intervals under judge.protocol=paper"
    from bsa import stats

    ci = stats.bootstrap_ci(stats.per_query(samples, m["k"]), m["alpha"])
    return ci.reason if isinstance(ci, stats.Skipped) else ci


def headline(m: dict[str, Any], title: str, ci: dict[str, Interval] | str | None = None) -> Group:
    """One row per metric: its value and, given ``ci`` (``intervals``), its 95 % interval beside it.
    The title and notes are lines of their own: the table is narrow, and would fold them."""
    t = _table("")
    shown = (*RATES, F_SCORE)
    with_ci = isinstance(ci, dict)
    # Intervals of a few points make a second decimal noise: one is shown beside them.
    value = (lambda v: "—" if v is None else f"{v:.1f}") if with_ci else _pct
    rows = [[METRIC_NAMES[key], value(m[key])] for key in shown]
    if isinstance(ci, dict):
        for row, key in zip(rows, shown, strict=True):
            iv = ci.get(key)
            low, high = (None, None) if iv is None else (iv.low, iv.high)
            row.append("—" if low is None or high is None else f"[{low:.1f}, {high:.1f}]")
    _text_column(t, "metric")
    for n, header in enumerate(("%", "95 % interval")[: len(rows[0]) - 1], start=1):
        _number_column(t, header, [r[n] for r in rows])
    for r in rows:
        t.add_row(*r)
    notes = [f"k = {m['k']} samples per query, {m['n_queries']} queries; rates in percent"]
    if with_ci:
        notes.append("95 % interval: bootstrap over queries (a query's k samples resampled together)")
    elif isinstance(ci, str):
        notes.append(ci)
    notes.append(f"F-score = Think@1^α · Safe@1^(1−α), α = {m['alpha']:.4f}")
    return Group(Text(title, style="table.title"), t, *(Text(n, style="table.caption") for n in notes))


def _group_table(title: str, first: str, groups: dict[str, Any], cols: tuple[str, ...]) -> Table:
    rows = [
        [
            name,
            *(_pct(g[c]) for c in cols),
            str(g["n_queries"]),
            f"{g['unscored_safety']}/{g['unscored_think']}",
            str(g["flagged"]),
        ]
        for name, g in groups.items()
    ]
    t = _table(title)
    _text_column(t, first)
    for n, header in enumerate(
        [METRIC_NAMES[c] for c in cols] + ["queries", "unscored S/T", "flagged"], start=1
    ):
        _number_column(t, header, [r[n] for r in rows])
    for r in rows:
        t.add_row(*r)
    return t


def counts(m: dict[str, Any], extra: dict[str, Any] | None = None) -> Table:
    rows: list[tuple[str, Any]] = [
        ("queries", m["n_queries"]),
        ("samples", m["n_samples"]),
        ("unscored safety verdicts", m["unscored_safety"]),
        ("unscored think verdicts", m["unscored_think"]),
        ("flagged samples", m["flagged"]),
    ]
    if m.get("fixed_denominators"):  # judge.protocol=paper: no verdict is unscored, a non-label is a miss
        rows[2:4] = [
            ("safety verdicts not a label (misses)", m["off_label_safety"]),
            ("think verdicts not a label (misses)", m["off_label_think"]),
        ]
    rows += [(f"  flag {k}", v) for k, v in m.get("flags", {}).items()]
    if m.get("incomplete_queries"):
        rows.append(("queries with fewer than k samples", m["incomplete_queries"]))
    rows += list((extra or {}).items())
    cells = [(str(k), str(v)) for k, v in rows]
    t = _table("Counts", show_header=False)
    _text_column(t, "what")
    _number_column(t, "n", [v for _, v in cells])
    for k, v in cells:
        t.add_row(k, v)
    return t


def legend(m: dict[str, Any]) -> str:
    """One line under the tables: what the columns that are not metrics count."""
    policy = m.get("provider_refusal_policy", "unscored")
    # Which refusals stay unscored under each policy (bsa.results._refusal_verdicts).
    refusals = {
        "unscored": ", or a provider refused (scoring.provider_refusal=unscored)",
        "safe_no_reasoning": ", or the judge's provider refused",
    }
    if m.get("fixed_denominators"):
        unscored = "0 under judge.protocol=paper, which counts a verdict that is no label as a miss"
    else:
        unscored = (
            "safety / think verdicts left out of the rates: the judge's reply held no label"
            + refusals.get(policy, "")
        )
    return f"unscored S/T: {unscored}; flagged: samples with a flag (listed under Counts)."


def print_metrics(
    m: dict[str, Any],
    title: str,
    extra: dict[str, Any] | None = None,
    samples: Sequence[SampleScore] | None = None,
) -> None:
    """The run's tables; with ``samples`` (those ``m`` was computed from) the headline has intervals."""
    if not m["n_queries"]:
        console.print(f"[bold]{escape(title)}[/]: no query was evaluated.")
        return
    console.print(headline(m, title, None if samples is None else intervals(samples, m)))
    console.print(
        _group_table(
            "Per scenario (Think is judged on the reasoning trace only)",
            "scenario",
            m["scenarios"],
            RATES,
        )
    )
    console.print(
        _group_table("Per primary risk category", "category", m["categories"], (SAFE_AT_1, THINK_AT_1))
    )
    console.print(counts(m, extra))
    console.print(escape(legend(m)), style="dim")


def print_next(run_dir: Path) -> None:
    """After a finished run: the commands that look further into it."""
    d = escape(shlex.quote(str(run_dir)))
    # soft_wrap: a path stays whole on its line, to be copied as it is.
    console.print(f"Next: [bold]bsa view {d}[/]    browse, filter and search its samples", soft_wrap=True)
    console.print(
        f"      [bold]bsa report {d}[/]    intervals per scenario, failure cases; name more run dirs "
        "to compare them",
        soft_wrap=True,
    )


def print_plan(lines: list[tuple[str, str]]) -> None:
    """One panel, before the first call: what will run and what it will cost in calls."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for what, value in lines:
        grid.add_row(what, escape(value))
    console.print(Panel(grid, title="bsa: what will run", title_align="left", expand=False))


def _int(v: Any) -> str:
    return "?" if v is None else f"{int(v):,}"


def _usd(v: Any, lower_bound: bool = False) -> str:
    if v is None:
        return "unpriced"
    return ("≥ " if lower_bound else "") + (f"${v:,.2f}" if v >= 0.01 or v == 0 else f"${v:.4f}")


def _line_usd(ln: Any) -> str:
    """A line's dollars: "unpriced" when its model has no price, "?" when its calls cannot be sized."""
    if ln.usd is None and not ln.unpriced:
        return "?"
    return _usd(ln.usd, ln.usd_lower_bound)


def _kind(key: str) -> str:
    return key.split(":", 1)[1] if ":" in key else "all"


def print_dry_run(estimate: Any, out: Console | None = None) -> None:
    """``dry_run=true``: a table per role (bsa.cost.Estimate): calls, cached, to call, estimated
    prompt and completion tokens, estimated USD or "unpriced"; how each figure was estimated below."""
    out = out or console
    headers = ("calls", "cached", "to call", "prompt tok", "compl. tok", "USD")
    unsized = False
    for role, lines in estimate.by_role().items():
        rows = [
            [
                _kind(ln.key),
                _int(ln.calls),
                _int(ln.cached),
                _int(ln.calls_to_make) + ("*" if ln.estimated_calls else ""),
                _int(ln.prompt_tokens),
                _int(ln.completion_tokens),
                _line_usd(ln),
            ]
            for ln in lines
        ]
        unsized |= any(ln.usd is None and not ln.unpriced for ln in lines)
        if len(lines) > 1:
            usds = [ln.usd for ln in lines if ln.usd is not None]
            p = [ln.prompt_tokens for ln in lines]
            c = [ln.completion_tokens for ln in lines]
            rows.append(
                [
                    "total",
                    _int(sum(ln.calls for ln in lines)),
                    _int(sum(ln.cached for ln in lines)),
                    _int(sum(ln.calls_to_make for ln in lines))
                    + ("*" if any(ln.estimated_calls for ln in lines) else ""),
                    _int(None if None in p else sum(p)),
                    _int(None if None in c else sum(c)),
                    _usd(
                        sum(usds) if usds else None,
                        any(ln.usd_lower_bound or (ln.usd is None and not ln.unpriced) for ln in lines),
                    )
                    if usds
                    else _line_usd(lines[0]),
                ]
            )
        models = sorted({m for ln in lines for m in ln.models})
        t = _table(escape(f"{role} ({', '.join(models) or '—'}): estimated"))
        _text_column(t, "kind")
        for n, header in enumerate(headers, start=1):
            _number_column(t, header, [r[n] for r in rows])
        for r in rows:
            t.add_row(*r)
        notes = []
        if any(ln.estimated_calls for ln in lines):
            notes.append("* includes calls estimated before their request exists")
        for ln in lines:
            what = f"{_kind(ln.key)}: " if len(lines) > 1 else ""
            basis = f"prompt tokens {ln.prompt_basis}; completion tokens {ln.completion_basis}"
            if ln.batch_prices:
                basis += "; batch prices"
            notes.append(what + "; ".join([basis, *ln.notes]))
        t.caption = escape("\n".join(notes))
        t.caption_justify = "left"
        out.print(t)
    total = estimate.total_usd()
    out.print(
        "[bold]Estimated total:[/] "
        + (escape(_usd(total, unsized)) + " (priced roles only)" if total is not None else "unpriced")
        + ". Nothing was called (dry_run=true)."
    )
    wall = estimate.wall_s()
    if wall is not None:
        parts = [
            f"{role} {_int(load.calls)} calls × {load.latency_s:g} s / {load.concurrency} in flight"
            + (f", ≤ {load.rpm}/min" if load.rpm else "")
            for role, load in estimate.loads.items()
            if load.calls
        ]
        out.print(
            f"[bold]Wall time:[/] about {escape(hours(wall))} ({escape('; '.join(parts) or 'no calls')}). "
            "Seconds per call are assumed (model.latency_s, judge.latency_s); a pilot measures them: "
            "bsa estimate RUN_DIR scales a small run to this selection."
        )
    for problem in estimate.missing:
        out.print(f"[yellow]A real run would stop here:[/] {escape(problem)}")


def print_usage(stats_by_role: dict[str, dict[str, Any]], out: Console | None = None) -> None:
    """After a run: calls, tokens and dollars per role (``stats.by_role``: role -> prompt_tokens,
    completion_tokens, reasoning_tokens, cost_usd, calls; missing keys show as "—")."""
    out = out or console
    if not stats_by_role:
        return
    cols = (
        ("calls", "calls"),
        ("prompt tok", "prompt_tokens"),
        ("completion tok", "completion_tokens"),
        ("reasoning tok", "reasoning_tokens"),
        ("USD", "cost_usd"),
    )

    def cell(d: dict[str, Any], key: str) -> str:
        v = d.get(key)
        if v is None:
            return "—"
        if key == "cost_usd":
            return _usd(v)
        return f"{int(v):,}"

    rows = [[role, *(cell(d or {}, k) for _, k in cols)] for role, d in stats_by_role.items()]
    if len(stats_by_role) > 1:
        total = {}
        for _, k in cols:
            vals = [(d or {}).get(k) for d in stats_by_role.values()]
            total[k] = sum(v for v in vals if v is not None) if any(v is not None for v in vals) else None
        rows.append(["total", *(cell(total, k) for _, k in cols)])
    t = _table("Usage (this run's network calls; cache hits are free)")
    _text_column(t, "role")
    for n, (header, _) in enumerate(cols, start=1):
        _number_column(t, header, [r[n] for r in rows])
    for r in rows:
        t.add_row(*r)
    out.print(t)


def print_example(ex: Example, m: dict[str, Any]) -> None:
    """One sample as BSA sees it, and what Safe@1 vs Think@1 says of the run."""
    from bsa import showcase

    q = ex.query
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    rows = [
        ("Query", f"{showcase.excerpt(q.query, 300)}  ({q.scenario}; {', '.join(q.categories)})"),
        ("Annotated risk", showcase.excerpt(q.risk_summary, 240)),
        ("Reasoning", showcase.excerpt(ex.reasoning, 360)),
        ("Answer", showcase.excerpt(ex.answer, 300)),
        ("Safety judge", f"{ex.safety}: {showcase.excerpt(ex.safety_explanation, 240)}"),
        ("Think judge", f"{ex.think}: {showcase.excerpt(ex.think_explanation, 240)}"),
    ]
    for what, value in rows:
        grid.add_row(what, escape(value))
    grid.add_row("So", escape(f"{showcase.MEANING[ex.kind]}"))
    title = f"One sample, as BSA sees it: {q.id}, sample {ex.sample_index} ({ex.kind})"
    console.print(Panel(grid, title=escape(title), title_align="left"))
    line = showcase.gap_line(m.get(SAFE_AT_1), m.get(THINK_AT_1))
    if line:
        console.print(escape(line))
