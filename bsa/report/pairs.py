"""Paired comparisons: runs that differ in one setting, and the paired bootstrap between two runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from bsa import stats
from bsa.report import comparability
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


class _Setting(NamedTuple):
    """What a run varies beyond its comparison group."""

    model: str
    k: int
    mitigation: tuple[str, str]  # name, sha256 of its system prompt
    sampling: tuple[str, str]  # preset name, decoding asked for


def _setting(r: Run) -> _Setting:
    return _Setting(r.model, r.k, (r.mitigation, r.mitigation_sha256 or ""), (r.sampling, r.decoding))


def _latest(runs: list[Run]) -> list[Run]:
    """The latest complete run stands for repeats of one configuration within one group."""
    latest: dict[tuple[comparability.Key, _Setting], Run] = {}
    for r in runs:
        k = (comparability.key(r), _setting(r))
        if r.metrics is not None and (k not in latest or r.complete or not latest[k].complete):
            latest[k] = r
    return list(latest.values())


def _varies(base: Run, other: Run) -> str | None:
    """'mitigation' or 'sampling' where ``other`` changes only that from ``base``'s baseline."""
    a, b = _setting(base), _setting(other)
    if (a.model, a.k) != (b.model, b.k):
        return None
    if base.mitigation == "none" != other.mitigation and a.sampling == b.sampling:
        return "mitigation"
    if base.sampling == "model_default" != other.sampling and a.mitigation == b.mitigation:
        return "sampling"
    return None


def find_pairs(runs: list[Run]) -> list[tuple[Run, Run, str]]:
    """Runs that differ in exactly one setting, against its baseline (mitigation none, sampling
    model_default), with the same model and k, in the same comparison group (same queries, judge and
    judge prompts). The latest complete run stands for repeats of one configuration."""
    chosen = _latest(runs)
    pairs = []
    for base in chosen:
        for other in chosen:
            if other is not base and comparability.key(base) == comparability.key(other):
                if varies := _varies(base, other):
                    pairs.append((base, other, varies))
    return pairs


def unpaired_notes(runs: list[Run]) -> list[str]:
    """Runs that would make a pair but sit in different comparison groups, and in what those differ:
    their difference mixes the change with a change of queries, judge or prompts, so none is tested."""
    chosen = _latest(runs)
    tested = {id(other) for _, other, _ in find_pairs(runs)}  # a change already tested in its own group
    notes = []
    for base in chosen:
        for other in chosen:
            ka, kb = comparability.key(base), comparability.key(other)
            if ka != kb and id(other) not in tested and (varies := _varies(base, other)):
                what = [a for a, x, y in zip(comparability.ASPECTS, ka, kb, strict=True) if x != y]
                notes.append(
                    f"{base.label} (group {base.group}) and {other.label} (group {other.group}) differ in "
                    f"{varies} but also in {' and '.join(what)}: not compared"
                )
    return notes
