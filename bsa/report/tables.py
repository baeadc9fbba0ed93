"""Tables: one model (headers, rows, rows to flag) for Markdown, HTML and the console, and the
leaderboard.csv frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bsa import stats
from bsa.report.assemble import Report
from bsa.report.columns import METRICS, PUBLISHED_METRICS, fmt_num, fmt_p
from bsa.report.pairs import SIGNIFICANT, Pair
from bsa.report.reference import reference_name
from bsa.report.runs import Run


@dataclass
class Table:
    id: str
    headers: list[str]
    rows: list[list[str]]
    warn_rows: set[int] = field(default_factory=set)  # rows drawn as not comparable / incomplete


def _pm(run: Run, key: str, digits: int = 2) -> str:
    """'83.33 ±4.10': the point from compute, ± half the 95% interval's width."""
    v = run.value(key)
    iv = run.interval(key)
    if v is None:
        return "—"
    hw = iv.half_width if iv else None
    return f"{v:.{digits}f}" if hw is None else f"{v:.{digits}f} ±{hw:.{digits}f}"


def _status(run: Run) -> str:
    return "ok" if run.complete else f"⚠ {run.status}"


def leaderboard_table(report: Report, digits: int = 2) -> Table:
    headers = ["run", "model", "mitigation", "sampling", "judge", "k", "queries", "set", "status"]
    headers += [name for name, _ in METRICS] + ["unscored S/T", "flagged", "tokens", "cost $"]
    rows, warn = [], set()
    for i, r in enumerate(report.runs):
        m = r.metrics or {}
        unscored = f"{m['unscored_safety']}/{m['unscored_think']}" if m else "—"
        rows.append(
            [
                r.label,
                r.model,
                r.mitigation,
                f"{r.sampling} ({r.decoding})",
                r.judge,
                str(r.k),
                str(m.get("n_queries", 0)),
                r.set_letter,
                _status(r),
            ]
            + [_pm(r, key, digits) for _, key in METRICS]
            + [
                unscored,
                str(m.get("flagged", "—")),
                "—" if r.tokens is None else f"{r.tokens:,}",
                "—" if r.cost_usd is None else f"{r.cost_usd:.4f}",
            ]
        )
        if not r.complete or r.set_letter != "A" or r.metrics is None:
            warn.add(i)
    return Table("leaderboard", headers, rows, warn)


def pair_table(pair: Pair, index: int) -> Table:
    headers = ["metric", pair.base.label, pair.other.label, "difference", "95% CI", "p", "significant"]
    rows = []
    if not isinstance(pair.diffs, stats.Skipped):
        for name, key in METRICS:
            d = pair.diffs.get(key)
            if d is None:
                continue
            sig = "yes" if d.p_value is not None and d.p_value < SIGNIFICANT else "no"
            ci = "—" if d.low is None else f"[{d.low:+.2f}, {d.high:+.2f}]"
            diff = "—" if d.diff is None else f"{d.diff:+.2f}"
            rows.append(
                [
                    name,
                    fmt_num(d.a),
                    fmt_num(d.b),
                    diff,
                    ci,
                    fmt_p(d.p_value),
                    sig if d.diff is not None else "—",
                ]
            )
    return Table(f"pair-{index}", headers, rows)


def reference_table(report: Report) -> Table:
    matched: dict[str, list[str]] = {}
    for r in report.runs:
        if name := reference_name(r.model_config, r.model):
            matched.setdefault(name, []).append(r.label)
    headers = ["model", *PUBLISHED_METRICS[:5], "published α", f"F-score (α={report.alpha:.4f})"]
    headers += [*PUBLISHED_METRICS[5:], "your runs"]
    rows = []
    for _, row in report.reference.iterrows():
        rows.append(
            [
                row["Models"],
                *(fmt_num(row[c]) for c in PUBLISHED_METRICS[:5]),
                fmt_num(row["published α"], 4),
                fmt_num(row["F-score (run α)"]),
                *(fmt_num(row[c]) for c in PUBLISHED_METRICS[5:]),
                ", ".join(matched.get(row["Models"], [])),
            ]
        )
    return Table("reference", headers, rows)


def beside_table(report: Report) -> Table | None:
    """Each run that matches a published model, its metrics beside the paper's."""
    ref = report.reference.set_index("Models")
    headers = ["run", "published model"] + [f"{name} run / paper" for name, _ in METRICS]
    rows = []
    for r in report.runs:
        name = reference_name(r.model_config, r.model)
        if name is None or name not in ref.index or r.metrics is None:
            continue
        paper = ref.loc[name]
        cells = []
        for metric, key in METRICS:
            published = paper["F-score (run α)"] if metric == "F-score" else paper[metric]
            cells.append(f"{_pm(r, key)} / {published:.2f}")
        rows.append([r.label, name, *cells])
    return Table("beside", headers, rows) if rows else None


def leaderboard_frame(report: Report) -> pd.DataFrame:
    """leaderboard.csv: one row per run, points with their interval bounds, and the provenance."""
    records = []
    for r in report.runs:
        m = r.metrics or {}
        rec: dict[str, Any] = {
            "run": r.label,
            "run_dir": str(r.path),
            "model": r.model,
            "model_config": r.model_config,
            "mitigation": r.mitigation,
            "sampling": r.sampling,
            "decoding": r.decoding,
            "judge": r.judge,
            "k": r.k,
            "n_queries": m.get("n_queries", 0),
            "n_samples": m.get("n_samples", 0),
            "query_set": r.query_set,
            "set": r.set_letter,
            "comparable": r.set_letter == "A",
            "status": r.status,
            "alpha": r.alpha,
        }
        for name, key in METRICS:
            iv = r.interval(key)
            rec[name] = r.value(key)
            rec[f"{name}_lo"] = iv.low if iv else None
            rec[f"{name}_hi"] = iv.high if iv else None
        rec.update(
            unscored_safety=m.get("unscored_safety"),
            unscored_think=m.get("unscored_think"),
            flagged=m.get("flagged"),
            tokens=r.tokens,
            cost_usd=r.cost_usd,
            reference_model=reference_name(r.model_config, r.model),
            notes="; ".join(r.notes),
        )
        records.append(rec)
    return pd.DataFrame.from_records(records)


def correlation_text(c: stats.Correlation | stats.Skipped, what: str) -> str:
    if isinstance(c, stats.Skipped):
        return f"{what}: not computed ({c.reason})."
    ci = (
        f", 95% CI [{c.low:.2f}, {c.high:.2f}] ({c.method}), p = {fmt_p(c.p_value)}"
        if c.low is not None
        else f" ({c.note})"
    )
    return f"{what}: Pearson r = {c.r:.2f} over {c.n} runs{ci}."
