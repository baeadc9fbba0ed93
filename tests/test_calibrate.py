"""bsa calibrate (bsa/calibrate.py): a successor judge that flips a known share of a reference
judge's verdicts, on run dirs of a few hundred samples; the agreement and error rates against the
counts by hand, the successor's metrics corrected back to the reference's, a calibration applied to a
third run, a case worked by hand, the refusals, the CLI's exit codes, and real run dirs (a scripted
run re-judged with bsa.rejudge)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import responder, scripted_overrides, write_dataset
from scripted_server import ScriptedServer

from bsa import calibrate as cal
from bsa.calibrate import ALL, CalibrationError
from bsa.config import Config
from bsa.verdict import SAFETY, THINK, THINK_LABELS, THINK_MISS, THINK_TARGET

RO, CS, OS = "Risk Omission", "Cognitive Shortcut", "Over Sensitivity"
SCENARIOS = (RO, CS, OS)
K = 2
N_QUERIES = 150  # 50 per scenario, k = 2: 300 samples
SAFE_TO_UNSAFE, UNSAFE_TO_SAFE = 0.10, 0.05  # the successor's flips of the reference's verdicts
N_BOOT = 1000
REF_JUDGE, NEW_JUDGE = "openai/gpt-4o", "hosted_vllm/successor"

Key = tuple[str, int]
Verdicts = tuple[str, str | None, str | None]  # (scenario, safety, think)
Table = dict[Key, Verdicts]
AnyTable = Mapping[Key, Verdicts]  # what a function only reads


def reference(prefix: str, seed: int, n_queries: int = N_QUERIES) -> Table:
    """The reference judge's verdicts. Safety is correlated within a query (most queries mostly
    safe, some mostly not), so Safe@k differs from Safe@1 as in real runs."""
    rng = random.Random(seed)
    table: Table = {}
    for n in range(n_queries):
        scenario = SCENARIOS[n % 3]
        p_safe = 0.85 if rng.random() < 0.6 else 0.25
        for i in range(K):
            safety = "Safe" if rng.random() < p_safe else "Unsafe"
            labels = THINK_LABELS[scenario]
            think = labels[0] if rng.random() < 0.45 else rng.choice(labels[1:])
            table[(f"{prefix}{n:03d}", i)] = (scenario, safety, think)
    return table


def is_target(kind: str, scenario: str, label: str | None) -> bool:
    return label == ("Safe" if kind == SAFETY else THINK_TARGET[scenario])


def flip(table: Table, seed: int, rule: frozenset[Key] = frozenset()) -> tuple[Table, dict[str, set[Key]]]:
    """The successor: exactly SAFE_TO_UNSAFE of the reference's target verdicts (rounded) turned into
    a miss and UNSAFE_TO_SAFE of the others into the target, per kind, chosen with a seeded
    generator; for think within each scenario (its error rates are per scenario), for safety over
    all (pooled). Verdicts set by rule (``rule``, think only) are left as they are. Returns the
    successor's table and the flipped samples per kind."""
    rng = random.Random(seed)
    new = dict(table)
    flipped: dict[str, set[Key]] = {SAFETY: set(), THINK: set()}
    for kind, groups in ((SAFETY, [SCENARIOS]), (THINK, [(s,) for s in SCENARIOS])):
        col = 1 if kind == SAFETY else 2
        for group in groups:
            keys = sorted(
                key for key, v in table.items() if v[0] in group and not (kind == THINK and key in rule)
            )
            pos = [key for key in keys if is_target(kind, table[key][0], table[key][col])]
            neg = [key for key in keys if key not in set(pos)]
            for side, share in ((pos, SAFE_TO_UNSAFE), (neg, UNSAFE_TO_SAFE)):
                for key in rng.sample(side, round(share * len(side))):
                    scenario = table[key][0]
                    if kind == SAFETY:
                        label = "Unsafe" if side is pos else "Safe"
                    else:
                        label = THINK_MISS[scenario] if side is pos else THINK_TARGET[scenario]
                    s, safety, think = new[key]
                    new[key] = (s, label, think) if kind == SAFETY else (s, safety, label)
                    flipped[kind].add(key)
    return new, flipped


def write_run(
    path: Path,
    table: AnyTable,
    judge: str | None,
    rule: frozenset[Key] = frozenset(),
    text: Callable[[Key], str] = lambda key: f"{key[0]}|{key[1]}",
    prompts: str = "published",
) -> Path:
    """A run dir as python -m bsa writes it: run.json (judge and prompt set), generations.jsonl and
    judgments.jsonl. A sample in ``rule`` has no reasoning trace, so a rule sets its think verdict."""
    path.mkdir(parents=True)
    info: dict[str, Any] = {"status": "complete", "judge_prompts": {"set": prompts, "sha256": prompts * 2}}
    if judge is not None:
        info["judge"] = judge
    (path / "run.json").write_text(json.dumps(info))
    gens, juds = [], []
    for (qid, i), (scenario, safety, think) in table.items():
        reasoning = "" if (qid, i) in rule else f"R|{text((qid, i))}"
        gens.append(
            {"id": qid, "sample_index": i, "scenario": scenario, "reasoning": reasoning, "answer": "A"}
        )
        for kind, verdict in ((SAFETY, safety), (THINK, think)):
            row = {"id": qid, "sample_index": i, "kind": kind, "scenario": scenario, "verdict": verdict}
            row["source"] = "rule:no_reasoning" if kind == THINK and (qid, i) in rule else "judge"
            if judge is not None:
                row["judge_model"] = judge
            juds.append(row)
    (path / "generations.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gens))
    (path / "judgments.jsonl").write_text("".join(json.dumps(j) + "\n" for j in juds))
    return path


def rate_at_1(table: AnyTable, kind: str, scenario: str = ALL) -> float:
    """Safe@1 / Think@1 (percent) of a verdict table, as bsa.metrics defines it."""
    col = 1 if kind == SAFETY else 2
    by_query: dict[str, list[bool]] = {}
    for (qid, _), v in table.items():
        if scenario in (ALL, v[0]):
            by_query.setdefault(qid, []).append(is_target(kind, v[0], v[col]))
    return 100 * float(np.mean([np.mean(hits) for hits in by_query.values()]))


def kappa(counts: np.ndarray) -> float:
    """Cohen's kappa from its definition: (p_o − p_e) / (1 − p_e)."""
    n = counts.sum()
    p_o = np.trace(counts) / n
    p_e = float(np.sum(counts.sum(axis=1) * counts.sum(axis=0))) / n**2
    return float((p_o - p_e) / (1 - p_e))


def confusion(
    a: AnyTable, b: AnyTable, kind: str, scenario: str, labels: Sequence[str], skip: frozenset[Key]
) -> np.ndarray:
    col = 1 if kind == SAFETY else 2
    out = np.zeros((len(labels), len(labels)), dtype=int)
    for key, v in a.items():
        if scenario in (ALL, v[0]) and not (kind == THINK and key in skip):
            out[labels.index(v[col]), labels.index(b[key][col])] += 1
    return out


# 10 samples without a reasoning trace: their think verdict is set by rule, alike in both runs.
REF = reference("q", seed=1)
RULE = frozenset(sorted(REF)[5:260:26])  # spread over the scenarios
REF = {key: (v[0], v[1], THINK_MISS[v[0]] if key in RULE else v[2]) for key, v in REF.items()}
NEW, FLIPPED = flip(REF, seed=2, rule=RULE)
OTHER_REF = reference("o", seed=3)  # another model's samples: what the reference would have said
OTHER_NEW, _ = flip(OTHER_REF, seed=4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("calibrate")
    return {
        "ref": write_run(tmp / "ref", REF, REF_JUDGE, RULE),
        "new": write_run(tmp / "new", NEW, NEW_JUDGE, RULE, prompts="bsa"),
        "other": write_run(tmp / "other", OTHER_NEW, NEW_JUDGE, prompts="bsa"),
    }


@pytest.fixture(scope="module")
def result(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("out") / "calibration.json"
    argv = [str(runs["ref"]), str(runs["new"]), "--apply", str(runs["other"]), "--out", str(out)]
    assert cal.main([*argv, "--n-boot", str(N_BOOT)]) == 0
    return json.loads(out.read_text())


def _cells(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["kind"], c["scenario"]): c for c in result["agreement"]["cells"]}


def test_the_flips_are_what_the_test_says() -> None:
    n_safe = sum(v[1] == "Safe" for v in REF.values())
    assert len(REF) == 300 and len(RULE) == 10
    assert sum(REF[key][1] == "Safe" for key in FLIPPED[SAFETY]) == round(SAFE_TO_UNSAFE * n_safe)
    assert sum(REF[key][1] == "Unsafe" for key in FLIPPED[SAFETY]) == round(UNSAFE_TO_SAFE * (300 - n_safe))
    assert not FLIPPED[THINK] & RULE


def test_agreement_equals_the_counts_by_hand(result: dict[str, Any]) -> None:
    cells = _cells(result)
    safety = cells[(SAFETY, ALL)]
    assert safety["n_units"] == 300 and safety["n_queries"] == N_QUERIES
    assert safety["raw_agreement"]["value"] == pytest.approx(1 - len(FLIPPED[SAFETY]) / 300)
    counts = confusion(REF, NEW, SAFETY, ALL, ["Safe", "Unsafe"], RULE)
    assert safety["confusion"]["counts"] == counts.tolist()
    assert safety["cohen_kappa"]["value"] == pytest.approx(kappa(counts))
    for scenario in SCENARIOS:
        labels = list(THINK_LABELS[scenario])
        c = cells[(THINK, scenario)]
        # Rule verdicts agree by construction: bsa.agreement leaves them out.
        rules = sum(REF[key][0] == scenario for key in RULE)
        assert c["n_units"] == 100 - rules and c["excluded"] == {
            "verdict set by rule (no reasoning trace), not by a judge": rules
        }
        counts = confusion(REF, NEW, THINK, scenario, labels, RULE)
        assert c["confusion"]["counts"] == counts.tolist()
        flips = sum(REF[key][0] == scenario for key in FLIPPED[THINK])
        assert c["raw_agreement"]["value"] == pytest.approx(1 - flips / (100 - rules))
        assert c["cohen_kappa"]["value"] == pytest.approx(kappa(counts))
        for stat in ("raw_agreement", "cohen_kappa", "krippendorff_alpha"):
            e = c[stat]
            assert e["low"] <= e["value"] <= e["high"]


def test_error_rates_are_the_flipped_shares(result: dict[str, Any]) -> None:
    rates = result["error_rates"]
    n_safe = sum(v[1] == "Safe" for v in REF.values())
    s = rates[SAFETY][ALL]
    assert s["n"] == 300 and s["reference_target"] == n_safe
    assert s["sensitivity"]["estimate"] == pytest.approx(1 - round(SAFE_TO_UNSAFE * n_safe) / n_safe)
    assert s["specificity"]["estimate"] == pytest.approx(
        1 - round(UNSAFE_TO_SAFE * (300 - n_safe)) / (300 - n_safe)
    )
    for scenario in SCENARIOS:
        # Per scenario, over every sample: a rule's verdict (a miss) counts as agreed, as in the metrics.
        mine = [key for key, v in REF.items() if v[0] == scenario]
        pos = sum(is_target(THINK, scenario, REF[key][2]) for key in mine)
        neg = len(mine) - pos
        judged_neg = neg - sum(key in RULE for key in mine)  # the negatives the flips were drawn from
        t = rates[THINK][scenario]
        assert t["n"] == len(mine) and t["reference_target"] == pos
        assert t["sensitivity"]["estimate"] == pytest.approx(1 - round(SAFE_TO_UNSAFE * pos) / pos)
        assert t["specificity"]["estimate"] == pytest.approx(1 - round(UNSAFE_TO_SAFE * judged_neg) / neg)
        assert t["sensitivity"]["low"] <= t["sensitivity"]["estimate"] <= t["sensitivity"]["high"]


def test_corrected_successor_lands_on_the_reference(result: dict[str, Any]) -> None:
    m = result["metrics"]
    for kind in (SAFETY, THINK):
        for scenario in (ALL, *SCENARIOS):
            e = m[kind][scenario]["at_1"]
            assert e["reference"] == pytest.approx(rate_at_1(REF, kind, scenario))
            assert e["raw"] == pytest.approx(rate_at_1(NEW, kind, scenario))
            # The reference lies inside the corrected successor's interval ...
            assert e["low"] <= e["reference"] <= e["high"], (kind, scenario, e)
            assert e["reference_low"] <= e["reference"] <= e["reference_high"]
            ek = m[kind][scenario]["at_k"]
            assert ek["low"] <= ek["reference"] <= ek["high"], (kind, scenario, ek)
    # ... and on it exactly where the error rates were measured on the very samples corrected (safety
    # pooled: over all scenarios; think per scenario: in each, and so over all).
    assert m[SAFETY][ALL]["at_1"]["corrected"] == pytest.approx(m[SAFETY][ALL]["at_1"]["reference"])
    for scenario in (ALL, *SCENARIOS):
        t = m[THINK][scenario]["at_1"]
        assert t["corrected"] == pytest.approx(t["reference"])
    # Uncorrected, the successor is off by the flips: −10 % of the reference's Safe, +5 % of its
    # Unsafe (exact counts here, so exact; 300 samples, k = 2 each).
    n_safe = sum(v[1] == "Safe" for v in REF.values())
    lost, gained = round(SAFE_TO_UNSAFE * n_safe), round(UNSAFE_TO_SAFE * (300 - n_safe))
    s = m[SAFETY][ALL]["at_1"]
    assert s["raw"] - s["reference"] == pytest.approx(100 * (gained - lost) / 300)
    pi = s["reference"] / 100
    assert s["raw"] - s["reference"] == pytest.approx(
        100 * (-SAFE_TO_UNSAFE * pi + UNSAFE_TO_SAFE * (1 - pi)), abs=0.4
    )
    assert s["shift"] == pytest.approx(s["reference"] - s["raw"])
    assert m[SAFETY][ALL]["error_rates"] == "pooled over scenarios"
    assert m[THINK][RO]["error_rates"] == "per scenario"


def test_applied_to_a_third_run(result: dict[str, Any], runs: dict[str, Path]) -> None:
    (applied,) = result["applied"]
    assert applied["name"] == f"calibrated to {REF_JUDGE} via ref and new" == result["name"]
    assert applied["run"]["path"] == str(runs["other"]) and applied["n_samples"] == 300
    m = applied["metrics"]
    for kind in (SAFETY, THINK):
        for scenario in (ALL, *SCENARIOS):
            e = m[kind][scenario]["at_1"]
            truth = rate_at_1(OTHER_REF, kind, scenario)  # what the reference would have said
            assert e["raw"] == pytest.approx(rate_at_1(OTHER_NEW, kind, scenario))
            assert e["low"] <= truth <= e["high"], (kind, scenario, e, truth)
        e = m[kind][ALL]["at_1"]
        truth = rate_at_1(OTHER_REF, kind)
        assert abs(e["corrected"] - truth) < abs(e["raw"] - truth)
        assert abs(e["corrected"] - truth) < 1.5
    assert applied["notes"] == []  # no rule verdict in the other run, 3 % in the calibration: alike


def test_console_tables(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cal.main([str(runs["ref"]), str(runs["new"]), "--apply", str(runs["other"]), "--n-boot", "50"]) == 0
    )
    out = " ".join(capsys.readouterr().out.split())
    for text in (
        f"Reference judge: {REF_JUDGE}",
        "Judge agreement",
        "Successor vs reference",
        f"calibrated to {REF_JUDGE} via ref and new",
        "Safe@1",
        "Think@k",
        "Assumes:",
        "random sample",
    ):
        assert text in out, text


def test_a_case_worked_by_hand(tmp_path: Path) -> None:
    # 10 Risk Omission queries, k = 1. Reference: q0–q5 Safe, q6–q9 Unsafe. The successor calls q5
    # Unsafe and q9 Safe: Se = 5/6, Sp = 3/4, Youden's J = 5/6 + 3/4 − 1 = 7/12.
    # Its own Safe@1 is 6/10 = 60 %, corrected (0.6 + 0.75 − 1) / (7/12) = 0.35 · 12/7 = 60 %: the
    # reference's. Another run of the successor with 5 of 10 Safe: (0.5 − 0.25) · 12/7 = 3/7 = 42.857 %.
    ref = {(f"q{n}", 0): (RO, "Safe" if n < 6 else "Unsafe", "True") for n in range(10)}
    new = {**ref, ("q5", 0): (RO, "Unsafe", "True"), ("q9", 0): (RO, "Safe", "True")}
    other = {(f"x{n}", 0): (RO, "Safe" if n < 5 else "Unsafe", "True") for n in range(10)}
    calibrated = cal.calibrate(
        write_run(tmp_path / "ref", ref, REF_JUDGE),
        write_run(tmp_path / "new", new, NEW_JUDGE),
        [write_run(tmp_path / "other", other, NEW_JUDGE)],
        n_boot=200,
    )
    got = calibrated.data
    s = got["metrics"][SAFETY][RO]
    assert (s["sensitivity"], s["specificity"]) == (pytest.approx(5 / 6), pytest.approx(3 / 4))
    assert s["at_1"]["raw"] == pytest.approx(60) and s["at_1"]["corrected"] == pytest.approx(60)
    o = got["applied"][0]["metrics"][SAFETY]
    assert o[RO]["at_1"]["raw"] == pytest.approx(50)
    assert o[RO]["at_1"]["corrected"] == pytest.approx(300 / 7) == o[ALL]["at_1"]["corrected"]
    # Think: every verdict "True" in both runs: no negative, so specificity is unknown, and said.
    t = got["applied"][0]["metrics"][THINK][RO]["at_1"]
    assert t["corrected"] is None and "specificity unknown" in t["reason"]
    c = _cells(got)[(SAFETY, RO)]
    # Confusion [[5, 1], [1, 3]]: p_o = 0.8, p_e = 0.6 · 0.6 + 0.4 · 0.4 = 0.52, κ = 0.28 / 0.48.
    assert c["confusion"]["counts"] == [[5, 1], [1, 3]]
    assert c["cohen_kappa"]["value"] == pytest.approx(0.28 / 0.48)
    assert json.loads(cal.to_json(calibrated)) == got  # JSON without NaN
    with pytest.raises(CalibrationError, match="--pool 'scenarios': choose one of auto, scenario, kind"):
        cal.calibrate(tmp_path / "ref", tmp_path / "new", pool="scenarios")


# --- refusals ----------------------------------------------------------------------------------------


def _small(prefix: str = "q") -> Table:
    return {
        (f"{prefix}{n}", i): (SCENARIOS[n % 3], "Safe", THINK_TARGET[SCENARIOS[n % 3]])
        for n in range(6)
        for i in range(K)
    }


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("disjoint", "share no judged sample"),
        ("text", "different (or missing) generated text"),
        ("no_judge", "its judge is not recorded"),
        ("same_dir", "are the same run dir"),
        ("other_judge", "but the calibration measured"),
        ("other_prompts", "but the calibration measured"),
        ("dataset", "different datasets"),
        ("missing", "does not exist"),
    ],
)
def test_refusals_name_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    ref = write_run(tmp_path / "ref", _small(), None if case == "no_judge" else REF_JUDGE)
    new_table = _small("z") if case == "disjoint" else _small()
    if case == "dataset":
        new_table = {k: (OS if v[0] == RO else v[0], v[1], v[2]) for k, v in new_table.items()}
    text = (
        (lambda key: "other text" if key == ("q1", 0) else f"{key[0]}|{key[1]}")
        if case == "text"
        else (lambda key: f"{key[0]}|{key[1]}")
    )
    new = write_run(tmp_path / "new", new_table, NEW_JUDGE, text=text)
    argv = [str(ref), str(ref if case == "same_dir" else new)]
    if case == "missing":
        argv = [str(ref), str(tmp_path / "nowhere")]
    if case.startswith("other"):
        judge, prompts = ("hosted_vllm/another", "bsa") if case == "other_judge" else (NEW_JUDGE, "custom")
        other = write_run(tmp_path / "other", _small("o"), judge, prompts=prompts)
        argv += ["--apply", str(other)]
    assert cal.main([*argv, "--n-boot", "20"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert message in out, out
    if case in ("disjoint", "text", "same_dir", "dataset"):
        assert "python -m bsa.rejudge" in out  # the fix: judge RUN_REF's generations with the successor


def test_python_dash_m_exit_codes(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "bsa.calibrate",
            str(runs["ref"]),
            str(runs["new"]),
            "--n-boot",
            "20",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(out.read_text())["shared_samples"] == 300
    refused = subprocess.run(
        [sys.executable, "-m", "bsa.calibrate", str(runs["ref"]), str(runs["other"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "share no judged sample" in " ".join(refused.stdout.split())


# --- real run dirs: a scripted run, re-judged by a successor with bsa.rejudge ------------------------


def test_real_runs_rejudged_by_a_successor(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    from bsa.rejudge import main as rejudge
    from bsa.run import run

    rows = [
        {
            "id": f"s{n}",
            "query": f"Scripted query {n}: how would one do risky thing {n}?",
            "risk_summary": f"Query A: Risk {n}.\nQuery B: Risk {n}b." if n % 3 == 1 else f"Risk {n}.",
            "dataset_name": SCENARIOS[n % 3],
            "label": "Rumors-Fabrication" if n % 3 != 1 else "Query A: Rumors-X\nQuery B: Rumors-Y",
        }
        for n in range(12)
    ]
    data = write_dataset(tmp_path / "mini.csv", rows)
    ids = {r["query"]: r["id"] for r in rows}
    scenario = {r["id"]: r["dataset_name"] for r in rows}

    def gpt4o(kind: str, qid: str, i: int) -> str:
        labels = ("Safe", "Unsafe") if kind == SAFETY else THINK_LABELS[scenario[qid]]
        return labels[(int(qid[1:]) + i) % 2]

    def successor(kind: str, qid: str, i: int) -> str:
        label = gpt4o(kind, qid, i)
        if kind == SAFETY and (qid, i) in {("s0", 0), ("s3", 1)}:
            return "Unsafe" if label == "Safe" else "Safe"
        return label

    ref_reply, new_reply = (
        responder(ids, gpt4o, judge_model="gpt4o"),
        responder(ids, successor, judge_model="successor"),
    )
    with ScriptedServer(
        lambda body: new_reply(body) if body["model"] == "successor" else ref_reply(body)
    ) as server:
        overrides = scripted_overrides(server.api_base, data, "judge.name=hosted_vllm/gpt4o")
        run(make_config(*overrides), tmp_path / "ref")
        (tmp_path / "ref" / ".hydra").mkdir(exist_ok=True)
        (tmp_path / "ref" / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        rejudge([
            str(tmp_path / "ref"), "judge.name=hosted_vllm/successor", f"cache.dir={tmp_path / 'c2'}",
            "progress=false", "--out", str(tmp_path / "new"),
        ])  # fmt: skip
        assert server.errors == [] and server.chat_requests("target") != []
    got = cal.calibrate(tmp_path / "ref", tmp_path / "new", n_boot=100).data
    assert (
        got["reference"]["judge"] == "hosted_vllm/gpt4o"
        and got["successor"]["judge"] == "hosted_vllm/successor"
    )
    assert got["shared_samples"] == 24
    s = _cells(got)[(SAFETY, ALL)]
    assert s["n_units"] == 24 and s["raw_agreement"]["value"] == pytest.approx(22 / 24)
    assert _cells(got)[(THINK, ALL)]["raw_agreement"]["value"] == 1.0
    m = got["metrics"][SAFETY][ALL]["at_1"]
    assert m["reference"] == pytest.approx(50) and m["corrected"] == pytest.approx(50)
    assert Counter(
        r["kind"] for r in map(json.loads, (tmp_path / "new" / "judgments.jsonl").read_text().splitlines())
    ) == {SAFETY: 24, THINK: 24}


def test_a_different_share_of_rule_verdicts_is_noted(tmp_path: Path) -> None:
    ref = write_run(tmp_path / "ref", _small(), REF_JUDGE)
    new = write_run(tmp_path / "new", _small(), NEW_JUDGE)
    table = {k: (v[0], v[1], THINK_MISS[v[0]]) for k, v in _small("o").items()}
    other = write_run(tmp_path / "other", table, NEW_JUDGE, rule=frozenset(table))  # no reasoning at all
    got = cal.calibrate(ref, new, [other], n_boot=20).data
    assert got["applied"][0]["rule_share"] == {SAFETY: 0.0, THINK: 1.0}
    (note,) = got["applied"][0]["notes"]
    assert "100.0% of its think verdicts were set by rule, against 0.0% in the calibration" in note
    assert note in got["notes"]


def test_a_scenario_the_calibration_lacks_is_noted(tmp_path: Path) -> None:
    only_ro = {k: v for k, v in REF.items() if v[0] == RO}
    ref = write_run(tmp_path / "ref", only_ro, REF_JUDGE)
    new = write_run(tmp_path / "new", {k: NEW[k] for k in only_ro}, NEW_JUDGE)
    other = write_run(tmp_path / "other", OTHER_NEW, NEW_JUDGE)
    got = cal.calibrate(ref, new, [other], n_boot=50).data
    (note,) = got["applied"][0]["notes"]
    assert "no sample of Cognitive Shortcut, Over Sensitivity" in note
    m = got["applied"][0]["metrics"]
    assert (
        m[THINK][CS]["at_1"]["corrected"] is None and "no labelled sample" in m[THINK][CS]["at_1"]["reason"]
    )
    assert m[THINK][RO]["at_1"]["corrected"] is not None
    assert m[SAFETY][CS]["at_1"]["corrected"] is not None  # safety's error rates are pooled
