"""Harness CPU per request: a bare ``litellm.acompletion`` loop against ``Client.complete``.

Not a test. A ScriptedServer answering at once runs in a child process (its CPU is not ours); then
N requests, CONCURRENCY in flight, go (a) through a bare litellm.acompletion loop and (b) through
``Client.complete`` with the answer cache on in a temp dir (every request a miss, so each one is a
call plus a cache write). Reported: process CPU seconds per request (user + system, this process
only) for each, and their ratio.

    .venv/bin/python tests/bench_client.py [--n 2000] [--concurrency 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = "hosted_vllm/bench"


def _serve(conn: Any) -> None:
    from scripted_server import Reply, ScriptedServer

    with ScriptedServer(lambda body: Reply(message={"content": "ok", "reasoning_content": "r"})) as s:
        conn.send(s.api_base)
        conn.recv()  # until the parent says stop


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _messages(tag: str, i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{tag} question {i}"}]


async def bare(api_base: str, n: int, concurrency: int, tag: str) -> None:
    from bsa.llm import import_litellm

    litellm = import_litellm()
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await litellm.acompletion(
                model=MODEL,
                messages=_messages(tag, i),
                api_base=api_base,
                max_tokens=8,
                timeout=60,
                num_retries=0,
                max_retries=0,
            )

    await asyncio.gather(*(one(i) for i in range(n)))


async def client(api_base: str, n: int, concurrency: int, tag: str, cache_dir: str) -> None:
    from bsa.llm import Client, Endpoint, Request

    ep = Endpoint(MODEL, api_base)
    with Client(cache_dir, concurrency=concurrency, adaptive=False) as c:
        reqs = [Request(ep, _messages(tag, i), {"max_tokens": 8}) for i in range(n)]
        await asyncio.gather(*(c.complete(r) for r in reqs))
        assert c.stats.calls == n, c.stats


def measure(label: str, coro: Any, n: int) -> float:
    t_wall, t_cpu = time.perf_counter(), _cpu()
    asyncio.run(coro)
    cpu, wall = _cpu() - t_cpu, time.perf_counter() - t_wall
    print(f"  {label:<8} {1000 * cpu / n:6.3f} ms CPU/request  ({n / wall:6.0f} requests/s wall)")
    return cpu / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args()

    parent, child = mp.Pipe()
    server = mp.get_context("spawn").Process(target=_serve, args=(child,), daemon=True)
    server.start()
    api_base = parent.recv()
    try:
        from bsa.llm import import_litellm

        import_litellm()
        with tempfile.TemporaryDirectory() as tmp:
            # Warm-up: imports, first connections, LiteLLM's lazy provider setup.
            asyncio.run(bare(api_base, 50, args.concurrency, "warm-bare"))
            asyncio.run(client(api_base, 50, args.concurrency, "warm-client", f"{tmp}/warm"))
            bare_s, client_s = [], []
            for r in range(args.rounds):
                print(f"round {r + 1}: N={args.n}, concurrency {args.concurrency}")
                bare_s.append(measure("bare", bare(api_base, args.n, args.concurrency, f"b{r}"), args.n))
                coro = client(api_base, args.n, args.concurrency, f"c{r}", f"{tmp}/c{r}")
                client_s.append(measure("client", coro, args.n))
        b, c = min(bare_s), min(client_s)
        print(f"best: bare {1000 * b:.3f} ms, client {1000 * c:.3f} ms, ratio {c / b:.2f}x")
        if args.json:
            Path(args.json).write_text(
                json.dumps({"bare_ms": 1000 * b, "client_ms": 1000 * c, "ratio": c / b}, indent=1)
            )
    finally:
        parent.send("stop")
        server.join(5)


if __name__ == "__main__":
    main()
