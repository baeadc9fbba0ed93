"""``run(cfg, run_dir) -> Results``: the whole evaluation on typed config; tests call it directly.

Stages, each cached through the one client: generation (k samples per query), then judging (answer
safety and reasoning coverage per sample), then metrics. Rows are keyed by (query id, sample index)
and appended to the run dir as they complete; a rerun in the same dir skips rows already there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import platform
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bsa import __version__, console, data, generate, judge, metrics, results
from bsa.config import Config, JudgeConfig, ModelConfig
from bsa.data import Query
from bsa.llm import Client, Stats
from bsa.server import ManagedServer
from bsa.verdict import SAFETY, THINK


class ConfigError(ValueError):
    pass


@dataclass
class Results:
    run_dir: Path
    metrics: dict[str, Any]
    generations: list[dict[str, Any]]
    judgments: list[dict[str, Any]]
    stats: Stats
    queries: list[Query]


SERVE_BACKENDS = ("none", "llama_cpp", "vllm")


def validate(cfg: Config) -> None:
    """Checks that Hydra's types cannot express; each error names the key and the fix."""
    problems = []
    if cfg.sampling.k < 1:
        problems.append(f"sampling.k={cfg.sampling.k}: must be at least 1 (the paper uses 5)")
    if cfg.concurrency < 1:
        problems.append(f"concurrency={cfg.concurrency}: must be at least 1")
    if not 0 < cfg.alpha < 1:
        problems.append(f"alpha={cfg.alpha}: must lie strictly between 0 and 1")
    if cfg.max_attempts < 1:
        problems.append(f"max_attempts={cfg.max_attempts}: must be at least 1")
    if cfg.judge.max_reasks < 0:
        problems.append(f"judge.max_reasks={cfg.judge.max_reasks}: must be 0 or more")
    if cfg.judge.structured_output not in judge.STRUCTURED_OUTPUT:
        problems.append(
            f"judge.structured_output={cfg.judge.structured_output!r}: expected one of "
            f"{', '.join(judge.STRUCTURED_OUTPUT)}"
        )
    if cfg.judge.empty_reasoning not in judge.EMPTY_REASONING:
        problems.append(
            f"judge.empty_reasoning={cfg.judge.empty_reasoning!r}: expected one of "
            f"{', '.join(judge.EMPTY_REASONING)}"
        )
    if cfg.model.serve.backend not in SERVE_BACKENDS:
        problems.append(
            f"model.serve.backend={cfg.model.serve.backend!r}: expected one of {', '.join(SERVE_BACKENDS)}"
        )
    if cfg.judge.serve.backend not in (*SERVE_BACKENDS, "model"):
        problems.append(
            f"judge.serve.backend={cfg.judge.serve.backend!r}: expected one of "
            f"{', '.join(SERVE_BACKENDS)}, model"
        )
    if cfg.judge.serve.backend == "model" and cfg.model.serve.backend == "none":
        problems.append(
            "judge.serve.backend=model reuses the model's managed server, but the model has none "
            "(model.serve.backend=none); choose a judge with its own endpoint, e.g. judge=openai_compatible"
        )
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def config_fingerprint(cfg: Config) -> str:
    """What must not change between a run and its resumption in the same run dir."""
    keep = {
        "model": dataclasses.asdict(cfg.model),
        "sampling": dataclasses.asdict(cfg.sampling),
        "mitigation": dataclasses.asdict(cfg.mitigation),
        "judge": dataclasses.asdict(cfg.judge),
    }
    for section in ("model", "judge"):
        keep[section].pop("api_base", None)  # managed servers get a new port each start
        keep[section]["serve"].pop("port", None)
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


async def _stage(
    title: str,
    jobs: list[Callable[[], Awaitable[dict[str, Any]]]],
    sink: Callable[[dict[str, Any]], None],
    show_progress: bool,
) -> None:
    """Run jobs concurrently (the client bounds the concurrency); the first failure cancels the rest."""
    if not jobs:
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console.console,
        disable=not show_progress,
        transient=False,
    )
    tasks = [asyncio.ensure_future(job()) for job in jobs]
    try:
        with progress:
            bar = progress.add_task(title, total=len(tasks))
            for fut in asyncio.as_completed(tasks):
                sink(await fut)
                progress.advance(bar)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _serve(stack: ExitStack, cfg: Config, run_dir: Path) -> tuple[ModelConfig, JudgeConfig, list[str]]:
    """Start the managed servers the config asks for; return configs pointing at them."""
    model, judge_cfg = cfg.model, cfg.judge
    notes = []
    model_server: ManagedServer | None = None
    if model.serve.backend != "none":
        console.console.print(f"Starting the {model.serve.backend} server for {model.name} …")
        model_server = stack.enter_context(ManagedServer(model.serve, model.hf_model, run_dir, "model"))
        model = dataclasses.replace(model, api_base=model_server.api_base)
        notes.append(f"model server: {' '.join(model_server.cmd)} at {model_server.api_base}")
    if judge_cfg.serve.backend == "model":
        assert model_server is not None
        judge_cfg = dataclasses.replace(judge_cfg, api_base=model_server.api_base)
    elif judge_cfg.serve.backend != "none":
        console.console.print(f"Starting the {judge_cfg.serve.backend} server for the judge …")
        js = stack.enter_context(ManagedServer(judge_cfg.serve, None, run_dir, "judge"))
        judge_cfg = dataclasses.replace(judge_cfg, api_base=js.api_base)
        notes.append(f"judge server: {' '.join(js.cmd)} at {js.api_base}")
    return model, judge_cfg, notes


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def run(cfg: Config, run_dir: Path) -> Results:
    validate(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    queries, source = data.load(cfg.dataset, cfg.cache.dir)
    templates = judge.load_templates(cfg.judge.templates_dir)
    system = generate.system_prompt(cfg.model, cfg.mitigation)
    fingerprint = config_fingerprint(cfg)
    info_path = run_dir / "run.json"
    if info_path.exists():
        previous = json.loads(info_path.read_text(encoding="utf-8")).get("config_fingerprint")
        if previous and previous != fingerprint:
            raise ConfigError(
                f"{run_dir} holds a run with another model/sampling/mitigation/judge config; "
                "resume it with the same overrides, or choose a new run dir"
            )
    # Preflight: a missing key fails now, not after the first thousand calls.
    generate.endpoint(cfg.model).api_key()
    judge.endpoint(cfg.judge).api_key()

    if cfg.dataset.demo:
        console.console.print(
            "[yellow]Demo data: a few illustrative queries written for bsa, not the BSA benchmark. "
            "Evaluate the benchmark with dataset=bsa dataset.path=… (or dataset.hf_id=…).[/]"
        )
    info: dict[str, Any] = {
        "bsa_version": __version__,
        "python": platform.python_version(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_fingerprint": fingerprint,
        "dataset": {
            "source": str(source),
            "sha256": _sha256(source),
            "n_queries": len(queries),
            "scenarios": data.summary(queries),
            "demo": cfg.dataset.demo,
        },
        "model": cfg.model.name,
        "judge": cfg.judge.name,
        "mitigation": cfg.mitigation.name,
        "sampling": cfg.sampling.name,
        "k": cfg.sampling.k,
        "status": "running",
    }
    results.atomic_write(info_path, json.dumps(info, indent=2) + "\n")

    gen_path = run_dir / results.GENERATIONS
    judge_path = run_dir / results.JUDGMENTS
    t0 = time.perf_counter()
    with ExitStack() as stack:
        model_cfg, judge_cfg, notes = _serve(stack, cfg, run_dir)
        info["servers"] = notes
        client = stack.enter_context(
            Client(
                cfg.cache.dir if cfg.cache.enabled else None,
                concurrency=cfg.concurrency,
                timeout_s=cfg.request_timeout_s,
                max_attempts=cfg.max_attempts,
            )
        )
        try:
            gens, judgments = asyncio.run(
                _run_stages(
                    cfg, model_cfg, judge_cfg, client, queries, system, templates, gen_path, judge_path
                )
            )
        except BaseException as e:
            info["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            info["error"] = f"{type(e).__name__}: {e}"
            info["stats"] = dataclasses.asdict(client.stats)
            results.atomic_write(info_path, json.dumps(info, indent=2) + "\n")
            raise

    gens = results.sort_rows(gens, queries)
    judgments = results.sort_rows(judgments, queries)
    results.write_jsonl(gen_path, gens)
    results.write_jsonl(judge_path, judgments)
    samples = results.scores(queries, gens, judgments)
    m = metrics.compute(samples, cfg.sampling.k, cfg.alpha)
    results.write_metrics(run_dir / results.METRICS, m)
    results.atomic_write(run_dir / results.RESULTS_CSV, results.upstream_csv(cfg.model.name, samples))
    info.update(
        status="complete",
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_s=round(time.perf_counter() - t0, 2),
        stats=dataclasses.asdict(client.stats),
    )
    results.atomic_write(info_path, json.dumps(info, indent=2) + "\n")
    return Results(run_dir, m, gens, judgments, client.stats, queries)


async def _run_stages(
    cfg: Config,
    model_cfg: ModelConfig,
    judge_cfg: JudgeConfig,
    client: Client,
    queries: list[Query],
    system: str | None,
    templates: dict[tuple[str, str], judge.Template],
    gen_path: Path,
    judge_path: Path,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    wanted = {q.id for q in queries}
    k = cfg.sampling.k
    gens = {
        (r["id"], r["sample_index"]): r
        for r in results.read_jsonl(gen_path)
        if r["id"] in wanted and r["sample_index"] < k
    }
    # Rewrite without a torn last line before appending to it.
    results.write_jsonl(gen_path, gens.values())
    appender = results.JsonlAppender(gen_path)

    def keep_gen(row: dict[str, Any]) -> None:
        gens[(row["id"], row["sample_index"])] = row
        appender.write(row)

    def gen_job(q: Query, i: int) -> Callable[[], Awaitable[dict[str, Any]]]:
        return lambda: generate.generate_one(
            client, model_cfg, cfg.sampling, cfg.mitigation.name, system, q, i
        )

    jobs = [gen_job(q, i) for q in queries for i in range(k) if (q.id, i) not in gens]
    try:
        await _stage(f"generate ({model_cfg.name})", jobs, keep_gen, cfg.progress)
    finally:
        appender.close()

    by_id = {q.id: q for q in queries}
    judged = {
        (r["id"], r["sample_index"], r["kind"]): r
        for r in results.read_jsonl(judge_path)
        if (r["id"], r["sample_index"]) in gens
    }
    results.write_jsonl(judge_path, judged.values())
    appender = results.JsonlAppender(judge_path)

    def keep_judgment(row: dict[str, Any]) -> None:
        judged[(row["id"], row["sample_index"], row["kind"])] = row
        appender.write(row)

    def judge_job(g: dict[str, Any], kind: str) -> Callable[[], Awaitable[dict[str, Any]]]:
        return lambda: judge.judge_one(client, judge_cfg, templates, by_id[g["id"]], g, kind)

    jobs = [
        judge_job(g, kind)
        for g in results.sort_rows(gens.values(), queries)
        for kind in (SAFETY, THINK)
        if (g["id"], g["sample_index"], kind) not in judged
    ]
    try:
        await _stage(f"judge ({judge_cfg.name})", jobs, keep_judgment, cfg.progress)
    finally:
        appender.close()
    return list(gens.values()), list(judged.values())
