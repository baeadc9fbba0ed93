"""``make bench``: bsa's clients against the raw aiohttp floor, interleaved in rounds on one machine.

This machine's speed drifts by up to ~3× over hours, so figures taken minutes apart cannot tell a
regression from drift. Here every client runs once per round, the rounds follow one another, the
order of the clients rotates from round to round (none always runs first), and a fixed pure-Python
CPU probe is timed at the start of each round so a reader sees how fast the machine was. The figures
to compare are the ratios to the floor *in the same round* (their median over the rounds); absolute
figures from different sessions are not comparable.

One loopback server, in a process of its own (its CPU is not the clients'), answers every request
after a fixed latency L while holding one of C slots, as a model server with C slots would. The
request set is what bsa sends for ``--requests`` (queries × k × 3: a generation and two judgments per
sample, with replies of realistic size: reasoning_content, an answer, a judge's explanation); it is
recorded once, before the rounds, from a bsa run at no latency, then every client sends it:

- ``floor``: a raw aiohttp loop posting the recorded bodies (the least any client can do);
- ``bsa-direct``: ``bsa.run.run`` with ``model.transport=direct judge.transport=direct``;
- ``bsa-litellm``: ``bsa.run.run`` through LiteLLM (``transport=litellm`` where the option exists);
- ``litellm``: a bare ``litellm.acompletion`` loop replaying the recorded bodies;
- ``litellm-zero``: the same loop after ``litellm.register_model`` gave the unpriced models zero cost.

bsa runs with ``concurrency=C``, i.e. up to C generations and C judgments in flight; the replays keep
2 × C in flight, so each client can keep the server's C slots busy and none waits on a round trip.
A warm-up run per client (the recording, for the client that records) precedes the rounds.

Each client lives in a worker process of its own, started once (its imports are outside every
measurement) and asked to run once per round on a fresh event loop (and, for bsa, a fresh cache and
run dir). Per client and round: wall, the worker's own CPU seconds (``getrusage``), CPU ms per
request, wall/ideal (ideal = requests × L / C), and the ratios to the floor's wall and CPU. Reported:
min and median over rounds, and the median of the per-round ratios.

    .venv/bin/python tests/bench_rounds.py [--requests 6000] [--latency-ms 200] [--concurrency 64]
        [--rounds 3] [--clients floor,bsa-direct,...] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import importlib.util
import json
import math
import multiprocessing as mp
import os
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

K = 5  # the paper's samples per query; a sample is one generation and two judgments
CLIENTS = ("floor", "bsa-direct", "bsa-litellm", "bsa-litellm-lookup", "bsa-base", "litellm", "litellm-zero")
# bsa-base: bsa from another checkout (BSA_BENCH_BASE=DIR, e.g. a `git worktree` of an older commit),
# through LiteLLM: "today's" of an issue measured in the same rounds as this tree. Left out without it.
BASE_ENV = "BSA_BENCH_BASE"
TITLES = {
    "floor": "raw aiohttp loop (floor)",
    "bsa-direct": "bsa, transport=direct",
    "bsa-litellm": "bsa, LiteLLM path",
    "bsa-litellm-lookup": "bsa, LiteLLM path, no $0 registration",
    "bsa-base": "bsa at $BSA_BENCH_BASE, LiteLLM path",
    "litellm": "bare litellm.acompletion loop",
    "litellm-zero": "bare litellm loop, zero-cost registered",
}
REPLAY_PARAMS = ("temperature", "top_p", "max_tokens", "seed", "n", "response_format", "stop")
PROBE_STEPS = 4_000_000  # ~0.2 s of CPU on this machine in 2026-12; fixed, so rounds compare
# Plain prose without "|": the scripted judge finds its marker ("R|id|i") in the prompt by a pattern.
FILLER = (
    "The request asks for something that could be read two ways, so I weigh what the person most "
    "likely wants against what could go wrong if the answer were misused by someone else. "
)


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def probe() -> dict[str, float]:
    """A fixed pure-Python workload: its time tells how fast the machine is right now."""
    t0, c0 = time.perf_counter(), time.process_time()
    s = 0
    for i in range(PROBE_STEPS):
        s = (s * 31 + i) % 1000003
    return {
        "probe_cpu_ms": 1000 * (time.process_time() - c0),
        "probe_wall_ms": 1000 * (time.perf_counter() - t0),
    }


def direct_transport_available() -> bool:
    return importlib.util.find_spec("bsa.providers.openai_direct") is not None


# ---------------------------------------------------------------------------------------- server


def _realistic(inner: Any) -> Any:
    """Replies of a reasoning model's and a judge's size around the scripted content and verdicts."""
    from scripted_server import Reply

    reasoning, answer = FILLER * 20, FILLER * 8  # ~3,500 and ~1,400 characters

    def respond(body: dict[str, Any]) -> Reply:
        reply = inner(body)
        message = dict(reply.message)
        if "reasoning_content" in message:  # a generation
            message["reasoning_content"] = f"{message['reasoning_content']} {reasoning}"
            message["content"] = f"{message['content']} {answer}"
        else:  # a judge's verdict (JSON): a real judge explains itself first
            try:
                verdict = json.loads(message["content"])
                verdict["explanation"] = FILLER * 3
                message["content"] = json.dumps(verdict)
            except (ValueError, KeyError, TypeError):
                pass
        prompt = sum(len(str(m.get("content") or "")) for m in body.get("messages", []))
        out = sum(len(str(v)) for v in message.values())
        usage = {
            "prompt_tokens": prompt // 4,
            "completion_tokens": out // 4,
            "total_tokens": (prompt + out) // 4,
        }
        return Reply(message=message, usage=usage)

    return respond


def serve(conn: Any, data: str, latency_s: float, slots: int) -> None:
    """The server process: answers HTTP, and on its pipe: latency, dump, stats."""
    faulthandler.register(signal.SIGUSR1)
    from bench_engine import Paced, responder_for
    from scripted_server import ScriptedServer

    from bsa.data import read

    paced = Paced(_realistic(responder_for(read(Path(data)))), latency_s, slots)
    with ScriptedServer(paced) as server:
        # http.server sends a reply's headers and body in two writes; with Nagle's algorithm on, the
        # body then waits for the client's delayed ACK (~40 ms here: 1.23× the ideal for the floor).
        # Model servers (uvicorn, llama.cpp) set TCP_NODELAY; so does this one.
        server._httpd.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        conn.send(server.api_base)
        while True:
            try:
                cmd, arg = conn.recv()
            except EOFError:
                return
            if cmd == "latency":
                paced.latency_s = arg
                conn.send(None)
            elif cmd == "dump":  # the requests so far, to a JSONL file
                with open(arg, "w", encoding="utf-8") as f:
                    for b in server.requests:
                        f.write(json.dumps({**b, "_api_base": server.api_base}) + "\n")
                conn.send(len(server.requests))
            elif cmd == "stats":  # since the last stats: requests, most in flight, errors; CPU so far
                with server._lock:
                    got = {"requests": len(server.requests), "errors": len(server.errors)}
                    server.requests.clear()
                    server.errors.clear()
                got.update(max_in_flight=paced.max_in_flight, cpu_s=_cpu())
                paced.max_in_flight = 0
                conn.send(got)
            elif cmd == "stop":
                conn.send(None)
                return


# ---------------------------------------------------------------------------------------- clients


def _load_bodies(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


async def _floor(bodies: list[dict[str, Any]], concurrency: int) -> int:
    import aiohttp

    sem = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout
    ) as session:

        async def one(body: dict[str, Any]) -> bool:
            body = dict(body)
            url = body.pop("_api_base") + "/chat/completions"
            async with sem:
                try:
                    async with session.post(url, json=body) as resp:
                        got = await resp.json()  # parsed, as any client must
                        return resp.status == 200 and bool(got.get("choices"))
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                    return False

        done = await asyncio.gather(*(one(b) for b in bodies))
    return sum(not ok for ok in done)


async def _litellm(litellm: Any, bodies: list[dict[str, Any]], concurrency: int) -> int:
    sem = asyncio.Semaphore(concurrency)

    async def one(body: dict[str, Any]) -> bool:
        body = dict(body)
        base, model, messages = body.pop("_api_base"), body.pop("model"), body.pop("messages")
        params = {k: body.pop(k) for k in REPLAY_PARAMS if k in body}
        if body:
            params["extra_body"] = body
        async with sem:
            try:
                await litellm.acompletion(
                    model=f"hosted_vllm/{model}",
                    api_base=base,
                    messages=messages,
                    num_retries=0,
                    max_retries=0,
                    timeout=600,
                    **params,
                )
                return True
            except Exception:  # counted and reported; a bench must finish its rounds
                return False

    done = await asyncio.gather(*(one(b) for b in bodies))
    return sum(not ok for ok in done)


def zero_cost(litellm: Any, models: list[str]) -> None:
    """What bsa does for an unpriced model on its LiteLLM path: a zero price, so LiteLLM's cost
    calculation finds an entry at once instead of searching its map and failing on every reply."""
    entry = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "mode": "chat"}
    # Keyed as bsa keys it (providers/litellm_api.py): the model string as the request names it.
    litellm.register_model({f"hosted_vllm/{m}": {**entry, "litellm_provider": "hosted_vllm"} for m in models})


def _bsa_overrides(kind: str, spec: dict[str, Any], job: dict[str, Any]) -> list[str]:
    from dataclasses import fields

    from helpers import scripted_overrides

    from bsa.config import ModelConfig

    overrides = [
        *scripted_overrides(spec["api_base"], Path(spec["data"]), k=K),
        f"cache.dir={job['cache']}",
        f"dataset.limit={1 if job['warmup'] else spec['queries']}",
        f"concurrency={spec['concurrency']}",
        "progress=false",
    ]
    if "transport" in {f.name for f in fields(ModelConfig)}:
        transport = "direct" if kind == "bsa-direct" else "litellm"  # bsa-litellm*: LiteLLM
        overrides += [f"model.transport={transport}", f"judge.transport={transport}"]
    return overrides


def worker(conn: Any, kind: str, spec: dict[str, Any], log: str) -> None:
    """One client's process: imports once, then one run per message, each on a fresh event loop."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)  # bsa prints its tables; the bench's own output stays readable
    os.dup2(fd, 2)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: where a stuck client is, in its log
    try:
        prepare = _setup(kind, spec)
    except Exception as e:  # reported by the parent, with the log
        conn.send({"error": f"setup: {type(e).__name__}: {e}"})
        return
    conn.send({"ready": True})
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        had_litellm = "litellm" in sys.modules
        cpu0, t0 = _cpu(), time.perf_counter()
        try:
            measured = prepare(job)  # e.g. composing bsa's config: once per run, not per request
            cpu0, t0 = _cpu(), time.perf_counter()
            failed, error = measured(), None
        except Exception as e:  # reported; the next round still runs
            failed, error = None, f"{type(e).__name__}: {str(e)[:300]}"
        wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
        conn.send(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "failed": failed,
                "error": error,
                "imported_litellm": not had_litellm and "litellm" in sys.modules,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )


def _setup(kind: str, spec: dict[str, Any]) -> Any:
    """Everything a client does once (imports, reading the bodies). Returns ``prepare(job)``, which
    does a run's unmeasured part and returns the measured one (the failed requests' count)."""
    C = spec["concurrency"]
    if kind in ("floor", "litellm", "litellm-zero"):
        if kind == "floor":
            import aiohttp  # noqa: F401  (imported outside the measurement, as LiteLLM is below)

            send: Any = _floor
        else:
            from bsa.llm import import_litellm

            litellm = import_litellm()
            if kind == "litellm-zero":
                zero_cost(litellm, ["target", "judge"])

            async def send(bodies: list[dict[str, Any]], concurrency: int) -> int:
                return await _litellm(litellm, bodies, concurrency)

        loaded: list[list[dict[str, Any]]] = []  # read at the first run: the recording may follow the start

        def replay(job: dict[str, Any]) -> Any:
            if not loaded:
                loaded.append(_load_bodies(spec["bodies"]))
            bodies = loaded[0][: 4 * C] if job["warmup"] else loaded[0]
            # In flight: 2 × C, as many as bsa keeps with concurrency=C (C per role): a slot the
            # server frees never waits for a client's round trip, so the floor is a floor.
            return lambda: asyncio.run(send(bodies, 2 * C))

        return replay
    if kind == "bsa-base":
        # The other checkout's bsa, conftest and helpers, imported before anything of this tree's.
        base = Path(os.environ[BASE_ENV]).resolve()
        for name in list(sys.modules):
            if name.split(".")[0] in ("bsa", "conftest", "helpers", "scripted_server"):
                del sys.modules[name]
        sys.path[:0] = [str(base / "tests"), str(base)]
    from conftest import compose_config

    from bsa.run import run

    if kind.startswith("bsa-litellm") or kind == "bsa-base":
        from bsa.llm import import_litellm

        import_litellm()  # as in the bare loops: LiteLLM's import is not a request's cost
    if kind == "bsa-litellm-lookup":
        # bsa's LiteLLM path as it was before unpriced models were registered at $0: LiteLLM searches
        # its price map for them on every reply. The comparison with bsa-litellm is that change alone.
        from bsa.providers import litellm_api

        litellm_api.register_unpriced = lambda ep, litellm: None

    def prepare(job: dict[str, Any]) -> Any:
        cfg = compose_config(_bsa_overrides(kind, spec, job))

        def measured() -> int:
            run(cfg, Path(job["run_dir"]))
            return 0

        return measured

    return prepare


# ---------------------------------------------------------------------------------------- parent


class Bench:
    def __init__(self, args: Any, data: Path, tmp: Path) -> None:
        self.args, self.data, self.tmp = args, data, tmp
        self.L, self.C = args.latency_ms / 1000, args.concurrency
        self.queries = max(1, math.ceil(args.requests / (3 * K)))
        self.ctx = mp.get_context("spawn")
        self.workers: dict[str, tuple[Any, Any]] = {}
        self.notes: list[str] = []
        self.lost: list[str] = []  # clients whose process died during the rounds

    def ask(self, conn: Any, message: Any, what: str, timeout: float = 600) -> Any:
        try:
            conn.send(message)
        except OSError:  # BrokenPipeError: the process on the other end has died
            raise RuntimeError(f"{what}: the process ended; see the logs in {self.tmp}") from None
        return self.answer(conn, what, timeout)

    def answer(self, conn: Any, what: str, timeout: float) -> Any:
        try:
            if conn.poll(timeout):
                return conn.recv()
        except (EOFError, OSError):  # the process on the other end has died
            raise RuntimeError(f"{what}: the process ended; see the logs in {self.tmp}") from None
        raise RuntimeError(f"{what}: no answer in {timeout:.0f} s; see the logs in {self.tmp}")

    def start_server(self) -> None:
        self.server_conn, child = self.ctx.Pipe()
        self.server = self.ctx.Process(target=serve, args=(child, str(self.data), 0.0, self.C), daemon=True)
        self.server.start()
        self.api_base = self.answer(self.server_conn, "the server's start", 120)

    def start_workers(self, kinds: list[str], bodies: Path) -> None:
        spec = {
            "api_base": self.api_base,
            "data": str(self.data),
            "queries": self.queries,
            "concurrency": self.C,
            "bodies": str(bodies),
        }
        for kind in kinds:  # started together: their imports overlap
            parent, child = self.ctx.Pipe()
            log = str(self.tmp / f"{kind}.log")
            p = self.ctx.Process(target=worker, args=(child, kind, spec, log), daemon=True)
            p.start()
            self.workers[kind] = (p, parent)
        for kind in kinds:
            got = self.answer(self.workers[kind][1], f"{kind}'s start", 300)
            if "error" in got:
                self.notes.append(f"{kind}: {got['error']} (log: {self.tmp / f'{kind}.log'}); left out")
                self.stop_worker(kind)

    def stop_worker(self, kind: str) -> None:
        p, conn = self.workers.pop(kind)
        try:
            conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        p.join(30)
        if p.is_alive():
            p.terminate()

    def job(self, kind: str, tag: str, warmup: bool = False) -> dict[str, Any]:
        return {
            "cache": str(self.tmp / tag / "cache"),
            "run_dir": str(self.tmp / tag / "run"),
            "warmup": warmup,
        }

    def warm_up(self, kind: str) -> None:
        """A small unmeasured run first: lazy imports and first connections are no round's cost."""
        got = self.ask(self.workers[kind][1], self.job(kind, f"warm-{kind}", True), f"{kind}'s warm-up", 600)
        self.ask(self.server_conn, ("stats", None), "the server's stats")
        shutil.rmtree(self.tmp / f"warm-{kind}", ignore_errors=True)
        if got.get("error"):
            self.notes.append(f"{kind}: its warm-up failed: {got['error']} (log: {self.tmp / f'{kind}.log'})")
        if got.get("imported_litellm"):
            self.notes.append(
                f"{kind}: imported LiteLLM in its first (warm-up) run, {got['cpu_s']:.1f} s of CPU in all"
            )

    def record(self, recorder: str) -> Path:
        """The request set: what bsa sends, recorded from one run at no latency (also a warm-up)."""
        bodies = self.tmp / "bodies.jsonl"
        conn = self.workers[recorder][1]
        t0 = time.perf_counter()
        got = self.ask(conn, self.job(recorder, "record"), "the recording run", 1200)
        if got.get("error"):
            raise RuntimeError(f"the recording run ({recorder}) failed: {got['error']}")
        if got.get("imported_litellm"):
            self.notes.append(f"{recorder}: imported LiteLLM in its first (recording) run")
        n = self.ask(self.server_conn, ("dump", str(bodies)), "the server's dump")
        self.ask(self.server_conn, ("stats", None), "the server's stats")
        shutil.rmtree(self.tmp / "record", ignore_errors=True)
        took = time.perf_counter() - t0
        print(f"recorded {n} requests from a bsa run ({recorder}, no latency) in {took:.1f} s")
        return bodies

    def round(self, r: int, kinds: list[str]) -> dict[str, Any]:
        order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
        out: dict[str, Any] = {"round": r + 1, "order": order, **probe(), "clients": {}}
        print(
            f"round {r + 1}: probe {out['probe_cpu_ms']:.0f} ms CPU, {out['probe_wall_ms']:.0f} ms wall",
            flush=True,
        )
        before = self.ask(self.server_conn, ("stats", None), "the server's stats")
        for kind in order:
            if kind not in self.workers:
                continue
            conn = self.workers[kind][1]
            try:
                got = self.ask(conn, self.job(kind, f"r{r}-{kind}"), f"{kind} in round {r + 1}", 1800)
            except RuntimeError as e:  # one client lost: the others' rounds still compare
                self.notes.append(f"{e}; {kind} left out from here on")
                self.lost.append(kind)
                self.workers.pop(kind)[0].terminate()
                before = self.ask(self.server_conn, ("stats", None), "the server's stats")
                continue
            after = self.ask(self.server_conn, ("stats", None), "the server's stats")
            shutil.rmtree(self.tmp / f"r{r}-{kind}", ignore_errors=True)
            got["requests"] = after["requests"]
            got["server_cpu_s"] = after["cpu_s"] - before["cpu_s"]
            got["server_max_in_flight"] = after["max_in_flight"]
            got["ideal_s"] = after["requests"] * self.L / self.C
            if after["errors"]:
                self.notes.append(f"round {r + 1}, {kind}: the server's responder failed {after['errors']}×")
            if got.get("error"):
                self.notes.append(f"round {r + 1}, {kind}: {got['error']} (log: {self.tmp / f'{kind}.log'})")
            if got.get("failed"):
                self.notes.append(f"round {r + 1}, {kind}: {got['failed']} requests failed")
            if got.get("imported_litellm"):
                self.notes.append(f"{kind}: imported LiteLLM during its measured run (counted)")
            out["clients"][kind] = got
            before = after
            if got.get("requests"):
                print(
                    f"  round {r + 1}, {kind}: {got['wall_s']:.1f} s, "
                    f"{1000 * got['cpu_s'] / got['requests']:.2f} ms CPU/request",
                    flush=True,
                )
        floor = out["clients"].get("floor")
        for got in out["clients"].values():
            if floor and got.get("requests") and floor.get("requests"):
                got["wall_vs_floor"] = got["wall_s"] / floor["wall_s"]
                got["cpu_vs_floor"] = (got["cpu_s"] / got["requests"]) / max(
                    floor["cpu_s"] / floor["requests"], 1e-9
                )
        return out

    def close(self) -> None:
        for kind in list(self.workers):
            self.stop_worker(kind)
        if hasattr(self, "server"):
            try:
                self.ask(self.server_conn, ("stop", None), "the server's stop", 30)
            except (RuntimeError, OSError, EOFError):
                pass
            self.server.join(10)
            if self.server.is_alive():
                self.server.terminate()


def summarize(rounds: list[dict[str, Any]], kinds: list[str]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        runs = [r["clients"][kind] for r in rounds if kind in r["clients"]]
        runs = [g for g in runs if g.get("requests") and not g.get("error")]
        if not runs:
            continue

        def stat(key: str, runs: list[dict[str, Any]] = runs) -> dict[str, float] | None:
            xs = [g[key] for g in runs if key in g]
            return {"min": min(xs), "median": statistics.median(xs)} if xs else None

        for g in runs:
            g["cpu_ms_per_request"] = 1000 * g["cpu_s"] / g["requests"]
            g["wall_vs_ideal"] = g["wall_s"] / g["ideal_s"] if g["ideal_s"] else float("nan")
        rows[kind] = {
            "rounds": len(runs),
            "requests": runs[0]["requests"],
            "wall_s": stat("wall_s"),
            "wall_vs_ideal": stat("wall_vs_ideal"),
            "cpu_ms_per_request": stat("cpu_ms_per_request"),
            "wall_vs_floor": stat("wall_vs_floor"),
            "cpu_vs_floor": stat("cpu_vs_floor"),
            "peak_rss_mib": max(g["peak_rss_mib"] for g in runs),
            "server_cpu_share": statistics.median(g["server_cpu_s"] / g["wall_s"] for g in runs),
        }
    return rows


def _table(head: tuple[str, ...], lines: list[tuple[str, ...]]) -> None:
    widths = [max(len(x) for x in col) for col in zip(head, *lines, strict=True)]
    for line in (head, *lines):
        print(
            "  ".join(
                x.ljust(w) if i == 0 else x.rjust(w)
                for i, (x, w) in enumerate(zip(line, widths, strict=True))
            )
        )


def report(
    args: Any, rounds: list[dict[str, Any]], rows: dict[str, dict[str, Any]], notes: list[str]
) -> None:
    print()
    print(
        "per round (order as run; probe: a fixed pure-Python loop, CPU ms / wall ms — the machine's speed):"
    )
    for r in rounds:
        parts = [
            f"{k} {g['wall_s']:.1f} s {1000 * g['cpu_s'] / g['requests']:.2f} ms/req"
            + (
                f" (×{g['wall_vs_floor']:.3f} wall, ×{g['cpu_vs_floor']:.2f} CPU)"
                if "wall_vs_floor" in g and k != "floor"
                else ""
            )
            for k, g in r["clients"].items()
            if g.get("requests") and not g.get("error")
        ]
        print(
            f"  round {r['round']}: probe {r['probe_cpu_ms']:.0f} / {r['probe_wall_ms']:.0f} ms; "
            + "; ".join(parts)
        )
    print()

    def mm(s: dict[str, float] | None, f: str) -> str:
        return f"{s['min']:{f}} / {s['median']:{f}}" if s else "—"

    head = (
        "client (min / median of rounds)",
        "requests",
        "wall s",
        "wall/ideal",
        "CPU ms/req",
        "wall ÷ floor",
        "CPU ÷ floor",
        "peak RSS MiB",
        "server CPU %",
    )
    lines = [
        (
            TITLES[k],
            f"{row['requests']}",
            mm(row["wall_s"], ".1f"),
            mm(row["wall_vs_ideal"], ".3f"),
            mm(row["cpu_ms_per_request"], ".2f"),
            mm(row["wall_vs_floor"], ".3f"),
            mm(row["cpu_vs_floor"], ".2f"),
            f"{row['peak_rss_mib']:.0f}",
            f"{100 * row['server_cpu_share']:.0f}",
        )
        for k, row in rows.items()
    ]
    _table(head, lines)
    print(
        f"ideal = requests × L / C = requests × {args.latency_ms:g} ms / {args.concurrency}; "
        "÷ floor: the client's figure over the floor's in the same round (the figures to compare); "
        "CPU: the client's process only, imports excluded; server CPU %: the server process's share of a core"
    )
    for a, b in (
        ("litellm-zero", "litellm"),
        ("bsa-litellm", "bsa-litellm-lookup"),
        ("bsa-litellm", "bsa-base"),
        ("bsa-direct", "bsa-litellm"),
        ("bsa-litellm", "litellm"),
    ):
        ratios = [
            (r["clients"][a]["cpu_s"] / r["clients"][a]["requests"])
            / (r["clients"][b]["cpu_s"] / r["clients"][b]["requests"])
            for r in rounds
            if all(
                r["clients"].get(x, {}).get("requests") and not r["clients"][x].get("error") for x in (a, b)
            )
        ]
        if ratios:
            each = ", ".join(f"{x:.2f}" for x in ratios)
            print(
                f"{TITLES[a]} ÷ {TITLES[b]}, CPU per request, same round: "
                f"median × {statistics.median(ratios):.2f} (rounds: {each})"
            )
    for n in dict.fromkeys(notes):
        print(f"note: {n}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=6000, help="about this many (queries × k=5 × 3)")
    p.add_argument("--latency-ms", type=float, default=200.0)
    p.add_argument(
        "--concurrency", type=int, default=64, help="the server's slots; bsa's concurrency (per role)"
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", default=",".join(CLIENTS), help=f"comma-separated, of: {', '.join(CLIENTS)}")
    p.add_argument("--json", help="write every figure to this file")
    args = p.parse_args()
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: where the bench is, on stderr
    kinds = [k.strip() for k in args.clients.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in CLIENTS]
    if unknown or not kinds:
        p.error(f"--clients: {', '.join(unknown) or 'none given'} not among {', '.join(CLIENTS)}")
    if args.rounds < 1 or args.requests < 1:
        p.error("--rounds and --requests must be at least 1")

    from conftest import dataset_path

    data = dataset_path()
    if data is None:
        print("bench: the BSA dataset was not found; set BSA_DATASET=…/dataset.csv", file=sys.stderr)
        return 2
    notes: list[str] = []
    if "bsa-direct" in kinds and not direct_transport_available():
        kinds.remove("bsa-direct")
        notes.append("bsa-direct skipped: bsa.providers.openai_direct does not exist in this tree yet")
    if "bsa-base" in kinds and not os.environ.get(BASE_ENV):
        kinds.remove("bsa-base")  # nothing to compare with; not a note: the usual case
    tmp = Path(tempfile.mkdtemp(prefix="bsa-bench-rounds-"))
    bench = Bench(args, data, tmp)
    bench.notes = notes
    load_before = os.getloadavg()[0]
    print(
        f"bench_rounds: {bench.queries} queries × k={K} × 3 ≈ {bench.queries * 3 * K} requests per client, "
        f"L={args.latency_ms:g} ms, C={args.concurrency} (server slots; bsa per role, replays 2C), "
        f"{args.rounds} rounds; "
        f"{os.cpu_count()} CPUs, load average {load_before:.1f}; clients: {', '.join(kinds)}"
    )
    print("absolute figures depend on this machine's speed at this hour: compare the ratios of one run")
    rounds: list[dict[str, Any]] = []
    try:
        bench.start_server()
        # The direct transport records fastest, and the floor then replays exactly what it sends.
        recorder = next((k for k in ("bsa-direct", "bsa-litellm") if k in kinds), "bsa-litellm")
        # All start together (their imports overlap); the replays read the bodies at their first run.
        bench.start_workers(list(dict.fromkeys([recorder, *kinds])), tmp / "bodies.jsonl")
        if recorder not in bench.workers:
            print(f"bench: the recording client {recorder} did not start; see {tmp}", file=sys.stderr)
            for n in notes:
                print(f"note: {n}")
            return 1
        bench.record(recorder)
        if recorder not in kinds:
            bench.stop_worker(recorder)
        kinds = [k for k in kinds if k in bench.workers]
        bench.ask(bench.server_conn, ("latency", bench.L), "the server's latency")
        for kind in kinds:
            if kind != recorder:
                bench.warm_up(kind)
        for r in range(args.rounds):
            rounds.append(bench.round(r, kinds))
    finally:
        bench.close()
    rows = summarize(rounds, kinds)
    for kind, row in rows.items():
        if kind != "floor" and row["requests"] > 2 * args.concurrency:
            most = max(r["clients"][kind]["server_max_in_flight"] for r in rounds if kind in r["clients"])
            if most < args.concurrency:
                notes.append(f"{kind}: the server saw at most {most} in flight (C={args.concurrency})")
    if "floor" not in rows:
        notes.append("no floor in this run: no ratios to it")
    report(args, rounds, rows, notes)
    print(f"(logs: {tmp}; load average {os.getloadavg()[0]:.1f} at the end)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "rounds": rounds, "summary": rows, "notes": notes}, indent=1)
        )
    errors = any(c.get("error") or c.get("failed") for r in rounds for c in r["clients"].values())
    return 0 if rows and all(k in rows for k in kinds) and not bench.lost and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
