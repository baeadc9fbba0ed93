"""A run dir's state: its identity check on resume, its rows so far, and appending rows as they land.

Rows are keyed by (query id, sample index) for generations and (query id, sample index, kind) for
judgments. Rows are never removed from the files (a resume of other content is refused before this);
rows outside this run's selection, if a hand edit left any, are only left out of this run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bsa import provenance, results
from bsa.config import Config, ConfigError
from bsa.data import Query

Row = dict[str, Any]
INFO = "run.json"


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


def check_resume(run_dir: Path, ident: dict[str, str], cfg: Config, queries: list[Query]) -> None:
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


def seed_generations(path: Path, rows: list[Row], queries: list[Query], k: int) -> None:
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
            (r["id"], r["sample_index"]): r
            for r in read(self.gen_path)
            if r["id"] in self.by_id and r["sample_index"] < k
        }
        self.judged: dict[tuple[str, int, str], Row] = {
            (r["id"], r["sample_index"], r["kind"]): r
            for r in read(self.judge_path)
            if (r["id"], r["sample_index"]) in self.gens
        }
        self._gen_out = None if read_only else results.JsonlAppender(self.gen_path)
        self._judge_out = None if read_only else results.JsonlAppender(self.judge_path)

    def keep_generation(self, row: Row) -> None:
        assert self._gen_out is not None, "a read-only run state keeps no rows"
        self.gens[(row["id"], row["sample_index"])] = row
        self._gen_out.write(row)

    def keep_judgment(self, row: Row) -> None:
        assert self._judge_out is not None, "a read-only run state keeps no rows"
        self.judged[(row["id"], row["sample_index"], row["kind"])] = row
        self._judge_out.write(row)

    def close(self) -> None:
        for out in (self._gen_out, self._judge_out):
            if out is not None:
                out.close()
