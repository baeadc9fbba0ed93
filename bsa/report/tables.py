"""Tables: the report's numbers as ``Table``s (``bsa.report.blocks``: headers, rows, rows to flag,
columns that may wrap; one model for Markdown, HTML and the console), and the leaderboard.csv frame.

The run leaderboard is split so that each table fits a laptop's width: the headline metrics, the
per-scenario metrics, and the run details (what was run, and how it was judged). Metric tables are
made per comparison group: a table only ever holds numbers that compare.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bsa import stats
from bsa.judge import inputs_truncated
from bsa.report.assemble import Report, group_of
from bsa.report.blocks import Table
from bsa.report.columns import BY_SCENARIO, HEADLINE, METRICS, PUBLISHED_METRICS, fmt_num, fmt_p
from bsa.report.comparability import COMPARABLE, NOT_COMPARABLE, describe_prompts, setup_match
from bsa.report.pairs import SIGNIFICANT, Pair
from bsa.report.reference import reference_name
from bsa.report.runs import Run


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


def _runs(report: Report, group: int | None) -> list[Run]:
    return [r for r in report.runs if group is None or r.group == group]


def _warn(runs: list[Run]) -> set[int]:
    return {i for i, r in enumerate(runs) if not r.complete or r.metrics is None}


def leaderboard_table(report: Report, digits: int = 2, group: int | None = None) -> Table:
    """The headline metrics of one comparison group's runs (``group``), or of every run with its
    group's number (None)."""
    runs = _runs(report, group)
    show_group = group is None and len(report.groups) > 1
    headers = ["run", *(["group"] if show_group else []), "status", "queries", *(n for n, _ in HEADLINE)]
    rows = []
    for r in runs:
        m = r.metrics or {}
        rows.append(
            [
                r.label,
                *([str(r.group)] if show_group else []),
                _status(r),
                f"{m.get('n_queries', 0):,}",
                *(_pm(r, key, digits) for _, key in HEADLINE),
            ]
        )
    suffix = "" if group is None else f"-g{group}"
    return Table(f"leaderboard{suffix}", headers, rows, _warn(runs))


def scenario_table(report: Report, digits: int = 2, group: int | None = None) -> Table:
    """Think per scenario, @1 and @k (the published OS/CS/RO columns), for one group or all runs."""
    runs = _runs(report, group)
    show_group = group is None and len(report.groups) > 1
    headers = ["run", *(["group"] if show_group else []), *(n for n, _ in BY_SCENARIO)]
    rows = [
        [r.label, *([str(r.group)] if show_group else []), *(_pm(r, key, digits) for _, key in BY_SCENARIO)]
        for r in runs
    ]
    suffix = "" if group is None else f"-g{group}"
    return Table(f"scenarios{suffix}", headers, rows, _warn(runs))


def details_table(report: Report) -> Table:
    """What each run is: model, settings, judge and its prompts, and what it cost."""
    headers = ["run", "group", "model", "mitigation", "sampling", "judge", "judge prompts", "k"]
    headers += ["unscored S/T", "refused M/J", "flagged", "judge inputs cut", "tokens", "cost $"]
    rows = []
    for r in report.runs:
        m = r.metrics or {}
        rows.append(
            [
                r.label,
                str(r.group),
                f"{r.model} ({r.answered_by})" if r.answered_by else r.model,
                r.mitigation,
                f"{r.sampling} ({r.decoding})",
                r.judge_id,
                describe_prompts(r.judge_prompts),
                str(r.k),
                f"{m['unscored_safety']}/{m['unscored_think']}" if m else "—",
                _refused(m),
                str(m.get("flagged", "—")),
                str(inputs_truncated(r.judgments)),
                "—" if r.tokens is None else f"{r.tokens:,}",
                "—" if r.cost_usd is None else f"{r.cost_usd:.4f}",
            ]
        )
    return Table("details", headers, rows, _warn(report.runs), frozenset({0, 2, 3, 4, 5, 6}))


def _refused(m: dict[str, Any]) -> str:
    """Samples the model's provider refused / judgments the judge's refused (scoring.provider_refusal)."""
    counts = m.get("provider_refused")
    if not counts:
        return "—"
    return f"{counts.get('model', 0)}/{counts.get('judge', 0)}"


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


def _published_runs(report: Report) -> dict[str, list[Run]]:
    """Runs of a published model that compare with the paper (with care included), by its name."""
    matched: dict[str, list[Run]] = {}
    for r in report.runs:
        name = reference_name(r.model_config, r.model)
        if name is not None and r.metrics is not None and report.paper[r.label].comparable:
            matched.setdefault(name, []).append(r)
    return matched


def reference_table(report: Report) -> Table:
    """The published leaderboard; 'your runs' names the runs of each model that compare with it."""
    matched = _published_runs(report)
    headers = ["model", *PUBLISHED_METRICS[:5], "published α", f"F-score (α={report.alpha:.4f})"]
    headers += [*PUBLISHED_METRICS[5:], "your runs"]
    rows = []
    for _, row in report.reference.iterrows():
        mine = [
            r.label + ("" if report.paper[r.label].level == COMPARABLE else " (with care)")
            for r in matched.get(row["Models"], [])
        ]
        rows.append(
            [
                row["Models"],
                *(fmt_num(row[c]) for c in PUBLISHED_METRICS[:5]),
                fmt_num(row["published α"], 4),
                fmt_num(row["F-score (run α)"]),
                *(fmt_num(row[c]) for c in PUBLISHED_METRICS[5:]),
                ", ".join(mine),
            ]
        )
    return Table("reference", headers, rows, wrap=frozenset({0, len(headers) - 1}))


def beside_table(report: Report) -> Table | None:
    """Each run that matches a published model and compares with the paper: its metrics (± CI) on
    one row, the paper's on the next."""
    ref = report.reference.set_index("Models")
    headers = ["run / published model", *(name for name, _ in METRICS)]
    rows = []
    for name, runs in _published_runs(report).items():
        if name not in ref.index:
            continue
        paper = ref.loc[name]
        published = [
            fmt_num(paper["F-score (run α)"] if metric == "F-score" else paper[metric])
            for metric, _ in METRICS
        ]
        for r in runs:
            care = "" if report.paper[r.label].level == COMPARABLE else " (with care)"
            rows.append([f"{r.label}{care}", *(_pm(r, key) for _, key in METRICS)])
            rows.append([f"paper: {name}", *published])
    return Table("beside", headers, rows) if rows else None


def no_beside_text(report: Report) -> str:
    """Why no run stands beside the paper: none is of a published model, or none of those compares."""
    published = [r.label for r in report.runs if reference_name(r.model_config, r.model)]
    if not published:
        return (
            "No run of yours is of a model on the published leaderboard (matched by model config name, "
            "e.g. model=qwen3_8b, or by the model string's last part), so 'your runs' below stays empty."
        )
    return (
        f"Your runs of published models ({', '.join(published)}) do not compare with the paper, so "
        "'your runs' below stays empty; why is said here:"
    )


def paper_notes(report: Report) -> list[str]:
    """Why runs are not beside the paper (per comparison group), and what to take care of for those
    that are only with care."""
    notes = []
    for g in report.groups:
        setup = setup_match(g.runs[0])
        if setup.level != COMPARABLE:  # said once for the group
            notes.append(f"{g.name} ({', '.join(r.label for r in g.runs)}): {setup.text}.")
        if setup.level == NOT_COMPARABLE:
            continue
        for r in g.runs:  # what only some of its runs have: another k, a stop
            match = report.paper[r.label]
            if match.reasons != setup.reasons:
                notes.append(f"{r.label}: {match.text}.")
    return notes


def leaderboard_frame(report: Report) -> pd.DataFrame:
    """leaderboard.csv: one row per run, points with their interval bounds, and the provenance."""
    records = []
    for r in report.runs:
        m = r.metrics or {}
        match = report.paper[r.label]
        rec: dict[str, Any] = {
            "run": r.label,
            "run_dir": str(r.path),
            "model": r.model,
            "model_config": r.model_config,
            "mitigation": r.mitigation,
            "sampling": r.sampling,
            "decoding": r.decoding,
            "judge": r.judge_id,
            "judge_protocol": r.judge_protocol,
            "answered_by": r.answered_by.removeprefix("answered by ") or None,
            "judge_prompts": r.judge_prompts.name or "unknown",
            "judge_prompts_sha256": r.judge_prompts.sha256,
            "k": r.k,
            "n_queries": m.get("n_queries", 0),
            "n_samples": m.get("n_samples", 0),
            "query_set": r.query_set,
            "group": r.group,
            "comparison_group": group_of(report, r).title,
            "paper": match.level,
            "paper_reasons": "; ".join(match.reasons),
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
            judge_inputs_truncated=inputs_truncated(r.judgments),
            provider_refused_model=(m.get("provider_refused") or {}).get("model"),
            provider_refused_judge=(m.get("provider_refused") or {}).get("judge"),
            provider_refusal_policy=m.get("provider_refusal_policy"),
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
    ci = f", 95% CI [{c.low:.2f}, {c.high:.2f}] ({c.method})" if c.low is not None else f" ({c.note})"
    # The exact test of r = 0: Student's t with n - 2 degrees of freedom.
    p = f", p = {fmt_p(c.p_value)} (t test, {c.n - 2} df)" if c.p_value is not None else ""
    return f"{what}: Pearson r = {c.r:.2f} over {c.n} runs{ci}{p}."


def correlation_lines(report: Report) -> list[str]:
    """Think@1 vs Safe@1 within each comparison group that has runs enough; group 1's reason if none."""
    lines = [
        correlation_text(c, f"Your runs, group {n}")
        for n, c in report.correlations.items()
        if not isinstance(c, stats.Skipped) or n == 1
    ]
    return lines or [correlation_text(report.correlation, "Your runs")]
