"""A run as the report sees it, finding run dirs, and the labels and query-set letters that tell runs
apart."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bsa import stats
from bsa.data import Query

Row = dict[str, Any]

DEFAULT_ROOT = Path("outputs")
REPORT_DIR = "report"

GENERIC_MODEL_CONFIGS = ("openai_compatible", "vllm_local")


class ReportError(ValueError):
    """No report can be made; the message names the path and what to do."""


@dataclass
class Run:
    path: Path
    model: str
    model_config: str | None
    mitigation: str
    sampling: str
    decoding: str
    judge: str
    k: int
    alpha: float
    status: str
    query_set: str
    metrics: dict[str, Any] | None  # bsa.metrics.compute on what the run finished; None: nothing
    per_query: stats.PerQuery
    queries: dict[str, Query]
    generations: list[Row]
    judgments: list[Row]
    categories_known: bool
    tokens: int | None
    cost_usd: float | None
    notes: list[str] = field(default_factory=list)
    label: str = ""
    ci: dict[str, stats.Interval] | stats.Skipped = field(default_factory=lambda: stats.Skipped("not run"))
    set_letter: str = "A"

    @property
    def model_short(self) -> str:
        if self.model_config and self.model_config not in GENERIC_MODEL_CONFIGS:
            return self.model_config
        return self.model.rstrip("/").rsplit("/", 1)[-1] or self.model

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def value(self, key: str) -> float | None:
        """A point estimate from compute's output: headline key, or "<scenario>/<key>"."""
        if self.metrics is None:
            return None
        if "/" in key:
            scenario, sub = key.split("/", 1)
            return self.metrics["scenarios"].get(scenario, {}).get(sub)
        return self.metrics.get(key)

    def interval(self, key: str) -> stats.Interval | None:
        return None if isinstance(self.ci, stats.Skipped) else self.ci.get(key)


def find_runs(root: Path) -> list[Path]:
    """Every run dir (one holding run.json) under ``root``, in path order: chronological for
    outputs/<date>/<time>_… and outputs/multirun/<date>/<time>/<n>_…"""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if "run.json" in filenames:
            found.append(Path(dirpath))
            dirnames.clear()  # a run dir holds no runs
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(found)


def discover(paths: Sequence[Path], root: Path = DEFAULT_ROOT) -> list[Path]:
    if not paths:
        if not root.is_dir():
            raise ReportError(
                f"no runs: {root}/ does not exist. Run an evaluation first (python -m bsa …) "
                "or name run dirs: python -m bsa.report RUN_DIR …"
            )
        found = find_runs(root)
        if not found:
            raise ReportError(f"no run found under {root}/ (no dir holds a run.json); name run dirs instead")
        return found
    out: list[Path] = []
    for p in paths:
        if (p / "run.json").is_file():
            out.append(p)
        elif p.is_dir() and (below := find_runs(p)):
            out.extend(below)
        else:
            what = "does not exist" if not p.exists() else "is not a run dir (no run.json) and holds none"
            raise ReportError(
                f"{p}: {what}; give a dir written by python -m bsa, or a sweep dir holding them"
            )
    return list(dict.fromkeys(out))


def assign_labels(runs: list[Run]) -> None:
    """Short unique names: model and mitigation, plus whatever else varies across these runs."""
    extra: list[Callable[[Run], str]] = [
        lambda r: r.sampling,
        lambda r: r.decoding,
        lambda r: f"judge {r.judge.rsplit('/', 1)[-1]}",
        lambda r: f"k={r.k}",
    ]
    varying = [f for f in extra if len({f(r) for r in runs}) > 1]
    seen: Counter[str] = Counter()
    for r in runs:
        base = " · ".join([r.model_short, r.mitigation, *(f(r) for f in varying)])
        seen[base] += 1
        r.label = base if seen[base] == 1 else f"{base} #{seen[base]}"


def assign_sets(runs: list[Run]) -> dict[str, int]:
    """Letter the query sets, A for the one most runs share; returns runs per letter."""
    counts = Counter(r.query_set for r in runs)
    letters = {
        qs: chr(ord("A") + i) if i < 26 else f"S{i + 1}" for i, (qs, _) in enumerate(counts.most_common())
    }
    for r in runs:
        r.set_letter = letters[r.query_set]
    return {letters[qs]: n for qs, n in counts.items()}
