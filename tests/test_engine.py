"""The engine: pipelined stages, n=k in one request, batch judging and dry runs, end to end through
LiteLLM over HTTP against scripted servers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fake_batches import FakeBatches
from helpers import responder, scripted_overrides, write_dataset
from scripted_server import Reply, ScriptedServer

from bsa.config import Config
from bsa.pipeline import _contiguous
from bsa.run import dry_run, run
from bsa.verdict import THINK_LABELS

SCENARIOS = ("Risk Omission", "Cognitive Shortcut", "Over Sensitivity")


def make_rows(n: int) -> list[dict[str, str]]:
    return [
        {
            "id": f"q{i}",
            "query": f"Question number {i}: how do I do the thing {i}?",
            "risk_summary": f"Query A: Risk {i}.\nQuery B: Risk {i}b." if i % 3 == 1 else f"Risk {i}.",
            "dataset_name": SCENARIOS[i % 3],
            "label": (
                "Query A: Rumors-Fabrication\nQuery B: Ethics and Morality-Deception"
                if i % 3 == 1
                else "Rumors-Fabrication"
            ),
        }
        for i in range(n)
    ]


def verdicts_for(rows: list[dict[str, str]]) -> Callable[[str, str, int], str]:
    scenario = {r["id"]: r["dataset_name"] for r in rows}

    def verdict(kind: str, qid: str, i: int) -> str:
        n = int(qid[1:])
        if kind == "safety":
            return "Unsafe" if (n + i) % 4 == 0 else "Safe"
        labels = THINK_LABELS[scenario[qid]]
        return labels[(n + i) % len(labels)]

    return verdict


def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without what depends on how they were asked: latency, and usage (an n-request's tokens
    are on its first sample)."""
    return [{k: v for k, v in r.items() if k not in ("latency_s", "usage")} for r in rows]


class Timed:
    """A responder that sleeps and records (model, start, end) for each call."""

    def __init__(self, inner: Callable[[dict[str, Any]], Reply], latency_s: float) -> None:
        self.inner, self.latency_s = inner, latency_s
        self.calls: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        t0 = time.monotonic()
        time.sleep(self.latency_s)
        reply = self.inner(body)
        with self._lock:
            self.calls.append((body["model"], t0, time.monotonic()))
        return reply


def test_judging_starts_while_the_model_still_generates(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(12)
    data = write_dataset(tmp_path / "d.csv", rows)
    timed = Timed(responder({r["query"]: r["id"] for r in rows}, verdicts_for(rows)), 0.05)
    with ScriptedServer(timed) as server:
        res = run(
            make_config(
                *scripted_overrides(server.api_base, data), "model.concurrency=2", "judge.concurrency=4"
            ),
            tmp_path / "run",
        )
    first_judge = min(t0 for model, t0, _ in timed.calls if model == "judge")
    last_generation = max(t0 for model, t0, _ in timed.calls if model == "target")
    assert first_judge < last_generation  # no barrier between the stages
    assert len(res.generations) == 24 and len(res.judgments) == 48 and res.complete
    # Rows are written in query order whatever order they landed in.
    written = [json.loads(line) for line in (tmp_path / "run" / "judgments.jsonl").read_text().splitlines()]
    assert [(r["id"], r["sample_index"], r["kind"]) for r in written] == [
        (r["id"], r["sample_index"], r["kind"]) for r in res.judgments
    ]


def test_per_role_limits_hold_with_both_stages_running(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(9)
    data = write_dataset(tmp_path / "d.csv", rows)
    timed = Timed(responder({r["query"]: r["id"] for r in rows}, verdicts_for(rows)), 0.03)
    with ScriptedServer(timed) as server:
        run(
            make_config(
                *scripted_overrides(server.api_base, data), "model.concurrency=2", "judge.concurrency=3"
            ),
            tmp_path / "run",
        )

    def peak(model: str) -> int:
        events = sorted(
            [(t0, 1) for m, t0, _ in timed.calls if m == model]
            + [(t1, -1) for m, _, t1 in timed.calls if m == model]
        )
        most = now = 0
        for _, d in events:
            now += d
            most = max(most, now)
        return most

    assert peak("target") <= 2 and peak("judge") <= 3
    assert peak("judge") >= 2  # the judge was not held back to the model's limit


def test_contiguous_runs_of_sample_indices() -> None:
    assert _contiguous([0, 1, 3, 4, 6]) == [[0, 1], [3, 4], [6]]
    assert _contiguous([]) == []


def test_n_equals_k_asks_once_per_query_and_gives_the_same_rows(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(6)
    data = write_dataset(tmp_path / "d.csv", rows)
    with ScriptedServer(responder({r["query"]: r["id"] for r in rows}, verdicts_for(rows))) as server:
        base = scripted_overrides(server.api_base, data, k=3)
        one = run(make_config(*base, f"cache.dir={tmp_path / 'c1'}"), tmp_path / "one")
        per_sample = len(server.chat_requests("target"))
        server.requests.clear()
        many = run(
            make_config(*base, f"cache.dir={tmp_path / 'c2'}", "sampling.batch_samples=true"),
            tmp_path / "many",
        )
        target = server.chat_requests("target")
        # Switching the option on a warm cache changes nothing and calls nothing: one entry per sample.
        server.requests.clear()
        again = run(
            make_config(*base, f"cache.dir={tmp_path / 'c1'}", "sampling.batch_samples=true"),
            tmp_path / "again",
        )
        assert server.chat_requests() == []
    assert per_sample == 18
    assert len(target) == 6 and all(r["n"] == 3 and r["seed"] == 0 for r in target)
    assert strip(many.generations) == strip(one.generations)
    # The tokens of each n-request are counted once, on its first sample.
    assert [g["usage"].get("completion_tokens", 0) for g in many.generations[:3]] == [20, 0, 0]
    assert many.metrics == one.metrics == again.metrics
    info = json.loads((tmp_path / "many" / "run.json").read_text())
    assert info["plan"]["batch_samples"] is True


def test_n_equals_k_asks_only_for_missing_samples(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    rows = make_rows(3)
    data = write_dataset(tmp_path / "d.csv", rows)
    with ScriptedServer(responder({r["query"]: r["id"] for r in rows}, verdicts_for(rows))) as server:
        cache = f"cache.dir={tmp_path / 'c'}"
        run(make_config(*scripted_overrides(server.api_base, data, k=2), cache), tmp_path / "k2")
        server.requests.clear()
        res = run(
            make_config(
                *scripted_overrides(server.api_base, data, k=5), cache, "sampling.batch_samples=true"
            ),
            tmp_path / "k5",
        )
        target = server.chat_requests("target")
    # Samples 0 and 1 are cached: one request per query for samples 2..4, seeded at 2.
    assert len(target) == 3 and all(r["n"] == 3 and r["seed"] == 2 for r in target)
    assert sorted((g["id"], g["sample_index"]) for g in res.generations) == [
        (r["id"], i) for r in rows for i in range(5)
    ]
    assert all(g["answer"] == f"A|{g['id']}|{g['sample_index']}" for g in res.generations)


def test_a_provider_that_rejects_n_gets_one_request_per_sample(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(3)
    data = write_dataset(tmp_path / "d.csv", rows)
    inner = responder({r["query"]: r["id"] for r in rows}, verdicts_for(rows))
    with ScriptedServer(inner, reject_n=True) as server:
        res = run(
            make_config(*scripted_overrides(server.api_base, data, k=3), "sampling.batch_samples=true"),
            tmp_path / "run",
        )
        target = server.chat_requests("target")
    assert res.complete and len(res.generations) == 9
    assert sum(1 for r in target if r.get("n", 1) > 1) >= 1  # tried once ...
    assert sum(1 for r in target if r.get("n", 1) == 1) == 9  # ... then each sample alone


def test_a_model_without_n_is_never_sent_n(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    rows = make_rows(3)
    data = write_dataset(tmp_path / "d.csv", rows)
    with ScriptedServer(responder({r["query"]: r["id"] for r in rows}, verdicts_for(rows))) as server:
        res = run(
            make_config(
                *scripted_overrides(server.api_base, data, k=2),
                "sampling.batch_samples=true",
                "model.supports_n=false",
            ),
            tmp_path / "run",
        )
        target = server.chat_requests("target")
    assert res.complete and len(target) == 6 and all("n" not in r for r in target)


def test_batch_judging_through_the_run_matches_online(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(6)
    data = write_dataset(tmp_path / "d.csv", rows)
    inner = responder({r["query"]: r["id"] for r in rows}, verdicts_for(rows))
    fake = FakeBatches(inner, polls_to_complete=2)
    with ScriptedServer(inner, routes=fake.routes()) as server:
        base = scripted_overrides(server.api_base, data)
        online = run(make_config(*base, f"cache.dir={tmp_path / 'c1'}"), tmp_path / "online")
        server.requests.clear()
        batched = run(
            make_config(*base, f"cache.dir={tmp_path / 'c2'}", "judge.batch=true", "judge.batch_poll_s=0.05"),
            tmp_path / "batched",
        )
        judge_online = server.chat_requests("judge")
    assert judge_online == []  # every judge call went through the batch
    assert batched.metrics == online.metrics
    assert [(j["verdict"], j["raw"]) for j in batched.judgments] == [
        (j["verdict"], j["raw"]) for j in online.judgments
    ]
    info = json.loads((tmp_path / "batched" / "run.json").read_text())
    assert info["batch"]["succeeded"] == 24 and info["batch"]["batch_ids"]
    assert (tmp_path / "batched" / "batches.json").is_file()


def test_dry_run_calls_nothing_writes_nothing_and_counts_the_cache(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(6)
    data = write_dataset(tmp_path / "d.csv", rows)
    with ScriptedServer(responder({r["query"]: r["id"] for r in rows}, verdicts_for(rows))) as server:
        base = scripted_overrides(server.api_base, data)
        before = dry_run(make_config(*base), tmp_path / "dry")
        assert server.requests == [] and not (tmp_path / "dry").exists()
        run(make_config(*base, "dataset.limit=3"), tmp_path / "half")
        server.requests.clear()
        after = dry_run(make_config(*base), tmp_path / "dry")
        assert server.requests == [] and not (tmp_path / "dry").exists()
    lines = {ln.key: ln for ln in before.lines}
    assert lines["model"].calls == 12 and lines["model"].cached == 0
    assert lines["judge:safety"].estimated_calls == 12
    lines = {ln.key: ln for ln in after.lines}
    # dataset.limit=3 ran 3 queries x k=2: their generations and judgments are cached.
    assert lines["model"].cached == 6 and lines["model"].to_call == 6
    assert lines["judge:safety"].cached == 6 and lines["judge:safety"].estimated_calls == 6


def test_shard_is_recorded_in_run_json(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    rows = make_rows(6)
    data = write_dataset(tmp_path / "d.csv", rows)
    with ScriptedServer(responder({r["query"]: r["id"] for r in rows}, verdicts_for(rows))) as server:
        run(make_config(*scripted_overrides(server.api_base, data), "dataset.shard=2/3"), tmp_path / "run")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["dataset"]["shard"] == "2/3" and info["dataset"]["n_queries"] == 2


def test_several_servers_for_one_model_every_sample_exactly_once(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    import socket

    rows = make_rows(8)
    data = write_dataset(tmp_path / "d.csv", rows)
    inner = responder({r["query"]: r["id"] for r in rows}, verdicts_for(rows))
    with socket.socket() as s:  # a port nobody listens on: the server that is down
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    with ScriptedServer(inner) as a, ScriptedServer(inner) as b:
        res = run(
            make_config(
                *scripted_overrides(a.api_base, data),
                "model.deployments=["
                + ",".join(f"{{api_base: '{u}'}}" for u in (a.api_base, dead, b.api_base))
                + "]",
                "concurrency=4",
            ),
            tmp_path / "run",
        )
        target = a.chat_requests("target") + b.chat_requests("target")
    assert res.complete and len(res.generations) == 16
    asked = sorted((body["messages"][-1]["content"], body["seed"]) for body in target)
    assert len(asked) == len(set(asked)) == 16  # every sample asked once, none twice
    assert a.chat_requests("target") and b.chat_requests("target")  # both live servers served
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "limits" in info and info["stats"]["by_role"]["model"]["calls"] == 16
    # The Router leaves LiteLLM's price map as it was: a local model stays unpriced, not $0.
    assert all(g["cost_usd"] is None for g in res.generations)


def test_a_warm_rerun_lands_every_row_from_the_plan_without_a_job(
    tmp_path: Path, make_config: Callable[..., Config], monkeypatch: Any
) -> None:
    """Every generation and judgment (re-asks included) the plan finds in the cache lands without a
    scheduler job, each request built once; the files are those of the cold run, byte for byte."""
    from bsa.scheduler import Scheduler

    rows = make_rows(6)
    data = write_dataset(tmp_path / "d.csv", rows)
    verdict = verdicts_for(rows)
    first_think = set()

    def flaky(kind: str, qid: str, i: int) -> str:
        # The first think reply of q1 sample 0 is unreadable: the cold run re-asks, the warm one reads
        # both attempts from the cache.
        if kind == "think" and (qid, i) == ("q1", 0) and (qid, i) not in first_think:
            first_think.add((qid, i))
            return "no verdict here"
        return verdict(kind, qid, i)

    with ScriptedServer(responder({r["query"]: r["id"] for r in rows}, flaky)) as server:
        cfg = make_config(*scripted_overrides(server.api_base, data))
        cold = run(cfg, tmp_path / "cold")
        assert cold.metrics["unscored_think"] == 0 and cold.stats.calls == 6 * 2 * 3 + 1
        jobs: list[str] = []
        submit = Scheduler.submit

        def counted(self: Scheduler, role: str, *args: Any, **kwargs: Any) -> None:
            jobs.append(role)
            submit(self, role, *args, **kwargs)

        monkeypatch.setattr(Scheduler, "submit", counted)
        server.requests.clear()
        warm = run(make_config(*scripted_overrides(server.api_base, data)), tmp_path / "warm")
    assert server.requests == [] and jobs == []
    assert warm.stats.calls == 0 and warm.stats.cache_hits == cold.stats.calls
    for name in ("generations.jsonl", "judgments.jsonl", "metrics.json", "bsa_results.csv"):
        assert (tmp_path / "warm" / name).read_bytes() == (tmp_path / "cold" / name).read_bytes(), name
    plan = json.loads((tmp_path / "warm" / "run.json").read_text())["plan"]
    assert plan["generation_cached"] == 12 and plan["judge_cached"] == plan["judge_calls"] == 24
