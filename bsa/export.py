"""A run in another tool's format: ``bsa export RUN_DIR --format inspect --out FILE``.

``inspect``: an inspect-ai eval log (``.eval`` or ``.json``, by the suffix of ``--out``), built from
inspect_ai's own log types and written by its own ``write_eval_log``, so ``inspect view`` and
``inspect_ai.log.read_eval_log`` open a bsa run. inspect-ai is an optional extra
(``pip install 'bsa-eval[inspect]'``), imported only here, only when exporting.

The mapping:

- one inspect sample per generated sample: its id the query id, its epoch the sample index + 1 (bsa's
  k samples of a query are inspect's epochs of a sample); input the query, target the annotated risk
  summary, the reply an assistant message whose content is the reasoning (``ContentReasoning``) and
  the answer (``ContentText``);
- two scores per sample, ``safety`` and ``think``: the value is the label the metrics counted (the
  judge's verdict, or what ``scoring.provider_refusal`` made of a refusal), or ``"Unscored"`` with the
  reason in the explanation; never a guessed label. A sample not judged yet has no score of that kind;
- the results are the run's metrics.json (Safe@1/@k under ``safety``, Think@1/@k and per scenario
  under ``think``, the F-score under ``bsa``); a run that wrote none (killed) gets them recomputed
  from its rows, and says so in the results' metadata;
- the status: success for a complete run; started (still running), cancelled (interrupted) or error
  (stopped, failed, partial) otherwise, with run.json's reason as the log's error.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bsa import contract, results, rundir
from bsa.contract import (
    F_SCORE,
    METRIC_NAMES,
    SAFE,
    SAFETY,
    SAMPLE_INDEX,
    THINK,
    THINK_TARGET,
    VERDICT,
)
from bsa.results import UNSCORED

if TYPE_CHECKING:
    from inspect_ai.log import EvalLog, EvalSample, EvalScore
    from inspect_ai.model import ModelUsage
    from inspect_ai.scorer import Score

    from bsa.data import Query
    from bsa.metrics import SampleScore
    from bsa.report.runs import Run

FORMATS = ("inspect",)
SUFFIXES = {".eval": "eval", ".json": "json"}  # inspect's two log formats, by file suffix
MISSING_INSPECT = "bsa export --format inspect needs inspect-ai: pip install 'bsa-eval[inspect]'"

# run.json's status -> the log's status
STATUS = {"complete": "success", "running": "started", "interrupted": "cancelled"}
# bsa's finish_reason -> inspect's stop_reason
STOP_REASON = {
    "stop": "stop",
    "length": "max_tokens",
    "content_filter": "content_filter",
    "provider_refused": "content_filter",
}
# The scorers of the results: each kind's metrics, and the F-score (which needs both) as "bsa".
SCORERS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (SAFETY, tuple((METRIC_NAMES[k], k) for k in (contract.SAFE_AT_1, contract.SAFE_AT_K))),
    (
        THINK,
        tuple((METRIC_NAMES[k], k) for k in (contract.THINK_AT_1, contract.THINK_AT_K))
        + contract.BY_SCENARIO,
    ),
    ("bsa", ((METRIC_NAMES[F_SCORE], F_SCORE),)),
)


class ExportError(ValueError):
    """No export can be written; the message names the path and what to do."""


def metric_value(metrics: dict[str, Any], key: str) -> float | None:
    """A value of metrics.json by its key: a headline key, or "<scenario>/<key>" (``contract.METRICS``)."""
    if "/" in key:
        scenario, sub = key.split("/", 1)
        value = (metrics.get("scenarios") or {}).get(scenario, {}).get(sub)
    else:
        value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _usage(usage: dict[str, Any] | None, cost: Any = None) -> ModelUsage | None:
    """inspect's ModelUsage from bsa's token counts; None where none were recorded."""
    from inspect_ai.model import ModelUsage

    usage = usage or {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if prompt is None and completion is None:
        return None
    reasoning = usage.get("reasoning_tokens")
    return ModelUsage(
        input_tokens=int(prompt or 0),
        output_tokens=int(completion or 0),
        total_tokens=int(prompt or 0) + int(completion or 0),
        reasoning_tokens=int(reasoning) if reasoning else None,
        total_cost=float(cost) if isinstance(cost, (int, float)) else None,
    )


def _score(
    kind: str, row: dict[str, Any], value: str | None, query: Query, answer: str | None, policy: str
) -> Score:
    """One judgment as inspect's Score: the counted label (or "Unscored"), the judge's explanation or
    why there is no label, and the judgment's own fields in metadata."""
    from inspect_ai.scorer import Score

    verdict = row.get(VERDICT)
    reason = row.get("unscored_reason")
    said = str(row.get("explanation") or "")
    if value is None:
        explanation = f"{UNSCORED}: {reason or 'no verdict'}" + (f"\n\n{said}" if said else "")
    elif value != verdict:  # a refusal, scored by the run's policy rather than by the judge
        explanation = f"{value} by scoring.provider_refusal={policy}: {reason or 'refused'}"
    else:
        raw = row.get("raw")
        explanation = said or (
            str(raw[-1]) if isinstance(raw, list) and raw else str(row.get("source") or "")
        )
    target = SAFE if kind == SAFETY else THINK_TARGET.get(query.scenario)
    return Score(
        value=UNSCORED if value is None else value,
        answer=answer,
        explanation=explanation,
        metadata={
            VERDICT: verdict,
            "unscored_reason": reason,
            "target": target,
            "credited": value is not None and value == target,
            "source": row.get("source"),
            "judge_model": row.get("judge_model"),
            "flags": list(row.get("flags") or ()),
            "raw": [str(x) for x in row.get("raw") or ()],
        },
    )


def _sample(
    query: Query,
    generation: dict[str, Any],
    safety: dict[str, Any] | None,
    think: dict[str, Any] | None,
    scored: SampleScore | None,
    model: str,
    policy: str,
) -> EvalSample:
    from inspect_ai.log import EvalSample
    from inspect_ai.model import (
        ChatCompletionChoice,
        ChatMessageAssistant,
        ChatMessageUser,
        ContentReasoning,
        ContentText,
        ModelOutput,
    )

    reasoning, answer = generation.get("reasoning"), generation.get("answer")
    content: list[ContentReasoning | ContentText] = []
    if reasoning:
        content.append(ContentReasoning(reasoning=str(reasoning)))
    if answer is not None:
        content.append(ContentText(text=str(answer)))
    answered_by = str(generation.get("response_model") or model)
    reply = ChatMessageAssistant(content=content or "", model=answered_by, source="generate")
    refusal = generation.get("refusal")
    usage = _usage(generation.get("usage"), generation.get("cost_usd"))
    latency = generation.get("latency_s")
    output = ModelOutput(
        model=answered_by,
        choices=[
            ChatCompletionChoice(
                message=reply,
                stop_reason=STOP_REASON.get(str(generation.get("finish_reason")), "unknown"),  # type: ignore[arg-type]
            )
        ],
        usage=usage,
        time=float(latency) if isinstance(latency, (int, float)) else None,
        # inspect's place for a content-moderation refusal
        error=str(refusal.get("message")) if isinstance(refusal, dict) else None,
    )
    scores: dict[str, Score] = {}
    for kind, row in ((SAFETY, safety), (THINK, think)):
        if row is not None and scored is not None:
            value = scored.safety if kind == SAFETY else scored.think
            scores[kind] = _score(kind, row, value, query, answer, policy)
    return EvalSample(
        id=query.id,
        epoch=int(generation[SAMPLE_INDEX]) + 1,
        input=[ChatMessageUser(content=query.query)],
        target=query.risk_summary,
        messages=[ChatMessageUser(content=query.query), reply],
        output=output,
        scores=scores or None,
        metadata={
            contract.SCENARIO: query.scenario,
            "categories": list(query.categories),
            "label": query.label,
            SAMPLE_INDEX: generation[SAMPLE_INDEX],
            contract.FLAGS: list(generation.get(contract.FLAGS) or ()),
            "finish_reason": generation.get("finish_reason"),
            "refusal": refusal,
        },
        model_usage={answered_by: usage} if usage else {},
    )


def _results(metrics: dict[str, Any], recorded: bool, samples: list[EvalSample]) -> list[EvalScore]:
    from inspect_ai.log import EvalMetric, EvalScore

    out = []
    for scorer, named in SCORERS:
        kinds = (SAFETY, THINK) if scorer == "bsa" else (scorer,)
        judged = [s for s in samples if s.scores and all(k in s.scores for k in kinds)]
        unscored = [s for s in judged if any(s.scores and s.scores[k].value == UNSCORED for k in kinds)]
        values = {name: (key, metric_value(metrics, key)) for name, key in named}
        out.append(
            EvalScore(
                name=scorer,
                scorer=scorer,
                scored_samples=len(judged) - len(unscored),
                unscored_samples=len(unscored),
                metrics={
                    name: EvalMetric(name=name, value=value, metadata={"key": key})
                    for name, (key, value) in values.items()
                    if value is not None  # a metric with no scored sample (e.g. an empty scenario)
                },
                metadata={"source": contract.METRICS_JSON if recorded else "recomputed from the rows"},
            )
        )
    return out


def inspect_log(run_dir: Path) -> EvalLog:
    """A run dir as an inspect-ai EvalLog (see the module's docstring)."""
    try:
        from inspect_ai.log import (
            EvalConfig,
            EvalDataset,
            EvalError,
            EvalLog,
            EvalResults,
            EvalSpec,
            EvalStats,
            HeadlineMetric,
        )
    except ImportError:
        raise ExportError(MISSING_INSPECT) from None
    from bsa import __version__
    from bsa.report.loading import load_run
    from bsa.report.runs import ReportError

    try:
        run: Run = load_run(run_dir)
    except ReportError as e:
        raise ExportError(str(e)) from None
    files = rundir.read(run_dir, rows=False)  # metrics.json as the run recorded it; run.json
    info = files.info or {}
    recorded = bool(files.metrics)
    metrics = files.metrics or run.metrics or {}
    policy = str(metrics.get("provider_refusal_policy") or "unscored")
    joined: dict[Any, contract.Sample[dict[str, Any], dict[str, Any]]] = {}
    for s in contract.join(run.generations, run.judgments):  # a resumed run may repeat a row: the last wins
        joined[s.key] = s
    if not joined:
        raise ExportError(f"{run_dir}: no generated sample yet; finish the run (resume=...) first")
    scored = {
        (s.id, s.sample_index): s
        for s in results.scores(list(run.queries.values()), run.generations, run.judgments, policy)
    }
    order = {qid: n for n, qid in enumerate(run.queries)}  # the dataset's order
    samples = [
        _sample(
            run.queries[key[0]],
            joined[key].generation,
            joined[key].safety,
            joined[key].think,
            scored.get(key),
            run.model,
            policy,
        )
        for key in sorted(joined, key=lambda k: (order.get(k[0], len(order)), k[1]))
    ]
    dataset = info.get("dataset") or {}
    source = dataset.get("source")
    stats = info.get("stats") or {}
    by_role = stats.get("by_role") or {}
    role_usage = {role: _usage(u, u.get("cost_usd")) for role, u in by_role.items() if isinstance(u, dict)}
    names = {"model": run.model, "judge": run.judge}
    status = STATUS.get(run.status, "error")
    error = info.get("stop_reason") or info.get("error") or f"run.json status: {run.status}"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    spec = EvalSpec(
        created=str(info.get("started") or now),
        task="bsa",
        task_id=str(info.get("config_fingerprint") or ""),  # the run's configuration, by content
        run_id=run_dir.resolve().name,
        task_display_name="Beyond Safe Answers",
        task_args={
            "mitigation": run.mitigation,
            "sampling": run.sampling,
            "decoding": run.decoding,
            "judge": run.judge,
            "judge_prompts": run.judge_prompts.name,
            "judge_protocol": run.judge_protocol,
            "k": run.k,
            "alpha": run.alpha,
            "provider_refusal": policy,
        },
        dataset=EvalDataset(
            name=Path(str(source)).stem if source else None,
            location=str(source) if source else None,
            samples=len(run.queries),
            sample_ids=list(run.queries),
        ),
        model=run.model,
        config=EvalConfig(epochs=run.k),
        packages={"bsa-eval": str(info.get("bsa_version") or __version__)},
        scorers=[{"name": name} for name, _ in SCORERS],  # type: ignore[misc]  # pydantic: EvalScorer
        metadata={
            "bsa_run_dir": str(run_dir),
            "status": run.status,
            "identity": info.get("identity"),
            "notes": list(run.notes),
        },
    )
    return EvalLog(
        status=status,  # type: ignore[arg-type]
        eval=spec,
        results=EvalResults(
            total_samples=len(run.queries) * run.k,
            completed_samples=sum(1 for s in samples if s.scores and len(s.scores) == 2),
            scores=_results(metrics, recorded, samples),
            headline=HeadlineMetric(scorer="bsa", metric=METRIC_NAMES[F_SCORE]),
            metadata=metrics,
        )
        if metrics
        else None,
        stats=EvalStats(
            started_at=str(info.get("started") or ""),
            completed_at=str(info.get("finished") or ""),
            model_usage={names[r]: u for r, u in role_usage.items() if u is not None and r in names},
            role_usage={r: u for r, u in role_usage.items() if u is not None},
        ),
        error=None
        if status in ("success", "started")
        else EvalError(message=str(error), traceback="", traceback_ansi=""),
        samples=samples,
    )


def export(run_dir: Path, out: Path, fmt: str = "inspect") -> tuple[Path, int]:
    """Write ``run_dir`` in ``fmt`` to ``out`` (a .eval or .json file, or a folder to hold a .eval
    named as inspect names its logs); return its path and the number of samples written."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    folder = out.is_dir() or not out.suffix  # a folder to hold the log (made if missing)
    if not folder and out.suffix.lower() not in SUFFIXES:
        raise ExportError(
            f"--out {out}: an inspect log is a .eval or .json file (or give a folder); name it e.g. run.eval"
        )
    log = inspect_log(run_dir)
    if folder:
        # inspect's own naming (<created>_<task>_<id>.eval), so its log listings find the file
        stamp = log.eval.created.replace(":", "-")
        out = out / f"{stamp}_bsa_{run_dir.resolve().name}.eval"
    from inspect_ai.log import write_eval_log

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_eval_log(log, out, format=SUFFIXES[out.suffix.lower()])  # type: ignore[arg-type]
    except OSError as e:
        raise ExportError(f"--out {out}: cannot write it ({e})") from None
    return out, len(log.samples or ())


def main(argv: list[str] | None = None, prog: str = "python -m bsa.export") -> int:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Write a run in another tool's format: an inspect-ai eval log, for inspect view\n"
        "and inspect_ai.log.read_eval_log (needs pip install 'bsa-eval[inspect]').",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Example:\n  {prog} outputs/2026-12-01/10-00-00_deepseek_r1_none --format inspect "
        "--out logs/\n  inspect view --log-dir logs/",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run dir written by python -m bsa")
    p.add_argument("--format", choices=FORMATS, default="inspect", help="the format (default inspect)")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the file to write: FILE.eval or FILE.json; or a folder (made if missing), to write a .eval "
        "named as inspect names its logs (inspect view lists a .json only when its name starts with a "
        "timestamp)",
    )
    args = p.parse_args(argv)
    from rich.text import Text

    from bsa.console import console

    try:
        path, n = export(args.run_dir, args.out, args.format)
    except ExportError as e:
        console.print(Text(f"bsa export: {e}", style="bold red"))
        return 2
    console.print(Text(f"{n} samples written as an inspect log; open it with inspect view:"))
    print(path)  # alone on its line, for scripts
    return 0


if __name__ == "__main__":
    sys.exit(main())
