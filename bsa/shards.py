"""One run on several machines: merge the run dirs of its shards (``dataset.shard=i/n``) into the
result the unsharded run would have written.

A shard is a run whose selection was cut by ``dataset.shard=i/n`` (``data.take_shard``: round robin
over the selection). Shards of one run share everything but their queries: run.json's identity
agrees on every part but "queries", the dataset file (sha256) and the selection filters agree, they
have the same n and distinct i, and their queries do not overlap. ``check`` refuses anything else,
naming the shard and the difference; a missing shard is an error naming it, unless ``partial`` is
asked for (the merged metrics are then marked partial and list ``missing_shards``).

The merge orders rows as the unsharded run does (``results.sort_rows`` over the selection in file
order, read back from the dataset file) and computes the metrics with ``bsa.metrics.compute`` as
``bsa.run`` does, so a merge of complete shards equals the unsharded run: the same metrics.json,
bsa_results.csv, generations.jsonl and judgments.jsonl. ``write`` puts it into a run dir whose
run.json names the shards (``merged_from``), which the report reads like any run.

Where a shard's i/n is read: run.json ``dataset.shard`` where recorded, else the run's
``.hydra/config.yaml`` (``dataset.shard``). ``python -m bsa.score DIR…`` and ``python -m bsa.report``
use this module.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bsa import contract, data, results, rundir
from bsa.config import DatasetConfig
from bsa.data import DatasetError, Query
from bsa.judge import inputs_truncated
from bsa.metrics import compute

Row = dict[str, Any]
RUN_JSON = contract.RUN_JSON
# The dataset config keys that pick the selection from the file (the shard aside): equal in every shard.
SELECTION_KEYS = (
    "scenarios",
    "categories",
    "ids",
    "limit",
    "per_scenario_limit",
    "seed",
    "custom_categories",
)


class ShardError(ValueError):
    """The run dirs are not the shards of one run, or cannot be merged; the message names the fix."""


@dataclass
class Shard:
    """One shard's run dir, as read from its files."""

    path: Path
    i: int
    n: int
    info: dict[str, Any]  # run.json
    dataset_cfg: dict[str, Any]  # the dataset section of .hydra/config.yaml; {} where absent
    generations: list[Row]
    judgments: list[Row]
    metrics: dict[str, Any]  # metrics.json; {} where absent (a run still going, or killed)
    model_name: str | None  # the model_name column of bsa_results.csv (the model's config name)

    @property
    def name(self) -> str:
        return f"shard {self.i}/{self.n} ({self.path})"

    @property
    def complete(self) -> bool:
        return self.info.get("status") == "complete" and self.metrics.get("partial") is False


@dataclass
class Merged:
    """The merged run: what ``write`` puts into a run dir."""

    shards: list[Shard]
    queries: list[Query]  # the merged selection in the unsharded run's order
    generations: list[Row]
    judgments: list[Row]
    metrics: dict[str, Any]
    info: dict[str, Any]  # run.json, with merged_from
    model_name: str
    missing: list[str] = field(default_factory=list)  # "i/n" of shards not given (a partial merge)
    notes: list[str] = field(default_factory=list)


def _dataset_cfg(files: rundir.RunFiles) -> dict[str, Any]:
    section = files.config.get("dataset")
    return section if isinstance(section, dict) else {}


def shard_value(info: dict[str, Any], dataset_cfg: dict[str, Any]) -> str | None:
    """The run's ``dataset.shard`` as recorded ("i/n"), or None: run.json first, then the config.
    A merged run dir (``merged_from``) is no shard, whatever its copied config says."""
    if info.get("merged_from"):
        return None
    ds = info.get("dataset")
    recorded = ds.get("shard") if isinstance(ds, dict) else None
    value = recorded if recorded is not None else dataset_cfg.get("shard")
    return str(value) if value not in (None, "") else None


def shard_of(path: Path) -> tuple[int, int] | None:
    """(i, n) of a run dir that is a shard; None for a run dir that is not (or no run dir)."""
    files = rundir.read(path, rows=False)
    try:
        return data.parse_shard(shard_value(files.info or {}, _dataset_cfg(files)))
    except DatasetError:
        return None


def _model_name(path: Path) -> str | None:
    try:
        with open(path / results.RESULTS_CSV, encoding="utf-8", newline="") as f:
            import csv

            row = next(csv.DictReader(f), None)
    except OSError:
        return None
    return row.get("model_name") if row else None


def read_shard(path: Path, rows: bool = True) -> Shard:
    """A shard's run dir (without its jsonl rows unless ``rows``); ShardError where it is no run
    dir or no shard."""
    files = rundir.read(path, rows=rows, lenient=True)  # its own errors first, then unreadable rows
    if not files.is_run:
        raise ShardError(f"{path}: not a run dir (no run.json); give the run dirs of a run's shards")
    info = files.info or {}
    if not info:
        raise ShardError(f"{path}: run.json is not a JSON object; the run dir cannot be merged")
    cfg = _dataset_cfg(files)
    value = shard_value(info, cfg)
    if value is None:
        what = "a merged run (merged_from in run.json)" if info.get("merged_from") else "not a shard"
        raise ShardError(
            f"{path}: {what}: neither run.json nor .hydra/config.yaml records a dataset.shard=i/n; "
            "give only the run dirs of one run's shards"
        )
    try:
        parsed = data.parse_shard(value)
    except DatasetError as e:
        raise ShardError(f"{path}: {e}") from None
    assert parsed is not None
    for err in files.errors.values():  # the first unreadable row file
        if not isinstance(err, ValueError):
            raise err
        raise ShardError(f"{path}: {err}") from None
    return Shard(
        path=path,
        i=parsed[0],
        n=parsed[1],
        info=info,
        dataset_cfg=cfg,
        generations=files.generations,
        judgments=files.judgments,
        metrics=files.metrics,
        model_name=_model_name(path),
    )


def _run_key(s: Shard) -> dict[str, str]:
    """What every shard of one run shares: the identity but its queries, the dataset file, the
    selection (where the config is there) and the model's name."""
    ident = s.info.get("identity")
    if not isinstance(ident, dict):
        raise ShardError(
            f"{s.name}: run.json has no identity (an older bsa), so it cannot be shown to belong to "
            "the same run as the other shards; rerun the shard with this bsa"
        )
    key = {k: str(v) for k, v in ident.items() if k != "queries"}
    ds = s.info.get("dataset") if isinstance(s.info.get("dataset"), dict) else {}
    key["dataset file"] = f"sha256 {str(ds.get('sha256') or '?')[:16]}"
    if s.dataset_cfg:
        sel = {k: s.dataset_cfg.get(k) or None for k in SELECTION_KEYS}  # [] and null: no filter
        if sel["limit"] is None and sel["per_scenario_limit"] is None:
            sel["seed"] = None  # the seed only picks queries when a limit draws them
        key["selection"] = json.dumps(sel, sort_keys=True, default=str)
    if s.model_name:
        key["model name"] = s.model_name
    return key


def check(shards: Sequence[Shard], partial: bool = False) -> list[str]:
    """Refuse run dirs that are not shards of one run; return the "i/n" of the missing shards (only
    with ``partial``: without it a missing shard is an error naming it). Pure."""
    if not shards:
        raise ShardError("no shard given; give the run dirs of one run's shards")
    first = shards[0]
    counts = {s.n for s in shards}
    if len(counts) > 1:
        listing = ", ".join(f"{s.path} is {s.i}/{s.n}" for s in shards)
        raise ShardError(f"the run dirs are shards of different counts n ({listing}); give one run's shards")
    base = _run_key(first)
    for s in shards[1:]:
        key = _run_key(s)
        diffs = [
            f"{k}: {base.get(k, 'not recorded')} → {key.get(k, 'not recorded')}"
            for k in dict.fromkeys([*base, *key])
            if base.get(k) != key.get(k)
        ]
        if diffs:
            raise ShardError(
                f"{s.name} is not a shard of the same run as {first.name}; they differ in:\n    "
                + "\n    ".join(diffs)
            )
    seen: dict[int, Shard] = {}
    for s in shards:
        if s.i in seen:
            raise ShardError(
                f"shard {s.i}/{s.n} given twice: {seen[s.i].path} and {s.path}; give one run dir per shard"
            )
        seen[s.i] = s
    missing = [f"{i}/{first.n}" for i in range(1, first.n + 1) if i not in seen]
    if missing and not partial:
        have = ", ".join(f"{i}/{first.n}" for i in sorted(seen))
        raise ShardError(
            f"missing shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} of {first.n} "
            f"(given: {have}); give {'their' if len(missing) > 1 else 'its'} run dir"
            f"{'s' if len(missing) > 1 else ''} too, or merge what there is with --partial "
            "(metrics marked partial)"
        )
    owner: dict[str, Shard] = {}
    for s in shards:
        for qid in dict.fromkeys(g.get("id") for g in s.generations):
            if qid in owner and owner[qid] is not s:
                raise ShardError(
                    f"query {qid!r} is in {owner[qid].name} and in {s.name}: shards must not overlap; "
                    "the run dirs are not shards of one selection"
                )
            owner[qid] = s
    return missing


def _read_dataset(shards: Sequence[Shard], dataset: Path | None, custom: bool) -> tuple[list[Query], Path]:
    source = dataset or Path(str((shards[0].info.get("dataset") or {}).get("source") or ""))
    if not str(source) or not source.is_file():
        where = f"the dataset file {source}" if str(source) else "the dataset file"
        raise ShardError(
            f"{where} the shards read is not here (needed for the query order and the categories); "
            "give it with --dataset FILE"
        )
    custom = custom or bool(shards[0].dataset_cfg.get("custom_categories"))
    try:
        # Only ids, order and categories are read here; the shards checked their risk summaries.
        return data.read(source, custom, allow_partial_risk_summary=True), source
    except DatasetError as e:
        raise ShardError(f"{e}; give the file the shards read with --dataset FILE") from None


def _shard_queries(s: Shard, full: list[Query] | None, by_id: dict[str, Query]) -> list[Query]:
    """The queries shard ``s`` selected, checked against the hash run.json recorded."""
    if full is not None:
        mine = data.take_shard(full, s.i, s.n)
    else:  # no config to redo the selection: the queries it generated (all of them, if complete)
        mine = [by_id[qid] for qid in dict.fromkeys(g["id"] for g in s.generations) if qid in by_id]
    recorded = (s.info.get("dataset") or {}).get("queries_sha256")
    if recorded and data.queries_sha256(mine) != recorded:
        why = (
            "the dataset file differs from the one the shard read"
            if full is not None
            else "its .hydra/config.yaml is missing, and not all its queries were generated"
        )
        raise ShardError(
            f"{s.name}: cannot recover the queries it ran ({why}; recorded sha256 {recorded[:16]}); "
            "give the dataset file the shards read with --dataset FILE"
        )
    return mine


def selection(shards: Sequence[Shard], dataset: Path | None = None, custom: bool = False) -> list[Query]:
    """The merged selection in the unsharded run's order (the dataset file's): the whole selection
    when the shards' config is there to redo it, else the union of the given shards' queries."""
    queries, source = _read_dataset(shards, dataset, custom)
    full = None
    if shards[0].dataset_cfg:
        names = {f.name for f in dataclasses.fields(DatasetConfig)}
        kept = {k: v for k, v in shards[0].dataset_cfg.items() if k in names}
        cfg = DatasetConfig(**{**kept, "shard": None, "path": str(source), "url": None, "hf_id": None})
        try:
            full = data.select(queries, cfg)
        except DatasetError as e:
            raise ShardError(f"{source}: the shards' selection cannot be redone ({e})") from None
    by_id = {q.id: q for q in queries}
    mine = {q.id for s in shards for q in _shard_queries(s, full, by_id)}
    if full is not None:
        return full
    return [q for q in queries if q.id in mine]


def _interleaved(shards: Sequence[Shard]) -> list[Query]:
    """Without the dataset file: the query order of complete shards, from round robin (query j of
    shard i sat at position j·n + i − 1), with id and scenario only (no categories)."""
    place: dict[str, tuple[int, Query]] = {}
    for s in shards:
        for j, g in enumerate({g["id"]: g for g in s.generations}.values()):
            place[g["id"]] = (j * s.n + s.i - 1, Query(g["id"], "", "", g.get("scenario", ""), "", ()))
    return [q for _, q in sorted(place.values(), key=lambda t: t[0])]


def _sum(values: Iterable[Any]) -> Any:
    """Sum run.json stats: numbers added, dicts merged key by key."""
    values = list(values)
    if all(isinstance(v, dict) for v in values):
        keys = dict.fromkeys(k for v in values for k in v)
        return {k: _sum(v[k] for v in values if k in v) for k in keys}
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return sum(values)
    return values[0] if values else None


def _identity_queries(queries: list[Query]) -> str:
    # The format of provenance.identity's "queries" part, so the merged identity is the unsharded one's.
    return f"{len(queries)} queries, sha256 {data.queries_sha256(queries)[:16]}"


def merge(shards: Sequence[Shard], queries: list[Query] | None, missing: Sequence[str] = ()) -> Merged:
    """Rows and metrics of the shards as one run (``check`` them first). ``queries``: the merged
    selection (``selection``); None orders rows by round robin and leaves categories out."""
    shards = sorted(shards, key=lambda s: s.i)
    notes = []
    if queries is None:
        queries = _interleaved(shards)
        notes.append("dataset file unavailable: rows ordered by shard round robin, no per-category metrics")
    first = shards[0]
    ident = first.info["identity"]
    k, alpha = int(ident["k"]), float(ident["alpha"])
    gens = results.sort_rows((g for s in shards for g in s.generations), queries)
    judgments = results.sort_rows((j for s in shards for j in s.judgments), queries)
    policy = str(first.metrics.get("provider_refusal_policy") or "unscored")
    samples = results.scores(queries, gens, judgments, policy)
    # As bsa.run writes metrics.json: compute, then how complete the run is.
    protocol = ident.get("judge protocol")
    m = compute(samples, k, alpha, results.fixed_selection(queries, protocol))
    m["judge_protocol"] = str(protocol or "bsa")
    m["judge_inputs_truncated"] = inputs_truncated(judgments)
    m["provider_refusal_policy"] = policy
    m["provider_refused"] = results.refusal_counts(gens, judgments)
    m["partial"] = bool(missing) or not all(s.complete for s in shards)
    m["unjudged_samples"] = len(gens) - len(samples)
    m["missing_samples"] = len(queries) * k - len(gens)
    stops = [f"shard {s.i}/{s.n}: {s.metrics['stop_reason']}" for s in shards if s.metrics.get("stop_reason")]
    if stops:
        m["stop_reason"] = "; ".join(stops)
    if missing:
        m["missing_shards"] = list(missing)
    model_name = first.model_name or str(first.info.get("model") or "?")
    return Merged(
        list(shards),
        queries,
        gens,
        judgments,
        m,
        _merged_info(shards, queries, m, missing),
        model_name,
        list(missing),
        notes,
    )


def _merged_info(
    shards: Sequence[Shard], queries: list[Query], m: dict[str, Any], missing: Sequence[str]
) -> dict[str, Any]:
    first = shards[0]
    info = {k: v for k, v in first.info.items() if k not in ("servers", "plan", "failures", "stop_reason")}
    info["identity"] = {**first.info["identity"], "queries": _identity_queries(queries)}
    ds = {k: v for k, v in (first.info.get("dataset") or {}).items() if k != "shard"}
    ds.update(
        queries_sha256=data.queries_sha256(queries),
        n_queries=len(queries),
        scenarios=data.summary(queries),
    )
    info["dataset"] = ds
    starts = [s.info["started"] for s in shards if s.info.get("started")]
    ends = [s.info["finished"] for s in shards if s.info.get("finished")]
    if starts:
        info["started"] = min(starts)
    if ends and len(ends) == len(shards):
        info["finished"] = max(ends)
    else:
        info.pop("finished", None)
    walls = [s.info["wall_s"] for s in shards if isinstance(s.info.get("wall_s"), (int, float))]
    if walls:
        info["wall_s"] = max(walls)  # the shards ran side by side
    stats = [s.info["stats"] for s in shards if isinstance(s.info.get("stats"), dict)]
    if stats:
        info["stats"] = _sum(stats)
    failures = [f for s in shards for f in (s.info.get("failures") or {}).get("first", [])]
    count = sum((s.info.get("failures") or {}).get("count", 0) for s in shards)
    if count:
        info["failures"] = {"count": count, "first": failures[:50]}
    why = [f"missing shard{'s' if len(missing) > 1 else ''} {', '.join(missing)}"] if missing else []
    why += [m["stop_reason"]] if m.get("stop_reason") else []
    if why:
        info["stop_reason"] = "; ".join(why)
    if missing:
        info["status"] = "partial"
        info["missing_shards"] = list(missing)
    elif all(s.info.get("status") == "complete" for s in shards):
        info["status"] = "complete"
    else:
        info["status"] = next(s.info.get("status") for s in shards if s.info.get("status") != "complete")
    info["merged_from"] = [
        {
            "path": str(s.path),
            "shard": f"{s.i}/{s.n}",
            "status": s.info.get("status"),
            "n_queries": (s.info.get("dataset") or {}).get("n_queries"),
            "queries_sha256": (s.info.get("dataset") or {}).get("queries_sha256"),
        }
        for s in shards
    ]
    return info


def load(
    paths: Sequence[Path], dataset: Path | None = None, partial: bool = False, custom: bool = False
) -> Merged:
    """Read, check and merge the shards' run dirs; the dataset file is needed (``--dataset`` where
    the recorded one is not on this machine)."""
    shards = [read_shard(p) for p in paths]
    missing = check(shards, partial)
    return merge(shards, selection(shards, dataset, custom), missing)


def _hydra_files(src: Path) -> dict[str, str]:
    """The first shard's .hydra files with the shard taken out, so the merged dir reads as the
    unsharded run (and as no shard)."""
    out = {}
    cfg = rundir.read_yaml(src / contract.HYDRA_DIR / contract.CONFIG_YAML)
    if isinstance(cfg.get("dataset"), dict):
        cfg["dataset"]["shard"] = None
        out["config.yaml"] = yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)
    overrides = (
        yaml.safe_load((src / ".hydra" / "overrides.yaml").read_text(encoding="utf-8"))
        if (src / ".hydra" / "overrides.yaml").is_file()
        else None
    )
    if isinstance(overrides, list):
        kept = [o for o in overrides if not str(o).lstrip("+~").startswith("dataset.shard=")]
        out["overrides.yaml"] = yaml.safe_dump(kept, allow_unicode=True)
    if (src / ".hydra" / "hydra.yaml").is_file():
        out["hydra.yaml"] = (src / ".hydra" / "hydra.yaml").read_text(encoding="utf-8")
    return out


def write(merged: Merged, out_dir: Path) -> None:
    """The merged run as a run dir. A dir holding another run (not an earlier merge) is refused."""
    previous = results.read_json_object(out_dir / RUN_JSON)
    if (out_dir / RUN_JSON).exists() and not previous.get("merged_from"):
        raise ShardError(f"{out_dir} holds a run (its run.json has no merged_from); choose a new --out dir")
    if any(os.path.samefile(out_dir, s.path) for s in merged.shards if out_dir.exists()):
        raise ShardError(f"{out_dir} is one of the shards; choose a new --out dir")
    policy = str(merged.metrics.get("provider_refusal_policy") or "unscored")
    samples = results.scores(merged.queries, merged.generations, merged.judgments, policy)
    finished = rundir.Finished(
        merged.queries, merged.generations, merged.judgments, merged.metrics, merged.model_name, samples
    )
    rundir.write_finished(out_dir, finished)  # as bsa.run writes them, samples.parquet included
    for name, text in _hydra_files(merged.shards[0].path).items():
        results.atomic_write(out_dir / contract.HYDRA_DIR / name, text)
    rundir.write_info(out_dir / RUN_JSON, merged.info)


def group(paths: Sequence[Path]) -> list[list[Path]]:
    """Run dirs as the runs they make: a shard joins the first group of its run that lacks its i
    (a second copy of a shard starts another, partial, group); any other dir is a group of one.
    Shards that a merged run dir among ``paths`` lists (``merged_from``) are left out: the merge
    stands for them. In the order of first appearance."""
    merged_from: set[str] = set()
    for p in paths:
        info = results.read_json_object(p / RUN_JSON)
        for entry in info.get("merged_from") or []:
            if isinstance(entry, dict) and entry.get("path"):
                merged_from.add(os.path.realpath(entry["path"]))
    groups: list[list[Path]] = []
    keys: list[tuple[str, int] | None] = []
    taken: list[set[int]] = []
    for p in paths:
        if os.path.realpath(p) in merged_from:
            continue
        try:
            s = read_shard(p, rows=False)
            key: tuple[str, int] | None = (json.dumps(_run_key(s), sort_keys=True), s.n)
        except ShardError:
            key = None
        if key is None:
            groups.append([p])
            keys.append(None)
            taken.append(set())
            continue
        for g, k, t in zip(groups, keys, taken, strict=True):
            if k == key and s.i not in t:
                g.append(p)
                t.add(s.i)
                break
        else:
            groups.append([p])
            keys.append(key)
            taken.append({s.i})
    return groups
