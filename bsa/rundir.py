"""The run-dir layer: a run dir read back (``read``: its config, run.json and joined samples, the one
reader every tool builds on), a finished run's files written (``write_finished``: one registry of
writers, for a run and a merge of shards alike), and a run's state while it goes: its identity check
on resume, its rows so far, and appending rows as they land.

Rows are keyed by (query id, sample index) for generations and (query id, sample index, kind) for
judgments (``bsa.contract``). Rows are never removed from the files (a resume of other content is
refused before this); rows outside this run's selection, if a hand edit left any, are only left out
of this run.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bsa import contract, provenance, results
from bsa.config import Config, ConfigError
from bsa.contract import ID, SAMPLE_INDEX, generation_key, judgment_key
from bsa.data import Query
from bsa.metrics import SampleScore

Row = dict[str, Any]
INFO = contract.RUN_JSON


# --- reading a run dir back -------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFiles:
    """A run dir as its files hold it: what every reader (report, agreement, shards, labels, the API,
    re-judging) starts from, adding what it needs on top."""

    path: Path
    is_run: bool  # run.json exists: the dir was written by bsa
    info: dict[str, Any] | None  # run.json; None where missing or not a JSON object
    config: dict[str, Any]  # .hydra/config.yaml, the composed config; {} where absent or unreadable
    metrics: dict[str, Any]  # metrics.json; {} where absent (a run still going, or killed)
    generations: list[Row]
    judgments: list[Row]
    errors: dict[str, Exception] = field(default_factory=dict)  # row file -> why unread (``lenient``)

    @property
    def notes(self) -> list[str]:
        """The row files that could not be read, in words."""
        return [f"{name} unreadable ({e}); its rows are left out" for name, e in self.errors.items()]

    @property
    def samples(self) -> list[contract.Sample[Row, Row]]:
        """The generations joined with their judgments (``bsa.contract.join``), in file order."""
        return contract.join(self.generations, self.judgments)

    def hydra_file(self, name: str) -> Path:
        return self.path / contract.HYDRA_DIR / name


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping file; {} where it is missing, unreadable or not a mapping."""
    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _read_info(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def read(path: Path, rows: bool = True, lenient: bool = False) -> RunFiles:
    """A run dir's config, run.json, metrics.json and (``rows``) its generation and judgment rows.

    A half-written last row (a crash mid-write) is dropped. A row file that cannot be read raises
    ValueError (or OSError), or with ``lenient`` is left out, kept in ``errors``. Nothing raises for a
    missing file: ``is_run`` says whether the dir holds a run at all."""
    errors: dict[str, Exception] = {}

    def rows_of(name: str) -> list[Row]:
        if not rows:
            return []
        try:
            return results.read_jsonl(path / name)
        except (ValueError, OSError) as e:
            if not lenient:
                raise
            errors[name] = e
            return []

    generations = rows_of(contract.GENERATIONS_JSONL)
    judgments = rows_of(contract.JUDGMENTS_JSONL)
    return RunFiles(
        path=path,
        is_run=(path / contract.RUN_JSON).is_file(),
        info=_read_info(path / contract.RUN_JSON),
        config=read_yaml(path / contract.HYDRA_DIR / contract.CONFIG_YAML),
        metrics=results.read_json_object(path / contract.METRICS_JSON),
        generations=generations,
        judgments=judgments,
        errors=errors,
    )


# --- writing a finished run -------------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """A run's rows and results at its end (or a merge of its shards): what ``write_finished`` writes."""

    queries: list[Query]
    generations: list[Row]
    judgments: list[Row]
    metrics: dict[str, Any]
    model_name: str  # bsa_results.csv's model_name column (the model's config name)
    scores: list[SampleScore]  # results.scores of the rows


def _write_generations(run_dir: Path, run: Finished) -> None:
    results.write_jsonl(run_dir / contract.GENERATIONS_JSONL, run.generations)


def _write_judgments(run_dir: Path, run: Finished) -> None:
    results.write_jsonl(run_dir / contract.JUDGMENTS_JSONL, run.judgments)


def _write_metrics(run_dir: Path, run: Finished) -> None:
    results.write_metrics(run_dir / contract.METRICS_JSON, run.metrics)


def _write_results_csv(run_dir: Path, run: Finished) -> None:
    results.atomic_write(run_dir / contract.RESULTS_CSV, results.upstream_csv(run.model_name, run.scores))


def _write_samples(run_dir: Path, run: Finished) -> None:
    # samples.parquet: pandas, DuckDB, datasets. It records the sha256 of the JSONL files: last.
    results.write_samples(run_dir, run.queries, run.generations, run.judgments)


# Every file of a finished run but run.json (written last, by the caller), in the order written.
WRITERS: tuple[tuple[str, Callable[[Path, Finished], None]], ...] = (
    (contract.GENERATIONS_JSONL, _write_generations),
    (contract.JUDGMENTS_JSONL, _write_judgments),
    (contract.METRICS_JSON, _write_metrics),
    (contract.RESULTS_CSV, _write_results_csv),
    (contract.SAMPLES_PARQUET, _write_samples),
)


def write_finished(run_dir: Path, run: Finished) -> None:
    """Every file of a finished run but run.json (``WRITERS``); each atomic, so a full disk leaves the
    previous one whole."""
    for _, write in WRITERS:
        write(run_dir, run)


# --- a run in progress ------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class GivenGenerations:
    """Generations made elsewhere (an earlier run, the upstream script): the run judges them only."""

    rows: list[Row]
    provenance: dict[str, Any]  # path, sha256, format, model: recorded in run.json


_FULL = (errno.ENOSPC, errno.EDQUOT)
RESERVE = ".bsa-reserve"  # room set aside in the run dir for run.json once the disk is full
RESERVE_BYTES = 256 * 1024


def disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in _FULL


@dataclass(frozen=True)
class DiskFull:
    """A run-dir write that found no space: where, and how big a row is, to say what to free."""

    path: Path
    error: OSError
    row_bytes: int  # the mean size of a row written so far

    def message(self, rows_left: int) -> str:
        free = shutil.disk_usage(self.path.parent).free
        # The rows still to come, then the sorted copies of both files written at the end.
        files = sum(p.stat().st_size for p in self.path.parent.glob("*.jsonl"))
        need = rows_left * self.row_bytes + files + RESERVE_BYTES
        return (
            f"no space left to write {self.path} ({_mb(free)} free there); about {_mb(need)} more is "
            f"needed to finish ({rows_left} rows of about {self.row_bytes:,} bytes, and the final copies "
            "of the row files). Free space there, then run the same command again in the same run dir: "
            "the answers already received are in the cache and are not asked again"
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


def reserve(run_dir: Path) -> None:
    """Set room aside in ``run_dir``, so that once its disk is full run.json can still say so."""
    path = run_dir / RESERVE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        else:  # pragma: no cover - macOS, Windows
            os.write(fd, bytes(RESERVE_BYTES))
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def release(run_dir: Path) -> None:
    try:
        (run_dir / RESERVE).unlink(missing_ok=True)
    except OSError:  # a read-only run dir (refused before the reserve was made) holds none
        pass


def unwritable(directory: Path) -> str | None:
    """Why no file can be created in ``directory`` (or, where it does not exist yet, in the nearest
    directory above it, where it would be made), or None. Tried for real, with a file made and removed
    at once: permission bits say nothing of a read-only mount, and os.access misjudges root on NFS."""
    existing = directory.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".bsa-write-check-")
    except OSError as e:
        return f"{e.strerror or e} in {existing}"
    os.close(fd)
    os.unlink(probe)
    return None


def check_resume(run_dir: Path, ident: dict[str, str], cfg: Config, queries: list[Query]) -> None:
    """A run dir already holding a run is continued only by a run of the same content: refused, with
    each difference named, before anything is written into it."""
    previous = results.read_json_object(run_dir / INFO)
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
            generation_key(r)
            for r in results.read_jsonl(run_dir / results.GENERATIONS)
            if r.get(ID) not in selected
            or not isinstance(r.get(SAMPLE_INDEX), int)
            or r[SAMPLE_INDEX] >= cfg.sampling.k
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


def seed_generations(path: Path, rows: list[Row], queries: list[Query], k: int) -> None:
    """Put the given generations of the selected queries into a new run dir; an existing file (a
    resumed re-judge) must hold the same rows, or the run dir belongs to other generations."""
    ids = {q.id for q in queries}
    keep = results.sort_rows((r for r in rows if r[ID] in ids and r[SAMPLE_INDEX] < k), queries)
    if not keep:
        raise ConfigError(
            "the given generations hold no sample of the selected queries (ids and sample indices "
            f"0..{k - 1}); check the dataset and sampling.k"
        )
    if path.exists():
        have = {generation_key(r): r for r in results.read_jsonl(path)}
        if any(have.get(generation_key(r)) not in (None, r) for r in keep):
            raise ConfigError(
                f"{path} holds other generations than the ones given; re-judge into a new run dir"
            )
        return
    results.write_jsonl(path, keep)


def write_info(path: Path, info: dict[str, Any]) -> None:
    results.atomic_write(path, json.dumps(info, indent=2, ensure_ascii=False) + "\n")


class RunState:
    """The rows a run dir holds, kept in memory and appended to its files as new ones land."""

    def __init__(self, run_dir: Path, queries: list[Query], k: int, read_only: bool = False) -> None:
        """``read_only``: look without touching the run dir (a dry run): no file is created or mended."""
        self.by_id = {q.id: q for q in queries}
        self.gen_path = run_dir / results.GENERATIONS
        self.judge_path = run_dir / results.JUDGMENTS
        read = results.read_jsonl if read_only else results.repair_jsonl
        self.gens: dict[tuple[str, int], Row] = {
            generation_key(r): r for r in read(self.gen_path) if r[ID] in self.by_id and r[SAMPLE_INDEX] < k
        }
        self.judged: dict[tuple[str, int, str], Row] = {
            judgment_key(r): r for r in read(self.judge_path) if generation_key(r) in self.gens
        }
        self.full: DiskFull | None = None  # the write that found the disk full, once one has
        self.on_full: Callable[[DiskFull], None] | None = None
        self.on_generation: Callable[[Row], None] | None = None  # each new generation row, once kept
        self._gen_out = None if read_only else results.JsonlAppender(self.gen_path)
        self._judge_out = None if read_only else results.JsonlAppender(self.judge_path)

    def keep_generation(self, row: Row) -> None:
        assert self._gen_out is not None, "a read-only run state keeps no rows"
        if self._append(self._gen_out, row):
            self.gens[generation_key(row)] = row
            if self.on_generation is not None:
                self.on_generation(row)

    def keep_judgment(self, row: Row) -> None:
        assert self._judge_out is not None, "a read-only run state keeps no rows"
        if self._append(self._judge_out, row):
            self.judged[judgment_key(row)] = row

    def _append(self, out: results.JsonlAppender, row: Row) -> bool:
        """Append ``row``; False when the disk is full. The row's answer is in the cache already, so a
        resume writes it without a call; in memory only what is on disk is kept, so the run's files and
        its metrics never disagree."""
        if self.full is not None:
            return False
        try:
            out.write(row)
        except OSError as e:
            if not disk_full(e):
                raise
            self.full = DiskFull(out.path, e, self._row_bytes())
            if self.on_full is not None:
                self.on_full(self.full)
            return False
        return True

    def _row_bytes(self) -> int:
        size = sum(p.stat().st_size for p in (self.gen_path, self.judge_path) if p.exists())
        return size // max(1, len(self.gens) + len(self.judged)) + 1  # memory holds what the files do

    def close(self) -> None:
        for out in (self._gen_out, self._judge_out):
            if out is not None:
                out.close()
