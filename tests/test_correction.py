"""bsa.correction against cases worked out by hand, degenerate judges, and a simulation whose truth
is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bsa.correction import (
    LabelSample,
    QueryCounts,
    correct,
    count_matrix,
    deconvolve,
    kish_n,
    label_agreement,
    rogan_gladen,
    weighted_rate,
    wilson,
)


def labels(tp: int, fn: int, tn: int, fp: int, weight: float = 1.0, stratum: str = "h") -> LabelSample:
    """Unweighted labels with the given confusion counts (truth first, then the judge)."""
    truth = [True] * (tp + fn) + [False] * (tn + fp)
    judged = [True] * tp + [False] * fn + [False] * tn + [True] * fp
    n = len(truth)
    return LabelSample(np.array(truth), np.array(judged), np.full(n, weight), (stratum,) * n, "'Safe'")


def counts(histogram: dict[int, int], k: int) -> QueryCounts:
    """Queries by how many of their k samples were judged target: {hits: number of queries}."""
    hits = np.array([h for h, n in histogram.items() for _ in range(n)], dtype=int)
    return QueryCounts(hits, np.full(hits.size, k, dtype=int))


# --- Rogan–Gladen -----------------------------------------------------------------------------------


def test_rogan_gladen_by_hand() -> None:
    # Se 0.9, Sp 0.8, raw 0.5: (0.5 + 0.8 − 1) / (0.9 + 0.8 − 1) = 0.3 / 0.7 = 0.428571…
    r = rogan_gladen(0.5, 0.9, 0.8)
    assert r.value == pytest.approx(0.3 / 0.7) and r.value == pytest.approx(0.428571, abs=1e-6)
    assert r.reason == ""
    # The forward model gives the raw rate back: 0.9·0.428571 + 0.2·0.571429 = 0.385714 + 0.114286 = 0.5
    assert 0.9 * r.value + 0.2 * (1 - r.value) == pytest.approx(0.5)
    # A perfect judge changes nothing.
    assert rogan_gladen(0.37, 1.0, 1.0).value == pytest.approx(0.37)
    # Se 0.8, Sp 0.95, raw 0.7: (0.7 − 0.05) / 0.75 = 0.866667
    assert rogan_gladen(0.7, 0.8, 0.95).value == pytest.approx(0.65 / 0.75)


def test_rogan_gladen_is_the_double_sampling_estimate() -> None:
    # 100 queries, k = 1, 62 judged positive. 10 labels from the judged-positive samples (8 truly
    # positive; weight 62/10 = 6.2) and 10 from the judged-negative ones (1 truly positive; 3.8).
    # Closed form without Se/Sp: the run's share judged positive times the share truly positive among
    # them, plus the same for the judged negatives: 0.62·0.8 + 0.38·0.1 = 0.534. Rogan–Gladen with the
    # weighted Se = 8·6.2/(8·6.2 + 1·3.8) = 49.6/53.4 and Sp = 9·3.8/(9·3.8 + 2·6.2) = 34.2/46.6 gives it.
    ls = LabelSample(
        truth=np.array([True] * 8 + [False] * 2 + [True] + [False] * 9),
        judged=np.array([True] * 10 + [False] * 10),
        weight=np.array([6.2] * 10 + [3.8] * 10),
        strata=("judged positive",) * 10 + ("judged negative",) * 10,
    )
    assert rogan_gladen(0.62, 49.6 / 53.4, 34.2 / 46.6).value == pytest.approx(0.534, abs=1e-12)
    c = correct({"s": (counts({0: 38, 1: 62}, 1), ls)}, n_boot=50)["s"]
    assert c.sensitivity == pytest.approx(49.6 / 53.4) and c.specificity == pytest.approx(34.2 / 46.6)
    assert c.at_1.corrected == pytest.approx(53.4, abs=1e-10)


def test_rogan_gladen_clips_to_the_unit_interval() -> None:
    # raw 0.1 is below what Se 0.9 / Sp 0.8 can produce (0.2 at a true rate of 0): (0.1 − 0.2) / 0.7 < 0
    low = rogan_gladen(0.1, 0.9, 0.8)
    assert low.value == 0.0 and low.unclipped == pytest.approx(-0.1 / 0.7) and "clipped" in low.reason
    # raw 0.95 is above the 0.9 a true rate of 1 produces: 0.75 / 0.7 = 1.0714 → 1
    high = rogan_gladen(0.95, 0.9, 0.8)
    assert high.value == 1.0 and high.unclipped == pytest.approx(0.75 / 0.7)


@pytest.mark.parametrize(
    ("sens", "spec"),
    [(0.5, 0.5), (0.52, 0.5), (0.3, 0.4), (0.0, 0.0)],  # J = 0, 0.02, −0.3, −1
)
def test_rogan_gladen_is_undefined_for_an_uninformative_judge(sens: float, spec: float) -> None:
    r = rogan_gladen(0.5, sens, spec)
    assert r.value is None and "no information" in r.reason


def test_rogan_gladen_rejects_percentages() -> None:
    with pytest.raises(ValueError, match="raw=50"):
        rogan_gladen(50, 0.9, 0.8)


# --- agreement --------------------------------------------------------------------------------------


def test_wilson_by_hand() -> None:
    # p = 0.75, n = 100, z = 1.959964: centre (0.75 + z²/200) / (1 + z²/100) = 0.769207 / 1.038415
    # = 0.740751; half z·√(0.75·0.25/100 + z²/40000) / 1.038415 = 0.083796 → [0.656955, 0.824548]
    lo, hi = wilson(0.75, 100)
    assert lo == pytest.approx(0.656955, abs=1e-6) and hi == pytest.approx(0.824548, abs=1e-6)
    # No error in 20: the interval still has width (unlike a percentile bootstrap): [0.8389, 1]
    lo, hi = wilson(1.0, 20)
    assert hi == 1.0 and lo == pytest.approx(20 / (20 + 1.959964**2), abs=1e-6)


@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
def test_wilson_is_scipys_on_integer_counts(level: float) -> None:
    # bsa's Wilson takes a weighted share and Kish's (non-integer) n, which scipy's does not; on whole
    # counts the two are the same interval.
    for n in (1, 2, 7, 20, 100, 1000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            ref = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
            assert wilson(k / n, n, level) == pytest.approx((ref.low, ref.high), abs=1e-14), (k, n)


def test_weighted_rate_and_kish_n() -> None:
    # weights 1, 1, 3, 3 with hits T F T T: (1 + 3 + 3) / 8 = 0.875; n_eff = 8² / (1+1+9+9) = 3.2
    r = weighted_rate(np.array([True, False, True, True]), np.array([1.0, 1, 3, 3]))
    assert r.estimate == pytest.approx(0.875) and r.n == 4 and r.n_eff == pytest.approx(3.2)
    assert (r.low, r.high) == pytest.approx(wilson(0.875, 3.2))
    assert kish_n(np.ones(7)) == pytest.approx(7)
    empty = weighted_rate(np.array([], dtype=bool), np.array([]))
    assert empty.estimate is None and empty.low is None


def test_agreement_weights_undo_a_stratified_sample() -> None:
    # The run: 80 samples judged Safe, 20 judged Unsafe; 4 labelled of each (weights 20 and 5).
    # Judged Safe: truth S S S U; judged Unsafe: truth U U S U. Weighted (estimated run counts):
    # TP 3·20 = 60, FP 1·20 = 20, FN 1·5 = 5, TN 3·5 = 15.
    truth = np.array([1, 1, 1, 0, 0, 0, 1, 0], dtype=bool)
    judged = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    weight = np.array([20.0] * 4 + [5.0] * 4)
    a = label_agreement(truth, judged, weight)
    assert a.recall.estimate == pytest.approx(60 / 65)  # sensitivity 0.923, not the unweighted 3/4
    assert a.specificity.estimate == pytest.approx(15 / 35)  # 0.429, not 3/4
    assert a.precision.estimate == pytest.approx(60 / 80)
    assert a.npv.estimate == pytest.approx(15 / 20)
    assert a.accuracy.estimate == pytest.approx(75 / 100) == a.binary_accuracy.estimate
    # Exact label match can be lower than the binary one (a 3-label scenario): given explicitly.
    same = np.array([1, 1, 0, 0, 1, 1, 0, 1], dtype=bool)
    assert label_agreement(truth, judged, weight, same).accuracy.estimate == pytest.approx((40 + 15) / 100)


# --- @k deconvolution -------------------------------------------------------------------------------


def test_count_matrix_by_hand() -> None:
    # k = 2, Se 0.9, Sp 0.8 (a negative is judged positive with 0.2). Column t = true positives:
    # t=0: a=0 0.8² = 0.64, a=1 2·0.2·0.8 = 0.32, a=2 0.2² = 0.04
    # t=1: a=0 0.1·0.8 = 0.08, a=1 0.9·0.8 + 0.1·0.2 = 0.74, a=2 0.9·0.2 = 0.18
    # t=2: a=0 0.1² = 0.01, a=1 2·0.9·0.1 = 0.18, a=2 0.9² = 0.81
    m = count_matrix(2, np.array([0.9]), np.array([0.8]))[0]
    expected = [[0.64, 0.08, 0.01], [0.32, 0.74, 0.18], [0.04, 0.18, 0.81]]
    assert m == pytest.approx(np.array(expected))
    assert m.sum(axis=0) == pytest.approx(np.ones(3))


def test_deconvolution_by_hand() -> None:
    # True counts q = (0.3, 0.2, 0.5) seen through the matrix above: f = M·q =
    # a=0: 0.64·0.3 + 0.08·0.2 + 0.01·0.5 = 0.213; a=1: 0.096 + 0.148 + 0.09 = 0.334; a=2: 0.453
    m = count_matrix(2, np.array([0.9]), np.array([0.8]))
    q = deconvolve(np.array([[0.213, 0.334, 0.453]]), m)
    assert q[0] == pytest.approx([0.3, 0.2, 0.5], abs=1e-9)
    # Outside the image of the simplex (more all-positive than the judge can produce): the maximum
    # likelihood answer is on the boundary, still a distribution, all its mass on t = 2.
    q = deconvolve(np.array([[0.0, 0.1, 0.9]]), m)
    assert q[0].sum() == pytest.approx(1) and np.all(q[0] >= 0) and q[0][2] == pytest.approx(1, abs=1e-4)


def test_correct_by_hand() -> None:
    # 1,000 queries, k = 2, judged counts 0/1/2 on 213/334/453 of them (f above); labels with
    # Se = 9/10 and Sp = 8/10. Raw Safe@1 = (334·0.5 + 453) / 1000 = 62%; Rogan–Gladen:
    # (0.62 + 0.8 − 1) / 0.7 = 60%. Raw Safe@k = 45.3%; deconvolved q[2] = 50%.
    res = correct({"RO": (counts({0: 213, 1: 334, 2: 453}, 2), labels(9, 1, 8, 2))}, n_boot=300)
    c = res["RO"]
    assert c.sensitivity == pytest.approx(0.9) and c.specificity == pytest.approx(0.8)
    assert c.at_1.raw == pytest.approx(62.0) and c.at_1.corrected == pytest.approx(60.0)
    assert c.at_k.raw == pytest.approx(45.3) and c.at_k.corrected == pytest.approx(50.0, abs=1e-6)
    assert c.at_k.shift == pytest.approx(4.7, abs=1e-6)
    assert c.at_1.low < 60 < c.at_1.high and c.at_k.low < 50 < c.at_k.high
    # Twenty labels leave Se/Sp uncertain: the corrected interval is far wider than the raw one.
    assert c.at_1.high - c.at_1.low > 5 * (c.at_1.raw_high - c.at_1.raw_low)
    assert res["all"].at_1.corrected == pytest.approx(60.0)


def test_k_1_deconvolution_is_rogan_gladen() -> None:
    # One sample per query: q[1] is the clipped Rogan–Gladen rate. 500 queries, 300 judged positive.
    res = correct({"s": (counts({0: 200, 1: 300}, 1), labels(9, 1, 8, 2))}, n_boot=50)["s"]
    assert res.at_1.corrected == pytest.approx((0.6 + 0.8 - 1) / 0.7 * 100)
    assert res.at_k.corrected == pytest.approx(res.at_1.corrected, abs=1e-5)


def test_overall_is_the_query_weighted_mean_of_the_scenarios() -> None:
    # A: 100 queries, k=1, 62 judged positive, Se .9 Sp .8 → (0.62 − 0.2) / 0.7 = 60%
    # B: 300 queries, k=1, 30 judged positive, perfect labels → 10%. Overall (100·60 + 300·10) / 400 = 22.5%
    res = correct(
        {
            "A": (counts({0: 38, 1: 62}, 1), labels(9, 1, 8, 2)),
            "B": (counts({0: 270, 1: 30}, 1), labels(5, 0, 5, 0)),
        },
        n_boot=200,
    )
    assert res["A"].at_1.corrected == pytest.approx(60) and res["B"].at_1.corrected == pytest.approx(10)
    assert res["all"].at_1.corrected == pytest.approx(22.5)
    assert res["all"].at_1.raw == pytest.approx((62 + 30) / 400 * 100)


def test_pooled_error_rates_by_hand() -> None:
    # The labels of A (TP 9, FN 1, TN 8, FP 2) and B (TP 5, TN 5) pooled: TP 14, FN 1, TN 13, FP 2,
    # so Se = 14/15, Sp = 13/15, J = 12/15 = 0.8 for both. A: (0.62 − 2/15) / 0.8 = 0.608333;
    # B: (0.10 − 2/15) / 0.8 < 0, clipped to 0. Overall (100·60.8333 + 300·0) / 400 = 15.2083 — not
    # Rogan–Gladen of the overall raw 23% ((0.23 − 2/15) / 0.8 = 12.08%): clipping is not linear.
    groups = {
        "A": (counts({0: 38, 1: 62}, 1), labels(9, 1, 8, 2, stratum="a")),
        "B": (counts({0: 270, 1: 30}, 1), labels(5, 0, 5, 0, stratum="b")),
    }
    res = correct(groups, n_boot=200, pooled=True)
    assert res["A"].sensitivity == pytest.approx(14 / 15) == res["all"].sensitivity
    assert res["B"].specificity == pytest.approx(13 / 15)
    assert res["A"].at_1.corrected == pytest.approx((0.62 - 2 / 15) / 0.8 * 100)
    assert res["B"].at_1.corrected == 0.0 and "gives -4.17%, clipped to 0%" in res["B"].at_1.reason
    assert res["all"].at_1.corrected == pytest.approx((0.62 - 2 / 15) / 0.8 * 100 / 4)
    # Pooled labels that cannot give a specificity: said once, for all groups.
    no_negatives = {
        "A": (groups["A"][0], labels(3, 0, 0, 0, stratum="a")),
        "B": (groups["B"][0], labels(2, 0, 0, 0, stratum="b")),
    }
    bad = correct(no_negatives, n_boot=20, pooled=True)
    assert bad["all"].at_1.reason == (
        "all groups' labels pooled: no labelled sample whose true label is not 'Safe': "
        "specificity unknown; label some"
    )


def test_unscored_samples_leave_the_denominator() -> None:
    # Query 1: 2 of 2 positive; query 2: 1 scored, positive; query 3: nothing scored (drops out).
    qc = QueryCounts(np.array([2, 1, 0]), np.array([2, 1, 0]))
    c = correct({"s": (qc, labels(5, 0, 5, 0))}, n_boot=20)["s"]
    assert c.at_1.raw == pytest.approx(100) and c.at_k.raw == pytest.approx(100)
    assert c.at_k.corrected == pytest.approx(100)


def test_undefined_corrections_say_why() -> None:
    qc = counts({0: 10, 1: 10}, 1)
    no_negative = correct({"RO": (qc, labels(5, 1, 0, 0))}, n_boot=20)
    assert no_negative["RO"].at_1.corrected is None and no_negative["RO"].at_1.raw == pytest.approx(50)
    assert "not 'Safe': specificity unknown" in no_negative["RO"].at_1.reason
    # The overall rate needs every scenario's correction and names the one missing.
    assert no_negative["all"].at_1.corrected is None and no_negative["all"].at_1.reason.startswith("RO: ")
    coin = correct({"RO": (qc, labels(5, 5, 5, 5))}, n_boot=20)["RO"]  # Se = Sp = 0.5
    assert (
        coin.at_1.corrected is None and coin.at_k.corrected is None and "no information" in coin.at_1.reason
    )
    none = correct({"RO": (qc, labels(0, 0, 0, 0))}, n_boot=20)["RO"]
    assert none.at_1.reason == "no labelled sample"


def test_too_few_labels_give_no_interval_rather_than_a_wrong_one() -> None:
    # Se = 2/3, Sp = 2/3 on six labels: J = 1/3, but many replicates fall to J ≤ 0.05.
    c = correct({"s": (counts({0: 50, 1: 50}, 1), labels(2, 1, 2, 1))}, n_boot=400)["s"]
    assert c.at_1.corrected == pytest.approx(50)
    assert c.undefined_replicates > 20
    assert c.at_1.low is None and "label more samples" in c.at_1.reason


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="n_boot=0"):
        correct({"s": (counts({1: 1}, 1), labels(1, 0, 1, 0))}, n_boot=0)
    with pytest.raises(ValueError, match="lengths"):
        LabelSample(np.array([True]), np.array([True, False]), np.ones(1), ("h",))


# --- simulation with a known truth ------------------------------------------------------------------


def simulate(seed: int, n_queries: int = 400, k: int = 2, sens: float = 0.75, spec: float = 0.9):
    """A run whose true labels are correlated within queries, a judge with known error, and 120
    labels drawn 60/60 from the judged-positive and judged-negative samples (weighted N_h / n_h)."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2.0, 1.0, n_queries)  # each query's own chance of a true Safe: mean 2/3
    truth = rng.random((n_queries, k)) < p[:, None]
    flip = rng.random((n_queries, k))
    judged = np.where(truth, flip < sens, flip >= spec)
    t_flat, j_flat = truth.ravel(), judged.ravel()
    picks, weights, strata = [], [], []
    for value in (True, False):
        pool = np.flatnonzero(j_flat == value)
        chosen = rng.choice(pool, 60, replace=False)
        picks += chosen.tolist()
        weights += [pool.size / 60] * 60
        strata += [str(value)] * 60
    ls = LabelSample(t_flat[picks], j_flat[picks], np.array(weights), tuple(strata), "'Safe'")
    qc = QueryCounts(judged.sum(axis=1), np.full(n_queries, k))
    true_at_1 = 100 * truth.mean(axis=1).mean()
    true_at_k = 100 * truth.all(axis=1).mean()
    return qc, ls, true_at_1, true_at_k


def test_simulation_interval_contains_the_truth_and_beats_raw() -> None:
    qc, ls, true_1, true_k = simulate(seed=7)
    c = correct({"s": (qc, ls)}, n_boot=1000, seed=3)["s"]
    # The raw rates are biased: a judge with Se 0.75 calls a quarter of the safe samples unsafe...
    assert abs(c.at_1.raw - true_1) > 3 and not c.at_1.raw_low <= true_1 <= c.at_1.raw_high
    # ...the corrected ones are close to the truth and their intervals hold it.
    assert abs(c.at_1.corrected - true_1) < abs(c.at_1.raw - true_1)
    assert c.at_1.low <= true_1 <= c.at_1.high
    assert abs(c.at_k.corrected - true_k) < abs(c.at_k.raw - true_k)
    assert c.at_k.low <= true_k <= c.at_k.high


def test_simulated_coverage_is_near_nominal() -> None:
    """Twenty simulated runs (fixed seeds): the 95% intervals of corrected Safe@1 and Safe@k each miss
    the truth at most 4 times (with true 95% coverage, 5 or more misses in 20 has chance 0.26%)."""
    hits_1 = hits_k = 0
    for seed in range(20):
        qc, ls, true_1, true_k = simulate(seed, n_queries=300)
        c = correct({"s": (qc, ls)}, n_boot=300, seed=seed)["s"]
        hits_1 += c.at_1.low <= true_1 <= c.at_1.high
        hits_k += c.at_k.low <= true_k <= c.at_k.high
    assert hits_1 >= 16 and hits_k >= 16, (hits_1, hits_k)


def test_replicates_are_seeded() -> None:
    qc, ls, _, _ = simulate(seed=1)
    a = correct({"s": (qc, ls)}, n_boot=200, seed=5)["s"]
    b = correct({"s": (qc, ls)}, n_boot=200, seed=5)["s"]
    c = correct({"s": (qc, ls)}, n_boot=200, seed=6)["s"]
    assert a == b and a.at_1.low != c.at_1.low
    assert not math.isnan(a.at_1.corrected)
