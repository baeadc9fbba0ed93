"""``run(cfg, run_dir) -> Results``: the whole evaluation on typed config; tests call it directly.

Stages, each cached through the one client: generation (k samples per query), then judging (answer
safety and reasoning coverage per sample), then metrics. Rows are keyed by (query id, sample index)
and appended to the run dir as they complete; a rerun in the same dir skips rows already there.

Nothing lost, nothing invented: a call whose transient errors outlast its retries is recorded as a
failure (never as a verdict) and the run goes on; a fatal error, a run of consecutive failures, a
budget or Ctrl-C stops new calls, lets calls in flight finish, writes what is done with metrics
marked partial, and raises ``RunIncomplete``. A second Ctrl-C (or SIGTERM) stops at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import platform
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bsa import __version__, console, data, generate, judge, metrics, prompts, provenance, results
from bsa.config import Config, JudgeConfig, ModelConfig
from bsa.data import Query
from bsa.llm import Client, ModelCallError, Stats, Stopped, TransientFailure, preflight
from bsa.server import ManagedServer
from bsa.verdict import SAFETY, THINK

SERVE_BACKENDS = ("none", "llama_cpp", "vllm")
Row = dict[str, Any]
Job = Callable[[], Awaitable[Row]]


class ConfigError(ValueError):
    pass


@dataclass
class Results:
    run_dir: Path
    metrics: dict[str, Any]
    generations: list[Row]
    judgments: list[Row]
    stats: Stats
    queries: list[Query]
    stop_reason: str | None = None
    failures: list[Row] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.stop_reason is None and not self.failures


class RunIncomplete(RuntimeError):
    """The run stopped early or some calls failed; finished rows and partial metrics were written."""

    def __init__(self, message: str, results: Results) -> None:
        super().__init__(message)
        self.results = results


def validate(cfg: Config) -> None:
    """Checks that Hydra's types cannot express; each error names the key and the fix."""
    problems = []
    if cfg.sampling.k < 1:
        problems.append(f"sampling.k={cfg.sampling.k}: must be at least 1 (the paper uses 5)")
    for name, value in (
        ("concurrency", cfg.concurrency),
        ("model.concurrency", cfg.model.concurrency),
        ("judge.concurrency", cfg.judge.concurrency),
    ):
        if value is not None and value < 1:
            problems.append(f"{name}={value}: must be at least 1")
    if not 0 < cfg.alpha < 1:
        problems.append(f"alpha={cfg.alpha}: must lie strictly between 0 and 1")
    if cfg.max_attempts < 1:
        problems.append(f"max_attempts={cfg.max_attempts}: must be at least 1")
    if cfg.max_consecutive_failures < 1:
        problems.append(f"max_consecutive_failures={cfg.max_consecutive_failures}: must be at least 1")
    if cfg.max_requests is not None and cfg.max_requests < 1:
        problems.append(f"max_requests={cfg.max_requests}: must be at least 1 (or null for no limit)")
    if cfg.max_cost_usd is not None and cfg.max_cost_usd <= 0:
        problems.append(f"max_cost_usd={cfg.max_cost_usd}: must be positive (or null for no limit)")
    if cfg.judge.max_reasks < 0:
        problems.append(f"judge.max_reasks={cfg.judge.max_reasks}: must be 0 or more")
    for n, member in enumerate(cfg.judge.members or [cfg.judge]):
        where = f"judge.members[{n}]." if cfg.judge.members else "judge."
        if member.structured_output not in judge.STRUCTURED_OUTPUT:
            problems.append(
                f"{where}structured_output={member.structured_output!r}: expected one of "
                f"{', '.join(judge.STRUCTURED_OUTPUT)}"
            )
    if cfg.judge.members and cfg.judge.serve.backend != "none":
        problems.append(
            f"judge.serve.backend={cfg.judge.serve.backend!r} with judge.members: ensemble members are "
            "servers you run (give each an api_base); set judge.serve.backend=none"
        )
    if cfg.judge.empty_reasoning not in judge.EMPTY_REASONING:
        problems.append(
            f"judge.empty_reasoning={cfg.judge.empty_reasoning!r}: expected one of "
            f"{', '.join(judge.EMPTY_REASONING)}"
        )
    if cfg.judge.prompts not in prompts.PROMPT_SETS:
        problems.append(
            f"judge.prompts={cfg.judge.prompts!r}: expected one of {', '.join(prompts.PROMPT_SETS)} "
            "(published: the BSA authors' judge prompts; bsa: our own)"
        )
    if cfg.mitigation.published_file and cfg.mitigation.system_prompt_file:
        problems.append(
            f"mitigation {cfg.mitigation.name}: both system_prompt_file and published_file are set; keep one"
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
    problems += _thinking_conflicts(cfg)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def role_limits(cfg: Config) -> dict[str, int]:
    """Calls in flight at once per role: model.concurrency / judge.concurrency, else concurrency."""
    return {
        "model": cfg.model.concurrency or cfg.concurrency,
        "judge": cfg.judge.concurrency or cfg.concurrency,
    }


def _thinking_conflicts(cfg: Config) -> list[str]:
    """Anthropic rejects extended thinking with a changed temperature or top_k (top_p only >= 0.95):
    say so now rather than on every one of 10,000 calls."""
    model, s = cfg.model, cfg.sampling
    if not (model.thinking_budget and model.name.startswith("anthropic/")):
        return []
    temperature = s.temperature if s.temperature is not None else model.temperature
    top_k = s.top_k if s.top_k is not None else model.top_k
    top_p = s.top_p if s.top_p is not None else model.top_p
    out = []
    if temperature not in (None, 1, 1.0):
        out.append(
            f"sampling.temperature={temperature}: {model.name} with extended thinking accepts only 1.0; "
            "use sampling=model_default (or model.thinking_budget=null to turn thinking off)"
        )
    if top_k is not None:
        out.append(f"sampling.top_k={top_k}: {model.name} with extended thinking accepts no top_k")
    if top_p is not None and top_p < 0.95:
        out.append(f"sampling.top_p={top_p}: {model.name} with extended thinking accepts top_p >= 0.95 only")
    return out


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


@dataclass
class _Control:
    """Shared state of one run's stages: the client's stop switch, failures, hard interrupt."""

    client: Client
    max_consecutive_failures: int
    grace_s: float
    failures: list[Row] = field(default_factory=list)
    consecutive: int = 0
    interrupted: bool = False  # a second Ctrl-C or SIGTERM: stop at once
    stopped_at: float | None = None

    def stop(self, reason: str) -> None:
        if self.client.stop_reason is None:
            self.client.stop(reason)
            self.stopped_at = time.monotonic()
            from rich.markup import escape  # a provider's error text is not markup

            end = "" if reason.endswith((".", "?", "!")) else "."
            console.console.print(f"[yellow]Stopping: {escape(reason)}{end} Calls in flight may finish.[/]")

    def failed(self, key: Row, exc: ModelCallError) -> None:
        self.failures.append({**key, "error": str(exc), "type": type(exc).__name__})
        if not isinstance(exc, TransientFailure):
            self.stop(f"fatal error: {exc}")
            return
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive_failures:
            self.stop(f"{self.consecutive} calls in a row failed after all retries (last: {exc})")


async def _stage(
    title: str,
    jobs: list[tuple[Row, Job]],
    sink: Callable[[Row], None],
    control: _Control,
    show_progress: bool,
    window: int,  # jobs in flight at once (2 × the role's limit): bounds what a dead provider is sent
) -> None:
    """Run jobs concurrently from a bounded window, routing each outcome; launch none once stopping.

    The bar counts jobs done; failed jobs and retries are counted beside it, never as done. Retries
    are summed, not logged one by one: the stage ends with one line per endpoint and error kind
    (each retry is a DEBUG log line: verbose=true)."""
    if not jobs:
        return
    import copy

    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column
    from rich.text import Text

    from bsa.llm import retry_summary_lines

    class Title(ProgressColumn):
        # The one column that gives way on a narrow terminal, cut with an ellipsis: the counts and
        # times beside it are what the line is for (the plan panel names the model in full).
        def render(self, task: Task) -> Text:
            return Text(task.description, style="bold", no_wrap=True, overflow="ellipsis")

    stats = control.client.stats
    retries_before, retries_by_before = stats.retries, copy.deepcopy(stats.retries_by)
    failed = 0

    def tally() -> str:
        parts = [f"[red]{failed} failed[/]"] if failed else []
        if stats.retries > retries_before:
            parts.append(f"{stats.retries - retries_before} retries")
        return "".join(f" · {p}" for p in parts)

    def whole() -> Column:
        return Column(no_wrap=True)

    progress = Progress(
        Title(),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} done{task.fields[tally]}", table_column=whole()),
        TimeElapsedColumn(table_column=whole()),
        TextColumn("ETA", table_column=whole()),
        TimeRemainingColumn(table_column=whole()),
        console=console.console,
        disable=not show_progress,
    )
    queue = iter(jobs)
    pending: dict[asyncio.Future[Row], Row] = {}

    def refill() -> None:
        while len(pending) < window and control.client.stop_reason is None:
            item = next(queue, None)
            if item is None:
                return
            pending[asyncio.ensure_future(item[1]())] = item[0]

    try:
        with progress:
            bar = progress.add_task(title, total=len(jobs), tally="")
            refill()
            while pending:
                done, _ = await asyncio.wait(pending, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    key = pending.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        progress.advance(bar)
                        control.consecutive = 0
                        sink(fut.result())
                    elif isinstance(exc, Stopped):
                        continue
                    elif isinstance(exc, ModelCallError):
                        failed += 1
                        control.failed(key, exc)
                    else:
                        raise exc
                # Also on a timeout with nothing done: the retry count is live, not per finished job.
                progress.update(bar, tally=tally())
                over_grace = (
                    control.stopped_at is not None and time.monotonic() - control.stopped_at > control.grace_s
                )
                if control.interrupted or over_grace:
                    break
                refill()
    finally:
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for line in retry_summary_lines(stats, since=retries_by_before):
        console.console.print(f"[yellow]{escape(line)}[/]")


def _serve(
    stack: ExitStack, cfg: Config, run_dir: Path, with_model: bool = True
) -> tuple[ModelConfig, JudgeConfig, list[str]]:
    """Start the managed servers the config asks for; return configs pointing at them."""
    model, judge_cfg = cfg.model, cfg.judge
    notes = []
    model_server: ManagedServer | None = None
    if with_model and model.serve.backend != "none":
        console.console.print(f"Starting the {model.serve.backend} server for {model.name} …")
        model_server = stack.enter_context(ManagedServer(model.serve, model.hf_model, run_dir, "model"))
        model = dataclasses.replace(model, api_base=model_server.api_base)
        notes.append(f"model server: {' '.join(model_server.cmd)} at {model_server.api_base}")
    if judge_cfg.serve.backend == "model" and model_server is not None:
        # The judge shares the model's server, and so its cache identity.
        judge_cfg = dataclasses.replace(judge_cfg, api_base=model_server.api_base, serve=model.serve)
    elif judge_cfg.serve.backend != "none":
        if judge_cfg.serve.backend == "model":
            # The model is remote: the embedded judge gets a llama.cpp server of its own.
            judge_cfg = dataclasses.replace(
                judge_cfg, serve=dataclasses.replace(judge_cfg.serve, backend="llama_cpp")
            )
            console.console.print(
                "[bold yellow]The judge is the embedded demo model (SmolLM2-135M): its verdicts are not "
                "meaningful. For real results use judge=gpt4o (OPENAI_API_KEY) or judge=openai_compatible.[/]"
            )
        console.console.print(f"Starting the {judge_cfg.serve.backend} server for the judge …")
        js = stack.enter_context(ManagedServer(judge_cfg.serve, None, run_dir, "judge"))
        judge_cfg = dataclasses.replace(judge_cfg, api_base=js.api_base)
        notes.append(f"judge server: {' '.join(js.cmd)} at {js.api_base}")
    return model, judge_cfg, notes


def _plan_lines(
    cfg: Config,
    model_cfg: ModelConfig,
    judge_cfg: JudgeConfig,
    prompt_set: prompts.PromptSet,
    source: Path,
    info: dict[str, Any],
    run_dir: Path,
) -> list[tuple[str, str]]:
    """What will run, said once before the first call."""
    plan, ds = info["plan"], info["dataset"]
    where = f" at {model_cfg.api_base}" if model_cfg.api_base else ""
    judge_where = f" at {judge_cfg.api_base}" if judge_cfg.api_base else ""
    mitigation = cfg.mitigation.name
    if info.get("mitigation_prompt"):
        mitigation += f" (system prompt sha256 {info['mitigation_prompt']['sha256'][:12]})"
    prompt_line = f"{prompt_set.name} (sha256 {prompt_set.sha256[:12]})"
    if prompt_set.name == "published":
        commit = (
            prompt_set.commit[:12] if prompt_set.commit else "unknown: files differ from the pinned commit"
        )
        prompt_line += f" from {prompt_set.source}, commit {commit}"
    label = "demo data (not the benchmark)" if cfg.dataset.demo else "benchmark data"
    samples = plan["queries"] * plan["k"]
    return [
        ("model", f"{cfg.model.name}{where}"),
        ("judge", f"{cfg.judge.name}{judge_where}"),
        ("judge prompts", prompt_line),
        ("mitigation", mitigation),
        ("dataset", f"{label}: {source} (sha256 {(ds['sha256'] or '?')[:12]})"),
        (
            "queries × k",
            f"{plan['queries']} × {plan['k']} = {samples} samples ({data.summary_text(ds['scenarios'])})",
        ),
        (
            "generation calls",
            f"{plan['generation_calls']} to make, {plan['generation_cached']} of them cached"
            + (f"; {plan['generations_done']} already in the run dir" if plan["generations_done"] else ""),
        ),
        (
            "judge calls",
            f"{plan['judge_calls']} to make (first attempts), {plan['judge_cached']} of them cached"
            + (f"; {plan['judgments_done']} already in the run dir" if plan["judgments_done"] else ""),
        ),
        ("run dir", str(run_dir)),
    ]


def _seed_generations(path: Path, rows: list[Row], queries: list[Query], k: int) -> None:
    """Put the given generations of the selected queries into a new run dir; an existing file (a
    resumed re-judge) must hold the same rows, or the run dir belongs to other generations."""
    ids = {q.id for q in queries}
    keep = results.sort_rows((r for r in rows if r["id"] in ids and r["sample_index"] < k), queries)
    if not keep:
        raise ConfigError(
            "the given generations hold no sample of the selected queries (ids and sample indices "
            f"0..{k - 1}); check the dataset and sampling.k"
        )
    if path.exists():
        have = {(r["id"], r["sample_index"]): r for r in results.read_jsonl(path)}
        if any(have.get((r["id"], r["sample_index"])) not in (None, r) for r in keep):
            raise ConfigError(
                f"{path} holds other generations than the ones given; re-judge into a new run dir"
            )
        return
    results.write_jsonl(path, keep)


def _write_info(path: Path, info: dict[str, Any]) -> None:
    results.atomic_write(path, json.dumps(info, indent=2, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class GivenGenerations:
    """Generations made elsewhere (an earlier run, the upstream script): the run judges them only."""

    rows: list[Row]
    provenance: dict[str, Any]  # path, sha256, format, model: recorded in run.json


def _check_resume(run_dir: Path, ident: dict[str, str], cfg: Config, queries: list[Query]) -> None:
    """A run dir already holding a run is continued only by a run of the same content: refused, with
    each difference named, before anything is written into it."""
    previous = results.read_json_object(run_dir / "run.json")
    if not previous:
        return
    if "identity" in previous:
        changed = provenance.differences(previous["identity"], ident)
    elif previous.get("config_fingerprint") not in (None, config_fingerprint(cfg)):
        changed = [
            "model/sampling/mitigation/judge config (a run dir of an older bsa: its contents unrecorded)"
        ]
    else:  # an older run dir without its identity: at least never shrink it to a narrower selection
        selected = {q.id for q in queries}
        outside = {
            (r.get("id"), r.get("sample_index"))
            for r in results.read_jsonl(run_dir / results.GENERATIONS)
            if r.get("id") not in selected
            or not isinstance(r.get("sample_index"), int)
            or r["sample_index"] >= cfg.sampling.k
        }
        changed = [f"selection: {len(outside)} finished samples lie outside it"] if outside else []
    if changed:
        raise ConfigError(
            f"{run_dir} holds a run of other content, so its rows cannot be continued with these "
            "settings:\n    "
            + "\n    ".join(changed)
            + "\n  Resume it with its own settings (its .hydra/overrides.yaml), or choose a new run dir: "
            "finished calls are served from the cache there. Nothing in the run dir was changed."
        )


def run(
    cfg: Config,
    run_dir: Path,
    generations: GivenGenerations | None = None,
    hydra_files: dict[str, str] | None = None,
) -> Results:
    """Evaluate ``cfg`` into ``run_dir``; with ``generations``, judge those and call no model.

    ``hydra_files``: the composed config's files (name -> text) for ``run_dir/.hydra/``, written once
    the run dir is known to accept this run (a refused resume leaves the old ones).
    """
    validate(cfg)
    queries, source = data.load(cfg.dataset, cfg.cache.dir)
    prompt_set = prompts.load_judge_prompts(cfg.judge, cfg.cache.dir)
    mitigation = generate.mitigation_prompt(cfg.mitigation, cfg.judge, cfg.cache.dir)
    system = generate.system_prompt(cfg.model, mitigation)
    ident = provenance.identity(cfg, queries, prompt_set, system)
    _check_resume(run_dir, ident, cfg, queries)
    info_path = run_dir / "run.json"
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (hydra_files or {}).items():
        results.atomic_write(run_dir / ".hydra" / name, text)
    # A missing key fails now, before servers start; reachability once they run.
    if generations is None:
        generate.endpoint(cfg.model).api_key()
    for ep in judge.endpoints(cfg.judge):
        ep.api_key()

    if cfg.dataset.demo:
        console.console.print(
            "[yellow]Demo data: a few illustrative queries written for bsa, not the BSA benchmark. "
            "Evaluate the benchmark with dataset=bsa dataset.path=… (or dataset.hf_id=…).[/]"
        )
    info: dict[str, Any] = {
        "bsa_version": __version__,
        "python": platform.python_version(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_fingerprint": config_fingerprint(cfg),
        "identity": ident,
        "dataset": {
            "source": str(source),
            "sha256": data.file_sha256(source),
            "queries_sha256": data.queries_sha256(queries),
            "n_queries": len(queries),
            "scenarios": data.summary(queries),
            "demo": cfg.dataset.demo,
        },
        "model": generations.provenance.get("model", cfg.model.name) if generations else cfg.model.name,
        "judge": cfg.judge.name,
        "judge_prompts": prompt_set.provenance(),
        "judge_members": [m.name for m in cfg.judge.members],
        "mitigation": cfg.mitigation.name,
        "mitigation_prompt": mitigation.provenance,
        "sampling": cfg.sampling.name,
        "k": cfg.sampling.k,
        "status": "running",
    }
    if generations is not None:
        info["generations_source"] = generations.provenance
        _seed_generations(run_dir / results.GENERATIONS, generations.rows, queries, cfg.sampling.k)
    _write_info(info_path, info)

    t0 = time.perf_counter()
    client: Client | None = None
    try:
        with ExitStack() as stack:
            model_cfg, judge_cfg, notes = _serve(stack, cfg, run_dir, generations is None)
            info["servers"] = notes
            endpoints = judge.endpoints(judge_cfg)
            if generations is None:
                endpoints.insert(0, generate.endpoint(model_cfg))
            for ep in endpoints:
                preflight(ep)
            client = stack.enter_context(
                Client(
                    cfg.cache.dir if cfg.cache.enabled else None,
                    concurrency=role_limits(cfg),
                    timeout_s=cfg.request_timeout_s,
                    max_attempts=cfg.max_attempts,
                    max_requests=cfg.max_requests,
                    max_cost_usd=cfg.max_cost_usd,
                )
            )
            control = _Control(client, cfg.max_consecutive_failures, cfg.stop_grace_s)
            stages = _Stages(
                cfg, model_cfg, judge_cfg, client, control, queries, system, prompt_set, run_dir,
                generate=generations is None,
            )  # fmt: skip
            info["plan"] = stages.plan()
            _write_info(info_path, info)
            console.print_plan(_plan_lines(cfg, model_cfg, judge_cfg, prompt_set, source, info, run_dir))
            try:
                asyncio.run(stages.run())
            except (KeyboardInterrupt, asyncio.CancelledError):
                control.interrupted = True
            finally:
                stages.close()
    except BaseException as e:
        # Startup (servers, preflight) or a bug: the run dir says so; finished rows stay on disk.
        info.update(
            status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
            error=f"{type(e).__name__}: {e}",
        )
        if client is not None:
            info["stats"] = dataclasses.asdict(client.stats)
        _write_info(info_path, info)
        raise

    gens = results.sort_rows(stages.gens.values(), queries)
    judgments = results.sort_rows(stages.judged.values(), queries)
    results.write_jsonl(run_dir / results.GENERATIONS, gens)
    results.write_jsonl(run_dir / results.JUDGMENTS, judgments)
    samples = results.scores(queries, gens, judgments)
    m = metrics.compute(samples, cfg.sampling.k, cfg.alpha)
    stop_reason = "interrupted" if control.interrupted else client.stop_reason
    m["partial"] = bool(stop_reason or control.failures)
    m["unjudged_samples"] = len(gens) - len(samples)
    m["missing_samples"] = len(queries) * cfg.sampling.k - len(gens)
    if stop_reason:
        m["stop_reason"] = stop_reason
    results.write_metrics(run_dir / results.METRICS, m)
    results.atomic_write(run_dir / results.RESULTS_CSV, results.upstream_csv(cfg.model.name, samples))
    res = Results(run_dir, m, gens, judgments, client.stats, queries, stop_reason, control.failures)
    info.update(
        status="complete" if res.complete else ("interrupted" if control.interrupted else "stopped"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_s=round(time.perf_counter() - t0, 2),
        stats=dataclasses.asdict(client.stats),
    )
    if stop_reason:
        info["stop_reason"] = stop_reason
    if control.failures:
        info["failures"] = {"count": len(control.failures), "first": control.failures[:50]}
    _write_info(info_path, info)
    if control.interrupted:
        raise KeyboardInterrupt
    if not res.complete:
        raise RunIncomplete(_incomplete_message(res), res)
    return res


def _incomplete_message(res: Results) -> str:
    m = res.metrics
    parts = []
    if res.stop_reason:
        parts.append(f"stopped: {res.stop_reason}")
    if res.failures:
        by_type: dict[str, int] = {}
        for f in res.failures:
            by_type[f["type"]] = by_type.get(f["type"], 0) + 1
        kinds = ", ".join(f"{n} {t}" for t, n in sorted(by_type.items()))
        first = res.failures[0]["error"]
        said = bool(res.stop_reason) and first in res.stop_reason  # the stop reason quotes it already
        parts.append(f"{len(res.failures)} calls failed ({kinds})" + ("" if said else f"; first: {first}"))
    parts.append(
        f"{m['missing_samples']} samples not generated, {m['unjudged_samples']} not judged; "
        "metrics.json is marked partial. Run the same command again in the same run dir "
        f"(resume={res.run_dir}) to finish: finished calls are not repeated."
    )
    return "; ".join(parts)


class _Stages:
    """The generation and judging stages over one run dir, resumable row by row."""

    def __init__(
        self,
        cfg: Config,
        model_cfg: ModelConfig,
        judge_cfg: JudgeConfig,
        client: Client,
        control: _Control,
        queries: list[Query],
        system: str | None,
        prompt_set: prompts.PromptSet,
        run_dir: Path,
        generate: bool = True,  # False: judge the run dir's generations only (a re-judge)
    ) -> None:
        self.cfg, self.model_cfg, self.judge_cfg = cfg, model_cfg, judge_cfg
        self.client, self.control, self.queries = client, control, queries
        self.system, self.prompt_set = system, prompt_set
        self.by_id = {q.id: q for q in queries}
        self.generate = generate
        self.gen_path = run_dir / results.GENERATIONS
        self.judge_path = run_dir / results.JUDGMENTS
        k = cfg.sampling.k
        # Rows are never removed from the files (a resume of other content is refused before this);
        # those outside this selection, if a hand edit left any, are only left out of this run.
        self.gens: dict[tuple[str, int], Row] = {
            (r["id"], r["sample_index"]): r
            for r in results.repair_jsonl(self.gen_path)
            if r["id"] in self.by_id and r["sample_index"] < k
        }
        self.judged: dict[tuple[str, int, str], Row] = {
            (r["id"], r["sample_index"], r["kind"]): r
            for r in results.repair_jsonl(self.judge_path)
            if (r["id"], r["sample_index"]) in self.gens
        }
        self._gen_out = results.JsonlAppender(self.gen_path)
        self._judge_out = results.JsonlAppender(self.judge_path)

    def close(self) -> None:
        self._gen_out.close()
        self._judge_out.close()

    def _keep_gen(self, row: Row) -> None:
        self.gens[(row["id"], row["sample_index"])] = row
        self._gen_out.write(row)

    def _keep_judgment(self, row: Row) -> None:
        self.judged[(row["id"], row["sample_index"], row["kind"])] = row
        self._judge_out.write(row)

    def _gen_job(self, q: Query, i: int) -> Job:
        cfg = self.cfg
        return lambda: generate.generate_one(
            self.client, self.model_cfg, cfg.sampling, cfg.mitigation.name, self.system, q, i
        )

    def _judge_job(self, g: Row, kind: str) -> Job:
        return lambda: judge.judge_one(
            self.client, self.judge_cfg, self.prompt_set, self.by_id[g["id"]], g, kind
        )

    def plan(self) -> dict[str, int]:
        """What is left to call and how much of it the cache already holds (first judge attempts;
        samples not generated yet cannot be looked up and count as to call)."""
        k = self.cfg.sampling.k
        gen_todo = gen_cached = judge_todo = judge_cached = 0
        for q in self.queries:
            for i in range(k):
                g = self.gens.get((q.id, i))
                if g is None:
                    if not self.generate:
                        continue
                    gen_todo += 1
                    req = generate.request(self.model_cfg, self.cfg.sampling, self.system, q, i)
                    hit = self.client.lookup(req)
                    if hit is None:
                        judge_todo += 2 * len(judge.members(self.judge_cfg))
                        continue
                    gen_cached += 1
                    g = generate.to_row(self.model_cfg, self.cfg.mitigation.name, q, i, hit)
                for kind in (SAFETY, THINK):
                    if (q.id, i, kind) in self.judged:
                        continue
                    for member in judge.members(self.judge_cfg):
                        _, judge_req = judge.prepare(member, self.prompt_set, q, g, kind)
                        if judge_req is None:  # decided by a rule: no call
                            continue
                        judge_todo += 1
                        judge_cached += self.client.cached(judge_req)
        return {
            "queries": len(self.queries),
            "k": k,
            "generations_done": len(self.gens),
            "judgments_done": len(self.judged),
            "generation_calls": gen_todo,
            "generation_cached": gen_cached,
            "judge_calls": judge_todo,
            "judge_cached": judge_cached,
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        control = self.control

        def on_interrupt() -> None:
            if control.client.stop_reason is None:
                control.stop("interrupted (Ctrl-C again to stop at once)")
            else:
                control.interrupted = True
                if main is not None:
                    main.cancel()

        def on_term() -> None:
            control.interrupted = True
            if main is not None:
                main.cancel()

        installed = []
        for sig, handler in ((signal.SIGINT, on_interrupt), (signal.SIGTERM, on_term)):
            try:
                loop.add_signal_handler(sig, handler)
                installed.append(sig)
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
                pass
        try:
            k = self.cfg.sampling.k
            jobs = [
                ({"stage": "generate", "id": q.id, "sample_index": i}, self._gen_job(q, i))
                for q in self.queries
                for i in range(k)
                if self.generate and (q.id, i) not in self.gens
            ]
            await _stage(
                f"generate ({self.model_cfg.name})",
                jobs,
                self._keep_gen,
                control,
                self.cfg.progress,
                2 * self.client.limit("model"),
            )
            if control.client.stop_reason is not None or control.interrupted:
                return
            jobs = [
                (
                    {"stage": "judge", "id": g["id"], "sample_index": g["sample_index"], "kind": kind},
                    self._judge_job(g, kind),
                )
                for g in results.sort_rows(self.gens.values(), self.queries)
                for kind in (SAFETY, THINK)
                if (g["id"], g["sample_index"], kind) not in self.judged
            ]
            await _stage(
                f"judge ({self.judge_cfg.name})",
                jobs,
                self._keep_judgment,
                control,
                self.cfg.progress,
                2 * self.client.limit("judge"),
            )
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
