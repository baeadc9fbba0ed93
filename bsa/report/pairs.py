"""Paired comparisons: runs that differ in one setting, and the paired bootstrap between two runs."""

from __future__ import annotations

from dataclasses import dataclass

from bsa import stats
from bsa.report.runs import Run

SIGNIFICANT = 0.05
# Said in report.md and report.html where no pair was found; each formats the command its own way.
NO_PAIRS = (
    "No two runs differ only in mitigation or sampling on the same queries; compare any two with {command}."
)
COMPARE_COMMAND = "python -m bsa.report --compare RUN_A RUN_B"


@dataclass
class Pair:
    base: Run
    other: Run
    varies: str  # what differs: mitigation | sampling | …
    diffs: dict[str, stats.PairedDiff] | stats.Skipped


def compare(a: Run, b: Run, n_boot: int, seed: int) -> dict[str, stats.PairedDiff] | stats.Skipped:
    if a.alpha != b.alpha:
        return stats.Skipped(f"the runs use different α ({a.alpha} vs {b.alpha}); pass --alpha to compare")
    return stats.paired_bootstrap(a.per_query, b.per_query, a.alpha, n_boot, seed)


def find_pairs(runs: list[Run]) -> list[tuple[Run, Run, str]]:
    """Runs that differ in exactly one setting, against its baseline (mitigation none, sampling
    model_default), on the same query set with the same model, judge and k. The latest complete
    run stands for repeats of one configuration."""

    def key(r: Run) -> tuple[str, ...]:
        return (r.query_set, r.model, r.judge, str(r.k), r.mitigation, r.sampling, r.decoding)

    latest: dict[tuple[str, ...], Run] = {}
    for r in runs:
        if r.metrics is not None and (key(r) not in latest or r.complete or not latest[key(r)].complete):
            latest[key(r)] = r
    chosen = list(latest.values())
    pairs = []
    for base in chosen:
        for other in chosen:
            if other is base or key(base)[:4] != key(other)[:4]:
                continue
            same_sampling = (base.sampling, base.decoding) == (other.sampling, other.decoding)
            if base.mitigation == "none" != other.mitigation and same_sampling:
                pairs.append((base, other, "mitigation"))
            elif base.sampling == "model_default" != other.sampling and base.mitigation == other.mitigation:
                pairs.append((base, other, "sampling"))
    return pairs
