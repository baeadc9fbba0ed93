"""The judge's error measured on human labels, and Safe/Think rates corrected for it. Pure: arrays in,
numbers out; no I/O.

**Binary view.** For one judgment kind in one scenario a sample is *positive* when its label is the
target (``Safe``; the scenario's first think label). Sensitivity = P(judge positive | truly positive)
(= recall of the target), specificity = P(judge negative | truly negative), precision = P(truly
positive | judge positive).

**Weights.** Labelled samples are drawn stratified (by scenario and judge verdict), not uniformly, so
each carries the weight N_h / n_h of its stratum h (samples in the run / labelled samples there): a
weighted share estimates the share over the whole run. Unweighted, a sample that over-represents the
judge's rare verdict would bias sensitivity and specificity. With every weight equal the estimates
are the plain shares.

**Agreement intervals** (accuracy, precision, recall, specificity) are Wilson intervals on the
weighted share with Kish's effective sample size n_eff = (Σw)² / Σw²: Wilson stays inside [0, 1] and
is not degenerate at 0 or 1 errors, and n_eff charges the unequal weights their variance (it ignores
the gain from stratifying, so it errs wide).

**Rogan–Gladen.** If the judge calls a truly positive sample positive with probability Se and a
truly negative one positive with probability 1 − Sp, the observed rate is raw = Se·π + (1 − Sp)(1 − π)
for a true rate π, hence π = (raw + Sp − 1) / (Se + Sp − 1), clipped to [0, 1]. Safe@1 is a mean of
per-query shares, so the same linear correction applies to it. The denominator, Youden's J, near 0
means the judge's verdicts carry (almost) no information: the correction is then undefined, not huge.
Each scenario is corrected with its own Se/Sp (each has its own think prompt and labels), or, pooled,
with one Se/Sp from all scenarios' labels: three times the labels per estimate, right when the judge
errs alike in every scenario (the per-scenario agreement table shows whether it does). The rate over
all queries is the query-weighted mean of the corrected scenario rates, as Safe@1 averages queries
(pooled and unclipped, that equals correcting the overall raw rate: Rogan–Gladen is linear in it).
With the weights above and strata that include the judge's verdict, the point estimate equals the
double-sampling estimate Σ_h (N_h / N) · (share truly positive among stratum h's labels) whenever every
query has the same number of scored samples, pooled or not; the Se/Sp form decides how the bootstrap
below carries the raw rate's and the labels' variation.

**Intervals for corrected rates** come from one bootstrap that resamples both sources of error in
each replicate: the labelled samples (within their strata, weights kept; Se and Sp re-estimated) and
the run's queries (kept whole with their k samples, as ``bsa.stats`` resamples them; the raw rate
re-estimated). The two are drawn independently, which ignores that the labelled samples are among
the run's samples. Replicates where the correction is undefined (Se + Sp − 1 too small, or no truly
positive or negative label drawn) are dropped and counted; if more than 1 − level of them are, the
interval is not given: the labels cannot bound it.

**@k.** Safe@k asks that all m scored samples of a query be positive. Assume the judge errs on each
sample independently given its true label, with the measured Se and Sp (the assumption Rogan–Gladen
makes per sample; the true labels of a query's samples may be correlated in any way). Then the
number a of samples judged positive, given t truly positive, is Binomial(t, Se) + Binomial(m − t,
1 − Sp): a known (m+1)×(m+1) matrix M. The histogram f of judged counts over queries is M·q, where
q is the distribution of true counts; q is estimated by maximum likelihood on the simplex (EM, started
from the exact solve M⁻¹f where that is a distribution) and the corrected Safe@k is q[m]. For m = 1
this is the clipped Rogan–Gladen estimate, and for any m the mean of t/m under q equals Rogan–Gladen's
@1 when M⁻¹f is a distribution. Queries are grouped by m (an unscored sample lowers a query's m).
The reported shift is corrected − raw; its interval (same bootstrap) is the range @k may move.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np
from scipy import stats as scipy_stats

from bsa.stats import DEFAULT_LEVEL, DEFAULT_N_BOOT, resample_weights

# Youden's J = Se + Sp − 1 at or below this: the correction divides by ~0 and would multiply the
# raw rate's noise by 1/J (20× at 0.05), so it is reported as undefined instead.
DEFAULT_MIN_YOUDEN = 0.05
_EM_MAX_ITER = 5_000
_EM_TOL = 1e-9  # per-iteration change: ample for rates reported to 0.01 percent


@dataclass(frozen=True)
class Rate:
    """A weighted share with its Wilson interval; ``estimate`` None when the denominator is empty."""

    estimate: float | None
    low: float | None
    high: float | None
    n: int  # labelled samples in the denominator
    n_eff: float  # Kish's effective sample size of their weights


@dataclass(frozen=True)
class LabelAgreement:
    """How the judge's verdicts agree with the human labels on one kind (and scenario)."""

    accuracy: Rate  # exact label match
    binary_accuracy: Rate  # target vs not target
    precision: Rate  # of the target label
    recall: Rate  # of the target label = sensitivity
    specificity: Rate
    npv: Rate


@dataclass(frozen=True)
class RoganGladen:
    value: float | None  # corrected rate in [0, 1]; None when undefined
    unclipped: float | None
    reason: str = ""  # why undefined, or that the value was clipped


@dataclass(frozen=True)
class LabelSample:
    """One kind's labelled samples in one scenario, in the binary view."""

    truth: np.ndarray  # bool: the human label is the target
    judged: np.ndarray  # bool: the judge's verdict is the target
    weight: np.ndarray  # float: how many of the run's samples each one stands for (N_h / n_h)
    strata: tuple[str, ...]  # the sampling stratum of each, resampled within
    target: str = "target"  # the label's name, for messages

    def __post_init__(self) -> None:
        n = len(self.strata)
        if not len(self.truth) == len(self.judged) == len(self.weight) == n:
            raise ValueError(
                f"LabelSample: truth, judged, weight and strata have lengths {len(self.truth)}, "
                f"{len(self.judged)}, {len(self.weight)}, {n}; give one entry per labelled sample"
            )


@dataclass(frozen=True)
class QueryCounts:
    """One kind in one scenario over the run: per query, samples judged target of those scored."""

    hits: np.ndarray  # int
    scored: np.ndarray  # int; 0 = no scored sample, the query drops out (as in bsa.metrics)


@dataclass(frozen=True)
class Estimate:
    """A rate in percent: raw (the judge's verdicts as they are) and corrected, with intervals."""

    raw: float | None
    raw_low: float | None
    raw_high: float | None
    corrected: float | None
    low: float | None
    high: float | None
    reason: str = ""  # why ``corrected`` (or its interval) is missing, or a caveat

    @property
    def shift(self) -> float | None:
        if self.raw is None or self.corrected is None:
            return None
        return self.corrected - self.raw


@dataclass(frozen=True)
class Correction:
    """Safe@1/Think@1 corrected by Rogan–Gladen and Safe@k/Think@k by deconvolution (module doc)."""

    at_1: Estimate
    at_k: Estimate
    sensitivity: float | None
    specificity: float | None
    undefined_replicates: int
    n_boot: int


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level={level}: must lie strictly between 0 and 1, e.g. 0.95")
    return NormalDist().inv_cdf((1 + level) / 2)


def wilson(p: float, n: float, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """Wilson score interval for a share ``p`` of ``n`` (n may be an effective, non-integer size).

    Written out because ``n`` is Kish's effective size and ``p`` a weighted share: scipy's Wilson
    interval (``binomtest(k, n).proportion_ci(method="wilson")``) takes integer counts only; on
    integer counts the two agree (tests/test_correction.py checks it).
    """
    if n <= 0:
        raise ValueError(f"wilson: n={n}; an interval needs at least one observation")
    z = _z(level)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def kish_n(weight: np.ndarray) -> float:
    """Kish's effective sample size (Σw)² / Σw²: n for equal weights, less for unequal ones."""
    w = np.asarray(weight, dtype=float)
    sq = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / sq if sq > 0 else 0.0


def weighted_rate(hit: np.ndarray, weight: np.ndarray, level: float = DEFAULT_LEVEL) -> Rate:
    """The weighted share of ``hit`` among all given samples, with a Kish–Wilson interval."""
    hit = np.asarray(hit, dtype=bool)
    w = np.asarray(weight, dtype=float)
    total = float(np.sum(w))
    if hit.size == 0 or total <= 0:
        return Rate(None, None, None, int(hit.size), 0.0)
    p = float(np.sum(w[hit])) / total
    n_eff = kish_n(w)
    lo, hi = wilson(p, n_eff, level)
    return Rate(p, lo, hi, int(hit.size), n_eff)


def label_agreement(
    truth: np.ndarray,
    judged: np.ndarray,
    weight: np.ndarray,
    same_label: np.ndarray | None = None,
    level: float = DEFAULT_LEVEL,
) -> LabelAgreement:
    """Agreement of judge and labels in the binary view; ``same_label`` (exact match of labels, which
    differs from the binary match when a scenario has more than two labels) defaults to it."""
    t = np.asarray(truth, dtype=bool)
    j = np.asarray(judged, dtype=bool)
    w = np.asarray(weight, dtype=float)
    binary = t == j
    exact = binary if same_label is None else np.asarray(same_label, dtype=bool)
    return LabelAgreement(
        accuracy=weighted_rate(exact, w, level),
        binary_accuracy=weighted_rate(binary, w, level),
        precision=weighted_rate(t[j], w[j], level),
        recall=weighted_rate(j[t], w[t], level),
        specificity=weighted_rate(~j[~t], w[~t], level),
        npv=weighted_rate(~t[~j], w[~j], level),
    )


def _undefined_reason(sens: float, spec: float, min_youden: float) -> str | None:
    if math.isnan(sens):
        return "sensitivity unknown"
    if math.isnan(spec):
        return "specificity unknown"
    j = sens + spec - 1
    if j <= min_youden:
        return (
            f"sensitivity + specificity − 1 = {j:.3f} ≤ {min_youden}: the judge's verdicts carry "
            "(almost) no information about the labels, so the correction would divide by ~0"
        )
    return None


def rogan_gladen(raw: float, sens: float, spec: float, min_youden: float = DEFAULT_MIN_YOUDEN) -> RoganGladen:
    """(raw + spec − 1) / (sens + spec − 1), clipped to [0, 1]; rates as fractions."""
    for name, v in (("raw", raw), ("sens", sens), ("spec", spec)):
        if not (math.isnan(v) or 0 <= v <= 1):
            raise ValueError(f"rogan_gladen: {name}={v} is not a fraction in [0, 1] (percent given?)")
    why = _undefined_reason(sens, spec, min_youden)
    if why is not None:
        return RoganGladen(None, None, why)
    value = (raw + spec - 1) / (sens + spec - 1)
    clipped = min(1.0, max(0.0, value))
    reason = (
        f"clipped from {value:.4f}: the raw rate lies outside what this Se/Sp can produce"
        if (clipped != value)
        else ""
    )
    return RoganGladen(clipped, value, reason)


def _rg_array(raw: np.ndarray, sens: np.ndarray, spec: np.ndarray, min_youden: float) -> np.ndarray:
    j = sens + spec - 1
    ok = ~np.isnan(raw) & ~np.isnan(j) & (j > min_youden)
    out = np.full(raw.shape, np.nan)
    out[ok] = np.clip((raw[ok] + spec[ok] - 1) / j[ok], 0.0, 1.0)
    return out


def count_matrix(m: int, sens: np.ndarray, spec: np.ndarray) -> np.ndarray:
    """M[b, a, t] = P(a of m samples judged target | t truly target) under (sens[b], spec[b])."""
    sens = np.atleast_1d(np.asarray(sens, dtype=float))
    fpr = 1 - np.atleast_1d(np.asarray(spec, dtype=float))
    out = np.zeros((sens.size, m + 1, m + 1))

    def pmf(n: int, p: np.ndarray) -> np.ndarray:  # Binomial(n, p) over 0..n, per row of p
        return np.asarray(scipy_stats.binom.pmf(np.arange(n + 1), n, p[:, None]), dtype=float)

    for t in range(m + 1):
        true_pos, false_pos = pmf(t, sens), pmf(m - t, fpr)
        for i in range(t + 1):
            out[:, i : i + m - t + 1, t] += true_pos[:, i : i + 1] * false_pos
    return out


def deconvolve(freq: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The distribution q of true counts whose image M·q best explains the observed shares ``freq``
    (maximum likelihood on the simplex), per row: freq (B, m+1), matrix (B, m+1, m+1)."""
    freq = np.asarray(freq, dtype=float)
    b, size = freq.shape
    q = np.full((b, size), 1.0 / size)
    todo = np.ones(b, dtype=bool)
    # Where M⁻¹f is already a distribution it is the maximum-likelihood answer: no iterations needed.
    try:
        exact = np.linalg.solve(matrix, freq[..., None])[..., 0]
        inside = np.all(exact >= -1e-12, axis=1) & np.all(np.isfinite(exact), axis=1)
        q[inside] = np.clip(exact[inside], 0, None) / np.clip(exact[inside], 0, None).sum(
            axis=1, keepdims=True
        )
        todo = ~inside
    except np.linalg.LinAlgError:  # a singular row (J = 0): EM for all, callers drop such rows
        pass
    if not todo.any():
        return q
    rows = np.flatnonzero(todo)
    for _ in range(_EM_MAX_ITER):
        # EM for a mixture with known components; only rows still moving are iterated, since a
        # solution on the simplex's boundary is approached slowly by a few rows.
        f, mat, cur = freq[rows], matrix[rows], q[rows]
        pred = np.einsum("bat,bt->ba", mat, cur)
        ratio = np.divide(f, pred, out=np.zeros_like(f), where=pred > 0)
        new = cur * np.einsum("bat,ba->bt", mat, ratio)
        q[rows] = new
        rows = rows[np.max(np.abs(new - cur), axis=1) >= _EM_TOL]
        if rows.size == 0:
            break
    return q


def _sens_spec(ls: LabelSample, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sensitivity and specificity per row of resampling counts (B, n); NaN where the
    replicate has no truly positive (negative) sample."""
    w = counts * np.asarray(ls.weight, dtype=float)[None, :]
    t, j = np.asarray(ls.truth, dtype=bool), np.asarray(ls.judged, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = (w @ (t & j)) / (w @ t)
        spec = (w @ (~t & ~j)) / (w @ ~t)
    return sens, spec


def _rates_at_k(
    qc: QueryCounts, qw: np.ndarray, sens: np.ndarray, spec: np.ndarray, min_youden: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw @k, corrected @k and the weight (scored queries) per replicate row of query weights ``qw``."""
    hits, scored = np.asarray(qc.hits, dtype=int), np.asarray(qc.scored, dtype=int)
    ok = scored > 0
    n = qw @ ok
    corrected = np.zeros(qw.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = (qw @ (ok & (hits == scored))) / n
    usable = ~np.isnan(sens) & ~np.isnan(spec) & (sens + spec - 1 > min_youden)
    for m in sorted(set(scored[ok].tolist())):
        in_m = scored == m
        hist = np.stack([qw @ (in_m & (hits == a)) for a in range(m + 1)], axis=1)
        size = hist.sum(axis=1)
        q = np.zeros_like(hist)
        rows = usable & (size > 0)
        if rows.any():
            freq = hist[rows] / size[rows, None]
            q[rows] = deconvolve(freq, count_matrix(m, sens[rows], spec[rows]))
        corrected += size * q[:, m]
    with np.errstate(invalid="ignore", divide="ignore"):
        corrected = np.where(usable & (n > 0), corrected / n, np.nan)
    return raw, corrected, n


def _raw_at_1(qc: QueryCounts, qw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hits, scored = np.asarray(qc.hits, dtype=float), np.asarray(qc.scored, dtype=float)
    ok = scored > 0
    share = np.divide(hits, scored, out=np.zeros_like(hits), where=ok)
    n = qw @ ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return (qw @ share) / n, n


def _interval(reps: np.ndarray, level: float, n_boot: int) -> tuple[float | None, float | None, str]:
    finite = reps[~np.isnan(reps)]
    missing = reps.size - finite.size
    if finite.size == 0:
        return None, None, "undefined in every bootstrap replicate"
    if missing > (1 - level) * n_boot:
        return (
            None,
            None,
            f"undefined in {missing} of {n_boot} bootstrap replicates (the labels leave "
            "sensitivity or specificity too uncertain); no interval; label more samples",
        )
    lo, hi = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(lo) * 100, float(hi) * 100, ""


def _pct(x: float) -> float | None:
    return None if math.isnan(x) else 100 * float(x)


def _estimate(
    raw: np.ndarray, corrected: np.ndarray, level: float, n_boot: int, why: str, caveat: str = ""
) -> Estimate:
    """Row 0 is the point estimate, rows 1.. the replicates."""
    r_lo, r_hi, _ = _interval(raw[1:], level, n_boot)
    if why:
        return Estimate(_pct(raw[0]), r_lo, r_hi, None, None, None, why)
    lo, hi, note = _interval(corrected[1:], level, n_boot)
    return Estimate(
        _pct(raw[0]), r_lo, r_hi, _pct(corrected[0]), lo, hi, "; ".join(filter(None, [caveat, note]))
    )


def _clip_note(raw: float, sens: float, spec: float) -> str:
    """Said when the point estimate was clipped: the raw rate is one this Se/Sp cannot produce."""
    j = sens + spec - 1
    if math.isnan(raw) or math.isnan(j) or j <= 0:
        return ""
    value = (raw + spec - 1) / j
    if 0 <= value <= 1:
        return ""
    return (
        f"Rogan–Gladen gives {100 * value:.2f}%, clipped to {100 * min(1, max(0, value)):.0f}%: the raw "
        "rate lies outside what the measured Se/Sp can produce"
    )


def _why_undefined(ls: LabelSample, sens: float, spec: float, min_youden: float) -> str:
    if len(ls.truth) == 0:
        return "no labelled sample"
    if math.isnan(sens):
        return f"no labelled sample whose true label is {ls.target}: sensitivity unknown; label some"
    if math.isnan(spec):
        return f"no labelled sample whose true label is not {ls.target}: specificity unknown; label some"
    return _undefined_reason(sens, spec, min_youden) or ""


def pool(samples: Sequence[LabelSample], target: str = "the target") -> LabelSample:
    """Several groups' labels as one (their strata stay apart, so do their weights)."""
    return LabelSample(
        truth=np.concatenate([np.asarray(s.truth, dtype=bool) for s in samples] or [np.zeros(0, bool)]),
        judged=np.concatenate([np.asarray(s.judged, dtype=bool) for s in samples] or [np.zeros(0, bool)]),
        weight=np.concatenate([np.asarray(s.weight, dtype=float) for s in samples] or [np.zeros(0)]),
        strata=tuple(h for s in samples for h in s.strata),
        target=target,
    )


def _label_replicates(ls: LabelSample, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Row 0: every labelled sample once; rows 1..: resampled within strata."""
    if not len(ls.truth):
        return np.ones((n_boot + 1, 0))
    return np.vstack([np.ones((1, len(ls.truth))), resample_weights(ls.strata, n_boot, rng, stratify=True)])


def correct(
    groups: Mapping[str, tuple[QueryCounts, LabelSample]],
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    min_youden: float = DEFAULT_MIN_YOUDEN,
    all_name: str = "all",
    pooled: bool = False,
) -> dict[str, Correction]:
    """Corrected @1 and @k per group (scenario) and over all of them (``all_name``), in percent.

    Each group is corrected with its own labels' Se/Sp, or with ``pooled`` with one Se/Sp from all
    groups' labels (less variance; right when the judge errs alike in every group). The overall rate
    is the query-weighted mean of the groups' corrected rates, replicate by replicate. Queries are
    resampled as ``bsa.stats`` does (within groups when every group has enough of them), labels
    within their strata.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot}: must be at least 1 (2000 is the default)")
    _z(level)
    if not groups:
        raise ValueError("correct: no group given; pass at least one scenario's counts and labels")
    names = list(groups)
    q_strata: list[str] = []
    for name in names:
        q_strata += [name] * len(groups[name][0].hits)
    q_rng, l_rng = (np.random.default_rng([seed, salt]) for salt in (1, 2))
    q_all = np.vstack([np.ones((1, len(q_strata))), resample_weights(q_strata, n_boot, q_rng)])
    shared = None
    if pooled:
        targets = {groups[name][1].target for name in names}
        everything = pool(
            [groups[name][1] for name in names], targets.pop() if len(targets) == 1 else "the target"
        )
        shared = (everything, *_sens_spec(everything, _label_replicates(everything, n_boot, l_rng)))
    out: dict[str, Correction] = {}
    parts: list[tuple[np.ndarray, ...]] = []
    whys: list[str] = []
    start = 0
    for name in names:
        qc, ls = groups[name]
        qw = q_all[:, start : start + len(qc.hits)]
        start += len(qc.hits)
        if shared is not None:
            ls, sens, spec = shared
        else:
            sens, spec = _sens_spec(ls, _label_replicates(ls, n_boot, l_rng))
        raw1, n = _raw_at_1(qc, qw)
        cor1 = _rg_array(raw1, sens, spec, min_youden)
        rawk, cork, _ = _rates_at_k(qc, qw, sens, spec, min_youden)
        why = _why_undefined(ls, float(sens[0]), float(spec[0]), min_youden)
        if why and shared is not None:
            why = f"all groups' labels pooled: {why}"
        if not why and math.isnan(raw1[0]):
            why = "no query with a scored verdict"
        if why:
            whys.append(why if shared is not None and not math.isnan(raw1[0]) else f"{name}: {why}")
        parts.append((raw1, cor1, rawk, cork, n))
        out[name] = Correction(
            at_1=_estimate(raw1, cor1, level, n_boot, why, _clip_note(raw1[0], sens[0], spec[0])),
            at_k=_estimate(rawk, cork, level, n_boot, why),
            sensitivity=None if math.isnan(sens[0]) else float(sens[0]),
            specificity=None if math.isnan(spec[0]) else float(spec[0]),
            undefined_replicates=int(np.sum(np.isnan(cor1[1:]) | np.isnan(cork[1:]))),
            n_boot=n_boot,
        )
    out[all_name] = _combine(parts, list(dict.fromkeys(whys)), level, n_boot)
    if shared is not None:
        out[all_name] = replace(
            out[all_name], sensitivity=out[names[0]].sensitivity, specificity=out[names[0]].specificity
        )
    return out


def _combine(
    parts: Sequence[tuple[np.ndarray, ...]], whys: list[str], level: float, n_boot: int
) -> Correction:
    """The query-weighted mean over groups; a group without queries in a replicate adds nothing."""

    def mean(index: int) -> np.ndarray:
        num = sum(np.where(p[4] > 0, p[index] * p[4], 0.0) for p in parts)
        bad = np.zeros_like(parts[0][4], dtype=bool)
        for p in parts:  # a group with queries but no correction makes the whole undefined
            bad |= (p[4] > 0) & np.isnan(p[index])
        den = sum(p[4] for p in parts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(bad | (den == 0), np.nan, num / den)

    why = "; ".join(whys)
    raw1, cor1, rawk, cork = mean(0), mean(1), mean(2), mean(3)
    return Correction(
        at_1=_estimate(raw1, cor1, level, n_boot, why),
        at_k=_estimate(rawk, cork, level, n_boot, why),
        sensitivity=None,
        specificity=None,
        undefined_replicates=int(np.sum(np.isnan(cor1[1:]) | np.isnan(cork[1:]))),
        n_boot=n_boot,
    )
