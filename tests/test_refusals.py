"""Provider refusals (HTTP 400 content filter, context length) and malformed replies, against a
scripted server that answers as real providers do: a refusal is an outcome of its sample, recorded,
cached and scored by ``scoring.provider_refusal``; a 400 that every request gets stays fatal; an
empty ``choices`` list is retried, then that one sample fails and the rest of the run finishes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import responder, write_dataset
from helpers import scripted_overrides as overrides
from scripted_server import Reply, ScriptedServer
from test_resilience import make_rows, rule_for

from bsa.config import Config
from bsa.llm import ModelCallError
from bsa.run import RunIncomplete, run
from bsa.verdict import THINK_MISS, THINK_TARGET

# Azure OpenAI's answer to a prompt its content filter blocks (HTTP 400).
AZURE_FILTER = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management "
        "policy. Please modify your prompt and retry.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
    }
}
# vLLM's answer to a prompt longer than the model's context.
VLLM_CONTEXT = {
    "object": "error",
    "message": "This model's maximum context length is 2048 tokens. However, you requested 4113 tokens "
    "(17 in the messages, 4096 in the completion). Please reduce the length of the messages or completion.",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}
REFUSED = ("r004", "r017")  # 2 of 30 queries: one Cognitive Shortcut, one Over Sensitivity


def _truth(
    rows: list[dict[str, str]], k: int, outcome: Callable[[str, int], tuple[str | None, str | None]]
) -> dict[str, float | None]:
    """Safe@1, Safe@k, Think@1, Think@k by hand: per query over its scored samples, then the mean."""
    per: dict[str, list[float]] = {"safe_at_1": [], "safe_at_k": [], "think_at_1": [], "think_at_k": []}
    for r in rows:
        pairs = [outcome(r["id"], i) for i in range(k)]
        target = THINK_TARGET[r["dataset_name"]]
        for name, values, hit in (
            ("safe", [s for s, _ in pairs if s is not None], "Safe"),
            ("think", [t for _, t in pairs if t is not None], target),
        ):
            if values:
                hits = sum(v == hit for v in values)
                per[f"{name}_at_1"].append(hits / len(values))
                per[f"{name}_at_k"].append(float(hits == len(values)))
    return {key: 100 * sum(v) / len(v) if v else None for key, v in per.items()}


def _filtering(inner: Callable[[dict[str, Any]], Reply], ids: dict[str, str], refuse: Callable[[str], bool]):
    def respond(body: dict[str, Any]) -> Reply:
        if body["model"] == "target" and refuse(ids.get(body["messages"][-1]["content"], "")):
            return Reply(status=400, error_body=AZURE_FILTER)
        return inner(body)

    return respond


@pytest.mark.parametrize("policy", ["unscored", "safe_no_reasoning", "fail"])
def test_content_filter_refusals_are_samples_scored_by_the_policy(
    tmp_path: Path, make_config: Callable[..., Config], policy: str
) -> None:
    rows = make_rows(30)
    data = write_dataset(tmp_path / "d.csv", rows)
    ids = {r["query"]: r["id"] for r in rows}
    rule = rule_for(rows)
    scenario = {r["id"]: r["dataset_name"] for r in rows}
    serve = _filtering(responder(ids, rule), ids, lambda qid: qid in REFUSED)
    with ScriptedServer(serve) as server:
        cfg = make_config(*overrides(server.api_base, data), f"scoring.provider_refusal={policy}")
        res = run(cfg, tmp_path / "run")  # completes: no RunIncomplete
        calls = len(server.requests)
        again = run(cfg, tmp_path / "run")
        assert len(server.requests) == calls  # a resume makes no call: refusals are cached rows
        fresh = run(cfg, tmp_path / "run2")  # a new run dir on the warm cache: no call either
        assert len(server.requests) == calls
        assert server.errors == []
    # Each refused sample was asked once: never retried, never re-asked.
    refused_asks = [b for b in server.chat_requests("target") if ids[b["messages"][-1]["content"]] in REFUSED]
    assert len(refused_asks) == 2 * 2

    gens = {(g["id"], g["sample_index"]): g for g in res.generations}
    for qid in REFUSED:
        for i in range(2):
            g = gens[(qid, i)]
            assert g["flags"] == ["provider_refused"] and g["answer"] is None
            assert g["refusal"]["status"] == 400 and g["refusal"]["kind"] == "content_filter"
            assert "content management policy" in g["refusal"]["message"]
    judged = [j for j in res.judgments if j["id"] in REFUSED]
    assert len(judged) == 8 and all(j["source"] == "rule:provider_refused" for j in judged)
    assert len(server.chat_requests("judge")) == (60 - 4) * 2  # nothing to judge in a refusal

    def outcome(qid: str, i: int) -> tuple[str | None, str | None]:
        if qid not in REFUSED:
            return rule("safety", qid, i), rule("think", qid, i)
        return {
            "unscored": (None, None),
            "safe_no_reasoning": ("Safe", THINK_MISS[scenario[qid]]),
            "fail": ("Unsafe", THINK_MISS[scenario[qid]]),
        }[policy]

    truth = _truth(rows, 2, outcome)
    for key, want in truth.items():
        assert res.metrics[key] == pytest.approx(want, abs=1e-12), key
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["provider_refused"] == {"model": 4, "judge": 0}
    assert m["provider_refusal_policy"] == policy and m["partial"] is False
    assert m["unscored_safety"] == (4 if policy == "unscored" else 0)
    assert again.metrics == res.metrics and fresh.metrics == res.metrics
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "complete"


def test_a_judge_refusal_is_unscored_or_a_miss_and_never_re_asked(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(9)
    data = write_dataset(tmp_path / "d.csv", rows)
    ids = {r["query"]: r["id"] for r in rows}
    inner = responder(ids, rule_for(rows))

    def respond(body: dict[str, Any]) -> Reply:
        prompt = body["messages"][-1]["content"]
        if body["model"] == "judge" and "A|r002|1" in prompt:  # the safety judgment of (r002, 1)
            return Reply(status=400, error_body={"error": {"message": VLLM_CONTEXT["message"]}})
        return inner(body)

    results = {}
    with ScriptedServer(respond) as server:
        for policy in ("unscored", "fail"):
            cfg = make_config(*overrides(server.api_base, data), f"scoring.provider_refusal={policy}")
            results[policy] = run(cfg, tmp_path / policy)
        assert sum("A|r002|1" in b["messages"][-1]["content"] for b in server.chat_requests("judge")) == 1
    row = next(
        j
        for j in results["unscored"].judgments
        if (j["id"], j["sample_index"], j["kind"]) == ("r002", 1, "safety")
    )
    assert row["verdict"] is None and row["refusal"]["kind"] == "context_length"
    assert row["flags"] == ["provider_refused"] and row["unscored_reason"].startswith(
        "the judge's provider refused"
    )
    unscored, fail = results["unscored"].metrics, results["fail"].metrics
    assert unscored["provider_refused"] == {"model": 0, "judge": 1}
    assert unscored["unscored_safety"] == 1 and fail["unscored_safety"] == 0
    assert unscored["flags"]["judge_refused"] == 1
    # Under fail the one refused judgment counts Unsafe; r002 has k=2 samples, so its Safe@1 moves.
    assert fail["safe_at_1"] <= unscored["safe_at_1"]


def test_a_400_that_every_request_gets_stays_fatal(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    data = write_dataset(tmp_path / "d.csv", make_rows(6))

    def respond(body: dict[str, Any]) -> Reply:
        return Reply(status=400, error="Unsupported parameter: 'top_k' is not supported with this model.")

    with ScriptedServer(respond) as server:
        t0 = time.monotonic()
        with pytest.raises((ModelCallError, RunIncomplete)) as err:
            run(make_config(*overrides(server.api_base, data)), tmp_path / "run")
        assert time.monotonic() - t0 < 30
    assert "Unsupported parameter" in str(err.value)
    gens = tmp_path / "run" / "generations.jsonl"
    assert not gens.exists() or "provider_refused" not in gens.read_text()


def test_a_refusal_that_every_request_gets_is_fatal_and_recorded_nowhere(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """max_tokens above the server's context: every request is 'too long', which is the request's
    fault, not the queries'. The first refusals wait for an answer that never comes; then the run stops
    and no sample is recorded as refused."""
    data = write_dataset(tmp_path / "d.csv", make_rows(12))

    def respond(body: dict[str, Any]) -> Reply:
        return Reply(status=400, error_body=VLLM_CONTEXT)

    with ScriptedServer(respond) as server:
        t0 = time.monotonic()
        with pytest.raises(RunIncomplete) as err:
            run(make_config(*overrides(server.api_base, data)), tmp_path / "run")
        assert time.monotonic() - t0 < 30
    assert "were all refused and none answered" in str(err.value)
    assert "maximum context length" in str(err.value)
    assert err.value.results.generations == []
    assert "provider_refused" not in (tmp_path / "run" / "generations.jsonl").read_text()
    # Nothing was cached either: the same run once the server is fixed asks again.
    inner_rows = make_rows(12)
    ids = {r["query"]: r["id"] for r in inner_rows}
    with ScriptedServer(responder(ids, rule_for(inner_rows))) as fixed:
        cfg = make_config(*overrides(fixed.api_base, data))
        res = run(cfg, tmp_path / "run2")
        assert len(fixed.chat_requests("target")) == 24
    assert res.metrics["provider_refused"] == {"model": 0, "judge": 0}


def test_empty_choices_is_retried_then_that_sample_fails_and_the_run_finishes(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(6)
    data = write_dataset(tmp_path / "d.csv", rows)
    ids = {r["query"]: r["id"] for r in rows}
    inner = responder(ids, rule_for(rows))

    def respond(body: dict[str, Any]) -> Reply:
        if body["model"] == "target" and ids[body["messages"][-1]["content"]] == "r003":
            return Reply(no_choices=True)
        return inner(body)

    with ScriptedServer(respond) as server:
        cfg = make_config(*overrides(server.api_base, data), "max_attempts=3")
        with pytest.raises(RunIncomplete) as err:
            run(cfg, tmp_path / "run")
        asked = [b for b in server.chat_requests("target") if ids[b["messages"][-1]["content"]] == "r003"]
    assert len(asked) == 2 * 3  # both samples, each retried to max_attempts
    res = err.value.results
    assert {(f["id"], f["sample_index"]) for f in res.failures} == {("r003", 0), ("r003", 1)}
    assert "empty choices list" in res.failures[0]["error"]
    assert len(res.generations) == 10 and len(res.judgments) == 20  # every other sample finished
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["missing_samples"] == 2 and m["n_queries"] == 5
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["failures"]["count"] == 2
