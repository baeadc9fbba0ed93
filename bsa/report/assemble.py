"""The Report: runs with their intervals and comparison groups, pairs, correlations, the reference
and the diagnoses; what every output renders."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

from bsa import stats
from bsa.contract import SAFE_AT_1, THINK_AT_1
from bsa.report.agreement_section import AgreementGroup, agreement_groups
from bsa.report.comparability import (
    Group,
    PaperMatch,
    assign_groups,
    difference_text,
    paper_match,
    setup_match,
)
from bsa.report.diagnosis import Diagnosis, diagnose, difference_intervals, with_measured
from bsa.report.pairs import Pair, compare, find_pairs, unpaired_notes
from bsa.report.reference import load_reference, reference_medians
from bsa.report.runs import Run, assign_labels


@dataclass
class Report:
    runs: list[Run]
    groups: list[Group]
    alpha: float
    n_boot: int
    pairs: list[Pair]
    correlations: dict[int, stats.Correlation | stats.Skipped]  # per group number: runs of one group only
    reference: pd.DataFrame
    reference_correlation: stats.Correlation | stats.Skipped
    diagnoses: dict[str, Diagnosis]
    paper: dict[str, PaperMatch]  # per run label: whether it compares with the published leaderboard
    notes: list[str]
    generated: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    agreement: list[AgreementGroup] = field(default_factory=list)  # judges compared on the same samples

    @property
    def correlation(self) -> stats.Correlation | stats.Skipped:
        """Group 1's: the group most runs share."""
        return self.correlations.get(1, stats.Skipped("no run"))


def build(runs: list[Run], n_boot: int = stats.DEFAULT_N_BOOT, seed: int = 0) -> Report:
    assign_labels(runs)
    groups = assign_groups(runs)
    notes = []
    for r in runs:
        r.ci = stats.bootstrap_ci(r.per_query, r.alpha, n_boot, seed)
    alphas = Counter(r.alpha for r in runs)
    alpha = alphas.most_common(1)[0][0]
    if len(alphas) > 1:
        notes.append(
            f"runs use different α ({', '.join(f'{a:.4f}' for a in alphas)}): their F-scores are not on one "
            "scale; pass --alpha to recompute all of them with one"
        )
    if len(groups) > 1:
        notes.append(
            f"the runs fall into {len(groups)} comparison groups (each: one query set, one judge model, one "
            "set of judge prompts): numbers, paired tests and correlations compare runs of one group only"
        )
    notes += unpaired_notes(runs)
    pairs = [Pair(a, b, why, compare(a, b, n_boot, seed)) for a, b, why in find_pairs(runs)]
    correlations: dict[int, stats.Correlation | stats.Skipped] = {}
    for g in groups:
        scored = [r for r in g.runs if r.metrics is not None]
        correlations[g.number] = stats.pearson(
            [r.value(THINK_AT_1) for r in scored], [r.value(SAFE_AT_1) for r in scored]
        )
    ref = load_reference(alpha)
    medians = reference_medians(ref)
    paper = {r.label: paper_match(r) for r in runs}
    diagnoses = {}
    for r in runs:
        ci = (
            None
            if isinstance(r.ci, stats.Skipped)
            else {**r.ci, **difference_intervals(r.per_query, r.alpha, n_boot, seed)}
        )
        diagnoses[r.label] = diagnose(r.metrics, medians, ci, paper[r.label].comparable)
    return Report(
        runs=runs,
        groups=groups,
        alpha=alpha,
        n_boot=n_boot,
        pairs=pairs,
        correlations=correlations,
        reference=ref,
        reference_correlation=stats.pearson(list(ref["Think@1"]), list(ref["Safe@1"])),
        diagnoses=with_measured(diagnoses, pairs),
        paper=paper,
        notes=notes,
        agreement=agreement_groups(runs, n_boot, seed),
    )


GROUPS_NOTE = (
    "Runs compare only within a comparison group: the same queries, judged by the same judge model with "
    "the same judge prompts (the judge is part of the measurement). Metric tables, paired tests and "
    "correlations stay within a group."
)


def intro_lines(report: Report) -> list[str]:
    return [
        f"Generated {report.generated} from {len(report.runs)} run(s). Rates in percent; ± is half the width "
        f"of the 95% percentile bootstrap interval over queries ({report.n_boot} replicates; a query's k "
        f"samples stay together; queries are resampled within each scenario when every scenario has at least "
        f"{stats.MIN_STRATUM}, otherwise over all); exact bounds are in leaderboard.csv. "
        f"OS/CS/RO are Think per scenario, as published. F-score = Think@1^α · Safe@1^(1−α).",
        *report.notes,
    ]


@dataclass(frozen=True)
class GroupSummary:
    title: str  # "Group 1: 2,000 benchmark queries · judge openai/gpt-4o · published prompts (sha …)"
    runs: str  # "4 runs: a · none, a · rules, …"
    differs: str  # "differs from group 1 in the judge and the judge prompts"; "" for group 1
    paper: str  # against the paper: "comparable" / "not comparable: judged by …"


def group_summaries(report: Report) -> list[GroupSummary]:
    """Each comparison group in words: what defines it, its runs, how it differs from the groups
    before it, and whether its setup compares with the paper."""
    out = []
    for i, g in enumerate(report.groups):
        runs = f"{len(g.runs)} run{'s' if len(g.runs) != 1 else ''}: {', '.join(r.label for r in g.runs)}"
        out.append(
            GroupSummary(g.title, runs, difference_text(g, report.groups[:i]), setup_match(g.runs[0]).short)
        )
    return out


def group_of(report: Report, run: Run) -> Group:
    return report.groups[run.group - 1]
