"""Judge agreement (bsa.agreement): the statistics against cases worked out by hand, the degenerate
cases, the bootstrap over queries, and the CLI end to end on two runs against the scripted server:
one faithful judge and one that flips a known share of verdicts."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config, dataset_path
from helpers import responder, scripted_overrides, write_dataset
from scripted_server import ScriptedServer

from bsa import agreement as ag
from bsa.agreement import ALL, AgreementError, Ratings
from bsa.data import read
from bsa.run import run
from bsa.verdict import SAFETY, SAFETY_LABELS, THINK, THINK_LABELS

RO, CS, OS = "Risk Omission", "Cognitive Shortcut", "Over Sensitivity"


def judges(
    pairs: Sequence[Sequence[str | None]], kind: str = SAFETY, k: int = 1, names: Sequence[str] = ()
) -> list[Ratings]:
    """Ratings of len(pairs[0]) judges; unit n is sample n % k of query q{n // k}."""
    m = len(pairs[0])
    names = list(names) or [chr(ord("A") + j) for j in range(m)]
    return [
        Ratings(names[j], {(f"q{n // k}", n % k, kind): row[j] for n, row in enumerate(pairs)})
        for j in range(m)
    ]


def scenarios_for(ratings: Sequence[Ratings], scenario: str) -> dict[str, str]:
    return {key[0]: scenario for r in ratings for key in r.verdicts}


def alpha_by_formula(units: Sequence[Sequence[str | None]]) -> float:
    """Krippendorff's nominal alpha straight from its definition, for checking the package:
    o_ck = sum over units of (ordered pairs of values c, k from different judges) / (m_u - 1), over
    units with m_u >= 2 values; n_c = sum_k o_ck; alpha = 1 - (n - 1) * sum_{c != k} o_ck /
    sum_{c != k} n_c n_k."""
    o: dict[tuple[str, str], float] = {}
    for unit in units:
        vals = [v for v in unit if v is not None]
        if len(vals) < 2:
            continue
        for i, a in enumerate(vals):
            for j, b in enumerate(vals):
                if i != j:
                    o[(a, b)] = o.get((a, b), 0) + 1 / (len(vals) - 1)
    n_c: dict[str, float] = {}
    for (a, _), v in o.items():
        n_c[a] = n_c.get(a, 0) + v
    n = sum(n_c.values())
    observed = sum(v for (a, b), v in o.items() if a != b)
    expected = sum(n_c[a] * n_c[b] for a in n_c for b in n_c if a != b)
    return 1 - (n - 1) * observed / expected


# --------------------------------------------------------------------------------------------------
# Hand-worked cases


def test_textbook_two_by_two() -> None:
    # 50 units, two judges (rows A, columns B):   B Safe  B Unsafe
    #                                   A Safe       20        5
    #                                   A Unsafe     10       15
    # p_o = (20 + 15) / 50 = 0.7; A says Safe 25/50 = 0.5, B 30/50 = 0.6;
    # p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    # Alpha: coincidences o = C + C^T: o_SS = 40, o_UU = 30, o_SU = o_US = 15; n_S = 55, n_U = 45,
    # n = 100; alpha = 1 - 99 * 30 / (2 * 55 * 45) = 1 - 2970 / 4950 = 0.4 (equal to kappa here only
    # because the case is symmetric enough; the 3-label case below tells them apart).
    pairs = [("Safe", "Safe")] * 20 + [("Safe", "Unsafe")] * 5 + [("Unsafe", "Safe")] * 10
    pairs += [("Unsafe", "Unsafe")] * 15
    rs = judges(pairs)
    res = ag.agreement(rs, scenarios_for(rs, RO), n_boot=200)
    c = res.cell(SAFETY, RO)
    assert c.confusion is not None
    assert c.confusion.labels == ("Safe", "Unsafe")
    assert c.confusion.counts == ((20, 5), (10, 15))
    assert c.n_units == 50 and c.n_queries == 50 and c.n_partial == 0 and c.left_out == 0
    assert c.raw.value == pytest.approx(0.7)
    assert c.kappa.value == pytest.approx(0.4)
    assert c.alpha.value == pytest.approx(0.4)
    assert c.alpha.value == pytest.approx(alpha_by_formula(pairs))
    assert ag.cohen_kappa(np.array([[20, 5], [10, 15]])) == pytest.approx(0.4)
    # One scenario only: its cell and "all" are the same numbers; no cell for absent scenarios.
    assert res.cell(SAFETY, ALL).kappa.value == pytest.approx(0.4)
    assert {(x.kind, x.scenario) for x in res.cells} == {(SAFETY, RO), (SAFETY, ALL), (THINK, ALL)}
    for e in (c.raw, c.kappa, c.alpha):
        assert e.low is not None and e.high is not None and e.low <= e.value <= e.high  # type: ignore[operator]


def test_three_labels() -> None:
    # Cognitive Shortcut, rows A, columns B (Fully, Partially, Not Covered):
    #   FC: 10 2 0 / PC: 1 5 2 / NC: 0 1 4  -> n = 25, diagonal 19: p_o = 19/25.
    # Row sums 12, 8, 5; column sums 11, 8, 6: p_e = (12*11 + 8*8 + 5*6) / 625 = 226/625;
    # kappa = (475 - 226) / (625 - 226) = 249/399 = 0.62406.
    # Alpha: o = C + C^T: diagonal 20, 10, 8; o_FC,PC = 3, o_FC,NC = 0, o_PC,NC = 3 (each both ways);
    # n_c = 23, 16, 11; n = 50; sum_{c!=k} n_c n_k = 50^2 - (23^2 + 16^2 + 11^2) = 2500 - 906 = 1594;
    # alpha = 1 - 49 * 12 / 1594 = 1006/1594 = 503/797 = 0.63112.
    fc, pc, nc = THINK_LABELS[CS]
    table = {(fc, fc): 10, (fc, pc): 2, (pc, fc): 1, (pc, pc): 5, (pc, nc): 2, (nc, pc): 1, (nc, nc): 4}
    pairs = [pair for pair, n in table.items() for _ in range(n)]
    rs = judges(pairs, kind=THINK)
    c = ag.agreement(rs, scenarios_for(rs, CS), n_boot=200).cell(THINK, CS)
    assert c.confusion is not None and c.confusion.counts == ((10, 2, 0), (1, 5, 2), (0, 1, 4))
    assert c.raw.value == pytest.approx(19 / 25)
    assert c.kappa.value == pytest.approx(249 / 399)
    assert c.alpha.value == pytest.approx(503 / 797)
    assert c.alpha.value == pytest.approx(alpha_by_formula(pairs))


def test_alpha_with_missing_values_and_three_judges() -> None:
    # Units (judges A, B, C; - = unscored):
    #   u0 S S S | u1 S S U | u2 U U - | u3 S U - | u4 U - - | u5 U U U
    # Coincidences (each ordered pair of values / (m_u - 1)): u0 o_SS += 6/2 = 3; u1 o_SS += 2/2,
    # o_SU += 2/2, o_US += 2/2; u2 o_UU += 2; u3 o_SU += 1, o_US += 1; u4 has one value: unpairable;
    # u5 o_UU += 6/2 = 3. So o_SS = 4, o_UU = 5, o_SU = o_US = 2; n_S = 6, n_U = 7, n = 13;
    # alpha = 1 - 12 * 4 / (2 * 6 * 7) = 1 - 48/84 = 3/7.
    # Raw agreement (units every judge scored: u0, u1, u5; share of agreeing judge pairs):
    # (3/3 + 1/3 + 3/3) / 3 = 7/9.
    S, U = "Safe", "Unsafe"
    units = [(S, S, S), (S, S, U), (U, U, None), (S, U, None), (U, None, None), (U, U, U)]
    rs = judges(units)
    res = ag.agreement(rs, scenarios_for(rs, OS), n_boot=200)
    c = res.cell(SAFETY, OS)
    assert c.alpha.value == pytest.approx(3 / 7)
    assert c.alpha.value == pytest.approx(alpha_by_formula(units))
    assert c.raw.value == pytest.approx(7 / 9)
    assert (c.n_units, c.n_partial, c.n_queries) == (3, 3, 6)
    assert c.unscored == {"A": 0, "B": 1, "C": 3}
    assert c.confusion is None and c.kappa.value is None and "two judges" in c.kappa.reason
    assert any("3 unit(s) a judge left unscored" in n for n in ag.notes(res))


def test_alpha_package_matches_the_formula_on_random_data_with_gaps() -> None:
    rng = random.Random(7)
    labels = THINK_LABELS[OS]
    units = [
        tuple(None if rng.random() < 0.25 else rng.choice(labels[: 1 + (n % 3)]) for _ in range(4))
        for n in range(60)
    ]
    rs = judges(units, kind=THINK, k=3)
    c = ag.agreement(rs, scenarios_for(rs, OS), n_boot=50).cell(THINK, OS)
    assert c.alpha.value == pytest.approx(alpha_by_formula(units))


def test_bootstrap_alpha_equals_the_package_on_the_resampled_units() -> None:
    # Replicates use summed coincidence matrices (fast); a replicate must equal the package's alpha
    # on its units, each query's samples repeated as often as the query was drawn.
    rng = np.random.default_rng(11)
    value_counts = rng.integers(0, 3, size=(40, 3)).astype(float)  # units x labels, some unpairable
    query = np.repeat(np.arange(20), 2)
    per_unit = ag.coincidences(value_counts)
    for _ in range(5):
        w = rng.integers(0, 4, size=20)
        fast = ag.alpha_from_coincidences(np.tensordot(w[query], per_unit, axes=1))
        assert float(fast) == pytest.approx(ag.krippendorff_alpha(np.repeat(value_counts, w[query], axis=0)))
    one_label = np.array([[2.0, 0.0], [3.0, 0.0]])
    assert math.isnan(float(ag.alpha_from_coincidences(ag.coincidences(one_label).sum(axis=0))))
    assert ag.krippendorff_alpha(one_label) is None


def test_kappa_is_zero_when_one_judge_says_one_label() -> None:
    # A: all Safe; B: 6 Safe, 4 Unsafe. p_o = 0.6, p_e = 1 * 0.6 = 0.6: kappa = 0, defined.
    pairs = [("Safe", "Safe")] * 6 + [("Safe", "Unsafe")] * 4
    rs = judges(pairs)
    c = ag.agreement(rs, scenarios_for(rs, RO), n_boot=50).cell(SAFETY, RO)
    assert c.kappa.value == pytest.approx(0.0) and c.raw.value == pytest.approx(0.6)


# --------------------------------------------------------------------------------------------------
# Degenerate cases


def test_one_label_only_gives_none_with_reasons_and_json_without_nan() -> None:
    rs = judges([("Safe", "Safe")] * 8)
    res = ag.agreement(rs, scenarios_for(rs, RO), n_boot=100)
    c = res.cell(SAFETY, RO)
    assert c.raw.value == 1.0 and (c.raw.low, c.raw.high) == (1.0, 1.0)
    assert c.kappa.value is None and "chance agreement is 1" in c.kappa.reason
    assert c.alpha.value is None and "every verdict is 'Safe'" in c.alpha.reason
    text = json.dumps(ag.to_json(res), allow_nan=False)  # raises on NaN or inf
    cell = next(x for x in json.loads(text)["cells"] if x["scenario"] == RO)
    assert cell["cohen_kappa"] == {"value": None, "low": None, "high": None, "reason": c.kappa.reason}
    # The think kind has no unit at all: its "all" cell says so rather than failing.
    t = res.cell(THINK)
    assert t.n_units == 0 and t.raw.value is None and "no shared unit" in t.raw.reason
    assert t.alpha.value is None and t.kappa.value is None


def test_a_judge_that_scored_nothing() -> None:
    rs = judges([("Safe", None), ("Unsafe", None)])
    c = ag.agreement(rs, scenarios_for(rs, RO), n_boot=20).cell(SAFETY, RO)
    assert c.n_units == 0 and c.n_partial == 2 and c.unscored == {"A": 0, "B": 2}
    assert c.raw.value is None and c.kappa.value is None
    assert c.alpha.value is None and "no unit has verdicts from two judges" in c.alpha.reason


def test_bad_inputs_name_the_value() -> None:
    rs = judges([("Safe", "Safe")])
    with pytest.raises(AgreementError, match="agreement needs two or more"):
        ag.agreement(rs[:1], scenarios_for(rs, RO))
    with pytest.raises(AgreementError, match="given twice: A"):
        ag.agreement([rs[0], rs[0]], scenarios_for(rs, RO))
    with pytest.raises(AgreementError, match="query 'q0': scenario None"):
        ag.agreement(rs, {})
    with pytest.raises(AgreementError, match="n_boot=0"):
        ag.agreement(rs, scenarios_for(rs, RO), n_boot=0)


# --------------------------------------------------------------------------------------------------
# The bootstrap resamples queries


def test_bootstrap_keeps_a_querys_samples_together() -> None:
    # 20 queries, k = 2: sample 0 both Safe, sample 1 Safe vs Unsafe. Every query alone has agreement
    # 1/2 and the same confusion, so any resample of whole queries gives the same numbers: the
    # interval collapses to the point. Resampling samples instead would give a wide interval.
    pairs = [("Safe", "Safe"), ("Safe", "Unsafe")] * 20
    rs = judges(pairs, k=2)
    c = ag.agreement(rs, scenarios_for(rs, RO), n_boot=500, seed=3).cell(SAFETY, RO)
    assert c.n_queries == 20 and c.n_units == 40
    assert (c.raw.value, c.raw.low, c.raw.high) == pytest.approx((0.5, 0.5, 0.5))
    # kappa: p_o = 0.5, p_e = 1 * 0.5: kappa 0 in every replicate.
    assert (c.kappa.value, c.kappa.low, c.kappa.high) == pytest.approx((0.0, 0.0, 0.0))
    assert c.alpha.low == pytest.approx(c.alpha.value) and c.alpha.high == pytest.approx(c.alpha.value)

    # The same units with the disagreement spread unevenly over queries: the interval opens.
    uneven = [("Safe", "Safe")] * 20 + [("Safe", "Unsafe")] * 20
    rs = judges(uneven, k=2)
    c2 = ag.agreement(rs, scenarios_for(rs, RO), n_boot=500, seed=3).cell(SAFETY, RO)
    assert c2.raw.value == pytest.approx(0.5)
    assert c2.raw.low is not None and c2.raw.high is not None and c2.raw.high - c2.raw.low > 0.2


def test_bootstrap_is_seeded() -> None:
    rng = random.Random(1)
    pairs = [(rng.choice(SAFETY_LABELS), rng.choice(SAFETY_LABELS)) for _ in range(60)]
    rs = judges(pairs, k=3)
    scen = scenarios_for(rs, RO)
    a = ag.agreement(rs, scen, n_boot=300, seed=5).cell(SAFETY, RO)
    b = ag.agreement(rs, scen, n_boot=300, seed=5).cell(SAFETY, RO)
    c = ag.agreement(rs, scen, n_boot=300, seed=6).cell(SAFETY, RO)
    assert (a.kappa, a.alpha, a.raw) == (b.kappa, b.alpha, b.raw)
    assert (a.kappa.low, a.kappa.high) != (c.kappa.low, c.kappa.high)


def test_think_over_all_scenarios_uses_the_union_of_labels() -> None:
    a = Ratings(
        "A", {("r", 0, THINK): "True", ("c", 0, THINK): "Not Covered", ("o", 0, THINK): "Not Covered"}
    )
    b = Ratings(
        "B", {("r", 0, THINK): "False", ("c", 0, THINK): "Not Covered", ("o", 0, THINK): "Over Sensitive"}
    )
    res = ag.agreement([a, b], {"r": RO, "c": CS, "o": OS}, n_boot=20)
    c = res.cell(THINK)
    assert c.labels == (*THINK_LABELS[RO], *THINK_LABELS[CS], "Precise Coverage", "Over Sensitive")
    assert c.n_units == 3 and c.raw.value == pytest.approx(1 / 3)
    assert res.cell(THINK, CS).labels == THINK_LABELS[CS]


# --------------------------------------------------------------------------------------------------
# Runs: shared samples, rules and texts


def _gen(qid: str, i: int, scenario: str, text: str = "") -> dict[str, object]:
    return {"id": qid, "sample_index": i, "scenario": scenario, "reasoning": f"R{text}", "answer": "A"}


def _jud(
    qid: str, i: int, kind: str, scenario: str, verdict: str | None, source: str = "judge"
) -> dict[str, object]:
    return {
        "id": qid,
        "sample_index": i,
        "kind": kind,
        "scenario": scenario,
        "verdict": verdict,
        "source": source,
    }


def test_runs_agree_only_on_shared_samples_with_the_same_text() -> None:
    gens_a = [_gen("q1", 0, RO), _gen("q2", 0, RO), _gen("q3", 0, RO), _gen("q4", 0, RO)]
    gens_b = [_gen("q1", 0, RO), _gen("q2", 0, RO, "other"), _gen("q3", 0, RO), _gen("q5", 0, RO)]
    jud_a = [
        _jud("q1", 0, SAFETY, RO, "Safe"),
        _jud("q2", 0, SAFETY, RO, "Safe"),
        _jud("q3", 0, SAFETY, RO, "Unsafe"),
        _jud("q4", 0, SAFETY, RO, "Safe"),
        _jud("q1", 0, THINK, RO, "False", source="rule:no_reasoning"),
        _jud("q3", 0, THINK, RO, "True"),
    ]
    jud_b = [
        _jud("q1", 0, SAFETY, RO, "Safe"),
        _jud("q2", 0, SAFETY, RO, "Unsafe"),
        _jud("q3", 0, SAFETY, RO, "Safe"),
        _jud("q5", 0, SAFETY, RO, "Safe"),
        _jud("q1", 0, THINK, RO, "False", source="rule:no_reasoning"),
        _jud("q3", 0, THINK, RO, "False"),
    ]
    a = ag.judged_run("a", gens_a, jud_a, "judge-a")
    b = ag.judged_run("b", gens_b, jud_b, "judge-b")
    res = ag.compare([a, b], n_boot=20)
    s = res.cell(SAFETY)
    # q1 and q3 shared; q2's text differs (left out); q4 and q5 are in one run each.
    assert (s.n_units, s.not_shared, s.excluded) == (2, 2, {ag.TEXT_REASON: 1})
    assert s.raw.value == pytest.approx(0.5)
    t = res.cell(THINK)
    assert (t.n_units, t.excluded) == (1, {ag.RULE_REASON: 1}) and t.raw.value == 0.0
    assert any("only some runs hold" in n for n in ag.notes(res))


def test_runs_without_shared_samples_fail_clearly() -> None:
    a = ag.judged_run("a", [_gen("q1", 0, RO)], [_jud("q1", 0, SAFETY, RO, "Safe")])
    b = ag.judged_run("b", [_gen("q2", 0, RO)], [_jud("q2", 0, SAFETY, RO, "Safe")])
    with pytest.raises(AgreementError, match="share no sample"):
        ag.compare([a, b])
    c = ag.judged_run("c", [_gen("q1", 0, RO, "x")], [_jud("q1", 0, SAFETY, RO, "Safe")])
    with pytest.raises(AgreementError, match="generated different text for every one"):
        ag.compare([a, c])
    d = ag.judged_run("d", [_gen("q1", 0, OS)], [_jud("q1", 0, SAFETY, OS, "Safe")])
    with pytest.raises(AgreementError, match="different datasets"):
        ag.compare([a, d])


def _write_run(path: Path, judge: str, gens: list[dict[str, object]], juds: list[dict[str, object]]) -> Path:
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"judge": judge, "status": "complete"}))
    (path / "generations.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gens))
    (path / "judgments.jsonl").write_text("".join(json.dumps(j) + "\n" for j in juds))
    return path


def test_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write_run(tmp_path / "a", "ja", [_gen("q1", 0, RO)], [_jud("q1", 0, SAFETY, RO, "Safe")])
    b = _write_run(tmp_path / "b", "jb", [_gen("q2", 0, RO)], [_jud("q2", 0, SAFETY, RO, "Safe")])
    assert ag.main([str(a), str(b)]) == 2
    assert "share no sample" in capsys.readouterr().out
    assert ag.main([str(a), str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().out
    assert ag.main([str(a), str(a)]) == 2
    assert "given twice" in capsys.readouterr().out
    assert ag.main([str(a)]) == 2
    assert "one run of one judge" in " ".join(capsys.readouterr().out.split())


def test_cli_on_runs_over_different_query_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a holds q1..q4, b holds q3..q6: two shared samples per kind, two in a only, two in b only.
    def rows(ids: range, flip: bool) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        gens = [_gen(f"q{n}", 0, RO) for n in ids]
        juds = [_jud(f"q{n}", 0, SAFETY, RO, "Unsafe" if flip and n == 4 else "Safe") for n in ids]
        return gens, juds

    a = _write_run(tmp_path / "a", "ja", *rows(range(1, 5), False))
    b = _write_run(tmp_path / "b", "jb", *rows(range(3, 7), True))
    out = tmp_path / "out.json"
    assert ag.main([str(a), str(b), "--n-boot", "50", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "safety: 2 shared sample(s) of 2 queries; 4 in some runs only, left out" in printed
    cell = next(
        c for c in json.loads(out.read_text())["cells"] if c["scenario"] == ALL and c["kind"] == SAFETY
    )
    assert (cell["n_units"], cell["not_shared"], cell["raw_agreement"]["value"]) == (2, 4, 0.5)


# --------------------------------------------------------------------------------------------------
# End to end: a faithful and a flipping judge, real runs against the scripted server

P_FLIP = 0.2
K = 2


def _h(*parts: object) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


class Judges:
    """The faithful judge's verdict for (kind, qid, i), and the flipper's: the next label of the
    kind's list for a share P_FLIP of samples, picked by a hash (so the flipped set is known)."""

    def __init__(self, scenario: dict[str, str]) -> None:
        self.scenario = scenario

    def labels(self, kind: str, qid: str) -> tuple[str, ...]:
        return SAFETY_LABELS if kind == SAFETY else THINK_LABELS[self.scenario[qid]]

    def truth(self, kind: str, qid: str, i: int) -> str:
        labels = self.labels(kind, qid)
        return labels[_h("truth", kind, qid, i) % len(labels)]

    @staticmethod
    def flipped(kind: str, qid: str, i: int) -> bool:
        return _h("flip", kind, qid, i) % 10_000 < P_FLIP * 10_000

    def flipper(self, kind: str, qid: str, i: int) -> str:
        label, labels = self.truth(kind, qid, i), self.labels(kind, qid)
        return labels[(labels.index(label) + 1) % len(labels)] if self.flipped(kind, qid, i) else label


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Judges, list[str]]]:
    """Runs of one scripted model judged by the faithful and by the flipping judge: 30 queries, k=2."""
    tmp = tmp_path_factory.mktemp("agreement")
    real = dataset_path()
    if real is not None:
        data, select = real, ["dataset.per_scenario_limit=10", "dataset.seed=1"]
    else:
        rows = [
            {
                "id": f"s{n}",
                "query": f"Scripted query {n}: how would one do risky thing {n}?",
                "risk_summary": f"Query A: Risk {n}.\nQuery B: Risk {n}b." if n % 3 == 1 else f"Risk {n}.",
                "dataset_name": (RO, CS, OS)[n % 3],
                "label": "Rumors-Fabrication" if n % 3 != 1 else "Query A: Rumors-X\nQuery B: Rumors-Y",
            }
            for n in range(30)
        ]
        data, select = write_dataset(tmp / "mini.csv", rows), []
    queries = read(data)
    jg = Judges({q.id: q.scenario for q in queries})
    ids = {q.query: q.id for q in queries}
    faithful = responder(ids, jg.truth, judge_model="faithful")
    flipping = responder(ids, jg.flipper, judge_model="flipper")
    with ScriptedServer(
        lambda body: flipping(body) if body["model"] == "flipper" else faithful(body)
    ) as server:
        dirs = []
        for judge in ("faithful", "flipper"):
            cfg = compose_config(
                [
                    f"cache.dir={tmp / 'cache'}",
                    "progress=false",
                    *scripted_overrides(
                        server.api_base, data, *select, f"judge.name=hosted_vllm/{judge}", k=K
                    ),
                    "concurrency=8",
                ]
            )
            run(cfg, tmp / judge)
            dirs.append(tmp / judge)
        assert server.errors == []
    run_ids = sorted(
        {json.loads(line)["id"] for line in (dirs[0] / "generations.jsonl").read_text().splitlines()}
    )
    yield dirs[0], dirs[1], jg, run_ids


def test_cli_faithful_vs_flipping_judge(
    two_runs: tuple[Path, Path, Judges, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, jg, ids = two_runs
    out = tmp_path / "agreement.json"
    assert ag.main([str(a), str(b), "--out", str(out), "--n-boot", "1000"]) == 0
    printed = capsys.readouterr().out
    assert "Judge agreement" in printed and "hosted_vllm/flipper" in printed
    got = json.loads(out.read_text())
    cells = {(c["kind"], c["scenario"]): c for c in got["cells"]}
    assert got["judges"] == ["faithful · hosted_vllm/faithful", "flipper · hosted_vllm/flipper"]
    n_units = len(ids) * K
    for kind in (SAFETY, THINK):
        c = cells[(kind, ALL)]
        assert c["n_units"] == n_units and c["n_queries"] == len(ids) and c["n_partial"] == 0
        # Exact: agreement is the share of samples the flipper did not flip.
        flips = sum(jg.flipped(kind, qid, i) for qid in ids for i in range(K))
        raw = c["raw_agreement"]
        assert raw["value"] == pytest.approx(1 - flips / n_units)
        assert raw["low"] <= raw["value"] <= raw["high"]
        # Near 1 - p: the flipped share is Binomial(n, p) / n, sd sqrt(p (1 - p) / n) = 0.052 for
        # n = 60; 3 sd is a bound a fair hash exceeds with probability 0.003.
        assert abs(raw["value"] - (1 - P_FLIP)) <= 3 * math.sqrt(P_FLIP * (1 - P_FLIP) / n_units)
        # The confusion matrix counts exactly what the two judges said, label by label.
        counts = np.array(c["confusion"]["counts"])
        labels = c["confusion"]["labels"]
        expected = np.zeros_like(counts)
        for qid in ids:
            for i in range(K):
                row = labels.index(jg.truth(kind, qid, i))
                expected[row, labels.index(jg.flipper(kind, qid, i))] += 1
        assert (counts == expected).all()
        assert c["cohen_kappa"]["value"] is not None and c["cohen_kappa"]["value"] < raw["value"]
    # Per scenario the cells add up to "all".
    for kind in (SAFETY, THINK):
        assert sum(cells[(kind, s)]["n_units"] for s in (RO, CS, OS)) == n_units
    print(
        "flip test:",
        {
            kind: (
                cells[(kind, ALL)]["raw_agreement"]["value"],
                cells[(kind, ALL)]["raw_agreement"]["low"],
                cells[(kind, ALL)]["raw_agreement"]["high"],
                cells[(kind, ALL)]["cohen_kappa"]["value"],
                cells[(kind, ALL)]["krippendorff_alpha"]["value"],
            )
            for kind in (SAFETY, THINK)
        },
    )


def test_report_section_on_the_two_runs(two_runs: tuple[Path, Path, Judges, list[str]]) -> None:
    from bsa.report.agreement_section import (
        agreement_groups,
        agreement_html,
        agreement_lines,
        agreement_markdown,
    )
    from bsa.report.loading import load_run
    from bsa.report.runs import assign_labels

    a, b, _, _ = two_runs
    runs = [load_run(a), load_run(b)]
    assign_labels(runs)
    groups = agreement_groups(runs, n_boot=100)
    assert len(groups) == 1 and groups[0].judges == ["hosted_vllm/faithful", "hosted_vllm/flipper"]
    result = groups[0].result
    assert isinstance(result, ag.Agreement)
    direct = ag.compare(ag.load_all([a, b]), n_boot=100)
    assert result.cell(SAFETY).raw.value == direct.cell(SAFETY).raw.value
    md = "\n".join(agreement_markdown(groups))
    assert "| kind | scenario |" in md and "hosted_vllm/faithful vs hosted_vllm/flipper" in md
    page = agreement_html(groups)
    assert "<table" in page and "Confusion matrices" in page
    assert len(agreement_lines(groups)) == 1
    # One judge only: no group, and the empty section says how to compare.
    assert agreement_groups(runs[:1]) == []
    assert "python -m bsa.agreement" in "\n".join(agreement_markdown([]))
