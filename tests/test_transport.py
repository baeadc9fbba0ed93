"""The direct transport (bsa/providers/openai_direct.py) against LiteLLM on the same scripted server:
the same request bodies, rows, metrics and judgments, faults and refusals classified the same way;
``transport=auto``'s choice; a cache filled through one transport answers the other."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import compose_config
from helpers import responder, write_dataset
from helpers import scripted_overrides as overrides
from scripted_server import Reply, ScriptedServer
from test_refusals import AZURE_FILTER, VLLM_CONTEXT
from test_resilience import make_rows, rule_for

from bsa import generate, judge
from bsa.config import ConfigError, validate
from bsa.llm import Client, EndpointUnreachable, ModelCallError, OutOfQuota, TransientFailure
from bsa.provider import Endpoint, Request, endpoint_for, provider_for, transport_for
from bsa.providers import openai_direct
from bsa.run import run

ROWS = make_rows(9)
QUERY_IDS = {r["query"]: r["id"] for r in ROWS}
REFUSED = "r004"  # the model's provider refuses this query (HTTP 400, content filter)
THROTTLED = "r001"  # first asked: 429 with Retry-After
UNAVAILABLE = "r002"  # first asked: 503 with Retry-After
TRANSPORTS = ("direct", "litellm")


def _shape(reasoning: str, answer: str) -> dict[str, Any]:
    """Each of the three ways a server returns a trace, by query: a reasoning_content field, a
    reasoning field (vLLM ≥ 0.10), or <think>…</think> leading the content."""
    n = int(reasoning.split("|")[1][1:])
    if n % 3 == 0:
        return {"reasoning_content": reasoning, "content": answer}
    if n % 3 == 1:
        return {"reasoning": reasoning, "content": answer}
    return {"content": f"<think>{reasoning}</think>{answer}"}


def _scripted() -> Callable[[dict[str, Any]], Reply]:
    """The run's server: answers, faults on a first try, a refusal, reasoning tokens in the usage."""
    answer = responder(QUERY_IDS, rule_for(ROWS), shape=_shape)
    seen: set[str] = set()
    lock = threading.Lock()

    def respond(body: dict[str, Any]) -> Reply:
        qid = QUERY_IDS.get(body["messages"][-1]["content"])
        if qid is not None:
            with lock:
                first = qid not in seen
                seen.add(qid)
            if qid == REFUSED:
                return Reply(status=400, error_body=AZURE_FILTER)
            if first and qid == THROTTLED:
                return Reply(status=429, error="slow down", headers={"Retry-After": "0"})
            if first and qid == UNAVAILABLE:
                return Reply(status=503, error="overloaded", headers={"Retry-After": "0"})
        reply = answer(body)
        if qid is not None:
            reply.usage = {
                "prompt_tokens": 11,
                "completion_tokens": 40,
                "total_tokens": 51,
                "completion_tokens_details": {"reasoning_tokens": 25},
            }
        return reply

    return respond


def _no_latency(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _no_latency(v) for k, v in value.items() if k != "latency_s"}
    if isinstance(value, list):
        return [_no_latency(v) for v in value]
    return value


def _rows(path: Path) -> list[Any]:
    return [_no_latency(json.loads(line)) for line in path.read_text().splitlines()]


def _bodies(server: ScriptedServer) -> list[str]:
    return sorted(json.dumps(b, sort_keys=True) for b in server.chat_requests())


def _run(tmp: Path, transport: str, server: ScriptedServer, data: Path, *extra: str) -> Any:
    cfg = compose_config(
        [
            f"cache.dir={tmp / 'cache'}",
            "progress=false",
            *overrides(server.api_base, data, "judge.name=openai/judge", *extra),
            f"model.transport={transport}",
            f"judge.transport={transport}",
        ]
    )
    assert generate.endpoint(cfg.model).provider == transport
    assert judge.endpoint(cfg.judge).provider == transport
    return run(cfg, tmp / "run")


def test_direct_and_litellm_give_the_same_run(tmp_path: Path) -> None:
    """Reasoning in its three shapes, n > 1 (batch_samples), 429/503 with Retry-After, a content
    filter 400 recorded as provider_refused: rows, metrics, judgments and the bodies the server
    received are the same through either transport, latency aside."""
    data = write_dataset(tmp_path / "rows.csv", ROWS)
    got: dict[str, dict[str, Any]] = {}
    for transport in TRANSPORTS:
        tmp = tmp_path / transport
        with ScriptedServer(_scripted()) as server:
            res = _run(
                tmp,
                transport,
                server,
                data,
                "sampling.batch_samples=true",
                "model.top_k=20",
                "model.reasoning_effort=low",
                "+judge.extra_body={grammar: 'root ::= [a-z]+', cache_prompt: true}",  # llama.cpp's
            )
            assert not server.errors, server.errors
            got[transport] = {
                "metrics": res.metrics,
                "generations": _rows(tmp / "run" / "generations.jsonl"),
                "judgments": _rows(tmp / "run" / "judgments.jsonl"),
                "bodies": _bodies(server),
            }
    direct, litellm = got["direct"], got["litellm"]
    gens = direct["generations"]
    # What the run went through, so the equality below is about these cases.
    assert any(g.get("refusal", {}).get("kind") == "content_filter" for g in gens)
    assert direct["metrics"]["provider_refused"]["model"] == 2  # REFUSED's two samples
    assert {g["reasoning"] for g in gens if g["id"] == "r000"} == {"R|r000|0", "R|r000|1"}  # field
    assert {g["reasoning"] for g in gens if g["id"] == "r001"} == {"R|r001|0", "R|r001|1"}  # reasoning
    assert {g["answer"] for g in gens if g["id"] == "r002"} == {"A|r002|0", "A|r002|1"}  # <think>
    assert any(
        g["usage"].get("request_samples") == 2 and g["usage"].get("reasoning_tokens") == 25 for g in gens
    )
    assert any(json.loads(b).get("n") == 2 for b in direct["bodies"])
    assert any(json.loads(b).get("grammar") == "root ::= [a-z]+" for b in direct["bodies"])  # extra_body
    asked = [QUERY_IDS.get(json.loads(b)["messages"][-1]["content"]) for b in direct["bodies"]]
    # n=2 refused, then each sample alone (and refused); a fault, then the retry after its Retry-After.
    assert (asked.count(REFUSED), asked.count(THROTTLED), asked.count(UNAVAILABLE)) == (3, 2, 2)
    for key in ("metrics", "generations", "judgments", "bodies"):
        assert direct[key] == litellm[key], key


def test_a_warm_cache_answers_the_other_transport(tmp_path: Path) -> None:
    """Cache keys do not depend on the transport: a run through one makes no call through the other."""
    data = write_dataset(tmp_path / "rows.csv", ROWS[:3])
    for first, second in (TRANSPORTS, TRANSPORTS[::-1]):
        tmp = tmp_path / first
        with ScriptedServer(responder(QUERY_IDS, rule_for(ROWS), shape=_shape)) as server:
            cold = _run(tmp, first, server, data)
            calls = len(server.requests)
            assert calls > 0
            warm = _run(tmp / "again", second, server, data, f"cache.dir={tmp / 'cache'}")
            assert len(server.requests) == calls  # 0 calls through the second transport
        assert warm.metrics == cold.metrics


@pytest.mark.parametrize(
    ("transport", "name", "api_base", "managed", "deployments", "thinking", "expected"),
    [
        ("auto", "hosted_vllm/qwen", "http://h:8000/v1", False, False, False, "direct"),
        ("auto", "hosted_vllm/qwen", None, True, False, False, "direct"),  # vllm_local: bsa starts it
        ("auto", "openai/my-model", "http://h:8000/v1", False, False, False, "direct"),  # openai_compatible
        ("auto", "openai/gpt-4o", None, False, False, False, "litellm"),  # OpenAI itself
        ("auto", "deepseek/deepseek-reasoner", None, False, False, False, "litellm"),
        ("auto", "anthropic/claude-x", "http://proxy/v1", False, False, False, "litellm"),
        ("auto", "hosted_vllm/qwen", "http://h:8000/v1", False, True, False, "litellm"),  # the Router
        ("auto", "hosted_vllm/qwen", "http://h:8000/v1", False, False, True, "litellm"),  # thinking_budget
        ("litellm", "hosted_vllm/qwen", "http://h:8000/v1", True, False, False, "litellm"),
        ("direct", "openai/gpt-4o", None, False, False, False, "direct"),
    ],
)
def test_auto_picks_the_transport(
    transport: str,
    name: str,
    api_base: str | None,
    managed: bool,
    deployments: bool,
    thinking: bool,
    expected: str,
) -> None:
    assert transport_for(transport, name, api_base, managed, deployments, thinking) == expected


def test_auto_on_the_cards() -> None:
    """The cards as composed: their endpoints' provider is the transport auto picked."""
    base = ["dataset=demo"]
    compatible = [
        "model=openai_compatible",
        "model.name=hosted_vllm/m",
        "model.api_base=http://h:1/v1",
        "judge=openai_compatible",
        "judge.name=openai/j",
        "judge.api_base=http://h:2/v1",
    ]
    cfg = compose_config(base + compatible)
    assert generate.endpoint(cfg.model).provider == "direct"
    assert judge.endpoint(cfg.judge).provider == "direct"
    cfg = compose_config([*base, "model=deepseek_r1", "judge=gpt4o"])
    assert generate.endpoint(cfg.model).provider == "litellm"
    assert judge.endpoint(cfg.judge).provider == "litellm"
    cfg = compose_config([*base, "model=vllm_local", "model.hf_model=Qwen/Qwen3-0.6B", "judge=gpt4o"])
    assert generate.endpoint(cfg.model).provider == "direct"  # the vLLM server bsa starts
    cfg = compose_config([*base, "model=smollm2"])
    assert generate.endpoint(cfg.model).provider == "direct"  # llama.cpp, bsa's
    assert judge.endpoint(cfg.judge).provider == "direct"  # on the model's server
    cfg = compose_config([*base, *compatible, "model.transport=litellm"])
    assert generate.endpoint(cfg.model).provider == "litellm"


def test_transport_choices_are_checked() -> None:
    with pytest.raises(Exception, match=r"model\.transport=fast") as refused:
        compose_config(["dataset=demo", "model.transport=fast"])
    assert "expected one of [auto, direct, litellm]" in str(refused.value.__cause__)
    cfg = compose_config(["dataset=demo", "model=deepseek_r1", "model.transport=direct"])
    with pytest.raises(ConfigError, match=r"model.transport=direct.*hosted_vllm/ or openai/"):
        validate(cfg)


def test_the_model_sent_is_stripped_as_litellm_strips_it() -> None:
    assert openai_direct.strip_prefix("hosted_vllm/Qwen/Qwen3-8B") == "Qwen/Qwen3-8B"
    assert openai_direct.strip_prefix("openai/gpt-4o") == "gpt-4o"


# -- each failure, classified by the client as through LiteLLM -----------------------------------------


def _client_call(
    transport: str,
    api_base: str,
    name: str = "hosted_vllm/m",
    timeout_s: float = 10.0,
    max_attempts: int = 2,
    max_wait_s: float = 0.01,
) -> Any:
    """A client whose backoff is short (``max_wait_s`` also caps a Retry-After) and ``go``, its call."""
    client = Client(None, timeout_s=timeout_s, max_attempts=max_attempts, max_wait_s=max_wait_s)
    client.refusal_hold_s = 0.1
    ep = Endpoint(name, api_base, provider=transport)
    req = Request(ep, [{"role": "user", "content": "hi"}], {"max_tokens": 5})

    async def go() -> Any:
        return await client.complete(req)

    return client, go


def _outcome(
    transport: str, reply: Reply | Callable[[dict[str, Any]], Reply], **kw: Any
) -> tuple[Any, Client, int]:
    respond = reply if callable(reply) else (lambda body: reply)
    with ScriptedServer(respond) as server:
        client, go = _client_call(transport, server.api_base, **kw)
        try:
            out: Any = asyncio.run(go())
        except Exception as e:
            out = e
        return out, client, len(server.requests)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retry_after_is_honoured_then_the_answer_kept(transport: str) -> None:
    tries: list[float] = []

    def respond(body: dict[str, Any]) -> Reply:
        tries.append(time.monotonic())
        if len(tries) == 1:
            return Reply(status=429, error="slow down", headers={"Retry-After": "0.8"})
        return Reply(message={"content": "ok"})

    out, client, n = _outcome(transport, respond, max_wait_s=5.0)
    assert out.message["content"] == "ok" and n == 2
    assert tries[1] - tries[0] >= 0.75  # the server's wait: the first backoff is at most 0.5 s
    assert client.stats.retries == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_timeout_is_transient(transport: str) -> None:
    def slow(body: dict[str, Any]) -> Reply:
        time.sleep(0.6)
        return Reply(message={"content": "late"})

    out, _, n = _outcome(transport, slow, timeout_s=0.2)
    assert isinstance(out, TransientFailure) and n == 2  # retried, then given up


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_401_is_fatal_at_once(transport: str) -> None:
    out, _, n = _outcome(transport, Reply(status=401, error="Incorrect API key provided"))
    assert isinstance(out, ModelCallError) and not isinstance(out, TransientFailure) and n == 1
    assert "HTTP 401" in str(out) and "api_key_env" in str(out)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("body", "kind"), [(AZURE_FILTER, "content_filter"), (VLLM_CONTEXT, "context_length")]
)
def test_a_refusal_is_recorded(transport: str, body: dict[str, Any], kind: str) -> None:
    out, client, n = _outcome(transport, Reply(status=400, error_body=body))
    assert out.finish_reason == "provider_refused" and out.refusal["kind"] == kind and n == 1
    assert client.stats.refusals == 1


def test_a_refusal_reads_as_through_litellm() -> None:
    """The refusal's message is recorded in the row: the direct transport words it as LiteLLM does."""
    for name in ("hosted_vllm/m", "openai/m"):
        for body in (AZURE_FILTER, VLLM_CONTEXT):
            refusals = [
                _outcome(t, Reply(status=400, error_body=body), name=name)[0].refusal for t in TRANSPORTS
            ]
            assert refusals[0] == refusals[1], (name, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_another_400_is_fatal(transport: str) -> None:
    out, _, n = _outcome(transport, Reply(status=400, error="unknown parameter foo"))
    assert isinstance(out, ModelCallError) and "HTTP 400" in str(out) and n == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_spent_quota_stops(transport: str) -> None:
    quota = {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}
    out, _, n = _outcome(transport, Reply(status=429, error_body=quota))
    assert isinstance(out, OutOfQuota) and n == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_refused_connection_is_unreachable(transport: str) -> None:
    with ScriptedServer(lambda body: Reply()) as server:
        dead = server.api_base  # closed below: nothing listens there
    client, go = _client_call(transport, dead, max_attempts=8)
    with pytest.raises(EndpointUnreachable, match="connection refused"):
        asyncio.run(go())
    assert client.stats.unreachable_by == {"model hosted_vllm/m": 5}


def test_the_session_is_closed_with_its_loop() -> None:
    """One session per endpoint and loop, reused by every call on it, closed when the loop ends."""
    with ScriptedServer(lambda body: Reply(message={"content": "ok"})) as server:
        ep = Endpoint("hosted_vllm/m", server.api_base, provider="direct")
        _, call = provider_for(ep).prepare(ep, None, 5.0)
        sessions = []

        async def twice() -> None:
            for _ in range(2):
                await call(messages=[{"role": "user", "content": "hi"}])
                sessions.append(call._session)  # type: ignore[attr-defined]

        asyncio.run(twice())
        asyncio.run(twice())  # a new loop: a new session
    assert sessions[0] is sessions[1] and sessions[2] is sessions[3] and sessions[0] is not sessions[2]
    assert sessions[0].closed and sessions[2].closed


def test_an_endpoint_config_carries_the_transport() -> None:
    cfg = compose_config(
        ["dataset=demo", "model=openai_compatible", "model.name=openai/x", "model.api_base=http://h/v1"]
    )
    assert endpoint_for(cfg.model, "model", None).provider == "direct"


def test_a_priced_model_costs_the_same_through_both() -> None:
    """openai/gpt-4o at an api_base (a proxy): LiteLLM's price, read once per endpoint by the direct one."""
    usage = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
    costs = [
        _outcome(t, Reply(message={"content": "ok"}, usage=usage), name="openai/gpt-4o")[0].cost_usd
        for t in TRANSPORTS
    ]
    assert costs[0] is not None and costs[0] > 0
    assert costs[0] == pytest.approx(costs[1])


def test_an_unpriced_model_is_registered_at_zero_and_stays_unpriced() -> None:
    """LiteLLM path: an unpriced model is priced at $0 in LiteLLM's map once (no failed lookup per
    response), yet bsa still reads it as unpriced: cost None, no price for the budget check."""
    from bsa.providers.litellm_api import import_litellm, prices

    out, _, _ = _outcome("litellm", Reply(message={"content": "ok"}), name="hosted_vllm/zero-priced")
    entry = import_litellm().model_cost["hosted_vllm/zero-priced"]
    assert entry["input_cost_per_token"] == 0.0 and entry["output_cost_per_token"] == 0.0
    assert out.cost_usd is None and prices("hosted_vllm/zero-priced", False) is None


def test_direct_is_a_transport_not_a_provider_choice() -> None:
    cfg = compose_config(["dataset=demo", "model.provider=direct"])
    with pytest.raises(ConfigError, match=r"expected one of litellm, python \(.*model\.transport=direct"):
        validate(cfg)


FAULTS = {
    "content filter": Reply(status=400, error_body=AZURE_FILTER),
    "context": Reply(status=400, error_body=VLLM_CONTEXT),
    "bad request": Reply(status=400, error="unknown parameter foo"),
    "422": Reply(status=422, error="unprocessable"),
    "401": Reply(status=401, error="Incorrect API key provided"),
    "403": Reply(status=403, error="forbidden"),
    "404": Reply(status=404, error="model not found"),
    "408": Reply(status=408, error="timeout"),
    "429 Retry-After": Reply(status=429, error="slow down", headers={"Retry-After": "7"}),
    "429 quota": Reply(
        status=429,
        error_body={"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}},
    ),
    "500": Reply(status=500, error="boom"),
    "502": Reply(status=502, error="bad gateway"),
    "503 Retry-After": Reply(status=503, error="overloaded", headers={"Retry-After": "2"}),
    "dropped": Reply(drop=True),
}


def _raised(transport: str, name: str, api_base: str) -> tuple[Any, ...]:
    """How the provider reads the error one call raises: its type's name and every classification."""
    ep = Endpoint(name, api_base, provider=transport)
    provider = provider_for(ep)
    kwargs, call = provider.prepare(ep, None, 5.0)
    try:
        asyncio.run(call(**{"max_tokens": 5, **kwargs, "messages": [{"role": "user", "content": "hi"}]}))
    except Exception as e:
        return (
            type(e).__name__,
            isinstance(e, provider.transient_types()) and not isinstance(e, provider.fatal_types()),
            isinstance(e, provider.fatal_types()),
            provider.client_error(e),
            provider.refusal(e),
            provider.out_of_quota(e),
            provider.retry_after_s(e),
            provider.connect_failure(e),
        )
    raise AssertionError(f"{transport}: no error raised")


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("name", ["hosted_vllm/m", "openai/m"])
def test_each_fault_reads_as_through_litellm(fault: str, name: str) -> None:
    """The error's type name (the retry summary's unit), transient or fatal, a client error, a
    refusal (its recorded message too), a spent quota, Retry-After and a failed connection."""
    with ScriptedServer(lambda body: FAULTS[fault]) as server:
        direct, litellm = (_raised(t, name, server.api_base) for t in TRANSPORTS)
    assert direct == litellm


@pytest.mark.parametrize("name", ["hosted_vllm/m", "openai/m"])
def test_a_refused_connection_reads_as_through_litellm(name: str) -> None:
    with ScriptedServer(lambda body: Reply()) as server:
        dead = server.api_base
    direct, litellm = (_raised(t, name, dead) for t in TRANSPORTS)
    assert direct == litellm and direct[-1] == "connection refused"
