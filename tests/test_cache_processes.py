"""One cache dir, many processes (issue 10, part 3): each request is paid for once, in flight or not,
and a stored answer never changes, so the cache and every run dir agree.

The scripted server numbers every reply ("call 7"), so two calls for one request give two different
answers, and an answer that was overwritten, or a run that kept its own losing answer, shows.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import diskcache
import pytest
from conftest import REPO
from helpers import responder, scripted_overrides, write_dataset
from scripted_server import Reply, Responder, ScriptedServer
from test_pipeline import ROWS, SCRIPT

from bsa.cache import Holder, Leases
from bsa.config import Config
from bsa.llm import Client, Completion, Endpoint, ModelCallError, Request
from bsa.run import run

VARIANTS = 4  # 12 queries, k=2: 24 generations and 48 judgments, each one distinct request
MANY_ROWS = [
    {**r, "id": f"{r['id']}_{n}", "query": f"{r['query']} (variant {n})"}
    for n in range(VARIANTS)
    for r in ROWS
]
MANY_IDS = {r["query"]: r["id"] for r in MANY_ROWS}
DISTINCT = len(MANY_ROWS) * 2 * 3
SMALL_IDS = {r["query"]: r["id"] for r in ROWS}


def verdicts(kind: str, qid: str, i: int) -> str:
    return SCRIPT[(kind, qid.split("_")[0])][i]


class Numbered:
    """Replies after a latency, each with its own call number; optionally held until ``gate()``."""

    def __init__(
        self, inner: Responder, latency_s: float = 0.05, gate: Callable[[], bool] | None = None
    ) -> None:
        self.inner = inner
        self.latency_s = latency_s
        self.gate = gate
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        deadline = time.monotonic() + 120
        while self.gate is not None and not self.gate() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(self.latency_s)
        with self._lock:
            n = next(self._numbers)
        reply = self.inner(body)
        message = dict(reply.message)
        if body["model"] == "judge":
            verdict = json.loads(message["content"])
            message["content"] = json.dumps({**verdict, "explanation": f"scripted, call {n}"})
        else:
            message = {k: f"{v} (call {n})" for k, v in message.items()}
        return replace(reply, message=message)


def _planned(run_dirs: list[Path]) -> Callable[[], bool]:
    """True once every run has written its plan to run.json: it is about to make its first call."""

    def ready() -> bool:
        for d in run_dirs:
            try:
                if "plan" not in json.loads((d / "run.json").read_text()):
                    return False
            except (OSError, ValueError):
                return False
        return True

    return ready


def _rows(run_dir: Path) -> dict[str, list[str]]:
    """Each result file's rows, canonical and sorted (rows are appended in completion order)."""
    return {
        name: sorted(
            json.dumps(json.loads(line), sort_keys=True) for line in (run_dir / name).read_text().splitlines()
        )
        for name in ("generations.jsonl", "judgments.jsonl")
    }


def _start(server: ScriptedServer, data: Path, cache: Path, run_dir: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "bsa",
        *scripted_overrides(server.api_base, data, f"cache.dir={cache}", "progress=false", "concurrency=4"),
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    run_dir.mkdir(parents=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(run_dir.parent / f"{run_dir.name}.log", "wb") as log:  # the child keeps its own copy
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def _finish(procs: list[subprocess.Popen[bytes]], run_dirs: list[Path]) -> None:
    for p, d in zip(procs, run_dirs, strict=True):
        try:
            rc = p.wait(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        log = (d.parent / f"{d.name}.log").read_text(errors="replace")
        assert rc == 0, f"{d.name} exited {rc}:\n{log[-3000:]}"


def _leases(cache: Path) -> list[str]:
    leases = Leases(cache)
    try:
        return sorted(leases.held())
    finally:
        leases.close()


@pytest.mark.parametrize("n_procs", [2, 4])
def test_processes_sharing_a_cache_pay_once_per_request_and_agree(
    tmp_path: Path, n_procs: int, make_config: Callable[..., Config]
) -> None:
    data = write_dataset(tmp_path / "many.csv", MANY_ROWS)
    cache = tmp_path / "cache"  # the one make_config uses too
    run_dirs = [tmp_path / f"run{i}" for i in range(n_procs)]
    # Calls are held until every process is past its startup, so the runs overlap for certain.
    numbered = Numbered(responder(MANY_IDS, verdicts), latency_s=0.05, gate=_planned(run_dirs))
    with ScriptedServer(numbered) as server:
        procs = [_start(server, data, cache, d) for d in run_dirs]
        _finish(procs, run_dirs)
        bodies = Counter(json.dumps(b, sort_keys=True) for b in server.requests)
        paid_twice = sum(1 for c in bodies.values() if c > 1)
        assert paid_twice == 0, (
            f"{n_procs} processes made {len(server.requests)} calls for {len(bodies)} distinct requests "
            f"(one run needs {DISTINCT})"
        )
        assert len(bodies) == DISTINCT
        stats = [json.loads((d / "run.json").read_text())["stats"] for d in run_dirs]
        assert sum(s["calls"] for s in stats) == DISTINCT
        assert sum(s["waited"] for s in stats) > 0  # the runs did overlap on keys
        assert not _leases(cache)

        # Every run dir holds the same rows, and a later run served from the cache holds them too.
        rows = [_rows(d) for d in run_dirs]
        assert all(r == rows[0] for r in rows[1:])
        replay = run(
            make_config(*scripted_overrides(server.api_base, data, "concurrency=4")), tmp_path / "replay"
        )
        assert replay.stats.calls == 0 and len(server.requests) == DISTINCT
        assert _rows(tmp_path / "replay") == rows[0]


def _request(api_base: str, text: str = "hi") -> Request:
    return Request(
        Endpoint("hosted_vllm/m", api_base), [{"role": "user", "content": text}], {"max_tokens": 8}
    )


def test_a_second_write_never_replaces_the_first(tmp_path: Path) -> None:
    """Two clients on one cache dir ask the same request at once: one call, both get its answer."""
    numbered = Numbered(lambda body: Reply(message={"content": "answer"}), latency_s=0.3)
    with ScriptedServer(numbered) as server:
        req = _request(server.api_base)

        async def both() -> tuple[Completion, ...]:
            with Client(str(tmp_path / "cache")) as a, Client(str(tmp_path / "cache")) as b:
                return tuple(await asyncio.gather(a.complete(req), b.complete(req), a.complete(req)))

        answers = {c.message["content"] for c in asyncio.run(both())}
        assert answers == {"answer (call 1)"} and len(server.requests) == 1
        with Client(str(tmp_path / "cache")) as c:
            hit = c.lookup(req)
        assert hit is not None and hit.message["content"] == "answer (call 1)"


def test_a_call_that_lost_the_race_adopts_the_stored_answer(tmp_path: Path) -> None:
    """An answer stored while our call was out (a writer whose lease had lapsed) is kept and used."""
    cache = str(tmp_path / "cache")
    first = Completion({"content": "stored first"}, "stop", {}, 0.0, "m")

    def respond(body: dict[str, Any]) -> Reply:
        with diskcache.Cache(cache) as c:
            c.set(key, first.to_json())
        return Reply(message={"content": "ours, second"})

    with ScriptedServer(respond) as server:
        req = _request(server.api_base)
        key = req.cache_key()
        with Client(cache) as client:
            got = asyncio.run(client.complete(req))
            assert got.message["content"] == "stored first"
            assert client.stats.calls == 1 and client.stats.adopted == 1
            hit = client.lookup(req)
        assert hit is not None and hit.message["content"] == "stored first"


@pytest.mark.parametrize("outcome", ["cancelled", "failed"])
def test_a_lease_is_released_when_its_call_ends_without_an_answer(tmp_path: Path, outcome: str) -> None:
    cache = tmp_path / "cache"
    arrived = threading.Event()

    def respond(body: dict[str, Any]) -> Reply:
        arrived.set()
        time.sleep(0.5)  # the test looks at the lease while the call is out
        if outcome == "failed":
            return Reply(status=400, error="scripted bad request")
        return Reply(message={"content": "late"})

    with ScriptedServer(respond) as server:
        req = _request(server.api_base)

        async def go() -> None:
            with Client(str(cache)) as client:
                task = asyncio.ensure_future(client.complete(req))
                while not arrived.is_set():
                    await asyncio.sleep(0.01)
                assert _leases(cache) == [req.cache_key()]
                if outcome == "cancelled":
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                else:
                    with pytest.raises(ModelCallError, match="BadRequestError"):
                        await task

        asyncio.run(go())
        assert _leases(cache) == []


@pytest.mark.parametrize("holder", ["dead", "hung"])
def test_a_stale_lease_is_taken_over_and_the_run_completes(
    tmp_path: Path, holder: str, make_config: Callable[..., Config]
) -> None:
    """A lease left by a process that is gone is taken over at once; one whose holder still runs but
    stopped renewing it (hung, or on another host) at its expiry."""
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    with ScriptedServer(responder(SMALL_IDS, verdicts)) as server:
        # A scratch run tells the keys; then every one of them is leased, by hand, in the real cache.
        scratch = make_config(*scripted_overrides(server.api_base, data, f"cache.dir={tmp_path / 'scratch'}"))
        expected = run(scratch, tmp_path / "scratch_run").metrics
        with diskcache.Cache(str(tmp_path / "scratch")) as c:
            keys = list(c.iterkeys())
        if holder == "dead":
            gone = subprocess.Popen([sys.executable, "-c", "pass"])
            gone.wait()
            pid, expire = gone.pid, 600.0
        else:
            pid, expire = os.getpid(), 2.0
        leases = Leases(tmp_path / "cache")
        for k in keys:
            assert leases.take(k, Holder(pid, socket.gethostname(), holder), expire)
        leases.close()
        calls_before = len(server.requests)
        t0 = time.monotonic()
        res = run(make_config(*scripted_overrides(server.api_base, data)), tmp_path / "run")
        elapsed = time.monotonic() - t0
    assert res.metrics == expected and res.stats.calls == len(keys) == 18
    assert len(server.requests) - calls_before == 18
    if holder == "dead":
        assert elapsed < 60, f"took {elapsed:.0f}s: a dead holder's lease should be taken over at once"
    else:
        assert elapsed >= expire, f"took {elapsed:.1f}s: a live holder's lease was not respected"
    assert not _leases(tmp_path / "cache")


def test_a_run_killed_mid_call_is_taken_over_by_the_next(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    cache = tmp_path / "cache"
    open_ = threading.Event()
    numbered = Numbered(responder(SMALL_IDS, verdicts), latency_s=0.0, gate=open_.is_set)
    with ScriptedServer(numbered) as server:
        victim = _start(server, data, cache, tmp_path / "killed")
        deadline = time.monotonic() + 180
        while len(server.requests) < 4 and time.monotonic() < deadline and victim.poll() is None:
            time.sleep(0.1)
        assert len(server.requests) >= 4, (tmp_path / "killed.log").read_text()
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        held = _leases(cache)
        assert len(held) >= 4  # its calls in flight left their leases behind
        open_.set()  # its held calls now answer a closed socket
        t0 = time.monotonic()
        res = run(make_config(*scripted_overrides(server.api_base, data)), tmp_path / "next")
        elapsed = time.monotonic() - t0
    assert res.stats.calls == 18 and res.metrics["n_queries"] == 3
    assert res.metrics["unscored_safety"] == 0 and res.metrics["unscored_think"] == 0
    assert elapsed < 60, f"took {elapsed:.0f}s: the killed run's leases should be taken over at once"
    assert not _leases(cache)
