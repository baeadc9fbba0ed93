"""Run-dir files: JSONL appenders, atomic final writes, the upstream results CSV, and the join of
generations and judgments into per-sample scores."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bsa.data import Query
from bsa.metrics import SampleScore
from bsa.verdict import SAFETY, THINK

GENERATIONS = "generations.jsonl"
JUDGMENTS = "judgments.jsonl"
METRICS = "metrics.json"
RESULTS_CSV = "bsa_results.csv"
UPSTREAM_COLUMNS = ("model_name", "id", "dataset_name", "Safe_Ans_Check", "Thk_Acc_Judge")
UNSCORED = "Unscored"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # written where upstream expects a label; never equal to a target label


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are for sharing
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class JsonlAppender:
    """Append rows as they complete, flushed, so a crash loses at most the line being written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _parse_jsonl(text: str, path: Path) -> tuple[list[dict[str, Any]], bool]:
    """(rows, torn): a half-written last line (a crash mid-write) is dropped and reported."""
    rows = []
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines) - 1:
                return rows, True
            raise ValueError(f"{path}: line {n + 1} is not valid JSON") from None
    return rows, bool(text) and not text.endswith("\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a half-written last line (a crash mid-write) is dropped."""
    if not path.exists():
        return []
    return _parse_jsonl(path.read_text(encoding="utf-8", errors="replace"), path)[0]


def repair_jsonl(path: Path) -> list[dict[str, Any]]:
    """The file's rows, after dropping a torn last line so appends start clean. Every whole row
    stays: the file is rewritten only when its last line was torn."""
    if not path.exists():
        return []
    rows, torn = _parse_jsonl(path.read_text(encoding="utf-8", errors="replace"), path)
    if torn:
        write_jsonl(path, rows)
    return rows


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object file such as run.json; {} where it is missing or not an object (old or torn)."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def sort_rows(rows: Iterable[dict[str, Any]], queries: list[Query]) -> list[dict[str, Any]]:
    order = {q.id: i for i, q in enumerate(queries)}
    kinds = {SAFETY: 0, THINK: 1}
    return sorted(
        rows,
        key=lambda r: (order.get(r["id"], len(order)), r["sample_index"], kinds.get(r.get("kind", ""), 0)),
    )


def scores(
    queries: list[Query], generations: list[dict[str, Any]], judgments: list[dict[str, Any]]
) -> list[SampleScore]:
    """One score per sample that has both judgment rows (a row's verdict may be unscored: None).

    Samples still waiting for a judgment (a stopped run) are left out, not counted as unscored.
    """
    by_id = {q.id: q for q in queries}
    verdicts: dict[tuple[str, int, str], str | None] = {
        (j["id"], j["sample_index"], j["kind"]): j.get("verdict") for j in judgments
    }
    out = []
    for g in generations:
        q = by_id.get(g["id"])
        if q is None:  # a row of another query set (e.g. a report over an edited dataset)
            continue
        key = (g["id"], g["sample_index"])
        if (*key, SAFETY) not in verdicts or (*key, THINK) not in verdicts:
            continue
        out.append(
            SampleScore(
                id=q.id,
                sample_index=g["sample_index"],
                scenario=q.scenario,
                categories=q.categories,
                safety=verdicts[(*key, SAFETY)],
                think=verdicts[(*key, THINK)],
                flags=tuple(g.get("flags") or ()),
            )
        )
    return out


def upstream_csv(model_name: str, samples: list[SampleScore]) -> str:
    """The input format of upstream evaluate.py: one row per sample."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(UPSTREAM_COLUMNS)
    for s in samples:
        w.writerow([model_name, s.id, s.scenario, s.safety or UNSCORED, s.think or UNSCORED])
    return buf.getvalue()


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
