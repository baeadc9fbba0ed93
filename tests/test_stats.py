"""bsa.stats against hand-computed cases: bootstrap intervals, paired differences, correlation."""

from __future__ import annotations

import math

import numpy as np
import pytest

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


def test_pearson_fisher_z_hand_case() -> None:
    # r = 0.8 on five points: z = atanh(.8) = 1.0986, se = 1/sqrt(2), z ± 1.96·se → tanh:
    # (-0.2796, 0.9861); p = erfc(1.0986·sqrt(2)/sqrt(2)) = erfc(1.0986) = 0.1198.
    c = pearson([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert isinstance(c, Correlation)
    assert c.r == pytest.approx(0.8) and c.n == 5 and c.method == "Fisher z"
    assert c.low == pytest.approx(-0.2796, abs=1e-4) and c.high == pytest.approx(0.9861, abs=1e-4)
    assert c.p_value == pytest.approx(math.erfc(math.atanh(0.8)), abs=1e-9)


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
