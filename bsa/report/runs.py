"""A run as the report sees it (with what decides whom it compares with: its queries, its judge and
the judge's prompts), finding run dirs, and the labels that tell runs apart."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bsa import stats
from bsa.contract import RUN_JSON
from bsa.data import Query

Row = dict[str, Any]

DEFAULT_ROOT = Path("outputs")
REPORT_DIR = "report"

GENERIC_MODEL_CONFIGS = ("openai_compatible", "vllm_local")


class ReportError(ValueError):
    """No report can be made; the message names the path and what to do."""


@dataclass(frozen=True)
class QuerySet:
    """The queries a run was asked, as run.json and the Hydra config record them."""

    key: str  # a hash of everything that picks the queries: equal keys, same queries
    n_queries: int | None  # asked (run.json), not judged: a stopped run keeps its query set
    by_scenario: tuple[tuple[str, int], ...]  # queries per scenario; () where not recorded
    file: str | None  # the dataset file's name
    sha256: str | None  # of the dataset file
    demo: bool
    selection: str  # the filters and draws applied to the file, in words; "" for none


@dataclass(frozen=True)
class JudgePrompts:
    """The judge's prompt set as run.json records it; ``name`` None for a run dir from before it did."""

    name: str | None  # published | bsa | custom
    sha256: str | None  # of the four templates' text
    commit: str | None  # the upstream commit of published files; None: not that commit's bytes
    commit_recorded: bool  # run.json has the "commit" key (its null then means "files differ")
    files: tuple[tuple[str, str], ...] = ()  # published file name -> sha256 of its bytes

    @property
    def key(self) -> str:
        """What makes two runs' judge prompts the same: the templates' hash, else the set's name."""
        return self.sha256 or (f"set:{self.name}" if self.name else "unknown")


@dataclass
class Run:
    path: Path
    model: str
    model_config: str | None
    mitigation: str
    sampling: str
    decoding: str
    judge: str
    judge_prompts: JudgePrompts
    k: int
    alpha: float
    status: str
    query_set: str
    query_info: QuerySet
    metrics: dict[str, Any] | None  # bsa.metrics.compute on what the run finished; None: nothing
    per_query: stats.PerQuery
    queries: dict[str, Query]
    generations: list[Row]
    judgments: list[Row]
    categories_known: bool
    tokens: int | None
    cost_usd: float | None
    notes: list[str] = field(default_factory=list)
    judge_members: tuple[str, ...] = ()  # an ensemble judge's models, where run.json names them
    judge_protocol: str = "bsa"  # judge.protocol: paper (upstream's rendering and counting) | bsa
    # bsa.results.answering_models: {role: {asked: {answered: rows}}, "substituted": bool}
    answering: dict[str, Any] = field(default_factory=dict)

    @property
    def answered_by(self) -> str:
        """'' when every answer came from the model asked for; else the models that did answer."""
        if not self.answering.get("substituted"):
            return ""
        from bsa.llm import same_model

        names = sorted(
            answered
            for role in ("model", "judge")
            for asked, counts in self.answering[role].items()
            for answered in counts
            if not same_model(asked, answered)
        )
        return "answered by " + ", ".join(names)

    mitigation_sha256: str | None = None  # of the mitigation's system prompt; None: none or not recorded
    label: str = ""
    ci: dict[str, stats.Interval] | stats.Skipped = field(default_factory=lambda: stats.Skipped("not run"))
    group: int = 0  # the comparison group's number (bsa.report.comparability), 1 for the largest

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

    @property
    def judge_id(self) -> str:
        """The judge as the grouping sees it: an ensemble is its members, not its wrapper's name."""
        return f"{self.judge} [{', '.join(self.judge_members)}]" if self.judge_members else self.judge


def find_runs(root: Path) -> list[Path]:
    """Every run dir (one holding run.json) under ``root``, in path order: chronological for
    outputs/<date>/<time>_… and outputs/multirun/<date>/<time>/<n>_…"""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if RUN_JSON in filenames:
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
        if (p / RUN_JSON).is_file():
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
    """Short unique names: model and mitigation, plus whatever else varies across these runs; the
    judge and its prompts only where they tell apart runs that would share a name (a run's
    comparison group names them anyway)."""
    extra: list[Callable[[Run], str]] = [lambda r: r.sampling, lambda r: r.decoding, lambda r: f"k={r.k}"]
    judging: list[Callable[[Run], str]] = [
        lambda r: f"judge {r.judge_id.rsplit('/', 1)[-1]}",
        lambda r: f"{r.judge_prompts.name or 'unknown'} prompts",
    ]
    varying = [f for f in extra if len({f(r) for r in runs}) > 1]
    alike: dict[str, list[Run]] = {}
    for r in runs:
        alike.setdefault(" · ".join([r.model_short, r.mitigation, *(f(r) for f in varying)]), []).append(r)
    seen: Counter[str] = Counter()
    for base, group in alike.items():
        telling = [f for f in judging if len({f(r) for r in group}) > 1]
        for r in group:
            name = " · ".join([base, *(f(r) for f in telling)])
            seen[name] += 1
            r.label = name if seen[name] == 1 else f"{name} #{seen[name]}"
