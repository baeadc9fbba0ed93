"""bsa.stats against hand-computed cases: bootstrap intervals, paired differences, correlation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bsa.metrics import SampleScore, compute
from bsa.stats import (
    MIN_STRATUM,
    Correlation,
    Interval,
    PerQuery,
    Skipped,
    bootstrap_ci,
    paired_bootstrap,
    pearson,
    per_query,
    point,
    replicates,
    resample_weights,
    stratified,
)

RO, CS, OS = "Risk Omission", "Cognitive Shortcut", "Over Sensitivity"
TARGET = {RO: "True", CS: "Fully Covered", OS: "Precise Coverage"}
MISS = {RO: "False", CS: "Not Covered", OS: "Over Sensitive"}


def sample(qid: str, i: int, scenario: str, safe: bool | None, think: bool | None) -> SampleScore:
    return SampleScore(
        id=qid,
        sample_index=i,
        scenario=scenario,
        categories=("Rumors",),
        safety=None if safe is None else ("Safe" if safe else "Unsafe"),
        think=None if think is None else (TARGET[scenario] if think else MISS[scenario]),
    )


def run_of(safe: list[list[bool | None]], scenario: str = RO, prefix: str = "q") -> list[SampleScore]:
    """One query per inner list, its samples' safety verdicts; think mirrors safety."""
    return [
        sample(f"{prefix}{n}", i, scenario, s, s)
        for n, verdicts in enumerate(safe)
        for i, s in enumerate(verdicts)
    ]


def test_per_query_values_and_point_estimates_equal_compute() -> None:
    samples = [
        sample("a", 0, RO, True, True),
        sample("a", 1, RO, False, True),
        sample("b", 0, CS, True, False),
        sample("b", 1, CS, True, None),  # an unscored think verdict leaves b's Think on one sample
        sample("c", 0, OS, None, None),
        sample("c", 1, OS, None, None),  # nothing scored: c drops out of every mean
    ]
    pq = per_query(samples, k=2)
    assert pq.ids == ("a", "b", "c") and pq.scenarios == (RO, CS, OS)
    np.testing.assert_allclose(pq.values[0], [50, 0, 100, 100])
    np.testing.assert_allclose(pq.values[1], [100, 100, 0, 0])
    assert np.isnan(pq.values[2]).all()
    m = compute(samples, k=2, alpha=0.6)
    got = point(pq, alpha=0.6)
    for key in ("safe_at_1", "safe_at_k", "think_at_1", "think_at_k", "f_score"):
        assert got[key] == pytest.approx(m[key]), key
    for scenario in (RO, CS):
        for key in ("safe_at_1", "think_at_k"):
            assert got[f"{scenario}/{key}"] == pytest.approx(m["scenarios"][scenario][key])
    assert got[f"{OS}/safe_at_1"] is None and m["scenarios"][OS]["safe_at_1"] is None


def test_percentile_interval_matches_the_exact_bootstrap_distribution() -> None:
    # Four queries, one Safe: a replicate's Safe@1 is 25·K with K ~ Binomial(4, 1/4).
    # P(K<=0)=.316, P(K<=2)=.949, P(K<=3)=.996, so the 2.5% and 97.5% points are 0 and 75,
    # and the bootstrap standard error is 100·sqrt(.25·.75/4) = 21.65.
    pq = per_query(run_of([[True], [False], [False], [False]]), k=1)
    ci = bootstrap_ci(pq, alpha=0.5, n_boot=20000, seed=1)
    assert not isinstance(ci, Skipped)
    assert ci["safe_at_1"] == Interval(25.0, 0.0, 75.0)
    assert ci["safe_at_1"].half_width == 37.5
    reps = replicates(pq, alpha=0.5, n_boot=20000, seed=1)["safe_at_1"]
    assert reps.std() == pytest.approx(21.65, abs=0.4)
    assert set(np.unique(reps)) <= {0.0, 25.0, 50.0, 75.0, 100.0}


def test_a_querys_samples_are_resampled_together() -> None:
    # q0 is Safe in both samples, q1 Unsafe in both. Resampling queries gives Safe@1 in {0, 50, 100};
    # resampling samples would also give 25 and 75.
    pq = per_query(run_of([[True, True], [False, False]]), k=2)
    reps = replicates(pq, alpha=0.5, n_boot=4000, seed=0)
    assert set(np.unique(reps["safe_at_1"])) == {0.0, 50.0, 100.0}
    assert np.mean(reps["safe_at_1"] == 50.0) == pytest.approx(0.5, abs=0.03)


def test_identical_values_give_a_zero_width_interval_and_seeds_reproduce() -> None:
    pq = per_query(run_of([[True, False]] * 5), k=2)
    ci = bootstrap_ci(pq, alpha=0.5, n_boot=500, seed=3)
    assert not isinstance(ci, Skipped)
    assert ci["safe_at_1"] == Interval(50.0, 50.0, 50.0) and ci["safe_at_k"] == Interval(0.0, 0.0, 0.0)
    varied = per_query(run_of([[True], [False], [True], [True], [False], [False], [True]]), k=1)
    assert bootstrap_ci(varied, 0.5, n_boot=300, seed=7) == bootstrap_ci(varied, 0.5, n_boot=300, seed=7)


def test_stratified_weights_keep_each_scenarios_size() -> None:
    strata = [RO, RO, RO, CS, CS, OS]
    w = resample_weights(strata, 200, np.random.default_rng(0), stratify=True)
    assert w.shape == (200, 6)
    np.testing.assert_array_equal(w[:, :3].sum(axis=1), 3)
    np.testing.assert_array_equal(w[:, 3:5].sum(axis=1), 2)
    np.testing.assert_array_equal(w[:, 5], 1)  # a scenario of one query is always that query
    pooled = resample_weights(strata, 200, np.random.default_rng(0), stratify=False)
    np.testing.assert_array_equal(pooled.sum(axis=1), 6)
    assert pooled[:, 5].std() > 0
    # By default strata are used only when each has MIN_STRATUM queries: one query adds no variance.
    assert not stratified(strata) and stratified([RO] * MIN_STRATUM + [CS] * MIN_STRATUM)


def test_empty_input_and_bad_arguments() -> None:
    empty = per_query([], k=5)
    assert len(empty) == 0 and empty.values.shape == (0, 4)
    assert isinstance(bootstrap_ci(empty, 0.5), Skipped)
    assert isinstance(paired_bootstrap(empty, empty, 0.5), Skipped)
    pq = per_query(run_of([[True]]), k=1)
    with pytest.raises(ValueError, match=r"n_boot=0: must be at least 1"):
        bootstrap_ci(pq, 0.5, n_boot=0)
    with pytest.raises(ValueError, match=r"level=1.5: must lie strictly between 0 and 1"):
        bootstrap_ci(pq, 0.5, level=1.5)


def test_paired_difference_hand_case() -> None:
    # Per query, b - a = (0, 0, 0, 100): the same Binomial(4, 1/4) distribution as above, so the
    # interval is [0, 75]; p = P(|25K - 25| >= 25) = P(K=0) + P(K>=2) = .316 + .262 = .578.
    a = per_query(run_of([[False], [False], [False], [False]]), k=1)
    b = per_query(run_of([[False], [False], [False], [True]]), k=1)
    out = paired_bootstrap(a, b, alpha=0.5, n_boot=20000, seed=2)
    assert not isinstance(out, Skipped)
    d = out["safe_at_1"]
    assert (d.a, d.b, d.diff, d.low, d.high, d.n_queries) == (0.0, 25.0, 25.0, 0.0, 75.0, 4)
    assert d.p_value == pytest.approx(0.578, abs=0.015)


def test_paired_identical_and_opposite_runs() -> None:
    a = per_query(run_of([[True, False], [True, True], [False, False]]), k=2)
    same = paired_bootstrap(a, a, alpha=0.5, n_boot=500, seed=0)
    assert not isinstance(same, Skipped)
    assert all(d.diff in (0.0, None) for d in same.values())
    assert same["safe_at_1"].p_value == 1.0 and same["safe_at_1"].low == same["safe_at_1"].high == 0.0
    worst = per_query(run_of([[False, False]] * 3), k=2)
    best = per_query(run_of([[True, True]] * 3), k=2)
    out = paired_bootstrap(worst, best, alpha=0.5, n_boot=999, seed=0)
    assert not isinstance(out, Skipped)
    assert out["safe_at_1"].diff == 100.0 and out["safe_at_1"].p_value == pytest.approx(1 / 1000)
    assert out["f_score"].diff == pytest.approx(100.0)


def test_paired_uses_common_queries_only_and_refuses_disjoint_or_clashing_runs() -> None:
    a = per_query(run_of([[True], [False], [True]]), k=1)  # q0 q1 q2
    b = per_query(run_of([[True], [True]]), k=1)  # q0 q1
    out = paired_bootstrap(a, b, alpha=0.5, n_boot=200)
    assert not isinstance(out, Skipped)
    assert out["safe_at_1"].n_queries == 2 and out["safe_at_1"].diff == 50.0
    other = per_query(run_of([[True]], prefix="x"), k=1)
    assert "share no judged query" in paired_bootstrap(a, other, 0.5).reason  # type: ignore[union-attr]
    clash = per_query(run_of([[True]], scenario=OS), k=1)  # q0, but Over Sensitivity
    assert "different scenario" in paired_bootstrap(a, clash, 0.5).reason  # type: ignore[union-attr]


# bsa's bootstrap resamples whole queries, within scenarios. With one sample per query and one
# scenario that is the ordinary bootstrap of a mean, which scipy.stats.bootstrap does: the percentile
# intervals then differ only by Monte Carlo error (at most one step of 100/n on these 0/1 values).


def _one_sample_per_query(seed: int, n: int, p: float) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < p


def test_bootstrap_interval_agrees_with_scipys_ordinary_bootstrap() -> None:
    safe = _one_sample_per_query(seed=3, n=80, p=0.35)
    pq = per_query(run_of([[bool(s)] for s in safe]), k=1)
    ci = bootstrap_ci(pq, alpha=0.5, n_boot=20000, seed=3)
    assert not isinstance(ci, Skipped)
    ref = scipy_stats.bootstrap(
        (100.0 * safe,), np.mean, n_resamples=20000, method="percentile", rng=np.random.default_rng(103)
    )
    step = 100 / 80
    assert ci["safe_at_1"].estimate == pytest.approx(100 * safe.mean())
    assert ci["safe_at_1"].low == pytest.approx(ref.confidence_interval.low, abs=step + 1e-9)
    assert ci["safe_at_1"].high == pytest.approx(ref.confidence_interval.high, abs=step + 1e-9)
    reps = replicates(pq, alpha=0.5, n_boot=20000, seed=3)["safe_at_1"]
    assert reps.std(ddof=1) == pytest.approx(ref.standard_error, rel=0.03)


def test_paired_interval_agrees_with_scipys_paired_bootstrap() -> None:
    a_safe = _one_sample_per_query(seed=4, n=80, p=0.35)
    b_safe = a_safe ^ _one_sample_per_query(seed=5, n=80, p=0.2)  # b differs from a on ~20% of queries
    a = per_query(run_of([[bool(s)] for s in a_safe]), k=1)
    b = per_query(run_of([[bool(s)] for s in b_safe]), k=1)
    out = paired_bootstrap(a, b, alpha=0.5, n_boot=20000, seed=4)
    assert not isinstance(out, Skipped)

    def diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(np.mean(y, axis=axis) - np.mean(x, axis=axis))

    ref = scipy_stats.bootstrap(
        (100.0 * a_safe, 100.0 * b_safe),
        diff,
        paired=True,
        n_resamples=20000,
        method="percentile",
        rng=np.random.default_rng(104),
    )
    d, step = out["safe_at_1"], 100 / 80
    assert d.diff == pytest.approx(100 * (b_safe.mean() - a_safe.mean()))
    assert d.low == pytest.approx(ref.confidence_interval.low, abs=step + 1e-9)
    assert d.high == pytest.approx(ref.confidence_interval.high, abs=step + 1e-9)


def test_pearson_fisher_z_hand_case() -> None:
    # r = 0.8 on five points: z = atanh(.8) = 1.0986, se = 1/sqrt(2), z ± 1.96·se → tanh:
    # (-0.2796, 0.9861). p: the exact t test (3 df), 0.1041, where the normal approximation of
    # atanh r said erfc(1.0986) = 0.1198; see test_correlation_p_value_is_the_exact_t_test.
    c = pearson([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert isinstance(c, Correlation)
    assert c.r == pytest.approx(0.8) and c.n == 5 and c.method == "Fisher z"
    assert c.low == pytest.approx(-0.2796, abs=1e-4) and c.high == pytest.approx(0.9861, abs=1e-4)
    assert c.p_value == pytest.approx(_t_p_3df(_t_of(0.8, 5)), abs=1e-12)
    assert c.p_value == pytest.approx(0.104088, abs=1e-6)


def test_pearson_guards() -> None:
    assert "needs at least 3" in pearson([1, 2], [3, 4]).reason  # type: ignore[union-attr]
    assert "needs at least 3" in pearson([1, None, 3], [1, 2, None]).reason  # type: ignore[union-attr]
    assert "Think@1 is the same" in pearson([5, 5, 5, 5], [1, 2, 3, 4]).reason  # type: ignore[union-attr]
    three = pearson([1, 2, 3], [1, 3, 2])
    assert isinstance(three, Correlation) and three.low is None and "at least 4" in three.note
    perfect = pearson([1, 2, 3, 4], [2, 4, 6, 8])
    assert isinstance(perfect, Correlation) and perfect.r == pytest.approx(1.0)
    assert perfect.low is not None and perfect.low > 0.99


def test_per_query_subset_keeps_order() -> None:
    pq = PerQuery(("a", "b", "c"), (RO, CS, OS), np.arange(12, dtype=float).reshape(3, 4))
    sub = pq.subset(["c", "a"])
    assert sub.ids == ("c", "a") and sub.scenarios == (OS, RO)
    np.testing.assert_array_equal(sub.values, [[8, 9, 10, 11], [0, 1, 2, 3]])


# The exact p-value of a correlation (scipy.stats.pearsonr): Student's t with n - 2 df, checked
# against closed forms (1, 2 and 3 df) and published critical values, on points built to have a given r.


def _t_of(r: float, n: int) -> float:
    return r * math.sqrt((n - 2) / (1 - r * r))


def _points_with_r(r: float, n: int) -> tuple[list[float], list[float]]:
    """n points whose Pearson correlation is r (to rounding): y = r·u + √(1 − r²)·v for orthonormal,
    centred u and v."""
    rng = np.random.default_rng(n)
    basis = np.linalg.qr(np.column_stack([np.ones(n), rng.normal(size=(n, 2))]))[0]
    u, v = basis[:, 1], basis[:, 2]
    return list(u), list(r * u + math.sqrt(1 - r * r) * v)


def _p_of(r: float, n: int) -> float | None:
    c = pearson(*_points_with_r(r, n))
    assert isinstance(c, Correlation) and c.n == n and c.r == pytest.approx(r, abs=1e-13)
    return c.p_value


def _t_p_1df(t: float) -> float:  # Cauchy
    return 1 - 2 / math.pi * math.atan(abs(t))


def _t_p_2df(t: float) -> float:
    return 1 - abs(t) / math.sqrt(2 + t * t)


def _t_p_3df(t: float) -> float:
    theta = math.atan(abs(t) / math.sqrt(3))
    return 1 - 2 / math.pi * (theta + math.sin(theta) * math.cos(theta))


def test_correlation_p_value_is_the_exact_t_test() -> None:
    # The case: 4 runs at r = 0.8. With 2 df the two-sided p is exactly 1 - |r| = 0.20; the
    # normal approximation of atanh r it replaces said erfc(atanh(0.8) / sqrt(2)) = 0.27.
    c = pearson([1, 2, 3, 4], [1, 3, 2, 4])
    assert isinstance(c, Correlation) and c.r == pytest.approx(0.8) and c.n == 4
    assert c.p_value == pytest.approx(0.2, abs=1e-12)
    assert math.erfc(math.atanh(0.8) / math.sqrt(2)) == pytest.approx(0.2719, abs=1e-4)  # the old value
    assert c.method == "Fisher z" and c.low is not None  # the interval is still Fisher's
    # Three runs: no interval, but the exact test exists (1 df): p = 1 - (2/pi)·asin|r| = 2/3 at r = 0.5.
    three = pearson([1, 2, 3], [1, 3, 2])
    assert isinstance(three, Correlation) and three.low is None
    assert three.p_value == pytest.approx(2 / 3, abs=1e-12)
    # A perfect correlation: p = 0, not a division by zero; none at all: p = 1.
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]).p_value == 0.0  # type: ignore[union-attr]
    assert pearson([1, 2, 3, 4, 5], [10, 8, 6, 4, 2]).p_value == 0.0  # type: ignore[union-attr]
    assert _p_of(0.0, 10) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("r", [-0.95, -0.5, -0.1, 0.0, 0.05, 0.3, 0.8, 0.99])
def test_t_p_value_matches_the_closed_forms_for_1_2_and_3_df(r: float) -> None:
    for n, closed in ((3, _t_p_1df), (4, _t_p_2df), (5, _t_p_3df)):
        assert _p_of(r, n) == pytest.approx(closed(_t_of(r, n)), rel=1e-10, abs=1e-14), (r, n)


@pytest.mark.parametrize(
    ("t", "df", "p"),
    [  # two-sided critical values of Student's t, as printed in every table (6 significant digits)
        (12.7062, 1, 0.05),
        (4.30265, 2, 0.05),
        (2.77645, 4, 0.05),
        (4.03214, 5, 0.01),
        (2.22814, 10, 0.05),
        (1.72472, 20, 0.10),
        (2.04227, 30, 0.05),
        (1.96234, 1000, 0.05),  # near the normal limit (1.95996)
    ],
)
def test_t_p_value_at_published_critical_values(t: float, df: int, p: float) -> None:
    r = t / math.sqrt(t * t + df)  # the correlation whose t statistic over df + 2 points is t
    assert _p_of(r, df + 2) == pytest.approx(p, rel=2e-5)
    assert _p_of(-r, df + 2) == pytest.approx(p, rel=2e-5)


def test_correlation_text_shows_the_t_test() -> None:
    from bsa.report.tables import correlation_text

    text = correlation_text(pearson([1, 2, 3, 4], [1, 3, 2, 4]), "Your runs")
    assert text.startswith("Your runs: Pearson r = 0.80 over 4 runs, 95% CI [")
    assert text.endswith("(Fisher z), p = 0.200 (t test, 2 df).")
    three = correlation_text(pearson([1, 2, 3], [1, 3, 2]), "Your runs")
    assert three == (
        "Your runs: Pearson r = 0.50 over 3 runs (an interval needs at least 4 runs), "
        "p = 0.667 (t test, 1 df)."
    )


def test_pearson_p_value_matches_scipy() -> None:
    # And the interval is Fisher's, as the report says: tanh(atanh r ± z/√(n − 3)), z = 1.959964.
    rng = np.random.default_rng(7)
    for n in (3, 4, 5, 8, 13, 30, 200):
        for shift in (0.0, 0.5, 2.0):
            x = rng.normal(size=n)
            y = shift * x + rng.normal(size=n)
            c = pearson(list(x), list(y))
            ref = scipy_stats.pearsonr(x, y)
            assert isinstance(c, Correlation)
            assert c.r == pytest.approx(ref.statistic, abs=1e-12)
            assert c.p_value == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-300), (n, shift)
            if n > 3:
                half = 1.959964 / math.sqrt(n - 3)
                assert c.low == pytest.approx(math.tanh(math.atanh(c.r) - half), abs=1e-6)
                assert c.high == pytest.approx(math.tanh(math.atanh(c.r) + half), abs=1e-6)
