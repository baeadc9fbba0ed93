"""Adaptive calls in flight per endpoint (bsa/limits.py), the rpm cap, and a spent quota."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
from scripted_server import Reply, ScriptedServer

from bsa.limits import Limiter
from bsa.llm import Client, Endpoint, OutOfQuota, Request, import_litellm


def test_a_burst_of_429s_halves_the_limit_once_and_successes_climb_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> Limiter:
        lim = Limiter("model m", 8)
        epochs = [await lim.acquire() for _ in range(8)]
        for e in epochs:  # one overload: every call in flight gets its 429
            lim.release()
            lim.overloaded(e, "RateLimitError from the server")
        assert lim.limit == 4
        e = await lim.acquire()  # launched after the cut: a new overload
        lim.release()
        lim.overloaded(e, "RateLimitError from the server")
        assert lim.limit == 2
        for _ in range(2 + 3 + 4 + 5 + 6 + 7):  # `limit` successes in a row, each step
            lim.succeeded()
        assert lim.limit == 8
        lim.succeeded()
        assert lim.limit == 8  # never above the configured maximum
        return lim

    with caplog.at_level(logging.INFO, logger="bsa.limits"):
        lim = asyncio.run(scenario())
    steps = [(h["old"], h["new"]) for h in lim.history]
    assert steps == [(8, 4), (4, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8)]
    assert lim.history[0]["reason"] == "RateLimitError from the server"
    assert lim.history[-1]["reason"] == "7 successes in a row"
    assert all(isinstance(h["t"], float) for h in lim.history)
    assert "model m: calls in flight 8 → 4 (RateLimitError from the server)" in caplog.text


def test_a_fixed_limit_never_moves() -> None:
    async def scenario() -> Limiter:
        lim = Limiter("judge j", 4, adaptive=False)
        e = await lim.acquire()
        lim.release()
        lim.overloaded(e, "429")
        lim.succeeded()
        return lim

    lim = asyncio.run(scenario())
    assert lim.limit == 4 and lim.history == []


def test_a_lower_limit_holds_waiters_and_a_higher_one_releases_them() -> None:
    async def scenario() -> tuple[list[tuple[int, int]], int]:
        lim = Limiter("model m", 4)
        lim.overloaded(await lim.acquire(), "429")  # 4 → 2 before any call runs
        lim.release()
        seen: list[tuple[int, int]] = []  # (calls running, limit) at each start

        async def call() -> None:
            await lim.acquire()
            seen.append((lim.in_flight, lim.limit))
            await asyncio.sleep(0.01)
            lim.release()
            lim.succeeded()  # 2 in a row → 3, 3 more → 4: the waiters are let in

        await asyncio.gather(*(call() for _ in range(16)))
        return seen, lim.limit

    seen, final = asyncio.run(scenario())
    assert all(running <= limit for running, limit in seen)
    assert seen[:2] == [(1, 2), (2, 2)] and max(r for r, _ in seen) == 4 and final == 4


def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    async def scenario() -> int:
        lim = Limiter("model m", 1)
        await lim.acquire()
        waiter = asyncio.ensure_future(lim.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        lim.release()
        await asyncio.gather(waiter, return_exceptions=True)
        await asyncio.wait_for(lim.acquire(), 1)  # not lost to the cancelled waiter
        return lim.in_flight

    assert asyncio.run(scenario()) == 1


def test_the_rpm_cap_spaces_the_calls() -> None:
    async def scenario() -> float:
        lim = Limiter("model m", 8, rpm=600)  # 10 per second, bucket of 60
        t0 = time.monotonic()
        for _ in range(60 + 10):
            await lim.acquire()
            lim.release()
        return time.monotonic() - t0

    assert 0.8 <= asyncio.run(scenario()) < 3


def _requests(ep: Endpoint, n: int) -> list[Request]:
    return [Request(ep, [{"role": "user", "content": f"question {i}"}], {}) for i in range(n)]


def test_429s_from_an_overloaded_server_lower_the_clients_limit_and_it_climbs_back() -> None:
    """A server that takes 2 calls at a time and answers 429 (Retry-After: 0) to more: the client's
    limit for the endpoint drops from 8 and every request still gets its answer once."""
    import_litellm()
    lock = threading.Lock()
    state = {"now": 0, "rejected": 0}

    def respond(body: dict[str, Any]) -> Reply:
        with lock:
            if state["now"] >= 2:
                state["rejected"] += 1
                return Reply(status=429, headers={"Retry-After": "0"}, error="slow down")
            state["now"] += 1
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return Reply(message={"content": body["messages"][0]["content"]})

    with ScriptedServer(respond) as server:
        ep = Endpoint("hosted_vllm/m", server.api_base)
        client = Client(None, concurrency=8, max_attempts=20, max_wait_s=0.05)
        reqs = _requests(ep, 60)

        async def go() -> list[Any]:
            return await asyncio.gather(*(client.complete(r) for r in reqs))

        out = asyncio.run(go())
    assert [c.message["content"] for c in out] == [f"question {i}" for i in range(60)]
    history = client.limit_history()["model hosted_vllm/m"]
    assert state["rejected"] > 0 and history and history[0]["old"] == 8 and history[0]["new"] == 4
    assert min(h["new"] for h in history) <= 2
    assert client.stats.by_role["model"]["calls"] == 60
    assert client.stats.by_role["model"]["prompt_tokens"] == 600


def test_a_fixed_limit_client_keeps_its_limit() -> None:
    import_litellm()
    with ScriptedServer(lambda b: Reply(status=429, headers={"Retry-After": "0"}, error="busy")) as server:
        client = Client(None, concurrency=4, max_attempts=2, max_wait_s=0.01, adaptive=False)
        ep = Endpoint("hosted_vllm/m", server.api_base)

        async def go() -> None:
            await asyncio.gather(*(client.complete(r) for r in _requests(ep, 4)), return_exceptions=True)

        asyncio.run(go())
    assert client.limit_history() == {"model hosted_vllm/m": []}
    assert client.current_limits() == {"model hosted_vllm/m": 4}


def test_a_spent_quota_is_fatal_at_once_and_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import_litellm()
    monkeypatch.setenv("BSA_TEST_KEY", "sk-test-0123456789")
    quota = (
        "You exceeded your current quota, please check your plan and billing details. "
        "For more information on this error, read the docs. (insufficient_quota)"
    )
    with ScriptedServer(lambda b: Reply(status=429, error=quota)) as server:
        ep = Endpoint("openai/gpt-4o", server.api_base, "BSA_TEST_KEY", role="judge")
        client = Client(None, concurrency=2, max_attempts=8)
        with pytest.raises(OutOfQuota) as err:
            asyncio.run(client.complete(_requests(ep, 1)[0]))
        assert len(server.chat_requests()) == 1  # never retried
    message = str(err.value)
    assert message.startswith("judge openai/gpt-4o: the account is out of quota (")
    assert "retrying cannot help" in message and "the key in BSA_TEST_KEY" in message
    assert "billing" in message and "sk-test-0123456789" not in message
    assert client.stats.retries == 0 and client.stats.failures == 1
