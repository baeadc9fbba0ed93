"""``bsa run [overrides]`` (``python -m bsa [overrides]``): compose the config with Hydra, convert it
once, run. Hydra's app (``@hydra.main``) composes for sweeps, launchers, the run dir and ``--cfg``;
the config dir, the schemas, the override checks, the conversion and the ``.hydra/`` files are
``bsa.compose``'s, the one compose path that the API and the tools call. The other verbs
(``bsa view``, ``bsa report``, …) are dispatched by ``bsa.cli``."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from bsa import job_dir

# The one compose path's parts (bsa.compose): the run verb enters through @hydra.main (sweeps,
# launchers, the run dir, --cfg) and takes everything else from there. Re-exported for old imports.
from bsa.compose import CONF_DIR as CONF_DIR
from bsa.compose import CONFIG_NAME, VERSION_BASE, override_problems, register, to_typed
from bsa.compose import hydra_files as hydra_files
from bsa.compose import key_valued_env_overrides as key_valued_env_overrides
from bsa.compose import secret_overrides as secret_overrides
from bsa.config import Config
from bsa.contract import RUN_JSON

# Before @hydra.main composes (here, and in a launcher's worker that unpickles _hydra_main).
register()


# The run dir's log file: the name Hydra's job logging gave it, now opened by bsa.run once the run
# dir accepts the run (Hydra's own would make a run dir for every refused run and dry run).
RUN_LOG = "__main__.log"

# Stats.waited: a request whose key another request, of this run or of another process sharing the
# cache, was already fetching; it took that answer and made no call.
WAITED_LABEL = "requests answered by an identical one in flight (no call)"


def _sigterm(signum: int, frame: Any) -> None:
    # Turn SIGTERM into an exception so every `finally` (servers, open files) runs.
    raise SystemExit(128 + signum)


@hydra.main(version_base=VERSION_BASE, config_path=CONF_DIR, config_name=CONFIG_NAME)
def _hydra_main(dcfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    cfg = to_typed(dcfg)
    hc = HydraConfig.get()
    # Hydra's own .hydra/ writing is off (hydra.output_subdir: null): it would rewrite the files of a
    # run dir whose resume is then refused. run() writes them once the run dir accepts this run.
    files = hydra_files(dcfg, list(hc.overrides.task), dict(hc.runtime.choices))
    try:
        return execute(cfg, Path(cfg.output_dir or hc.runtime.output_dir), hydra_files=files)
    finally:
        # Hydra made the run dir before this task began; a refused run or a dry run left it empty.
        job_dir.remove_if_unused(Path(hc.runtime.output_dir))


def execute(
    cfg: Config, run_dir: Path, generations: Any = None, hydra_files: dict[str, str] | None = None
) -> float | None:
    """Run, print the tables, and exit with the run's status: 2 bad input, 3 incomplete, 4 its gate
    (``cfg.gate``, bsa.gate) failed, 130 Ctrl-C.

    A point of a sweep (``-m``) does not exit: it records how it ended (``bsa.sweep.record``) and
    returns, so that Hydra runs the other points; Ctrl-C still stops the sweep.

    ``generations`` (a ``bsa.run.GivenGenerations``): judge those instead of generating.
    ``hydra_files``: written into ``run_dir/.hydra/`` once the run dir accepts the run.
    """
    from bsa import console, sweep
    from bsa.data import DatasetError
    from bsa.llm import ModelCallError
    from bsa.prompts import TemplateError
    from bsa.run import ConfigError, InterruptedBeforeCalls, RunIncomplete, dry_run, run
    from bsa.server import ServerError

    signal.signal(signal.SIGTERM, _sigterm)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bsa").setLevel(logging.DEBUG if cfg.verbose else logging.NOTSET)
    incomplete: RunIncomplete | None = None
    try:
        if cfg.dry_run:
            console.print_dry_run(dry_run(cfg, run_dir, generations))
            return _ended(run_dir, 0)
        res = run(cfg, run_dir, generations, hydra_files, log_name=RUN_LOG)
    except RunIncomplete as e:
        incomplete, res = e, e.results
    except (ConfigError, DatasetError, TemplateError, ModelCallError, ServerError, FileNotFoundError) as e:
        # Unwrapped (a path or URL stays whole, on the line it belongs to) and never read as markup.
        console.console.print(f"bsa: {e}", style="bold red", markup=False, soft_wrap=True)
        if (run_dir / RUN_JSON).exists():  # else nothing was kept: a refusal writes nothing
            console.console.print(f"Finished rows, if any, are kept in {run_dir}")
        return _ended(run_dir, 2, f"{type(e).__name__}: {e}")
    except KeyboardInterrupt as e:
        before = cfg.dry_run or isinstance(e, InterruptedBeforeCalls)
        if before:  # no call was made: there are no rows or partial metrics to point at
            said = _nothing_run(cfg, run_dir)
            console.console.print(f"Interrupted before the first call: {said}", style="yellow", markup=False)
        else:
            console.console.print(
                f"[yellow]Interrupted; finished rows and partial metrics are in {run_dir}. "
                f"Run the same command with resume={run_dir} to finish.[/]"
            )
        if sweep.in_sweep():
            sweep.record(run_dir, 130, "interrupted (Ctrl-C)")
            raise  # stops the whole sweep
        sys.exit(3 if before else 130)
    s = res.stats
    extra = {
        "network calls": s.calls,
        "cache hits": s.cache_hits,
        "retries": s.retries,
        "prompt tokens": s.prompt_tokens,
        "completion tokens": s.completion_tokens,
        "reasoning tokens": s.reasoning_tokens,
    }
    if s.cost_usd:
        extra["cost (USD, LiteLLM prices)"] = f"{s.cost_usd:.4f}"
    if s.waited:
        extra[WAITED_LABEL] = s.waited
    if s.failures:
        extra["failed calls"] = s.failures
    from bsa.judge import inputs_truncated

    if (truncated := inputs_truncated(res.judgments)) and cfg.judge.protocol == "paper":
        extra["judge inputs cut to fit the judge's context window"] = truncated
    elif truncated:
        extra[f"judge inputs cut to judge.max_input_chars={cfg.judge.max_input_chars:,}"] = truncated
    refused = res.metrics.get("provider_refused") or {}
    if any(refused.values()):
        extra["provider refusals (content filter, context length)"] = (
            f"{refused.get('model', 0)} samples, {refused.get('judge', 0)} judgments; scored as "
            f"scoring.provider_refusal={res.metrics.get('provider_refusal_policy')}"
        )
    model = generations.provenance.get("model", cfg.model.name) if generations else cfg.model.name
    title = (
        f"{model} · mitigation={cfg.mitigation.name} · judge={cfg.judge.name} ({cfg.judge.prompts} prompts, "
        f"{cfg.judge.protocol} protocol)"
    )
    if incomplete is not None:
        title += " · PARTIAL"
    if res.metrics.get("not_comparable"):
        title += " · NOT COMPARABLE: " + str(res.metrics["not_comparable"])
    from bsa import results

    policy = str(res.metrics.get("provider_refusal_policy", "unscored"))
    samples = results.scores(res.queries, res.generations, res.judgments, policy)
    console.print_metrics(res.metrics, title, extra, samples)
    console.print_usage(s.by_role)
    if cfg.labels:
        _score_labels(res.run_dir, Path(cfg.labels))
    if incomplete is not None:
        console.console.print(f"[bold red]bsa: the run is incomplete: {incomplete}[/]")
        console.console.print(f"Results so far: [bold]{res.run_dir}[/]")
        if sweep.in_sweep() and (res.stop_reason or "").startswith("interrupted"):
            # Ctrl-C in a sweep (the first one lets calls in flight finish): the sweep stops too.
            sweep.record(res.run_dir, 3, f"the run is incomplete: {incomplete}")
            raise KeyboardInterrupt
        return _ended(res.run_dir, 3, f"the run is incomplete: {incomplete}")
    embedded = cfg.model.serve.backend == "llama_cpp" and cfg.model.serve.model_path is None
    if generations is None and embedded and cfg.judge.serve.backend == "model":
        data = (
            "illustrative data" if cfg.dataset.demo else f"your data ({cfg.dataset.path or cfg.dataset.url})"
        )
        from bsa import showcase

        example = showcase.pick(res.queries, res.generations, res.judgments)
        if example is not None:
            console.print_example(example, res.metrics)
        console.console.print(
            "[yellow]This was the embedded demo model: SmolLM2-135M (not a reasoning model; a grammar makes "
            f"it write a short reasoning section) judged by itself on {data}, so the numbers show how BSA "
            "works, not how safe any model is.\n"
            "Evaluate a real reasoning model on the 2,000-query benchmark, judged as in the paper (GPT-4o, "
            "the published prompts), e.g.:\n"
            "  AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… AWS_REGION_NAME=us-east-1 OPENAI_API_KEY=… "
            "python -m bsa model=deepseek_r1  (DeepSeek-R1 on Amazon Bedrock)\n"
            "Add dry_run=true first to see the calls it will make and their estimated cost.[/]"
        )
    console.console.print(f"Results: [bold]{res.run_dir}[/]")
    console.print_next(res.run_dir)
    code, why = 0, ""
    if cfg.gate.configured:  # the run gates itself (gate.min.safe_at_1=90 …): 4 when a check fails
        from bsa.gate import FAILED, gate_run

        code = gate_run(cfg.gate, res.run_dir)
        why = "the gate failed" if code == FAILED else "the gate could not decide"
    _ended(res.run_dir, code, why)
    f = res.metrics.get("f_score")
    return float(f) if f is not None else None


def _nothing_run(cfg: Config, run_dir: Path) -> str:
    """What is true after Ctrl-C before the first call."""
    if cfg.dry_run:
        return "the dry run was stopped; it makes no call and writes nothing."
    if (run_dir / RUN_JSON).exists():
        return f"nothing was run, and {run_dir} holds what it held before, unchanged."
    return "nothing was run, and no results were written. Run the same command again to start."


def _ended(run_dir: Path, code: int, reason: str = "") -> None:
    """A single run exits with ``code`` (unless 0); a sweep point records it and returns."""
    from bsa import sweep

    if sweep.in_sweep():
        sweep.record(run_dir, code, reason)
    elif code:
        sys.exit(code)


def _score_labels(run_dir: Path, labels_csv: Path) -> None:
    """labels=FILE: the judge measured on human labels, the metrics corrected, beside the run's tables."""
    import json

    from bsa import console, labels, results

    try:
        scored = labels.score(run_dir, labels_csv)
    except (labels.LabelError, OSError) as e:
        console.console.print(f"[bold red]bsa: labels={labels_csv}: {e}[/]")
        return
    labels.print_scores(scored)
    out = run_dir / labels.SCORES_JSON
    results.atomic_write(out, json.dumps(scored, indent=2, ensure_ascii=False) + "\n")
    console.console.print(f"Label scores: [bold]{out}[/]")


def hydra_run(args: list[str]) -> None:
    """``bsa run ARGS`` (``python -m bsa ARGS``): Hydra composes the config from ``args`` and runs it;
    exits with the run's status (``execute``) or, after a sweep, 1 when a point failed."""
    problems = override_problems(args, given="given on the command line")
    if problems:
        # Refuse before Hydra starts: it would write the values to .hydra/overrides.yaml, and a sweep's
        # launcher prints each point's overrides.
        sys.stderr.write("".join(f"bsa: {p}\n" for p in problems))
        sys.exit(2)
    # Hydra owns argv and has no -v: spell it as the config key it stands for.
    sys.argv[1:] = ["verbose=true" if a in ("-v", "--verbose") else a for a in args]
    from bsa import sweep

    try:
        _hydra_main()
    except KeyboardInterrupt:
        if sweep.interrupted():  # a sweep was running: it says what had finished
            sys.exit(130)
        raise
    # Hydra has returned: a sweep ran every point, wrote its report and named the failed ones.
    if sweep.exit_code():
        sys.exit(sweep.exit_code())


def main() -> None:
    """``python -m bsa …`` is ``bsa …``: the verbs of ``bsa.cli``, ``run`` when none is named."""
    from bsa.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
