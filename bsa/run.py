"""``run(cfg, run_dir) -> Results``: the whole evaluation on typed config; tests call it directly.

Wiring only: check the config, load the queries and prompts, refuse a run dir of other content,
start the servers, build the call stages (generation, judging) and hand their jobs to the scheduler
(bsa/pipeline.py, bsa/scheduler.py), then write rows, metrics and run.json. Rows are keyed by (query
id, sample index) and appended to the run dir as they land (bsa/rundir.py); a rerun in the same dir
skips rows already there.

Nothing lost, nothing invented: a call whose transient errors outlast its retries is recorded as a
failure (never as a verdict) and the run goes on; a fatal error, a run of consecutive failures, a
budget or Ctrl-C stops new calls, lets calls in flight finish, writes what is done with metrics
marked partial, and raises ``RunIncomplete``. A second Ctrl-C (or SIGTERM) stops at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import platform
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from rich.markup import escape

from bsa import (
    __version__,
    console,
    cost,
    data,
    generate,
    judge,
    metrics,
    probe,
    prompts,
    provenance,
    results,
    rundir,
    server,
)
from bsa.calls import Single
from bsa.config import Config, JudgeConfig, ModelConfig, role_limits
from bsa.config import ConfigError as ConfigError  # re-exported: callers catch it from here
from bsa.config import validate as validate
from bsa.contract import ID, SAMPLE_INDEX, generation_key
from bsa.data import DatasetError, Query
from bsa.forecast import RoleLoad, hours, wall_time
from bsa.guard import ReasoningGuard
from bsa.llm import Client, Endpoint, ModelCallError, Stats, preflight
from bsa.pipeline import BatchSettings, Pipeline
from bsa.policy import StopPolicy
from bsa.prompts import TemplateError
from bsa.rundir import (
    INFO,
    GivenGenerations,
    RunState,
    check_resume,
    config_fingerprint,
    seed_generations,
    unwritable,
    write_info,
)
from bsa.scheduler import Scheduler

BATCHES = "batches.json"  # judge.batch: the batch ids and their requests' keys, for a restart

Row = dict[str, Any]
Job = Callable[[], Awaitable[Row]]


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
        ("wall time", _wall_line(cfg, model_cfg, judge_cfg, plan)),
        ("run dir", str(run_dir)),
    ]


def _wall_line(cfg: Config, model_cfg: ModelConfig, judge_cfg: JudgeConfig, plan: dict[str, Any]) -> str:
    """The dry run's wall time for the calls left: the same figure `bsa estimate` prints."""
    loads = assumed_loads(
        cfg,
        model_cfg,
        judge_cfg,
        plan["generation_calls"] - plan["generation_cached"],
        plan["judge_calls"] - plan["judge_cached"],
    )
    wall, m, j = wall_time(loads["model"], loads["judge"]), loads["model"], loads["judge"]
    return (
        f"about {hours(wall)} at {model_cfg.latency_s:g} s per model call and "
        f"{judge_cfg.latency_s:g} s per judge call (assumed: model.latency_s, judge.latency_s), "
        f"{m.concurrency} and {j.concurrency} in flight; `bsa estimate RUN_DIR` measures them from a "
        "pilot"
    )


def assumed_loads(
    cfg: Config, model_cfg: ModelConfig, judge_cfg: JudgeConfig, gen_calls: int, judge_calls: int
) -> dict[str, RoleLoad]:
    """Each role's calls at its assumed seconds a call (``latency_s``) and its limits: the wall time
    of the dry run and of the panel before a run."""
    limits = role_limits(cfg)
    return {
        "model": RoleLoad(gen_calls, gen_calls * model_cfg.latency_s, limits["model"], model_cfg.rpm),
        "judge": RoleLoad(judge_calls, judge_calls * judge_cfg.latency_s, limits["judge"], judge_cfg.rpm),
    }


def endpoints_of(model_cfg: ModelConfig, judge_cfg: JudgeConfig, generate_too: bool) -> list[Endpoint]:
    """The endpoints a run calls: the model's (unless its generations are given) and the judge's."""
    return ([generate.endpoint(model_cfg)] if generate_too else []) + judge.endpoints(judge_cfg)


def _inputs(
    cfg: Config, run_dir: Path, endpoints: list[Endpoint] | None = None
) -> tuple[list[Query], Path, prompts.PromptSet, generate.MitigationPrompt, str | None, dict[str, str]]:
    """The run's queries, prompts and identity; a run dir holding other content is refused here,
    before anything is written. Every prerequisite is checked and every problem said in ONE message
    (the config, the cache and run dirs, the data, the judge prompts, the mitigation; with
    ``endpoints``, a run's: each key, the budget's prices, each endpoint bsa does not start): a user
    offline learns of them all at once, not one per attempt."""
    problems: list[str] = []
    raised: list[BaseException] = []

    def attempt(check: Callable[[], Any], *errors: type[BaseException]) -> Any:
        try:
            return check()
        except errors as e:
            problems.extend(_problem_lines(e))
            raised.append(e)
            return None

    attempt(lambda: validate(cfg), ConfigError)
    # The cache dir takes downloads (data, prompts) and every answer: an unwritable one is said now,
    # not as an OSError once calls are under way.
    if cfg.cache.enabled and (why := unwritable(Path(cfg.cache.dir).expanduser())):
        attempt(
            partial(
                _refuse,
                f"cache.dir={cfg.cache.dir}: cannot write there ({why}); set cache.dir (or $BSA_CACHE_DIR) "
                "to a directory you can write, or cache.enabled=false to run without a cache",
            ),
            ConfigError,
        )
    if endpoints is not None and (why := unwritable(run_dir)):
        attempt(
            partial(
                _refuse,
                f"run dir {run_dir}: cannot write there ({why}); run in a writable directory "
                "(hydra.run.dir=DIR or output_dir=DIR; resume=DIR only for a run dir you can write)",
            ),
            ConfigError,
        )
    loaded = attempt(lambda: data.load(cfg.dataset, cfg.cache.dir), DatasetError, OSError)
    prompt_set = attempt(lambda: prompts.load_judge_prompts(cfg.judge, cfg.cache.dir), TemplateError, OSError)
    mitigation = attempt(
        lambda: generate.mitigation_prompt(cfg.mitigation, cfg.judge, cfg.cache.dir),
        TemplateError,
        ConfigError,
        OSError,
    )
    if endpoints is not None:
        for ep in endpoints:
            attempt(ep.api_key, ModelCallError)
        if not problems:  # prices and reachability are worth asking only of a run that could start
            attempt(lambda: _check_budget(cfg, endpoints), ConfigError)
            for ep in endpoints:
                if not _served_by_bsa(cfg, ep):
                    attempt(lambda ep=ep: preflight(ep), ModelCallError)
    if len(raised) == 1:  # one problem: its own error, as the checks have always raised it
        raise raised[0]
    if problems:
        listed = "\n".join(f"  {n}. {p}" for n, p in enumerate(problems, 1))
        raise ConfigError(
            f"this run cannot start; {len(problems)} problems, all found before any call:\n{listed}"
        )
    queries, source = loaded
    system = generate.system_prompt(cfg.model, mitigation)
    ident = provenance.identity(cfg, queries, prompt_set, system)
    check_resume(run_dir, ident, cfg, queries)
    return queries, source, prompt_set, mitigation, system, ident


def _refuse(message: str) -> None:
    raise ConfigError(message)


def _problem_lines(e: BaseException) -> list[str]:
    """A refusal's problems, one per line: validate lists several under "invalid configuration:"."""
    text = str(e)
    head, _, rest = text.partition("\n")
    if head.rstrip(":") == "invalid configuration" and rest:
        return [line.strip() for line in rest.splitlines() if line.strip()]
    if head.startswith("this run cannot start;") and rest:  # _inputs's own list, numbered
        return [re.sub(r"^\d+\.\s*", "", line.strip()) for line in rest.splitlines() if line.strip()]
    return [text]


def _served_by_bsa(cfg: Config, ep: Endpoint) -> bool:
    """An endpoint whose server bsa starts (llama.cpp, vLLM): it can be checked only once it runs."""
    if ep.role == "judge" and cfg.judge.serve.backend == "model":
        return True  # the model's server, or a llama.cpp server of its own beside a remote model
    return (cfg.model if ep.role == "model" else cfg.judge).serve.backend != "none"


def missing_keys(endpoints: list[Endpoint]) -> list[str]:
    """Each endpoint's unset key, in the words a run would stop with (estimates list them)."""
    missing = []
    for ep in endpoints:
        try:
            ep.api_key()
        except ModelCallError as e:
            missing.append(str(e))
    return missing


def dry_run(cfg: Config, run_dir: Path, generations: GivenGenerations | None = None) -> cost.Estimate:
    """What ``run`` would do, and what it would cost, from the run dir and the cache alone: no server
    is started, no call made, nothing written. A key a real run would need is listed, not refused:
    with other problems, in their one message."""
    model_cfg, judge_cfg = cfg.model, cfg.judge
    if judge_cfg.serve.backend == "model" and model_cfg.serve.backend != "none":
        judge_cfg = dataclasses.replace(judge_cfg, serve=model_cfg.serve)  # as _serve does: one server
    missing = missing_keys(endpoints_of(cfg.model, judge_cfg, generations is None))
    try:
        queries, _, prompt_set, _, system, _ = _inputs(cfg, run_dir)
    except (ConfigError, DatasetError, TemplateError, OSError) as e:
        if not missing:
            raise
        problems = [*_problem_lines(e), *missing]
        listed = "\n".join(f"  {n}. {p}" for n, p in enumerate(problems, 1))
        raise ConfigError(
            f"this run cannot start, nor be estimated; {len(problems)} problems, all found before any "
            f"call:\n{listed}"
        ) from e
    state = RunState(run_dir, queries, cfg.sampling.k, read_only=True)
    if generations is not None:
        ids = {q.id for q in queries}
        for r in generations.rows:
            if r[ID] in ids and r[SAMPLE_INDEX] < cfg.sampling.k:
                state.gens.setdefault(generation_key(r), r)
    with Client(cfg.cache.dir if cfg.cache.enabled else None) as client:
        generation = (
            generate.GenerationStage(model_cfg, cfg.sampling, cfg.mitigation.name, system)
            if generations is None
            else None
        )
        work = Pipeline(
            client,
            state,
            queries,
            cfg.sampling.k,
            None if generation is None else Single(generation),
            judge.stage(judge_cfg, prompt_set),
        )
        inputs = work.estimate_inputs()
        est = cost.estimate(
            inputs["requests_by_role"],
            inputs["planned_unknown"],
            cfg.judge.batch,
            inputs["observed"],
            is_cached=client.cached,
            prototypes=inputs["prototypes"],
        )
    calls = {role: sum(ln.calls_to_make for ln in est.lines if ln.role == role) for role in cost.ROLES}
    est.loads = assumed_loads(cfg, model_cfg, judge_cfg, calls["model"], calls["judge"])
    est.missing = missing
    return est


def run(
    cfg: Config,
    run_dir: Path,
    generations: GivenGenerations | None = None,
    hydra_files: dict[str, str] | None = None,
    log_name: str | None = None,
) -> Results:
    """Evaluate ``cfg`` into ``run_dir``; with ``generations``, judge those and call no model.

    Nothing in ``run_dir`` changes before every check ahead of the first call has passed (the config,
    the run dir and the cache writable, keys set, servers up, endpoints reachable): a re-run that fails
    one leaves the run dir as it was, a finished one still finished. A new run dir whose servers or
    endpoints fail records that in run.json. Ctrl-C before the first call raises
    ``InterruptedBeforeCalls`` and writes nothing.

    ``hydra_files``: the composed config's files (name -> text) for ``run_dir/.hydra/``, written with
    run.json once the checks have passed. ``log_name``: a file in ``run_dir`` that then receives this
    process's log records until the run ends (the CLI's ``__main__.log``).
    """
    had_run = (run_dir / INFO).exists()  # a re-run: its run.json and .hydra/ stay until the checks pass
    info: dict[str, Any] = {}
    phase = "checks"  # checks -> starting (servers, preflight) -> running (the run dir is this run's)
    client: Client | None = None
    log_handler: logging.Handler | None = None
    unfreeze: Callable[[], None] = _no_op
    try:
        # Every prerequisite at once: keys and external endpoints now, bsa's own servers once they run.
        endpoints = endpoints_of(cfg.model, cfg.judge, generations is None)
        queries, source, prompt_set, mitigation, system, ident = _inputs(cfg, run_dir, endpoints)
        if cfg.dataset.demo:
            console.console.print(
                "[yellow]Demo data: a few illustrative queries written for bsa, not the BSA benchmark. "
                "Evaluate the benchmark with dataset=bsa dataset.path=… (or dataset.hf_id=…).[/]"
            )
        info = _started_info(cfg, ident, queries, source, prompt_set, mitigation, generations)
        t0 = time.perf_counter()
        with ExitStack() as stack:
            phase = "starting"
            leases: list[server.Lease] = []
            model_cfg, judge_cfg, info["servers"] = server.serve_roles(
                stack, cfg, run_dir, generations is None, leases
            )
            for ep in endpoints_of(model_cfg, judge_cfg, generations is None):
                if _served_by_bsa(cfg, ep):  # the others were checked with every prerequisite
                    preflight(ep)
                for warning in [] if ep.deployments else probe.ask(ep):
                    console.console.print(f"[yellow]{escape(warning)}[/]")
            _reserve(run_dir)
            if generations is not None:
                seed_generations(run_dir / results.GENERATIONS, generations.rows, queries, cfg.sampling.k)
            _write_config(run_dir, hydra_files)
            write_info(run_dir / INFO, info)
            phase = "running"
            log_handler = _open_log(run_dir, log_name)
            unfreeze = _freeze_heap()
            client = stack.enter_context(_client(cfg))
            for lease in leases:  # a server bsa started that dies is named as such, not retried
                client.watch(lease.api_base, lease.server.exit_message)
            policy = client.policy
            state = RunState(run_dir, queries, cfg.sampling.k)
            stack.callback(state.close)
            state.on_full = partial(_stop_full, policy, state, 3 * len(queries) * cfg.sampling.k)
            if cfg.model.reasoning and generations is None:
                samples = len(queries) * cfg.sampling.k - len(state.gens)
                state.on_generation = ReasoningGuard(cfg.model.name, samples, policy.stop)
            work = _pipeline(
                cfg, model_cfg, judge_cfg, prompt_set, system, client, state, queries, generations
            )
            info["plan"] = {**work.plan(), "batch_samples": work.batch_samples}
            write_info(run_dir / INFO, info)
            console.print_plan(_plan_lines(cfg, model_cfg, judge_cfg, prompt_set, source, info, run_dir))
            _execute(cfg, run_dir, work, model_cfg.name, judge_cfg.name, info)
    except BaseException as e:
        unfreeze()
        _close_log(log_handler)
        rundir.release(run_dir)
        if phase != "running" and isinstance(e, KeyboardInterrupt):
            raise InterruptedBeforeCalls(run_dir) from e
        if phase == "checks" or (phase == "starting" and (had_run or isinstance(e, ConfigError))):
            # A refusal, or a re-run whose servers or endpoints failed: the run dir keeps what it
            # holds, as it was (a finished run stays finished); the console says what failed.
            raise
        # Startup (servers, preflight) of a new run dir, or a bug: the run dir says so; finished rows stay.
        if phase == "starting":
            _write_config(run_dir, hydra_files)
        info.update(
            status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
            error=f"{type(e).__name__}: {e}",
        )
        if client is not None:
            info["stats"] = dataclasses.asdict(client.stats)
        write_info(run_dir / INFO, info)
        raise
    try:
        return _finish(cfg, run_dir, queries, state, client, info, time.perf_counter() - t0)
    finally:
        unfreeze()
        _close_log(log_handler)
        rundir.release(run_dir)


def _stop_full(policy: StopPolicy, state: RunState, rows: int, full: rundir.DiskFull) -> None:
    """The disk filled: no new call; ``rows`` (a generation and two judgments a sample) say what is left."""
    policy.stop(full.message(rows - len(state.gens) - len(state.judged)))


def _check_budget(cfg: Config, endpoints: list[Endpoint]) -> None:
    """max_cost_usd counts dollars: a model with no price would count $0 and never reach it."""
    if cfg.max_cost_usd is None:
        return
    missing = cost.unpriced(endpoints)
    if missing:
        raise ConfigError(
            f"max_cost_usd={cfg.max_cost_usd} but LiteLLM has no price for {', '.join(missing)}: its calls "
            "would count $0 against the budget. Set its price in USD per million tokens "
            "(model.input_cost_per_mtok and model.output_cost_per_mtok, or judge.…; 0 for a server you do "
            "not pay for), or use max_requests=N as the budget"
        )


def _reserve(run_dir: Path) -> None:
    """Room for run.json once the disk is full (rundir.reserve); a disk without it is refused now."""
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        rundir.reserve(run_dir)
    except OSError as e:
        if not rundir.disk_full(e):
            raise
        raise ConfigError(
            f"run dir {run_dir}: no space left on its disk ({e.strerror}); free at least a few MB there "
            "or choose another run dir (hydra.run.dir=DIR)"
        ) from None


class InterruptedBeforeCalls(KeyboardInterrupt):
    """Ctrl-C before the run's first call: no call was made and nothing in the run dir was written."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(f"interrupted before the first call; nothing was written to {run_dir}")
        self.run_dir = run_dir


def _write_config(run_dir: Path, hydra_files: dict[str, str] | None) -> None:
    """The run dir's .hydra/ files (the CLI's composed config, overrides and choices)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (hydra_files or {}).items():
        results.atomic_write(run_dir / ".hydra" / name, text)


# Hydra's own log line format, which its job logging used for the same file before bsa took it over.
_LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def _open_log(run_dir: Path, name: str | None) -> logging.Handler | None:
    """The run dir's log file, appended to (a resumed run adds to it). Opened here, once the run is
    accepted, not by Hydra's job logging: that would make a run dir for every refused run or dry run."""
    if name is None:
        return None
    handler = logging.FileHandler(run_dir / name, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    return handler


def _close_log(handler: logging.Handler | None) -> None:
    # A sweep runs its points in one process: each point's records go to its own run dir only.
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _freeze_heap() -> Callable[[], None]:
    """Move what exists now (modules, LiteLLM's tables, configs, queries) out of the collector's sight
    until the returned callable is called: a run makes hundreds of thousands of objects, and each full
    collection would walk the imported heap again (a warm re-run of 2,000 × 5 spent 1.5 s in it)."""
    gc.collect()
    gc.freeze()
    return gc.unfreeze


def _no_op() -> None:
    pass


def _started_info(
    cfg: Config,
    ident: dict[str, str],
    queries: list[Query],
    source: Path,
    prompt_set: prompts.PromptSet,
    mitigation: generate.MitigationPrompt,
    generations: GivenGenerations | None,
) -> dict[str, Any]:
    """run.json as the run starts: what it is (identity, data, prompts) and where it comes from."""
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
            "shard": cfg.dataset.shard,
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
    elif (grammar := generate.grammar(cfg.model)) is not None:
        info["grammar"] = grammar.provenance()
    return info


def _client(cfg: Config) -> Client:
    """The run's client, with the run's stop policy: budgets and failure policy."""
    policy = StopPolicy(cfg.max_requests, cfg.max_cost_usd, cfg.max_consecutive_failures, cfg.stop_grace_s)
    return Client(
        cfg.cache.dir if cfg.cache.enabled else None,
        concurrency=role_limits(cfg),
        timeout_s=cfg.request_timeout_s,
        max_attempts=cfg.max_attempts,
        policy=policy,
        adaptive=cfg.adaptive_concurrency,
    )


def _pipeline(
    cfg: Config,
    model_cfg: ModelConfig,
    judge_cfg: JudgeConfig,
    prompt_set: prompts.PromptSet,
    system: str | None,
    client: Client,
    state: RunState,
    queries: list[Query],
    generations: GivenGenerations | None,
) -> Pipeline:
    generation = None
    if generations is None:
        generation = generate.GenerationStage(model_cfg, cfg.sampling, cfg.mitigation.name, system)
    batch_samples = cfg.sampling.batch_samples and generation is not None
    if batch_samples and not generate.supports_n(model_cfg):
        batch_samples = False
        console.console.print(
            f"[yellow]sampling.batch_samples: {model_cfg.name} takes no n > 1 (per LiteLLM, or "
            "model.supports_n=false); each sample is its own request.[/]"
        )
    judging = judge.stage(judge_cfg, prompt_set)
    stage = None if generation is None else Single(generation)
    samples = generation if batch_samples else None
    return Pipeline(client, state, queries, cfg.sampling.k, stage, judging, samples)


def _execute(
    cfg: Config,
    run_dir: Path,
    work: Pipeline,
    model_name: str,
    judge_name: str,
    info: dict[str, Any],
) -> None:
    """The pipeline's jobs through the scheduler (a lane per role), then batch judging if asked."""
    client = work.client
    scheduler = Scheduler(client, cfg.progress)
    n_gen, n_judge = work.expected()
    scheduler.lane("model", f"generate ({model_name})", 2 * client.limit("model"), n_gen)
    scheduler.lane("judge", f"judge ({judge_name})", 2 * client.limit("judge"), n_judge)
    batch = None
    if cfg.judge.batch:
        batch = BatchSettings(
            run_dir / BATCHES,
            cfg.judge.batch_poll_s,
            cfg.judge.batch_max_requests,
            lambda line: console.console.print(f"[dim]{escape(line)}[/]"),
        )
    try:
        report = asyncio.run(work.execute(scheduler, batch))
    except (KeyboardInterrupt, asyncio.CancelledError):
        client.policy.interrupted = True
        return
    if report is not None:
        info["batch"] = dataclasses.asdict(report)
        for note in report.notes:
            console.console.print(f"[yellow]{escape(note)}[/]")


def _finish(
    cfg: Config,
    run_dir: Path,
    queries: list[Query],
    state: RunState,
    client: Client,
    info: dict[str, Any],
    wall_s: float,
) -> Results:
    """The final files, sorted (byte-identical to an uninterrupted run's), metrics and run.json."""
    stops = client.policy
    gens = results.sort_rows(state.gens.values(), queries)
    judgments = results.sort_rows(state.judged.values(), queries)
    policy = str(cfg.scoring.provider_refusal)
    samples = results.scores(queries, gens, judgments, policy)
    fixed = results.fixed_selection(queries, cfg.judge.protocol)  # paper: evaluate.py's counting
    m = metrics.compute(samples, cfg.sampling.k, cfg.alpha, fixed)
    m["judge_protocol"] = str(cfg.judge.protocol)
    m["judge_inputs_truncated"] = judge.inputs_truncated(judgments)
    m["provider_refusal_policy"] = policy
    m["provider_refused"] = results.refusal_counts(gens, judgments)
    answering = results.answering_models(gens, judgments)
    info["answering_models"] = answering
    if answering["substituted"]:  # only with allow_substitution: else the run stopped at the first one
        m["not_comparable"] = results.SUBSTITUTED
    stop_reason = "interrupted" if stops.interrupted else client.stop_reason
    m["partial"] = bool(stop_reason or stops.failures)
    m["unjudged_samples"] = len(gens) - len(samples)
    m["missing_samples"] = len(queries) * cfg.sampling.k - len(gens)
    if stop_reason:
        m["stop_reason"] = stop_reason
    res = Results(run_dir, m, gens, judgments, client.stats, queries, stop_reason, stops.failures)
    if state.full is None:
        try:
            finished = rundir.Finished(queries, gens, judgments, m, cfg.model.name, samples)
            rundir.write_finished(run_dir, finished)  # every file but run.json
        except OSError as e:
            if not rundir.disk_full(e):
                raise
            state.full = rundir.DiskFull(Path(e.filename or run_dir / results.METRICS), e, 1)
            res.stop_reason = state.full.message(0)
    if state.full is not None:
        _stopped_full(run_dir, state.full, info, res, wall_s)
    info.update(
        status="complete" if res.complete else ("interrupted" if stops.interrupted else "stopped"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_s=round(wall_s, 2),
        stats=dataclasses.asdict(client.stats),
        limits=client.limit_history(),
    )
    if stop_reason:
        info["stop_reason"] = stop_reason
    if stops.failures:
        info["failures"] = {"count": len(stops.failures), "first": stops.failures[:50]}
    info["judge_inputs_truncated"] = judge.inputs_truncated(judgments)
    write_info(run_dir / INFO, info)
    if stops.interrupted:
        raise KeyboardInterrupt
    if not res.complete:
        raise RunIncomplete(_incomplete_message(res), res)
    return res


def _stopped_full(
    run_dir: Path, full: rundir.DiskFull, info: dict[str, Any], res: Results, wall_s: float
) -> None:
    """The disk is full: run.json says "partial" (written into the room set aside for it), the rows
    appended so far stay as they are, and the run ends incomplete."""
    rundir.release(run_dir)
    reason = res.stop_reason or full.message(0)
    info.update(
        status="partial",
        stop_reason=reason,
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_s=round(wall_s, 2),
        stats=dataclasses.asdict(res.stats),
    )
    write_info(run_dir / INFO, info)
    m = res.metrics
    raise RunIncomplete(
        f"stopped: {reason}. The rows written so far are whole ({len(res.generations)} generations, "
        f"{len(res.judgments)} judgments in memory); metrics.json was not written. Resume with "
        f"resume={run_dir} once there is room ({m['missing_samples']} samples not generated).",
        res,
    )


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
