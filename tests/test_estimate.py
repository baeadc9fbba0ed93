"""`bsa estimate`: from the config alone (the worst case, a wall time at the configured concurrency for an
assumed latency, the keys a run would miss), and from a pilot run, whose measured tokens and seconds
per call, scaled to the full selection, land within 10 % of what the full run then took."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from helpers import responder, scripted_overrides, write_dataset
from scripted_server import Reply, ScriptedServer
from test_resilience import make_rows

from bsa.forecast import (
    PilotQuery,
    RoleLoad,
    concurrency_within,
    parse_duration,
    pilot_queries,
    scale,
    wall_time,
)
from bsa.pilot import target_overrides

# Seconds per call and tokens per reply, by scenario: the pilot must weigh each scenario as the
# target has it.
GEN_LATENCY = {"Risk Omission": 0.3, "Cognitive Shortcut": 0.5, "Over Sensitivity": 0.4}
GEN_TOKENS = {"Risk Omission": 400, "Cognitive Shortcut": 900, "Over Sensitivity": 150}
JUDGE_LATENCY = 0.1


def _server(rows: list[dict[str, str]]) -> Any:
    ids = {r["query"]: r["id"] for r in rows}
    scenario = {r["id"]: r["dataset_name"] for r in rows}
    base = responder(ids, lambda kind, qid, i: "Safe" if kind == "safety" else None)

    def respond(body: dict[str, Any]) -> Reply:
        reply = base(body)
        if body["model"] == "target":
            qid = ids[body["messages"][-1]["content"]]
            n = int(qid[1:])
            s = scenario[qid]
            time.sleep(GEN_LATENCY[s])
            reply.usage = {"prompt_tokens": 30 + n % 7, "completion_tokens": GEN_TOKENS[s] + (n * 37) % 100}
        else:
            time.sleep(JUDGE_LATENCY)
            reply.usage = {"prompt_tokens": 700, "completion_tokens": 40}
            if reply.message.get("content", "").startswith("I think"):  # think: a fixed readable verdict
                reply.message = {"content": json.dumps({"explanation": "x", "verdict": "Not Covered"})}
        return reply

    return respond


def _bsa(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bsa", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_pilot_scaled_to_the_full_selection_is_within_ten_percent_of_the_full_run(tmp_path: Path) -> None:
    rows = make_rows(150)
    data = write_dataset(tmp_path / "d.csv", rows)
    with ScriptedServer(_server(rows)) as server:
        common = [
            *scripted_overrides(server.api_base, data, k=2),
            "progress=false",
            "concurrency=8",
            "adaptive_concurrency=false",
            "judge.empty_reasoning=judge",
        ]
        pilot_dir = tmp_path / "pilot"
        out = _bsa(
            *common,
            "dataset.limit=30",
            f"cache.dir={tmp_path / 'c1'}",
            f"hydra.run.dir={pilot_dir}",
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        full_dir = tmp_path / "full"
        out = _bsa(*common, f"cache.dir={tmp_path / 'c2'}", f"hydra.run.dir={full_dir}", cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
    est_json = tmp_path / "estimate.json"
    out = _bsa(
        "estimate",
        str(pilot_dir),
        "--to",
        "dataset.limit=null",
        "--within",
        "10s",
        "--json",
        str(est_json),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Wall time:" in out.stdout and "Within 10s:" in out.stdout, out.stdout
    est = json.loads(est_json.read_text())
    assert est["pilot_queries"] == 30 and sum(est["target_queries"].values()) == 150

    gens, judgments = _rows(full_dir / "generations.jsonl"), _rows(full_dir / "judgments.jsonl")
    truth = {
        ("model", "completion_tokens"): sum(g["usage"]["completion_tokens"] for g in gens),
        ("model", "prompt_tokens"): sum(g["usage"]["prompt_tokens"] for g in gens),
        ("judge", "prompt_tokens"): sum(j["usage"]["prompt_tokens"] for j in judgments),
        ("model", "calls"): len(gens),
        ("judge", "calls"): sum(j["attempts"] for j in judgments),
    }
    for (role, name), true in truth.items():
        got = est["per_role"][role][name]
        assert abs(got["value"] - true) <= 0.10 * true, (role, name, got, true)
        assert got["low"] <= got["value"] <= got["high"]
    true_wall = json.loads((full_dir / "run.json").read_text())["wall_s"]
    wall = est["wall_s"]["value"]
    assert abs(wall - true_wall) <= 0.10 * true_wall, (wall, true_wall)
    # --within 10s: the concurrency that fits the generations' call time (at the slow end) in 10 s
    gen_high = est["per_role"]["model"]["seconds"]["high"]
    judge_call = est["per_role"]["judge"]["seconds"]["high"] / est["per_role"]["judge"]["calls"]["value"]
    assert est["within"]["model"] == math.ceil(gen_high / (10 - est["overhead_s"] - judge_call))


def test_the_config_alone_gives_a_wall_time_for_the_assumed_latency_and_the_missing_keys(
    tmp_path: Path,
) -> None:
    rows = make_rows(30)
    data = write_dataset(tmp_path / "d.csv", rows)
    overrides = [
        "model=openai_compatible",
        "model.name=openai/some-model",
        "model.api_base=http://127.0.0.1:9/v1",
        "model.api_key_env=BSA_TEST_NO_SUCH_KEY",
        "model.latency_s=12",
        "model.concurrency=4",
        "judge=openai_compatible",
        "judge.name=hosted_vllm/judge",
        "judge.api_base=http://127.0.0.1:9/v1",
        "judge.latency_s=2",
        "judge.concurrency=6",
        "dataset=bsa",
        f"dataset.path={data}",
        "sampling.k=2",
        f"cache.dir={tmp_path / 'c'}",
    ]
    out = _bsa("estimate", *overrides, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = " ".join(out.stdout.split())
    # 60 generations × 12 s / 4 = 180 s, plus one judge call (2 s); 120 judgments × 2 s / 6 = 40 s
    assert "Wall time: about 3 min" in text, text
    assert "model 60 calls × 12 s / 4 in flight" in text and "judge 120 calls × 2 s / 6 in flight" in text
    assert "A real run would stop here:" in text and "BSA_TEST_NO_SUCH_KEY" in text
    assert not (tmp_path / "outputs").exists()


def test_a_bad_pilot_dir_is_said_with_exit_2(tmp_path: Path) -> None:
    out = _bsa("estimate", str(tmp_path), cwd=REPO)
    assert out.returncode == 2 and "not a run dir" in out.stderr, out.stderr
    (tmp_path / "x").mkdir()
    out = _bsa("estimate", str(tmp_path / "missing"), cwd=REPO)
    assert out.returncode == 2 and "no such directory" in out.stderr, out.stderr


# --- the pure core ----------------------------------------------------------------------------------


def test_wall_time_is_the_slower_role_plus_one_call_of_the_other() -> None:
    model = RoleLoad(calls=100, call_s=1000.0, concurrency=10)  # 100 s
    judge = RoleLoad(calls=200, call_s=400.0, concurrency=4)  # 100 s; 2 s a call
    assert wall_time(model, judge) == pytest.approx(max(100 + 2, 100 + 10))
    capped = RoleLoad(calls=100, call_s=1000.0, concurrency=100, rpm=30)  # rpm: 200 s
    assert wall_time(capped, RoleLoad(0, 0.0, 1)) == pytest.approx(200.0)
    assert concurrency_within(model, 52.0, 2.0) == 20
    assert concurrency_within(capped, 100.0, 0.0) is None  # the rpm cap alone needs 200 s


def test_scaling_weighs_each_scenario_as_the_target_has_it() -> None:
    def q(i: int, s: str, tokens: float) -> PilotQuery:
        sums: dict[str, dict[str, float | None]] = {
            "model": {
                "calls": 2,
                "prompt_tokens": 10,
                "completion_tokens": tokens,
                "seconds": 2.0,
                "usd": None,
            },
            "judge": {"calls": 4, "prompt_tokens": 100, "completion_tokens": 4, "seconds": 1.0, "usd": 0.01},
        }
        return PilotQuery(f"q{i}", s, 2, sums)

    pilot = [q(0, "A", 100), q(1, "A", 300), q(2, "B", 1000)]
    got = scale(pilot, {"A": 10, "B": 30}, 2, {"model": 1, "judge": 1}, {}, n_boot=200)
    # A: 400 tokens over 4 samples = 100 a sample; B: 500 a sample
    assert got.per_role["model"]["completion_tokens"].value == pytest.approx(10 * 2 * 100 + 30 * 2 * 500)
    assert got.per_role["model"]["usd"].value is None  # unpriced stays unknown, never $0
    assert got.per_role["judge"]["usd"].value == pytest.approx(0.005 * 80)
    lo, hi = got.per_role["model"]["completion_tokens"].low, got.per_role["model"]["completion_tokens"].high
    assert lo is not None and hi is not None and lo < got.per_role["model"]["completion_tokens"].value < hi
    missing = scale(pilot, {"A": 1, "C": 1}, 1, {"model": 1, "judge": 1}, {}, n_boot=50)
    assert any("no query of C" in n for n in missing.notes)


def test_pilot_rows_count_calls_attempts_and_unpriced_dollars() -> None:
    gens = [
        {"id": "a", "sample_index": 0, "scenario": "S", "usage": {"completion_tokens": 5}, "latency_s": 1.0},
        {"id": "a", "sample_index": 1, "scenario": "S", "usage": {"completion_tokens": 7}, "latency_s": 2.0},
    ]
    judgments = [
        {
            "id": "a",
            "sample_index": 0,
            "kind": "safety",
            "attempts": 3,
            "usage": {"prompt_tokens": 9},
            "latency_s": 0.5,
        },
        {"id": "a", "sample_index": 1, "kind": "think", "source": "rule:no_reasoning"},
        {"id": "zz", "sample_index": 0, "kind": "safety", "attempts": 1},  # no generation: left out
    ]
    (a,) = pilot_queries(gens, judgments)
    assert a.samples == 2
    assert a.sums["model"] == {
        "calls": 2,
        "prompt_tokens": 0,
        "completion_tokens": 12,
        "seconds": 3.0,
        "usd": None,
    }
    assert (
        a.sums["judge"]["calls"] == 3
        and a.sums["judge"]["prompt_tokens"] == 9
        and a.sums["judge"]["usd"] is None
    )


def test_durations_and_the_target_overrides() -> None:
    assert parse_duration("4h") == 14400 and parse_duration("1h30m") == 5400 and parse_duration("90") == 90
    with pytest.raises(ValueError, match="a duration such as"):
        parse_duration("4 hours")
    pilot = [
        "model=deepseek_r1",
        "dataset.limit=50",
        "hydra.run.dir=x",
        "progress=false",
        "dataset.scenarios=[a]",
    ]
    assert target_overrides(pilot, []) == ["model=deepseek_r1"]
    assert target_overrides(pilot, ["dataset.limit=null", "concurrency=32"]) == [
        "model=deepseek_r1",
        "dataset.scenarios=[a]",
        "dataset.limit=null",
        "concurrency=32",
    ]


def test_the_api_exports_estimate_and_it_reads_as_one_line(tmp_path: Path) -> None:
    import bsa

    rows = make_rows(9)
    data = write_dataset(tmp_path / "d.csv", rows)
    est = bsa.estimate(
        [
            "model=openai_compatible",
            "model.name=hosted_vllm/m",
            "model.api_base=http://127.0.0.1:9/v1",
            "model.max_tokens=100",
            "judge=openai_compatible",
            "judge.name=hosted_vllm/j",
            "judge.api_base=http://127.0.0.1:9/v1",
            "dataset=bsa",
            f"dataset.path={data}",
            "sampling.k=1",
            f"cache.dir={tmp_path / 'c'}",
        ],
        run_dir=tmp_path / "run",
    )
    assert "estimate" in bsa.__all__ and est.wall_s() is not None
    text = repr(est)
    assert text.startswith("Estimate(model: 9 calls to make (0 cached)") and "\n" not in text, text
    assert "judge: 18 calls to make" in text and "wall ≈" in text and "Line(" not in text, text
    assert not (tmp_path / "run").exists()


def test_a_pilot_that_asked_n_samples_in_one_request_counts_that_request_once() -> None:
    gens = [  # one request with n=2 (the same latency, its usage on the first row), then one alone
        {"id": "a", "sample_index": 0, "scenario": "S", "usage": {"completion_tokens": 9}, "latency_s": 2.5},
        {"id": "a", "sample_index": 1, "scenario": "S", "usage": {}, "latency_s": 2.5},
        {"id": "a", "sample_index": 2, "scenario": "S", "usage": {"completion_tokens": 4}, "latency_s": 1.0},
    ]
    (a,) = pilot_queries(gens, [], batch_samples=True)
    assert a.samples == 3 and a.sums["model"]["calls"] == 2 and a.sums["model"]["seconds"] == 3.5
    assert a.sums["model"]["completion_tokens"] == 13
    (b,) = pilot_queries(gens, [])  # one request a sample: every row a call
    assert b.sums["model"]["calls"] == 3 and b.sums["model"]["seconds"] == 6.0
