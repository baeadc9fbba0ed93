"""Statistics for the report: bootstrap intervals over queries, paired run comparisons, correlation.

Pure: samples or arrays in, numbers out; no I/O. The resampling unit is the query, never the
sample: a query's k samples answer the same prompt, so they are not independent draws, and
resampling samples would make intervals too narrow. Resampling is stratified by scenario: the
benchmark fixes how many queries each scenario has (600 / 1,200 / 200), so every replicate keeps
those counts and Think over all queries never mixes the scenarios in proportions the design lacks.
Strata need queries to vary, though: a scenario of one query would add no variance at all, so by
default (``stratify=None``) resampling is stratified only when every scenario has ``MIN_STRATUM``
queries, and pooled over all queries otherwise (small test runs).

Per-query values come from ``bsa.metrics.compute`` run on each query alone, so the metric
definitions live in one place; a rate over queries is then their mean, as ``compute`` averages.
Intervals are percentile intervals of ``n_boot`` replicates drawn with a seeded numpy generator.
The resampling is ours (scipy's bootstrap resamples neither whole queries nor within strata); textbook
statistics are scipy's: the correlation's r, Fisher interval and t-test p-value (``pearson``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from bsa.contract import F_SCORE, RATES, SAFE_AT_1, THINK_AT_1, scenario_metric
from bsa.metrics import SampleScore, compute

BASE: tuple[str, ...] = RATES
DEFAULT_N_BOOT = 2000
DEFAULT_LEVEL = 0.95
MIN_STRATUM = 10


@dataclass(frozen=True)
class Skipped:
    """A statistic that could not be computed, and why: never a silent default."""

    reason: str


@dataclass(frozen=True)
class PerQuery:
    """One run's per-query values: rows are queries, columns are ``BASE``, in percent.

    NaN marks a query with no scored sample for that metric (it is left out of the mean).
    """

    ids: tuple[str, ...]
    scenarios: tuple[str, ...]
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, ids: Sequence[str]) -> PerQuery:
        index = {qid: i for i, qid in enumerate(self.ids)}
        rows = [index[qid] for qid in ids]
        return PerQuery(tuple(ids), tuple(self.scenarios[i] for i in rows), self.values[rows])


@dataclass(frozen=True)
class Interval:
    estimate: float | None  # on the data as observed
    low: float | None
    high: float | None

    @property
    def half_width(self) -> float | None:
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class PairedDiff:
    """``b - a`` on the queries both runs scored, with its paired-bootstrap interval and p-value."""

    a: float | None
    b: float | None
    diff: float | None
    low: float | None
    high: float | None
    p_value: float | None
    n_queries: int


@dataclass(frozen=True)
class Correlation:
    r: float
    n: int
    low: float | None
    high: float | None
    p_value: float | None
    method: str
    note: str = ""


def per_query(samples: Iterable[SampleScore], k: int) -> PerQuery:
    """Each query's Safe@1, Safe@k, Think@1, Think@k (percent), in first-seen order."""
    groups: dict[str, list[SampleScore]] = {}
    for s in samples:
        groups.setdefault(s.id, []).append(s)
    rows = []
    for group in groups.values():
        # alpha only shapes the F-score, which is not a per-query quantity; any valid value will do.
        m = compute(group, k, alpha=0.5)
        rows.append([math.nan if m[key] is None else m[key] for key in BASE])
    values = np.array(rows, dtype=float).reshape(len(rows), len(BASE))
    return PerQuery(tuple(groups), tuple(g[0].scenario for g in groups.values()), values)


def _check(n_boot: int, level: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot}: must be at least 1 (2000 is the default)")
    if not 0 < level < 1:
        raise ValueError(f"level={level}: must lie strictly between 0 and 1, e.g. 0.95")


def stratified(strata: Sequence[str], stratify: bool | None = None) -> bool:
    """Whether to resample within scenarios: as asked, or (None) when every one has MIN_STRATUM queries."""
    if stratify is not None:
        return stratify
    sizes = Counter(strata)
    return bool(sizes) and min(sizes.values()) >= MIN_STRATUM


def resample_weights(
    strata: Sequence[str], n_boot: int, rng: np.random.Generator, stratify: bool | None = None
) -> np.ndarray:
    """How often each query is drawn in each replicate: shape (n_boot, n_queries).

    Counts instead of index arrays: a replicate's mean is then one matrix product.
    """
    stratify = stratified(strata, stratify)
    labels = np.asarray(strata, dtype=object)
    groups = (
        [np.flatnonzero(labels == s) for s in dict.fromkeys(strata)] if stratify else [np.arange(len(labels))]
    )
    weights = np.zeros((n_boot, len(labels)))
    for idx in groups:
        if len(idx):
            weights[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1 / len(idx)), size=n_boot)
    return weights


def _weighted_means(values: np.ndarray, weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per replicate and column, the weighted mean over ``rows`` of the non-NaN values."""
    ok = ~np.isnan(values) & rows[:, None]
    num = weights @ np.where(ok, values, 0.0)
    den = weights @ ok.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def estimates(pq: PerQuery, weights: np.ndarray, alpha: float) -> dict[str, np.ndarray]:
    """Every rate for each row of ``weights``: headline keys as in ``compute`` plus ``f_score``,
    and ``"<scenario>/<key>"`` per scenario. NaN where a replicate has no scored query."""
    out: dict[str, np.ndarray] = {}
    cols = _weighted_means(pq.values, weights, np.ones(len(pq), dtype=bool))
    for j, key in enumerate(BASE):
        out[key] = cols[:, j]
    with np.errstate(invalid="ignore"):
        out[F_SCORE] = out[THINK_AT_1] ** alpha * out[SAFE_AT_1] ** (1 - alpha)
    scenarios = np.asarray(pq.scenarios, dtype=object)
    for name in dict.fromkeys(pq.scenarios):
        cols = _weighted_means(pq.values, weights, scenarios == name)
        for j, key in enumerate(BASE):
            out[scenario_metric(name, key)] = cols[:, j]
    return out


def point(pq: PerQuery, alpha: float) -> dict[str, float | None]:
    """The observed rates (each query weighted once): equal to ``compute``'s on the same samples."""
    est = estimates(pq, np.ones((1, len(pq))), alpha)
    return {k: None if math.isnan(v[0]) else float(v[0]) for k, v in est.items()}


def replicates(
    pq: PerQuery, alpha: float, n_boot: int = DEFAULT_N_BOOT, seed: int = 0, stratify: bool | None = None
) -> dict[str, np.ndarray]:
    """The bootstrap distribution of every rate (for intervals, and for tests to inspect)."""
    _check(n_boot, DEFAULT_LEVEL)
    rng = np.random.default_rng(seed)
    return estimates(pq, resample_weights(pq.scenarios, n_boot, rng, stratify), alpha)


def _percentile(reps: np.ndarray, level: float) -> tuple[float | None, float | None]:
    finite = reps[~np.isnan(reps)]
    if finite.size == 0:
        return None, None
    lo, hi = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def bootstrap_ci(
    pq: PerQuery,
    alpha: float,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    stratify: bool | None = None,
) -> dict[str, Interval] | Skipped:
    """Percentile intervals for every rate of ``estimates``, resampling queries (k samples kept)."""
    _check(n_boot, level)
    if len(pq) == 0:
        return Skipped("no query has a judged sample")
    observed = point(pq, alpha)
    reps = replicates(pq, alpha, n_boot, seed, stratify)
    out = {}
    for name, est in observed.items():
        lo, hi = _percentile(reps[name], level) if est is not None else (None, None)
        out[name] = Interval(est, lo, hi)
    return out


def paired_bootstrap(
    a: PerQuery,
    b: PerQuery,
    alpha: float,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    stratify: bool | None = None,
) -> dict[str, PairedDiff] | Skipped:
    """``b - a`` for every rate, on the queries both runs have, resampled together.

    Both runs get the same resampled queries in each replicate, so what a query does in both cancels
    and the interval is that of the difference itself. The two-sided p-value tests "no difference"
    by centring the replicates on zero: p = (1 + #{|d* - d| >= |d|}) / (1 + replicates), which is
    never 0 (a p-value below 1/(n_boot+1) cannot be resolved with n_boot replicates).
    """
    _check(n_boot, level)
    in_b = set(b.ids)
    common = [qid for qid in a.ids if qid in in_b]
    if not common:
        return Skipped("the runs share no judged query; compare runs over the same query set")
    sa, sb = a.subset(common), b.subset(common)
    clash = next((q for q, x, y in zip(common, sa.scenarios, sb.scenarios, strict=True) if x != y), None)
    if clash is not None:
        return Skipped(f"query {clash!r} has a different scenario in each run: they used different datasets")
    pa, pb = point(sa, alpha), point(sb, alpha)
    weights = resample_weights(sa.scenarios, n_boot, np.random.default_rng(seed), stratify)
    ra, rb = estimates(sa, weights, alpha), estimates(sb, weights, alpha)
    out = {}
    for name in pa:
        x, y = pa[name], pb.get(name)
        if x is None or y is None:
            out[name] = PairedDiff(x, y, None, None, None, None, len(common))
            continue
        d = y - x
        reps = rb[name] - ra[name]
        reps = reps[~np.isnan(reps)]
        lo, hi = _percentile(reps, level)
        # A tolerance so that float noise in a replicate equal to d does not flip the count.
        extreme = int(np.sum(np.abs(reps - d) >= abs(d) - 1e-9))
        out[name] = PairedDiff(x, y, d, lo, hi, (1 + extreme) / (1 + reps.size), len(common))
    return out


def pearson(
    xs: Sequence[float | None], ys: Sequence[float | None], level: float = DEFAULT_LEVEL
) -> Correlation | Skipped:
    """Pearson's r with a Fisher-z interval and the exact p-value of r = 0, from ``scipy.stats.pearsonr``.

    The p-value is the two-sided t test with n − 2 degrees of freedom (t = r·√((n−2)/(1−r²))), exact
    for bivariate-normal points at any n; the normal approximation of atanh r it replaced was too small
    for a handful of runs (4 runs at r = 0.8: 0.27 instead of 0.20). The Fisher interval is
    approximate, and needs 4 runs. Both assume independent points; runs of one model under several
    mitigations are not independent, so read them as descriptive.
    """
    _check(1, level)
    pairs = [
        (x, y)
        for x, y in zip(xs, ys, strict=True)
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
    ]
    n = len(pairs)
    if n < 3:
        return Skipped(f"{n} run(s) with both Think@1 and Safe@1; a correlation needs at least 3")
    x, y = np.array(pairs, dtype=float).T
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        which = "Think@1" if np.ptp(x) == 0 else "Safe@1"
        return Skipped(f"{which} is the same in all {n} runs; the correlation is undefined")
    # Imported here: scipy.stats takes half a second, which every run's console would pay for intervals.
    from scipy import stats as scipy_stats

    res = scipy_stats.pearsonr(x, y)
    r, p = float(res.statistic), float(res.pvalue)
    if n == 3:  # scipy gives [-1, 1] here: no information, so no interval
        return Correlation(r, n, None, None, p, "Fisher z", "an interval needs at least 4 runs")
    ci = res.confidence_interval(confidence_level=level)
    return Correlation(r, n, float(ci.low), float(ci.high), p, "Fisher z")
