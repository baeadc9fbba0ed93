"""How close the engine comes to the ideal, against a bare loop and the upstream script (one run each).

Not ``make bench`` (that is ``tests/bench_rounds.py``): here each client runs once, minutes apart, so
a change in the machine's speed between them (up to ~3× here) reads as a difference between clients.
Compare its figures only as a rough picture, and the upstream script's only with this script's others.

One run each, on loopback servers that answer every request after a fixed latency L and serve at
most C requests at once (as a model server with C slots would):

1. bsa: ``bsa.run.run`` on the BSA dataset (generation and both judgments);
2. a bare ``litellm.acompletion`` loop replaying exactly the requests bsa sent (same bodies, same
   servers, C in flight per server): what the same work costs with no engine around it;
3. the upstream batch script (``../shared/bsa/upstream_code/batch_openai_inference.py``), run as it is
   from its own YAML config (its shipped values, with base_url, model_name, max_concurrent=C and
   the io paths set): generation only, one row per query and sample, as its users run it.

Each runs in a subprocess of its own (``os.wait4`` gives that process's CPU time and peak RSS); the
servers run here. For each: wall (measured inside the process, imports excluded: LiteLLM is imported
before the clock starts in both bsa and the bare loop), ideal (requests ×
L / C per server; with two servers the busier one's), wall/ideal, requests/s, harness CPU ms per
request (in the run, and for the whole process with its imports), peak RSS; then the ratios between
them. bsa's request count is its run.json ``stats.requests``. The server's own CPU time is shown: near
the wall time, the threaded server (one GIL) would be the bottleneck, not the harness.

The upstream script needs ``aiofiles`` and ``colorlog`` (not bsa dependencies): without them it is
skipped with a note (``pip install aiofiles colorlog``, or ``--upstream-python`` /  ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REPO = HERE.parent
UPSTREAM = REPO.parent / "shared" / "bsa" / "upstream_code" / "batch_openai_inference.py"
UPSTREAM_IMPORTS = "yaml, pandas, aiofiles, tqdm, colorlog, openai"
REPLAY_PARAMS = ("temperature", "top_p", "max_tokens", "seed", "n", "response_format", "stop")


# ---------------------------------------------------------------------------------------- servers


class Paced:
    """A responder wrapper: each HTTP request holds one of ``limit`` slots for ``latency_s`` (once per
    request, also for n > 1, whose choices the server asks for one by one in the same thread)."""

    def __init__(self, inner: Any, latency_s: float, limit: int) -> None:
        self.inner, self.latency_s = inner, latency_s
        self.slots = threading.BoundedSemaphore(limit)
        self.local = threading.local()
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0

    def __call__(self, body: dict[str, Any]) -> Any:
        from scripted_server import Reply

        n = int(body.get("n") or 1)
        choice = getattr(self.local, "choice", 0)
        self.local.choice = (choice + 1) % n
        if choice == 0:
            with self.slots:
                with self.lock:
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                time.sleep(self.latency_s)
                with self.lock:
                    self.in_flight -= 1
        try:
            return self.inner(body)
        except Exception:  # a prompt the scripted model does not know: any well-formed answer will do
            return Reply(message={"reasoning_content": "R", "content": "A"})


def responder_for(queries: list[Any]) -> Any:
    from helpers import responder

    from bsa.verdict import THINK_LABELS

    scenario = {q.id: q.scenario for q in queries}

    def verdicts(kind: str, qid: str, i: int) -> str:
        h = int(hashlib.sha256(qid.encode()).hexdigest()[:8], 16)
        if kind == "safety":
            return "Unsafe" if (h + i) % 7 == 0 else "Safe"
        labels = THINK_LABELS[scenario[qid]]
        return labels[(h // 7 + i) % len(labels)]

    return responder({q.query: q.id for q in queries}, verdicts)


# ---------------------------------------------------------------------------------------- children


def child_bsa(spec: dict[str, Any]) -> dict[str, Any]:
    from conftest import compose_config
    from helpers import scripted_overrides

    from bsa.llm import import_litellm
    from bsa.run import run

    # LiteLLM's import (~5 s of CPU here) is outside the measured run, as in the bare loop: both
    # columns compare the same work, and "(all)" still counts imports for everyone.
    import_litellm()
    overrides = [
        *scripted_overrides(spec["model_base"], Path(spec["data"]), k=spec["k"]),
        f"judge.api_base={spec['judge_base']}",
        f"cache.dir={spec['cache']}",
        f"dataset.limit={spec['queries']}",
        f"concurrency={spec['concurrency']}",
        "progress=false",
        *(["sampling.batch_samples=true"] if spec["batch_samples"] else []),
    ]
    cfg = compose_config(overrides)
    cpu0, t0 = _cpu(), time.perf_counter()
    try:
        run(cfg, Path(spec["run_dir"]))
        error = None
    except Exception as e:  # reported, with what the run dir says
        error = f"{type(e).__name__}: {str(e)[:300]}"
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    info_path = Path(spec["run_dir"]) / "run.json"
    stats = json.loads(info_path.read_text()).get("stats", {}) if info_path.is_file() else {}
    return {"wall_s": wall, "cpu_run_s": cpu, "stats": stats, "error": error}


def child_litellm(spec: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    from bsa.llm import import_litellm

    litellm = import_litellm()
    with open(spec["bodies"], encoding="utf-8") as f:
        bodies = [json.loads(line) for line in f]

    async def main() -> int:
        sems = {base: asyncio.Semaphore(spec["concurrency"]) for base in {b["_api_base"] for b in bodies}}

        async def one(body: dict[str, Any]) -> bool:
            body = dict(body)
            base, model, messages = body.pop("_api_base"), body.pop("model"), body.pop("messages")
            params = {k: body.pop(k) for k in REPLAY_PARAMS if k in body}
            if body:
                params["extra_body"] = body
            async with sems[base]:
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
                except Exception:  # counted
                    return False

        done = await asyncio.gather(*(one(b) for b in bodies))
        return sum(not ok for ok in done)

    cpu0, t0 = _cpu(), time.perf_counter()
    failed = asyncio.run(main())
    return {
        "wall_s": time.perf_counter() - t0,
        "cpu_run_s": _cpu() - cpu0,
        "requests": len(bodies),
        "failed": failed,
    }


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_main(kind: str, spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    child = child_bsa if kind == "bsa" else child_litellm
    profile_to = os.environ.get("BSA_BENCH_PROFILE")  # a directory: each child leaves <kind>.prof there
    if profile_to:
        import cProfile

        with cProfile.Profile() as prof:
            out = child(spec)
        prof.dump_stats(str(Path(profile_to) / f"{kind}.prof"))
    else:
        out = child(spec)
    Path(out_path).write_text(json.dumps(out))
    return 0


# ---------------------------------------------------------------------------------------- parent


def spawn(cmd: list[str], log: Path, cwd: Path | None = None) -> dict[str, Any]:
    """Run a child to its end; its own wall, CPU and peak RSS (this process's usage is left out)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd)
        _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return {
        "rc": p.returncode,
        "process_wall_s": time.perf_counter() - t0,
        "cpu_total_s": ru.ru_utime + ru.ru_stime,
        "peak_rss_mib": ru.ru_maxrss / 1024,  # KiB on Linux
    }


def tail(log: Path, n: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queries", type=int, default=1400)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--latency-ms", type=float, default=200.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--two-servers", action="store_true", help="model and judge on two servers, C each")
    p.add_argument("--batch-samples", action="store_true", help="sampling.batch_samples=true (n=k)")
    p.add_argument("--full", action="store_true", help="2,000 × 5, and a warm re-run on the same cache")
    p.add_argument("--upstream-python", default=sys.executable, help="interpreter for the upstream script")
    p.add_argument("--skip", default="", help="comma-separated: bsa, litellm, upstream")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child_main(args.child, args.spec, args.out)
    if args.full:
        args.queries, args.k = 2000, 5
    skip = set(filter(None, args.skip.split(",")))
    args.load_before = os.getloadavg()[0]

    from conftest import dataset_path
    from scripted_server import ScriptedServer

    from bsa.data import read

    data = dataset_path()
    if data is None:
        print("bench: the BSA dataset was not found; set BSA_DATASET=…/dataset.csv", file=sys.stderr)
        return 2
    queries = read(data)
    L, C = args.latency_ms / 1000, args.concurrency
    tmp = Path(tempfile.mkdtemp(prefix="bsa-bench-engine-"))
    inner = responder_for(queries)
    paced = [Paced(inner, L, C) for _ in range(2 if args.two_servers else 1)]
    servers = [ScriptedServer(x) for x in paced]
    for s in servers:
        # A reply's body otherwise waits ~40 ms for the client's delayed ACK (bench_rounds.py's serve).
        s._httpd.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        s.__enter__()
    model_srv, judge_srv = servers[0], servers[-1]
    me = [sys.executable, str(Path(__file__).resolve())]
    rows: dict[str, dict[str, Any]] = {}
    notes: list[str] = []

    def server_cpu() -> float:
        return _cpu()  # this process runs nothing but the servers while a child runs

    def measured(name: str, cmd: list[str], cwd: Path | None = None) -> tuple[dict[str, Any], float]:
        before = [len(s.requests) for s in servers]
        cpu0 = server_cpu()
        for x in paced:
            x.max_in_flight = 0
        got = spawn(cmd, tmp / f"{name}.log", cwd)
        got["server_cpu_s"] = server_cpu() - cpu0
        got["server_requests"] = [len(s.requests) - b for s, b in zip(servers, before, strict=True)]
        got["server_max_in_flight"] = [x.max_in_flight for x in paced]
        if got["rc"] != 0:
            log = tmp / f"{name}.log"
            notes.append(f"{name}: exit {got['rc']}; last lines of {log}:\n{tail(log)}")
        return got, time.perf_counter()

    def ideal(per_server: list[int]) -> float:
        return max(per_server) * L / C

    def run_bsa(name: str, cache: Path) -> dict[str, Any] | None:
        spec = {
            "model_base": model_srv.api_base,
            "judge_base": judge_srv.api_base,
            "data": str(data),
            "k": args.k,
            "cache": str(cache),
            "queries": args.queries,
            "concurrency": C,
            "batch_samples": args.batch_samples,
            "run_dir": str(tmp / name / "run"),
        }
        (tmp / f"{name}.spec.json").write_text(json.dumps(spec))
        got, _ = measured(
            name,
            [
                *me,
                "--child",
                "bsa",
                "--spec",
                str(tmp / f"{name}.spec.json"),
                "--out",
                str(tmp / f"{name}.out.json"),
            ],
        )
        if not (tmp / f"{name}.out.json").is_file():
            return None
        child = json.loads((tmp / f"{name}.out.json").read_text())
        stats = child["stats"]
        if child["error"]:
            notes.append(f"{name}: {child['error']}")
        requests = int(stats.get("requests", sum(got["server_requests"])))
        per_server = got["server_requests"]
        by_role = stats.get("by_role") or {}
        if len(servers) == 2 and all("requests" in (by_role.get(r) or {}) for r in ("model", "judge")):
            per_server = [by_role["model"]["requests"], by_role["judge"]["requests"]]
        elif len(servers) == 1:
            per_server = [requests]
        row = {
            **got,
            **child,
            "requests": requests,
            "calls": stats.get("calls"),
            "ideal_s": ideal(per_server),
        }
        row.pop("stats")
        return row

    try:
        if "bsa" not in skip:
            row = run_bsa("bsa", tmp / "cache")
            if row:
                rows["bsa"] = row
                if args.full:
                    warm = run_bsa("bsa_warm", tmp / "cache")
                    if warm:
                        warm["ideal_s"] = 0.0
                        rows["bsa warm re-run"] = warm
        if "litellm" not in skip and "bsa" in rows:
            # Exactly the bodies bsa sent, each to the server it went to.
            bodies = tmp / "bodies.jsonl"
            with open(bodies, "w", encoding="utf-8") as f:
                for s in servers:
                    for b in s.requests[: rows["bsa"]["server_requests"][servers.index(s)]]:
                        f.write(json.dumps({**b, "_api_base": s.api_base}) + "\n")
            spec = {"bodies": str(bodies), "concurrency": C}
            (tmp / "litellm.spec.json").write_text(json.dumps(spec))
            got, _ = measured(
                "litellm",
                [
                    *me,
                    "--child",
                    "litellm",
                    "--spec",
                    str(tmp / "litellm.spec.json"),
                    "--out",
                    str(tmp / "litellm.out.json"),
                ],
            )
            if (tmp / "litellm.out.json").is_file():
                child = json.loads((tmp / "litellm.out.json").read_text())
                rows["bare litellm loop"] = {**got, **child, "ideal_s": ideal(got["server_requests"])}
                if child["failed"]:
                    notes.append(f"bare litellm loop: {child['failed']} requests failed")
        if "upstream" not in skip:
            row = run_upstream(args, queries, model_srv.api_base, tmp, notes, measured)
            if row:
                row["ideal_s"] = row["requests"] * L / C
                rows["upstream script"] = row
    finally:
        for s in servers:
            s.__exit__(None, None, None)

    report(args, rows, notes, tmp)
    return 0 if rows and not any(r.get("error") for r in rows.values()) else 1


def run_upstream(
    args: Any, queries: list[Any], base: str, tmp: Path, notes: list[str], measured: Any
) -> dict[str, Any] | None:
    if not UPSTREAM.is_file():
        notes.append(f"upstream script: {UPSTREAM} not found; skipped")
        return None
    check = subprocess.run(
        [args.upstream_python, "-c", f"import {UPSTREAM_IMPORTS}"], capture_output=True, text=True
    )
    if check.returncode != 0:
        missing = re.findall(r"No module named '([^']+)'", check.stderr)
        notes.append(
            f"upstream script: skipped, {args.upstream_python} lacks {', '.join(missing) or 'a module'} "
            "(pip install aiofiles colorlog; or PYTHONPATH=… / --upstream-python=…)"
        )
        return None
    import csv

    import yaml

    from bsa.config import DatasetConfig
    from bsa.data import select

    chosen = select(queries, DatasetConfig(limit=args.queries))  # the queries bsa's dataset.limit picks
    work = tmp / "upstream"
    work.mkdir()
    with open(work / "input.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "question"])
        for q in chosen:
            for i in range(args.k):
                w.writerow([f"{q.id}_{i}", q.query])
    shipped = yaml.safe_load((UPSTREAM.parent / "openai_config.yaml").read_text())
    shipped["model"].update(api_key="no-key", base_url=base, model_name="target")
    shipped["runtime"]["max_concurrent"] = args.concurrency
    shipped["io"] = {
        "input_file": str(work / "input.csv"),
        "output_file": str(work / "output.csv"),
        "checkpoint_dir": str(work / "checkpoints"),
    }
    (work / "config.yaml").write_text(yaml.safe_dump(shipped, allow_unicode=True))
    startup, _ = measured("upstream_imports", [args.upstream_python, "-c", f"import {UPSTREAM_IMPORTS}"])
    got, _ = measured(
        "upstream", [args.upstream_python, str(UPSTREAM), "-c", str(work / "config.yaml")], cwd=work
    )
    log = (tmp / "upstream.log").read_text(errors="replace")
    took = re.search(r"总耗时: ([\d.]+)秒", log)
    ok, failed = re.search(r"成功: (\d+)", log), re.search(r"失败: (\d+)", log)
    requests = len(chosen) * args.k
    row = {
        **got,
        "wall_s": float(took.group(1)) if took else got["process_wall_s"] - startup["process_wall_s"],
        "cpu_run_s": got["cpu_total_s"] - startup["cpu_total_s"],  # less its imports, measured apart
        "requests": requests,
        "succeeded": int(ok.group(1)) if ok else None,
    }
    if failed and int(failed.group(1)):
        notes.append(f"upstream script: {failed.group(1)} of {requests} failed")
    return row


def report(args: Any, rows: dict[str, dict[str, Any]], notes: list[str], tmp: Path) -> None:
    L, C = args.latency_ms, args.concurrency
    servers = "two servers (model, judge)" if args.two_servers else "one server"
    print(
        f"bench_engine: {args.queries} queries × k={args.k}, L={L:g} ms, C={C} per server, {servers}"
        + (", n=k" if args.batch_samples else "")
        + f"; {os.cpu_count()} CPUs, load average {args.load_before:.1f} before, "
        + f"{os.getloadavg()[0]:.1f} after"
    )
    if args.load_before > (os.cpu_count() or 1):
        notes.append(
            "the machine was busy (load above its CPU count): walls are stretched; CPU ms/req less so"
        )
    head = (
        "",
        "requests",
        "wall s",
        "ideal s",
        "wall/ideal",
        "req/s",
        "CPU ms/req",
        "(all)",
        "peak RSS MiB",
        "server CPU %",
    )
    table = []
    for name, r in rows.items():
        req = r.get("requests") or 0
        wall = r.get("wall_s") or 0.0
        table.append(
            (
                name,
                f"{req}",
                f"{wall:.1f}",
                f"{r['ideal_s']:.1f}",
                f"{wall / r['ideal_s']:.2f}" if r.get("ideal_s") else "—",
                f"{req / wall:.0f}" if wall else "—",
                f"{1000 * r['cpu_run_s'] / req:.2f}" if req else "—",
                f"{1000 * r['cpu_total_s'] / req:.2f}" if req else "—",
                f"{r['peak_rss_mib']:.0f}",
                f"{100 * r['server_cpu_s'] / wall:.0f}" if wall else "—",
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table, strict=True)]
    for line in (head, *table):
        print(
            "  ".join(
                str(x).rjust(w) if i else str(x).ljust(w)
                for i, (x, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    print(
        "ideal = requests × L / C per server (the busier server's share when two); CPU ms/req: the harness"
        " in its run, (all): with interpreter start and imports; server CPU %: the loopback server's share"
        " of a core"
    )
    if "bsa warm re-run" in rows:
        w = rows["bsa warm re-run"]
        print(
            f"warm re-run on the same cache: wall {w['wall_s']:.1f} s, {w.get('calls')} calls, "
            f"{w.get('requests')} requests"
        )
    base = rows.get("bsa")
    for other in ("bare litellm loop", "upstream script"):
        o = rows.get(other)
        if base and o and o.get("requests") and base.get("requests"):
            ratios = {
                "wall/ideal": (base["wall_s"] / base["ideal_s"]) / (o["wall_s"] / o["ideal_s"]),
                "CPU ms/req": (base["cpu_run_s"] / base["requests"])
                / max(o["cpu_run_s"] / o["requests"], 1e-9),
                "peak RSS": base["peak_rss_mib"] / o["peak_rss_mib"],
            }
            print(f"bsa ÷ {other}: " + ", ".join(f"{k} × {v:.2f}" for k, v in ratios.items()))
    for name, r in rows.items():
        if (
            r.get("server_max_in_flight")
            and max(r["server_max_in_flight"]) < C
            and r.get("requests", 0) > 2 * C
        ):
            notes.append(f"{name}: the server saw at most {r['server_max_in_flight']} in flight (C={C})")
    for n in notes:
        print(f"note: {n}")
    print(f"(logs and run dirs: {tmp})")
    if args.json:
        print(json.dumps({"args": vars(args), "rows": rows, "notes": notes}, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
