"""Batch judging (bsa.providers.litellm_batch.prefetch) against an in-memory OpenAI files + batches API.

The fake's output lines come from the same scripted responder that answers online calls, so a
judgment is the same whichever way its request went.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import compose_config
from fake_batches import FakeBatches
from helpers import MINI_QUERY_IDS, MINI_ROWS, responder, scripted_overrides, write_dataset
from scripted_server import ScriptedServer

from bsa import data, judge, prompts
from bsa.config import Config
from bsa.llm import Client, Endpoint, Request
from bsa.providers.litellm_batch import BatchReport, chunk, prefetch, request_line, supports_batch
from bsa.run import run
from bsa.verdict import SAFETY, THINK

ROWS = MINI_ROWS
QUERY_IDS = MINI_QUERY_IDS
SCRIPT = {
    ("safety", "q1"): ["Safe", "Unsafe"],
    ("think", "q1"): ["True", "False"],
    ("safety", "q2"): ["Safe", "Safe"],
    ("think", "q2"): ["Fully Covered", "Partially Covered"],
    ("safety", "q3"): ["Unsafe", "Safe"],
    ("think", "q3"): ["Over Sensitive", "Precise Coverage"],
}
K = 2
N_JUDGE = len(ROWS) * K * 2  # safety + think per sample


def scripted(kind: str, qid: str, i: int) -> str | None:
    return SCRIPT[(kind, qid)][i]


RESPOND = responder(QUERY_IDS, scripted)


def config(server: ScriptedServer, tmp_path: Path, cache: str) -> Config:
    ds = write_dataset(tmp_path / "mini.csv", ROWS)
    base = [f"cache.dir={tmp_path / cache}", "progress=false"]
    return compose_config(base + scripted_overrides(server.api_base, ds, k=K))


def judge_requests(cfg: Config, queries: list[data.Query], gens: list[dict]) -> list[Request]:
    """Every first judge request of these generations, built as the judging stage builds them."""
    prompt_set = prompts.load_judge_prompts(cfg.judge, cfg.cache.dir)
    by_id = {q.id: q for q in queries}
    reqs = []
    for g in gens:
        for kind in (SAFETY, THINK):
            _, req = judge.prepare(cfg.judge, prompt_set, by_id[g["id"]], g, kind)
            assert req is not None
            reqs.append(req)
    return reqs


def scripted_generations() -> list[dict]:
    """What the scripted target answers, without running it (sampling.seed=0: sample i has seed i)."""
    return [
        {"id": r["id"], "sample_index": i, "reasoning": f"R|{r['id']}|{i}", "answer": f"A|{r['id']}|{i}"}
        for r in ROWS
        for i in range(K)
    ]


def cheap_requests(cfg: Config, tmp_path: Path) -> list[Request]:
    queries = data.read(tmp_path / "mini.csv")
    return judge_requests(cfg, queries, scripted_generations())


def go(client: Client, reqs: list[Request], state: Path, **kw: object) -> BatchReport:
    kw = {"poll_s": 0.01, "max_requests": 50000, **kw}
    return asyncio.run(prefetch(client, reqs, state, **kw))  # type: ignore[arg-type]


def judge_calls(server: ScriptedServer) -> int:
    return len(server.chat_requests("judge"))


def test_prefetch_answers_every_first_judge_call_and_matches_online(tmp_path: Path) -> None:
    fake = FakeBatches(RESPOND, polls_to_complete=3)
    with ScriptedServer(RESPOND, routes=fake.routes()) as server:
        # The reference: everything online.
        cfg_online = config(server, tmp_path, "cache_online")
        online = run(cfg_online, tmp_path / "online")
        assert judge_calls(server) == N_JUDGE

        # The batch run: generation online, then the judge's first requests through a batch...
        cfg = config(server, tmp_path, "cache_batch")
        reqs = judge_requests(cfg, online.queries, online.generations)
        assert len(reqs) == N_JUDGE
        progress: list[str] = []
        with Client(cfg.cache.dir) as client:
            report = go(client, reqs, tmp_path / "batches.json", on_progress=progress.append)
            assert client.stats.calls == N_JUDGE  # stored answers count as calls
        assert (report.submitted, report.succeeded, report.failed, report.online) == (N_JUDGE, N_JUDGE, 0, 0)
        assert (fake.uploads, fake.created) == (1, 1) and report.batch_ids == list(fake.batches)
        assert any("/12 done" in line for line in progress), progress
        assert not fake.errors and not server.errors
        # ... each line the body online LiteLLM sends: bare model name, params at the top level
        body = fake.answered[0]
        assert body["model"] == "judge" and body["temperature"] == 0.0 and "max_tokens" in body
        state = json.loads((tmp_path / "batches.json").read_text())
        assert state["batches"][0]["collected"] and len(state["batches"][0]["keys"]) == N_JUDGE

        # ... and the online judging stage then makes no first-attempt call at all.
        before = judge_calls(server)
        batched = run(cfg, tmp_path / "batched")
        assert judge_calls(server) == before

    def key(rows: list[dict]) -> list[tuple]:
        return [(r["id"], r["sample_index"], r["kind"], r["verdict"], r["raw"]) for r in rows]

    assert key(batched.judgments) == key(online.judgments)
    for m in ("safe_at_1", "safe_at_k", "think_at_1", "think_at_k"):
        assert batched.metrics[m] == online.metrics[m]


def test_chunks_by_request_count_and_bytes(tmp_path: Path) -> None:
    fake = FakeBatches(RESPOND, polls_to_complete=2)
    with ScriptedServer(RESPOND, routes=fake.routes()) as server:
        cfg = config(server, tmp_path, "cache")
        reqs = cheap_requests(cfg, tmp_path)
        with Client(cfg.cache.dir) as client:
            report = go(client, reqs, tmp_path / "batches.json", max_requests=5)
            assert all(client.cached(r) for r in reqs)
    assert fake.created == 3 and fake.uploads == 3  # 5 + 5 + 2
    assert [b["request_counts"]["total"] for b in fake.batches.values()] == [5, 5, 2]
    assert report.succeeded == N_JUDGE and len(report.batch_ids) == 3
    # Bytes: a file never passes max_bytes, whatever max_requests allows.
    assert [len(c) for c in chunk([b"x" * 10] * 5, 100, max_bytes=25)] == [2, 2, 1]
    assert [len(c) for c in chunk([b"x"] * 7, 3)] == [3, 3, 1]


def test_max_requests_three_makes_several_batches(tmp_path: Path) -> None:
    fake = FakeBatches(RESPOND, polls_to_complete=1)
    with ScriptedServer(RESPOND, routes=fake.routes()) as server:
        cfg = config(server, tmp_path, "cache")
        reqs = cheap_requests(cfg, tmp_path)
        with Client(cfg.cache.dir) as client:
            report = go(client, reqs, tmp_path / "batches.json", max_requests=3)
    assert fake.created == N_JUDGE // 3 == len(report.batch_ids)
    assert report.succeeded == N_JUDGE and report.failed == 0


def test_failed_line_is_left_uncached_counted_and_called_online(tmp_path: Path) -> None:
    def fails(body: dict) -> bool:  # the safety judgment of q1's sample 0
        return "A|q1|0" in body["messages"][-1]["content"]

    fake = FakeBatches(RESPOND, polls_to_complete=1, fail=fails)
    with ScriptedServer(RESPOND, routes=fake.routes()) as server:
        cfg = config(server, tmp_path, "cache")
        reqs = cheap_requests(cfg, tmp_path)
        with Client(cfg.cache.dir) as client:
            report = go(client, reqs, tmp_path / "batches.json")
            assert (report.succeeded, report.failed) == (N_JUDGE - 1, 1)
            assert any(
                "1 lines failed and go online" in n and "scripted batch failure" in n for n in report.notes
            )
            left = [r for r in reqs if not client.cached(r)]
            assert len(left) == 1 and fails({"messages": left[0].messages})
            # The online stage calls it: one judge call, and its answer is the scripted one.
            got = asyncio.run(client.complete(left[0]))
            assert judge_calls(server) == 1 and '"Safe"' in got.message["content"]
            # A restart does not put the failed line in a new batch: it is the online stage's.
            again = go(client, reqs, tmp_path / "batches.json")
            assert (again.submitted, again.cached, fake.created) == (0, N_JUDGE, 1)


def test_cancel_after_submission_then_restart_resumes_without_paying_twice(tmp_path: Path) -> None:
    fake = FakeBatches(RESPOND, polls_to_complete=10_000)  # never finishes while the first call runs
    state = tmp_path / "batches.json"
    with ScriptedServer(RESPOND, routes=fake.routes()) as server:
        cfg = config(server, tmp_path, "cache")
        reqs = cheap_requests(cfg, tmp_path)

        async def start_then_cancel() -> None:
            with Client(cfg.cache.dir) as client:
                task = asyncio.create_task(prefetch(client, reqs, state, poll_s=0.01, max_requests=5))
                for _ in range(3000):
                    if fake.polls >= 3:
                        break
                    await asyncio.sleep(0.01)
                task.cancel()  # Ctrl-C
                with pytest.raises(asyncio.CancelledError):
                    await task

        asyncio.run(start_then_cancel())
        assert fake.created == 3 and state.is_file()
        saved = json.loads(state.read_text())["batches"]
        assert [b["id"] for b in saved] == list(fake.batches) and not any(b["collected"] for b in saved)

        fake.polls_to_complete = 1  # the provider finishes them meanwhile
        with Client(cfg.cache.dir) as client:
            report = go(client, reqs, state, max_requests=5)
            assert all(client.cached(r) for r in reqs)
        assert (fake.created, fake.uploads) == (3, 3)  # nothing submitted again
        assert (report.submitted, report.resumed, report.succeeded) == (0, N_JUDGE, N_JUDGE)
        assert judge_calls(server) == 0

        polls = fake.polls
        with Client(cfg.cache.dir) as client:
            done = go(client, reqs, state)
        assert (done.cached, done.submitted, done.resumed, fake.polls) == (N_JUDGE, 0, 0, polls)


def test_stop_switch_stops_polling_and_a_rerun_collects(tmp_path: Path) -> None:
    fake = FakeBatches(RESPOND, polls_to_complete=4)
    state = tmp_path / "batches.json"
    with ScriptedServer(RESPOND, routes=fake.routes()) as server:
        cfg = config(server, tmp_path, "cache")
        reqs = cheap_requests(cfg, tmp_path)
        with Client(cfg.cache.dir) as client:

            def stop_on_progress(line: str) -> None:
                if "done" in line:
                    client.stop("max_cost_usd reached")

            report = go(client, reqs, state, on_progress=stop_on_progress)
            assert report.stopped == "max_cost_usd reached" and report.succeeded == 0
            assert not any(client.cached(r) for r in reqs)
        with Client(cfg.cache.dir) as client:
            again = go(client, reqs, state)
        assert (again.resumed, again.succeeded, fake.created) == (N_JUDGE, N_JUDGE, 1)


def test_provider_without_batch_api_says_why_and_goes_online(tmp_path: Path) -> None:
    assert supports_batch(Endpoint("openai/gpt-4o")) is True
    assert supports_batch(Endpoint("gpt-4o")) is True
    assert supports_batch(Endpoint("azure/my-deployment")) is True
    assert supports_batch(Endpoint("hosted_vllm/j", api_base="http://127.0.0.1:1/v1")) is True
    assert "api_base" in str(supports_batch(Endpoint("hosted_vllm/j")))
    assert "starts itself" in str(supports_batch(Endpoint("hosted_vllm/j", "http://x/v1", cache_id="llama")))
    assert "Anthropic" in str(supports_batch(Endpoint("anthropic/claude-3-5-sonnet-20240620")))
    assert "Vertex" in str(supports_batch(Endpoint("vertex_ai/gemini-1.5-pro")))
    assert "'deepseek'" in str(supports_batch(Endpoint("deepseek/deepseek-reasoner")))

    fake = FakeBatches(RESPOND)
    with ScriptedServer(RESPOND, routes=fake.routes()) as server:
        cfg = config(server, tmp_path, "cache")
        claude = Endpoint("anthropic/claude-3-5-sonnet-20240620", role="judge")
        reqs = [replace(r, endpoint=claude) for r in cheap_requests(cfg, tmp_path)]
        with Client(cfg.cache.dir) as client:
            report = go(client, reqs, tmp_path / "batches.json")
    assert (report.online, report.submitted, fake.uploads) == (N_JUDGE, 0, 0)
    assert (
        len(report.notes) == 1 and "judge anthropic/claude-3-5-sonnet-20240620: no batch" in report.notes[0]
    )
    assert "Anthropic" in report.notes[0] and not (tmp_path / "batches.json").exists()


def test_server_without_a_batch_api_falls_back_online(tmp_path: Path) -> None:
    with ScriptedServer(RESPOND) as server:  # chat completions only: /v1/files is not there
        cfg = config(server, tmp_path, "cache")
        reqs = cheap_requests(cfg, tmp_path)
        with Client(cfg.cache.dir) as client:
            report = go(client, reqs, tmp_path / "batches.json")
    assert (report.online, report.submitted, report.batch_ids) == (N_JUDGE, 0, [])
    assert "batch not submitted" in report.notes[0] and judge_calls(server) == 0


def test_request_line_merges_extra_body_and_strips_the_provider() -> None:
    ep = Endpoint("openai/gpt-4o", role="judge")
    params = {"temperature": 0.0, "max_tokens": 9, "response_format": {"type": "json_object"}}
    req = Request(ep, [{"role": "user", "content": "hi"}], {**params, "extra_body": {"top_k": 5}})
    line = request_line(req, "gpt-4o")
    assert line["custom_id"] == req.cache_key() and line["url"] == "/v1/chat/completions"
    assert line["body"] == {"model": "gpt-4o", "messages": req.messages, **params, "top_k": 5}
    o3 = request_line(replace(req, endpoint=Endpoint("openai/o3-mini")), "o3-mini")
    assert o3["body"]["max_completion_tokens"] == 9 and "max_tokens" not in o3["body"]


def test_expired_batch_leaves_every_line_to_the_online_stage(tmp_path: Path) -> None:
    fake = FakeBatches(RESPOND, polls_to_complete=1, expire=True)
    with ScriptedServer(RESPOND, routes=fake.routes()) as server:
        cfg = config(server, tmp_path, "cache")
        reqs = cheap_requests(cfg, tmp_path)
        with Client(cfg.cache.dir) as client:
            report = go(client, reqs, tmp_path / "batches.json")
            assert not any(client.cached(r) for r in reqs)
    assert (report.succeeded, report.failed) == (0, N_JUDGE)
    assert "expired" in report.notes[-1] and "go online" in report.notes[-1]


def test_batch_answer_reads_like_an_online_one_at_half_the_price() -> None:
    from bsa.llm import import_litellm
    from bsa.providers.litellm_batch import to_completion

    litellm = import_litellm()
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "<think>hmm</think>{}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100},
    }
    c = to_completion(litellm, body, Endpoint("openai/gpt-4o"), "openai")
    assert c.message["content"] == "{}" and c.message["reasoning_content"] == "hmm"
    assert c.usage == {"prompt_tokens": 1000, "completion_tokens": 100} and c.finish_reason == "stop"
    online = sum(litellm.cost_per_token(model="openai/gpt-4o", prompt_tokens=1000, completion_tokens=100))
    assert online > 0 and c.cost_usd == pytest.approx(online / 2)
    unpriced = to_completion(litellm, body, Endpoint("hosted_vllm/judge", "http://x/v1"), "openai")
    assert unpriced.cost_usd is None
