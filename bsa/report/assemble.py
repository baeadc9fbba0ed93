"""The Report: runs with their intervals, pairs, correlations, the reference and the diagnoses; what
every output renders."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

from bsa import stats
from bsa.report.diagnosis import Diagnosis, diagnose, with_measured
from bsa.report.pairs import Pair, compare, find_pairs
from bsa.report.reference import load_reference, reference_medians
from bsa.report.runs import Run, assign_labels, assign_sets


@dataclass
class Report:
    runs: list[Run]
    sets: dict[str, int]
    alpha: float
    n_boot: int
    pairs: list[Pair]
    correlation: stats.Correlation | stats.Skipped
    reference: pd.DataFrame
    reference_correlation: stats.Correlation | stats.Skipped
    diagnoses: dict[str, Diagnosis]
    notes: list[str]
    generated: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


def build(runs: list[Run], n_boot: int = stats.DEFAULT_N_BOOT, seed: int = 0) -> Report:
    assign_labels(runs)
    sets = assign_sets(runs)
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
    if len(sets) > 1:
        notes.append(
            "runs are over different query sets (column 'set'): only runs of the same set are comparable; "
            "the correlation uses set A"
        )
    pairs = [Pair(a, b, why, compare(a, b, n_boot, seed)) for a, b, why in find_pairs(runs)]
    main_set = [r for r in runs if r.set_letter == "A" and r.metrics is not None]
    corr = stats.pearson([r.value("think_at_1") for r in main_set], [r.value("safe_at_1") for r in main_set])
    ref = load_reference(alpha)
    medians = reference_medians(ref)
    return Report(
        runs=runs,
        sets=sets,
        alpha=alpha,
        n_boot=n_boot,
        pairs=pairs,
        correlation=corr,
        reference=ref,
        reference_correlation=stats.pearson(list(ref["Think@1"]), list(ref["Safe@1"])),
        diagnoses=with_measured({r.label: diagnose(r.metrics, medians) for r in runs}, pairs),
        notes=notes,
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
