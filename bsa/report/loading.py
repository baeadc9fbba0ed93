"""One run dir read back: metrics recomputed from its jsonl files with ``bsa.metrics.compute``, and
notes saying what is missing, stopped or inconsistent. The run dirs of one run's shards
(``dataset.shard=i/n``) are read back together as that one run (``load_shards``, via ``bsa.shards``).

Generations and judgments are read from the JSONL files, never from samples.parquet: those files are
the record (appended as rows land, so a run in progress, killed or resumed is shown as it is, while
samples.parquet is written only when a run ends), and they carry fields the flat samples table
leaves out and the report reads (the judge model, rule verdicts, templates and ensemble members for
agreement; usage and cost). samples.parquet is read for the queries instead (texts, risk summaries,
labels, categories, as the run recorded them; only those columns are read): per-category results and
the failure cases then need no dataset file, and are right for a run dir copied elsewhere or whose
dataset file moved or changed. Without it (older runs, ``bsa.score --out``) the dataset file is read."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from bsa import contract, data, results, rundir, shards, stats
from bsa.contract import DEFAULT_ALPHA, SAFE_AT_1, SCENARIO, SCENARIOS, THINK_AT_1
from bsa.data import DatasetError, Query
from bsa.metrics import compute
from bsa.report.runs import JudgePrompts, QuerySet, ReportError, Row, Run
from bsa.shards import ShardError


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


@lru_cache(maxsize=8)
def _dataset(
    path: str, stamp: tuple[int, int], custom_categories: bool
) -> tuple[tuple[Query, ...], str] | str:
    """The dataset's queries and the file's sha256, or why they cannot be read. ``stamp`` (mtime,
    size) keys the cache."""
    p = Path(path)
    try:
        # Only ids, order and categories are read here; the run checked its risk summaries.
        queries = data.read(p, custom_categories, allow_partial_risk_summary=True)
        return tuple(queries), data.file_sha256(p) or ""
    except DatasetError as e:
        return str(e)


def _unchanged(got: tuple[tuple[Query, ...], str], ds: dict[str, Any], gens: list[Row]) -> bool:
    """Whether the file still holds the run's queries: the same bytes, or (a BOM, CRLF or column
    order changed) the same content for the queries the run generated."""
    queries, sha = got
    if not ds.get("sha256") or sha == ds["sha256"]:
        return True
    recorded = ds.get("queries_sha256")
    asked = {g["id"] for g in gens}
    return bool(recorded) and data.queries_sha256(q for q in queries if q.id in asked) == recorded


def _recorded_queries(run_dirs: Sequence[Path], notes: list[str]) -> dict[str, Query]:
    """The queries as the runs recorded them in their samples.parquet (query columns only); {} where
    there is none. A file that cannot be read is said in notes (the dataset file is read instead)."""
    out: dict[str, Query] = {}
    for run_dir in run_dirs:
        path = run_dir / results.SAMPLES
        if not path.is_file():
            continue
        try:
            import pyarrow.parquet as pq

            rows = pq.read_table(path, columns=list(_QUERY_COLUMNS)).to_pylist()
        except (OSError, ValueError, KeyError) as e:  # pyarrow's ArrowInvalid is a ValueError
            notes.append(f"{path.name} unreadable ({e}); queries are read from the dataset file")
            continue
        for r in rows:
            if r["id"] is None or r["categories"] is None or r["scenario"] not in SCENARIOS:
                continue  # a sample whose query the run did not know
            out.setdefault(
                str(r["id"]),
                Query(
                    str(r["id"]),
                    r["query"] or "",
                    r["risk_summary"] or "",
                    r["scenario"],
                    r["label"] or "",
                    tuple(r["categories"]),
                ),
            )
    return out


_QUERY_COLUMNS = ("id", "query", "risk_summary", "scenario", "label", "categories")


def _consistent(recorded: dict[str, Query], ds: dict[str, Any]) -> bool:
    """Whether recorded queries agree with run.json's query set (its content hash) where they can be
    checked: when they are all of it. A stopped run records only the queries it reached."""
    want, n = ds.get("queries_sha256"), ds.get("n_queries")
    if not want or len(recorded) != n:
        return True
    return data.queries_sha256(recorded.values()) == want


def _queries(
    info: dict[str, Any],
    gens: list[Row],
    notes: list[str],
    custom_categories: bool = False,
    recorded: dict[str, Query] | None = None,
) -> tuple[dict[str, Query], bool]:
    """Queries by id for the join: as the run recorded them (``recorded``, from samples.parquet) when
    they cover every generation; else from the run's dataset file when it is there and unchanged;
    otherwise id and scenario from the generations, without categories or texts (said in notes)."""
    ds = info.get("dataset") or {}
    if recorded and all(g["id"] in recorded for g in gens) and _consistent(recorded, ds):
        return dict(recorded), True
    source = ds.get("source")
    known: dict[str, Query] = {}
    reason = None
    if not source:
        reason = "run.json names no dataset file"
    elif not Path(source).is_file():
        reason = f"dataset file {source} not found"
    else:
        st = Path(source).stat()
        got = _dataset(str(source), (st.st_mtime_ns, st.st_size), custom_categories)
        if isinstance(got, str):
            reason = got
        elif not _unchanged(got, ds, gens):
            reason = f"dataset file {source} changed since the run (its queries differ)"
        else:
            known = {q.id: q for q in got[0]}
    if reason:
        notes.append(f"per-category results, query texts and risk summaries unavailable: {reason}")
    for g in gens:
        if g["id"] not in known:
            known[g["id"]] = Query(g["id"], "", "", g["scenario"], "", ())
    return known, reason is None


def _decoding(cfg: dict[str, Any]) -> str:
    """The decoding actually asked for: the sampling preset's value, else the model file's."""
    parts = []
    for key, short in (("temperature", "T"), ("top_p", "top_p"), ("top_k", "top_k")):
        v = _dig(cfg, "sampling", key)
        v = _dig(cfg, "model", key) if v is None else v
        if v is not None:
            parts.append(f"{short}={v}")
    return " ".join(parts) or "server default"


def _query_key(info: dict[str, Any], cfg: dict[str, Any]) -> str:
    """What defines the queries a run was asked: the file's hash and the selection from it."""
    ds = info.get("dataset") or {}
    if ds.get("queries_sha256"):  # the selected queries by content: format, BOM and CRLF aside
        return str(ds["queries_sha256"])[:12]
    sel = cfg.get("dataset") or {}
    key: dict[str, Any] = {"sha256": ds.get("sha256") or ds.get("source"), "n": ds.get("n_queries")}
    for name in ("scenarios", "categories", "ids", "limit", "per_scenario_limit"):
        key[name] = sel.get(name) or None  # [] and null both mean "no filter"
    if sel.get("limit") is not None or sel.get("per_scenario_limit") is not None:
        key["seed"] = sel.get("seed")  # the seed only picks queries when a limit draws them
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _selection(sel: dict[str, Any]) -> str:
    """The dataset filters and draws in words, for a query set's name."""
    bits = []
    for name in ("scenarios", "categories"):
        if sel.get(name):
            bits.append(f"{name} {', '.join(map(str, sel[name]))}")
    if sel.get("ids"):
        bits.append(f"{len(sel['ids'])} chosen ids")
    for name in ("limit", "per_scenario_limit"):
        if sel.get(name) is not None:
            bits.append(f"{name}={sel[name]}")
    if bits and (sel.get("limit") is not None or sel.get("per_scenario_limit") is not None):
        bits.append(f"seed {sel.get('seed')}")
    return ", ".join(bits)


def _query_set(info: dict[str, Any], cfg: dict[str, Any]) -> QuerySet:
    ds = info.get("dataset") or {}
    counts = ds.get("scenarios")
    by_scenario = (
        tuple(sorted((str(s), int(n)) for s, n in counts.items() if isinstance(n, int)))
        if isinstance(counts, dict)
        else ()
    )
    n = ds.get("n_queries")
    source = ds.get("source")
    return QuerySet(
        key=_query_key(info, cfg),
        n_queries=n if isinstance(n, int) else None,
        by_scenario=by_scenario,
        file=Path(str(source)).name if source else None,
        sha256=str(ds["sha256"]) if ds.get("sha256") else None,
        demo=bool(ds.get("demo")),
        selection=_selection(cfg.get("dataset") or {}),
    )


def _judge_prompts(info: dict[str, Any]) -> JudgePrompts:
    """run.json's judge_prompts; a run dir from before it was recorded gets the unknown set."""
    rec = info.get("judge_prompts")
    if not isinstance(rec, dict):
        return JudgePrompts(None, None, None, commit_recorded=False)
    files = rec.get("files")
    return JudgePrompts(
        name=str(rec["set"]) if rec.get("set") else None,
        sha256=str(rec["sha256"]) if rec.get("sha256") else None,
        commit=str(rec["commit"]) if rec.get("commit") else None,
        commit_recorded="commit" in rec,
        files=tuple(sorted((str(k), str(v)) for k, v in files.items())) if isinstance(files, dict) else (),
    )


def _judge_members(info: dict[str, Any]) -> tuple[str, ...]:
    """An ensemble judge's models: strings, or objects naming their model."""
    members = info.get("judge_members")
    if not isinstance(members, list):
        return ()
    names = [m if isinstance(m, str) else _dig(m, "model") or _dig(m, "name") for m in members]
    return tuple(str(n) for n in names if n)


def _usage(gens: list[Row], info: dict[str, Any]) -> tuple[int | None, float | None]:
    """The model's tokens (from its generations, cached or not) and the run's cost where priced."""
    tokens = [
        (g.get("usage") or {}).get("prompt_tokens", 0) + (g.get("usage") or {}).get("completion_tokens", 0)
        for g in gens
        if g.get("usage")
    ]
    cost = _dig(info, "stats", "cost_usd")
    if not cost:
        priced = [g["cost_usd"] for g in gens if g.get("cost_usd")]
        cost = sum(priced) if priced else None
    return (sum(tokens) if tokens else None), cost


def _status_notes(info: dict[str, Any], m: dict[str, Any] | None, k: int, n: int) -> list[str]:
    status = info.get("status", "unknown")
    notes = []
    if status == "running":
        notes.append("run.json still says running: the run is in progress or was killed")
    elif status != "complete":
        why = info.get("stop_reason") or info.get("error") or ""
        notes.append(f"{status}{': ' + why if why else ''}")
    if m is None:
        notes.append("no judged sample: nothing to score")
    elif m["n_samples"] < n * k:
        notes.append(f"partial: {m['n_samples']} of {n * k} samples judged")
    return notes


def load_run(path: Path, alpha: float | None = None) -> Run:
    """One run dir, recomputed from its files. Never raises for a stopped, failed or torn run: what
    is missing is said in ``notes``. Raises ReportError only for a dir that is no run at all."""
    files = rundir.read(path, lenient=True)  # a row file that cannot be read is a note
    if not files.is_run:
        raise ReportError(f"{path}: not a run dir (no run.json); give a dir written by python -m bsa")
    notes: list[str] = []
    info = files.info
    if info is None:  # written atomically, so rare; show the run with what its other files hold
        info = {"status": "unreadable"}
        notes.append("run.json is not valid JSON; model, dataset and status unknown")
    notes += files.notes
    recorded = files.metrics or None
    return _run(path, files, info, files.generations, files.judgments, alpha, notes, recorded, [path])


def load_shards(paths: Sequence[Path], alpha: float | None = None) -> Run:
    """The run dirs of one run's shards (``dataset.shard=i/n``) as that one run (``bsa.shards``); a
    missing shard is shown as a partial run, named in its notes. Raises ReportError for dirs that
    are not shards of one run."""
    try:
        parts = [shards.read_shard(p) for p in paths]
        missing = shards.check(parts, partial=True)
    except ShardError as e:
        raise ReportError(str(e)) from None
    try:
        queries: list[Query] | None = shards.selection(parts)
    except ShardError:
        queries = None  # said in the merge's notes; per-category results are then left out
    merged = shards.merge(parts, queries, missing)
    done = ", ".join(f"{s.i}/{s.n}" for s in merged.shards)
    notes = [f"merged from shards {done}", *merged.notes]  # a missing shard: run.json's stop_reason
    # Shown as the folder holding the shards (a sweep dir, typically); configs from the first shard.
    path = Path(os.path.commonpath([str(s.path) for s in merged.shards]))
    first = rundir.read(merged.shards[0].path, rows=False)
    shard_dirs = [s.path for s in merged.shards]
    return _run(
        path, first, merged.info, merged.generations, merged.judgments, alpha, notes, None, shard_dirs
    )


def load_runs(paths: Sequence[Path], alpha: float | None = None) -> list[Run]:
    """Run dirs as runs: the shards of one run together as that run (``load_shards``), any other
    dir on its own (``load_run``). In the order given."""
    out = []
    for group in shards.group(paths):
        if len(group) == 1 and shards.shard_of(group[0]) is None:
            out.append(load_run(group[0], alpha))
        else:
            out.append(load_shards(group, alpha))
    return out


def _run(
    path: Path,
    config: rundir.RunFiles,
    info: dict[str, Any],
    rows: list[Row],
    judgment_rows: list[Row],
    alpha: float | None,
    notes: list[str],
    recorded: dict[str, Any] | None,
    run_dirs: Sequence[Path] = (),
) -> Run:
    """A Run from run.json's content and the rows; the config is the one ``config`` read (the run dir's,
    or the first shard's), with its .hydra/hydra.yaml's choices added; the queries as recorded in
    ``run_dirs``' samples.parquet where they are."""
    cfg = config.config
    hydra = rundir.read_yaml(config.hydra_file(contract.HYDRA_YAML))
    choices = _dig(hydra, "hydra", "runtime", "choices") or {}
    # Rows without the join keys (hand-edited, or from another version) are skipped, not fatal.
    gens = [g for g in rows if contract.keyed_generation(g) and g.get(SCENARIO) in SCENARIOS]
    judgments = [j for j in judgment_rows if contract.keyed_judgment(j)]
    custom = bool(_dig(cfg, "dataset", "custom_categories"))
    queries, categories_known = _queries(info, gens, notes, custom, _recorded_queries(run_dirs, notes))
    k = int(info.get("k") or _dig(cfg, "sampling", "k") or 1)
    run_alpha = float(alpha or cfg.get("alpha") or DEFAULT_ALPHA)
    answering = results.answering_models(gens, judgments)
    policy = str(_dig(cfg, "scoring", "provider_refusal") or "unscored")
    samples = results.scores(list(queries.values()), gens, judgments, policy)
    fixed = results.fixed_selection(queries.values(), _dig(cfg, "judge", "protocol"))
    m = compute(samples, k, run_alpha, fixed) if samples else None
    if m is not None:
        m["provider_refusal_policy"] = policy
        m["provider_refused"] = results.refusal_counts(gens, judgments)
        if answering["substituted"]:
            m["not_comparable"] = results.SUBSTITUTED
    n = int(_dig(info, "dataset", "n_queries") or len({g["id"] for g in gens}))
    notes = _status_notes(info, m, k, n) + notes
    if _dig(info, "dataset", "demo"):
        notes.append("demo data, not the BSA benchmark")
    if m and recorded and recorded.get("alpha") == run_alpha:
        if any(
            not math.isclose(recorded.get(key) or 0, m[key] or 0, abs_tol=1e-6)
            for key in (SAFE_AT_1, THINK_AT_1)
        ):
            notes.append("metrics.json disagrees with the jsonl files; the recomputed values are shown")
    tokens, cost = _usage(gens, info)
    query_set = _query_set(info, cfg)
    return Run(
        path=path,
        model=str(info.get("model") or _dig(cfg, "model", "name") or "?"),
        model_config=choices.get("model"),
        mitigation=str(info.get("mitigation") or _dig(cfg, "mitigation", "name") or "?"),
        sampling=str(info.get("sampling") or _dig(cfg, "sampling", "name") or "?"),
        decoding=_decoding(cfg),
        judge=str(info.get("judge") or _dig(cfg, "judge", "name") or "?"),
        judge_prompts=_judge_prompts(info),
        k=k,
        alpha=run_alpha,
        status=str(info.get("status", "unknown")),
        query_set=query_set.key,
        query_info=query_set,
        metrics=m,
        per_query=stats.per_query(samples, k),
        queries=queries,
        generations=gens,
        judgments=judgments,
        categories_known=categories_known,
        tokens=tokens,
        cost_usd=cost,
        notes=notes,
        judge_members=_judge_members(info),
        judge_protocol=str(_dig(cfg, "judge", "protocol") or "bsa"),
        answering=answering,
        mitigation_sha256=str(_dig(info, "mitigation_prompt", "sha256") or "") or None,
    )
