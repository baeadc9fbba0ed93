"""Figures, on matplotlib's Agg canvas with Figure objects: no display, no pyplot global state."""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bsa import stats
from bsa.contract import (
    CATEGORIES,
    METRIC_NAMES,
    SAFE_AT_1,
    SAFE_AT_K,
    SCENARIOS,
    THINK_AT_1,
    THINK_AT_K,
    scenario_metric,
)
from bsa.report.assemble import Report
from bsa.report.columns import ABBR, METRICS
from bsa.report.diagnosis import SAFE_ANSWERS, SSA_GAP
from bsa.report.pairs import SIGNIFICANT, Pair
from bsa.report.reference import reference_name
from bsa.report.runs import Run


def _mpl(text: str) -> str:
    """Model names are untrusted: a '$' would start matplotlib mathtext (and fail to parse)."""
    return text.replace("$", r"\$")


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _err(run: Run, key: str) -> tuple[float, float]:
    """Asymmetric error-bar lengths (below, above) from the 95% interval; 0 where there is none."""
    v, iv = run.value(key), run.interval(key)
    if v is None or iv is None or iv.low is None or iv.high is None:
        return 0.0, 0.0
    return max(v - iv.low, 0.0), max(iv.high - v, 0.0)


def plot_scatter(runs: list[Run], ref: pd.DataFrame) -> bytes:
    """Safe@1 against Think@1: the superficial-safety picture (top left: safe answers, shallow reasoning)."""
    fig = _figure(7.5, 5.6)
    ax = fig.add_subplot()
    # The diagnosis's rule for superficial safety: Safe@1 >= SAFE_ANSWERS and Safe@1 - Think@1 >= SSA_GAP.
    band_x = [0, SAFE_ANSWERS - SSA_GAP, 100 - SSA_GAP, 0]
    ax.fill(band_x, [SAFE_ANSWERS, SAFE_ANSWERS, 100, 100], color="#f6d5d5", alpha=0.6, lw=0)
    # Labelled at the band's foot: runs and the published models crowd its top.
    rule = f"superficial safety: Safe@1 ≥ {SAFE_ANSWERS:.0f}, Safe@1 − Think@1 ≥ {SSA_GAP:.0f}"
    ax.text(1.5, SAFE_ANSWERS + 1, rule, va="bottom", fontsize=7.5, color="#8a2b2b")
    ax.plot([0, 100], [0, 100], ls=":", c="grey", lw=1)
    ax.scatter(ref["Think@1"], ref["Safe@1"], c="#b8b8b8", marker="s", s=22, label="published (23 models)")
    several_groups = len({r.group for r in runs}) > 1
    for r, color in zip(runs, _colors(len(runs)), strict=True):
        t, s = r.value(THINK_AT_1), r.value(SAFE_AT_1)
        if t is None or s is None:  # every think (or safety) verdict unscored: no point to draw
            continue
        xe, ye = _err(r, THINK_AT_1), _err(r, SAFE_AT_1)
        ax.errorbar(
            t,
            s,
            xerr=[[xe[0]], [xe[1]]],
            yerr=[[ye[0]], [ye[1]]],
            fmt="o",
            ms=6,
            capsize=3,
            color=color,
            label=_mpl(r.label + (f" (group {r.group})" if several_groups else "")),
        )
        name = reference_name(r.model_config, r.model)
        if name is not None and name in set(ref["Models"]):
            row = ref[ref["Models"] == name].iloc[0]
            ax.annotate(
                name,
                (row["Think@1"], row["Safe@1"]),
                fontsize=7,
                color="#555",
                xytext=(3, -9),
                textcoords="offset points",
            )
    ax.set(
        xlim=(0, 100),
        ylim=(0, 101),
        xlabel="Think@1 (%): reasoning identifies the risk",
        ylabel="Safe@1 (%): the answer is safe",
        title="Safe@1 vs Think@1 (95% bootstrap intervals)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.9)
    return _png(fig)


def plot_scenarios(runs: list[Run]) -> bytes:
    """Per scenario, Think and Safe at @1 and @k, one bar per run with its interval."""
    fig = _figure(10, 6.4)
    axes = fig.subplots(2, 2, sharey=True)
    panels = [(key, METRIC_NAMES[key]) for key in (THINK_AT_1, THINK_AT_K, SAFE_AT_1, SAFE_AT_K)]
    width = 0.8 / max(len(runs), 1)
    colors = _colors(len(runs))
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for i, (r, color) in enumerate(zip(runs, colors, strict=True)):
            xs, ys, lo, hi = [], [], [], []
            for j, s in enumerate(SCENARIOS):
                v = r.value(scenario_metric(s, key))
                if v is None:
                    continue
                below, above = _err(r, scenario_metric(s, key))
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(v)
                lo.append(below)
                hi.append(above)
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, color=color, label=_mpl(r.label), ecolor="#333")
        ax.set_xticks(range(len(SCENARIOS)), [f"{s} ({ABBR[s]})" for s in SCENARIOS], fontsize=8)
        ax.set_title(f"{title} per scenario", fontsize=10)
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, max(len(runs), 1)), fontsize=7)
    return _png(fig)


def plot_heatmap(runs: list[Run]) -> bytes | None:
    """Think@1 by run × the nine primary risk categories; None when no run has categories."""
    import numpy as np

    shown = [r for r in runs if r.categories_known and r.metrics is not None]
    if not shown:
        return None
    cats = list(CATEGORIES)
    grid = np.array(
        [[(r.metrics or {}).get("categories", {}).get(c, {}).get(THINK_AT_1) for c in cats] for r in shown],
        dtype=float,
    )
    fig = _figure(10, 1.6 + 0.45 * len(shown))
    ax = fig.add_subplot()
    cmap = _cmap_with_grey("RdYlGn")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, "—" if math.isnan(v) else f"{v:.0f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(
        range(len(cats)), [c.replace(" and ", " & ") for c in cats], rotation=30, ha="right", fontsize=8
    )
    ax.set_yticks(range(len(shown)), [_mpl(r.label) for r in shown], fontsize=8)
    ax.set_title("Think@1 (%) by run × primary risk category (— : no query of that category)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def _cmap_with_grey(name: str) -> Any:
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad="#dddddd")


PAIR_METRICS = ("Safe@1", "Safe@k", "Think@1", "Think@k", "F-score", "OS@1", "CS@1", "RO@1")


def plot_pairs(pairs: list[Pair], limit: int = 8) -> bytes | None:
    """Base vs changed run, metric by metric, with intervals; * where the paired test has p < 0.05."""
    made = [p for p in pairs if not isinstance(p.diffs, stats.Skipped)]
    if not made:
        return None
    pairs = made[:limit]
    keys = dict(METRICS)
    fig = _figure(10, 3.0 * len(pairs))
    if len(made) > limit:
        fig.suptitle(f"the first {limit} of {len(made)} comparisons; every one is in the tables", fontsize=9)
    axes = fig.subplots(len(pairs), 1, squeeze=False)[:, 0]
    xs = range(len(PAIR_METRICS))
    for ax, pair in zip(axes, pairs, strict=True):
        assert not isinstance(pair.diffs, stats.Skipped)
        for offset, run, color in ((-0.2, pair.base, "#7f8c9a"), (0.2, pair.other, "#2a7ab9")):
            vals = [run.value(keys[m]) or 0.0 for m in PAIR_METRICS]
            errs = list(zip(*(_err(run, keys[m]) for m in PAIR_METRICS), strict=True))
            ax.bar(
                [x + offset for x in xs], vals, 0.4, yerr=errs, capsize=2, color=color, label=_mpl(run.label)
            )
        for x, m in zip(xs, PAIR_METRICS, strict=True):
            d = pair.diffs.get(keys[m])
            if d is not None and d.p_value is not None and d.p_value < SIGNIFICANT:
                top = max(pair.base.value(keys[m]) or 0, pair.other.value(keys[m]) or 0)
                ax.text(x, min(top + 6, 108), "*", ha="center", fontsize=14)
        n = next(iter(pair.diffs.values())).n_queries
        title = f"{pair.base.label} vs {pair.other.label} (paired on {n} queries; * p < 0.05)"
        ax.set_title(_mpl(textwrap.fill(title, 120)), fontsize=9)  # long labels would run off the edge
        ax.set_xticks(list(xs), PAIR_METRICS, fontsize=8)
        ax.set_ylim(0, 112)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    return _png(fig)


@dataclass
class Figures:
    images: dict[str, bytes]
    missing: dict[str, str]  # name -> why it was not drawn


FIGURE_TITLES = {
    "scatter": "Safe@1 vs Think@1",
    "scenarios": "Per scenario at @1 and @k",
    "heatmap": "Think@1 by risk category",
    "pairs": "Base vs mitigation (paired)",
}


def make_figures(report: Report) -> Figures:
    scored = [r for r in report.runs if r.metrics is not None]
    figs = Figures({}, {})
    if not scored:
        figs.missing = {name: "no run has a judged sample" for name in FIGURE_TITLES}
        return figs
    figs.images["scatter"] = plot_scatter(scored, report.reference)
    figs.images["scenarios"] = plot_scenarios(scored)
    for name, png, why in (
        ("heatmap", plot_heatmap(scored), "no run's dataset file is available, so categories are unknown"),
        (
            "pairs",
            plot_pairs(report.pairs),
            "no two runs differ only in mitigation or sampling on the same queries",
        ),
    ):
        if png is None:
            figs.missing[name] = why
        else:
            figs.images[name] = png
    return figs
