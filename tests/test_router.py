"""Several servers for one model (``Endpoint.deployments``): one LiteLLM Router per endpoint."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from scripted_server import Reply, ScriptedServer

from bsa.config import Deployment as ConfigDeployment
from bsa.llm import (
    Client,
    Deployment,
    Endpoint,
    EndpointUnreachable,
    Request,
    import_litellm,
    preflight,
)
from bsa.server import free_port

N = 60


def _echo(body: dict[str, Any]) -> Reply:
    return Reply(message={"content": f"answer to {body['messages'][0]['content']}"})


def _requests(ep: Endpoint, n: int) -> list[Request]:
    return [Request(ep, [{"role": "user", "content": f"question {i}"}], {"max_tokens": 8}) for i in range(n)]


def test_two_live_servers_share_the_calls_and_a_dead_one_costs_no_sample(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import_litellm()
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with ScriptedServer(_echo) as a, ScriptedServer(_echo) as b:
        # Config objects are accepted as they are and frozen into Deployments.
        deployments = [ConfigDeployment(api_base=a.api_base), {"api_base": dead}, Deployment(b.api_base)]
        ep = Endpoint("hosted_vllm/m", role="model", deployments=deployments)  # type: ignore[arg-type]
        assert all(isinstance(d, Deployment) for d in ep.deployments) and hash(ep)
        with caplog.at_level(logging.WARNING, logger="bsa.llm"):
            preflight(ep)
        assert "1 of 3 deployments do not answer" in caplog.text and dead in caplog.text

        client = Client(str(tmp_path / "cache"), concurrency=4, max_attempts=8, max_wait_s=0.05)

        async def go() -> list[Any]:
            return await asyncio.gather(*(client.complete(r) for r in _requests(ep, N)))

        out = asyncio.run(go())
        served = (len(a.chat_requests()), len(b.chat_requests()))
        # Again: every answer is now a cache hit, whichever server gave it.
        again = asyncio.run(go())
    assert [c.message["content"] for c in out] == [f"answer to question {i}" for i in range(N)]
    assert sum(served) == N and min(served) >= N // 5, served  # each sample served once, load shared
    assert client.stats.failures == 0 and client.stats.calls == N
    assert [c.message for c in again] == [c.message for c in out] and client.stats.cache_hits == N
    # The dead server was tried, failed, and was cooled down: a handful of retries, not one per call.
    assert client.stats.retries <= 10, client.stats.retries_by


def test_the_cache_key_names_the_set_of_servers_not_the_one_that_answered() -> None:
    one = Endpoint("hosted_vllm/m", deployments=(Deployment("http://a/v1"), Deployment("http://b/v1")))
    same = Endpoint("hosted_vllm/m", deployments=(Deployment("http://b/v1"), Deployment("http://a/v1")))
    more = Endpoint(
        "hosted_vllm/m",
        deployments=(Deployment("http://a/v1"), Deployment("http://b/v1"), Deployment("http://c/v1")),
    )
    pinned = Endpoint("hosted_vllm/m", cache_id="my-cluster", deployments=one.deployments)
    single = Endpoint("hosted_vllm/m", "http://a/v1")

    def key(ep: Endpoint) -> str:
        return _requests(ep, 1)[0].cache_key()

    assert key(one) == key(same)  # order does not matter
    assert len({key(one), key(more), key(pinned), key(single)}) == 4
    assert one.cache_base is not None and one.cache_base.startswith("deployments:")
    assert pinned.cache_base == "my-cluster"
    assert single.cache_base == "http://a/v1"  # unchanged for one server: old caches stay valid


def test_an_endpoint_whose_servers_are_all_dead_fails_preflight_naming_them() -> None:
    import_litellm()
    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    ep = Endpoint("hosted_vllm/m", role="judge", deployments=tuple(Deployment(d) for d in dead))
    with pytest.raises(
        EndpointUnreachable, match="judge hosted_vllm/m: none of its 2 deployments answers"
    ) as err:
        preflight(ep)
    assert all(d in str(err.value) for d in dead)


def test_per_deployment_rpm_caps_the_endpoint_at_their_sum() -> None:
    import_litellm()
    with ScriptedServer(_echo) as a, ScriptedServer(_echo) as b:
        ep = Endpoint(
            "hosted_vllm/m", deployments=(Deployment(a.api_base, rpm=300), Deployment(b.api_base, rpm=300))
        )
        client = Client(None, concurrency=8)

        async def go() -> list[Any]:
            return await asyncio.gather(*(client.complete(r) for r in _requests(ep, 3)))

        asyncio.run(go())
    limiter = client._endpoint_limiters["model hosted_vllm/m"]
    assert limiter.rpm == 600
