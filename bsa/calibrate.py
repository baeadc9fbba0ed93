"""``python -m bsa.calibrate RUN_REF RUN_NEW [--apply RUN_OTHER]... [--out FILE.json]``

Judge continuity: a successor judge's metrics carried over to a reference judge's scale (GPT-4o, the
paper's judge, leaves the API on 2027-01-14). RUN_REF holds the reference judge's verdicts (GPT-4o
while it exists, or stored GPT-4o verdicts of any earlier run); RUN_NEW the successor's on the same
samples, e.g. ``python -m bsa.rejudge RUN_REF judge=… --out RUN_NEW``. Reported: how far the two
judges agree per kind and scenario (``bsa.agreement``: raw agreement, Cohen's kappa, Krippendorff's
alpha, bootstrap intervals over queries); the successor's error rates with the reference's verdicts
as the truth (``bsa.correction.label_agreement``: sensitivity and specificity with Wilson intervals);
and the successor's Safe@1/Think@1 (Rogan–Gladen) and Safe@k/Think@k (deconvolution) corrected to the
reference's scale with bootstrap intervals, beside the reference's own (``bsa.correction.correct``,
the machinery ``bsa.labels`` uses for human labels, here with the reference verdicts as the labels).
``--apply RUN_OTHER`` corrects another run judged by the successor the same way; its metrics are named
"calibrated to <reference judge> via <calibration runs>".

What it assumes (``ASSUMPTIONS``, printed with every result): the successor's error rates measured on
the calibration samples hold on the runs it is applied to, and the calibration samples are a random
sample of what it is applied to (each counts with weight 1). Its target is the reference judge's
verdict, errors and all, not the truth.

Refused, with the fix (exit 2): runs that share no sample; runs whose generated text differs for a
shared (id, sample_index) (RUN_NEW must judge RUN_REF's generations); a RUN_REF whose judge is not
recorded; an applied run judged by another judge or prompt set than RUN_NEW's.

The pure core (``Pair`` and what is computed from it) comes first, then the run dirs, JSON, the
console tables and the CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bsa import agreement, correction, results, stats
from bsa.agreement import Agreement, AgreementError, JudgedRun
from bsa.contract import SAFE_AT_1, SAFE_AT_K, SCENARIOS, THINK_AT_1, THINK_AT_K, scenario_metric
from bsa.labels import KINDS, METRIC_NAMES, POOL_CHOICES, pooled, target
from bsa.metrics import SampleScore
from bsa.verdict import SAFETY, THINK

ALL = "all"
Sample = tuple[str, int]  # (query id, sample index)
UNKNOWN_JUDGE = "?"  # what bsa.agreement.load names a judge no file records
# A rule's share of a kind's verdicts that differs by more than this between the calibration and an
# applied run is said in a note: rule verdicts agree by construction, so they dilute the error rates.
RULE_SHARE_TOLERANCE = 0.05

ASSUMPTIONS: tuple[str, ...] = (
    "The successor's error rates against the reference (sensitivity and specificity of the target "
    "label; safety pooled over scenarios, think per scenario, under --pool auto) measured on the "
    "calibration samples hold on every run the calibration is applied to: the same successor judge, "
    "prompts and settings, on outputs like the calibration's (another model or mitigation may draw "
    "other errors from the same judge).",
    "The calibration samples are a random sample of the samples it is applied to: each counts with "
    "weight 1. A hand-picked, filtered or easy set biases the rates; draw it at random.",
    "The successor errs on each sample independently given the reference's verdict (the Rogan–Gladen "
    "assumption; the @k correction relies on it per sample).",
    "The scale is the reference judge, not the truth: calibrated metrics estimate what the reference "
    "judge would have said, its own errors included.",
    "Verdicts set by rule (no reasoning trace, a provider's refusal) agree by construction and count "
    "in the error rates as they count in the metrics: a run with a very different share of them is "
    "corrected less well (a note says so).",
)
METHOD = (
    "Agreement: bsa.agreement (confusion matrix, raw agreement, Cohen's kappa, Krippendorff's alpha; "
    "rule verdicts left out; percentile bootstrap over queries). Error rates: the reference's "
    "verdicts as the labels, every shared sample weight 1, Wilson intervals (bsa.correction."
    "label_agreement). Metrics: bsa.correction.correct, Rogan–Gladen for @1 and deconvolution for @k, "
    "one percentile bootstrap resampling the calibration samples (within scenarios) and the corrected "
    "run's queries (whole, k samples together), independently. Reference metrics: bsa.stats."
    "bootstrap_ci over the shared samples' queries."
)


class CalibrationError(ValueError):
    """No calibration can be made or applied; the message names the runs and the fix."""


# ---------------------------------------------------------------------------------------------------
# Pure core: judged runs in, JSON-ready dicts out.


@dataclass(frozen=True)
class Pair:
    """The reference and the successor on the samples both judged, with the same generated text."""

    ref: JudgedRun
    new: JudgedRun
    shared: tuple[Sample, ...]
    scenario: dict[str, str]  # query id -> scenario, for every query of either run
    ref_verdicts: dict[Sample, tuple[str | None, str | None]]  # judged_samples(ref)
    new_verdicts: dict[Sample, tuple[str | None, str | None]]

    @property
    def name(self) -> str:
        """How a calibrated metric is named: 'calibrated to <ref judge> via <ref run> and <new run>'."""
        return f"calibrated to {self.ref.judge} via {_run_name(self.ref)} and {_run_name(self.new)}"


def _run_name(run: JudgedRun) -> str:
    return run.path.name if run.path is not None else run.name


def judged_samples(run: JudgedRun) -> dict[Sample, tuple[str | None, str | None]]:
    """(safety, think) verdicts of the samples that have both judgment rows, as ``bsa.metrics`` counts
    them (a stopped run's sample still waiting for one is left out; an unscored verdict is None)."""
    v = run.ratings.verdicts
    return {
        (qid, i): (v[(qid, i, SAFETY)], v[(qid, i, THINK)])
        for qid, i, kind in v
        if kind == SAFETY and (qid, i, THINK) in v
    }


def _judge_line(run: JudgedRun) -> str:
    return f"{run.judge} with the {run.prompt_name or run.prompts or 'unrecorded'} prompts"


def _rejudge(ref: Path | str) -> str:
    return f"python -m bsa.rejudge {ref} judge=<successor> --out RUN_NEW"


def _same_dir(path: Path) -> CalibrationError:
    return CalibrationError(
        f"RUN_REF and RUN_NEW are the same run dir ({path}); RUN_NEW must hold the successor judge's "
        f"verdicts on RUN_REF's samples: {_rejudge(path)}"
    )


def pair(ref: JudgedRun, new: JudgedRun) -> Pair:
    """The two runs as a calibration pair, or why they are none (with the fix)."""
    rejudge = _rejudge(ref.path or ref.name)
    if ref.judge in (UNKNOWN_JUDGE, ""):
        raise CalibrationError(
            f"RUN_REF {ref.path or ref.name}: its judge is not recorded (run.json has no 'judge', "
            "judgments.jsonl no 'judge_model'), so there is no scale to calibrate to; give a run dir "
            "written by python -m bsa or python -m bsa.rejudge, or, if you know which judge gave its "
            'verdicts, add "judge": "<model>" to its run.json'
        )
    if ref.path is not None and new.path is not None and ref.path.resolve() == new.path.resolve():
        raise _same_dir(ref.path)
    scenario = dict(new.scenarios)
    for qid, s in ref.scenarios.items():
        if scenario.setdefault(qid, s) != s:
            raise CalibrationError(
                f"query {qid!r} is {s!r} in RUN_REF and {scenario[qid]!r} in RUN_NEW: the runs used "
                f"different datasets; judge RUN_REF's own generations: {rejudge}"
            )
    in_ref, in_new = judged_samples(ref), judged_samples(new)
    shared = [key for key in in_ref if key in in_new]
    if not shared:
        raise CalibrationError(
            f"RUN_REF and RUN_NEW share no judged sample (RUN_REF {len(in_ref)}, RUN_NEW {len(in_new)}, "
            f"none with the same (id, sample_index)); judge RUN_REF's generations with the successor: "
            f"{rejudge}"
        )
    differ = [key for key in shared if ref.texts.get(key) is None or ref.texts.get(key) != new.texts.get(key)]
    if differ:
        first = ", ".join(f"{qid} sample {i}" for qid, i in differ[:3])
        raise CalibrationError(
            f"{len(differ)} of the {len(shared)} shared samples have different (or missing) generated "
            f"text in RUN_REF and RUN_NEW (first: {first}): the judges did not judge the same outputs, "
            f"so their verdicts cannot be compared; judge RUN_REF's generations with the successor: {rejudge}"
        )
    return Pair(ref, new, tuple(shared), scenario, in_ref, in_new)


def _scenarios(keys: Sequence[Sample], scenario: dict[str, str]) -> list[str]:
    present = {scenario.get(qid) for qid, _ in keys}
    return [s for s in SCENARIOS if s in present]


def label_sample(p: Pair, kind: str, scenario: str) -> correction.LabelSample:
    """The shared samples of ``scenario`` both judges scored, in the binary view: the reference's
    verdict as the truth, the successor's as the judged; weight 1 each (a random sample), resampled
    within the scenario."""
    ref, new = p.ref_verdicts, p.new_verdicts
    col = KINDS.index(kind)
    tgt = target(kind, scenario)
    rows = [
        (ref[key][col], new[key][col])
        for key in p.shared
        if p.scenario[key[0]] == scenario and ref[key][col] is not None and new[key][col] is not None
    ]
    return correction.LabelSample(
        truth=np.array([r == tgt for r, _ in rows], dtype=bool),
        judged=np.array([n == tgt for _, n in rows], dtype=bool),
        weight=np.ones(len(rows)),
        strata=(scenario,) * len(rows),
        target=repr(tgt),
    )


def query_counts(
    verdicts: dict[Sample, tuple[str | None, str | None]], scenario: dict[str, str], kind: str, name: str
) -> correction.QueryCounts:
    """Per query of scenario ``name``: samples judged the target, of those scored."""
    col, tgt = KINDS.index(kind), target(kind, name)
    counts: dict[str, list[int]] = {}  # query id -> [hits, scored], in the run's order
    for (qid, _), v in verdicts.items():
        if scenario.get(qid) == name:
            c = counts.setdefault(qid, [0, 0])
            c[0] += v[col] == tgt
            c[1] += v[col] is not None
    rows = np.array(list(counts.values()), dtype=int).reshape(len(counts), 2)
    return correction.QueryCounts(rows[:, 0], rows[:, 1])


def error_rates(p: Pair, level: float = stats.DEFAULT_LEVEL) -> dict[str, Any]:
    """Per kind, over all scenarios and per scenario: the successor's sensitivity, specificity,
    accuracy and precision for the target label, with the reference's verdicts as the truth
    (fractions, Wilson intervals)."""
    out: dict[str, Any] = {}
    scenarios = _scenarios(p.shared, p.scenario)
    for kind in KINDS:
        per: dict[str, Any] = {}
        samples = {s: label_sample(p, kind, s) for s in scenarios}
        for name in [ALL, *scenarios]:
            ls = correction.pool(list(samples.values())) if name == ALL else samples[name]
            a = correction.label_agreement(ls.truth, ls.judged, ls.weight, level=level)
            per[name] = {
                "n": len(ls.truth),
                "reference_target": int(np.sum(ls.truth)),
                "sensitivity": asdict(a.recall),  # = recall of the target label
                "specificity": asdict(a.specificity),
                "accuracy": asdict(a.binary_accuracy),  # target or not, as the metrics count
                "precision": asdict(a.precision),
            }
        out[kind] = per
    return out


def _estimate_json(e: correction.Estimate) -> dict[str, Any]:
    return {**asdict(e), "shift": e.shift}


def corrected(
    p: Pair,
    verdicts: dict[Sample, tuple[str | None, str | None]],
    scenario: dict[str, str],
    n_boot: int = stats.DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = stats.DEFAULT_LEVEL,
    pool: str = "auto",
    min_youden: float = correction.DEFAULT_MIN_YOUDEN,
) -> dict[str, Any]:
    """Per kind, over all queries and per scenario: the run's raw @1/@k and those corrected with the
    calibration's error rates (percent), in ``bsa.labels``' label_scores.json shape."""
    out: dict[str, Any] = {}
    scenarios = _scenarios(list(verdicts), scenario)
    if not scenarios:
        raise CalibrationError("no judged sample to correct")
    for kind in KINDS:
        groups = {s: (query_counts(verdicts, scenario, kind, s), label_sample(p, kind, s)) for s in scenarios}
        is_pooled = pooled(kind, pool)
        res = correction.correct(groups, n_boot, seed, level, min_youden, all_name=ALL, pooled=is_pooled)
        per: dict[str, Any] = {}
        for name in [ALL, *scenarios]:
            c = res[name]
            per[name] = {
                "at_1": _estimate_json(c.at_1),
                "at_k": _estimate_json(c.at_k),
                "sensitivity": c.sensitivity,
                "specificity": c.specificity,
                "error_rates": "pooled over scenarios" if is_pooled else "per scenario",
                "undefined_replicates": c.undefined_replicates,
            }
        out[kind] = per
    return out


_STAT_KEYS = {
    (SAFETY, "at_1"): SAFE_AT_1,
    (SAFETY, "at_k"): SAFE_AT_K,
    (THINK, "at_1"): THINK_AT_1,
    (THINK, "at_k"): THINK_AT_K,
}  # bsa.stats' names


def reference_metrics(
    verdicts: dict[Sample, tuple[str | None, str | None]],
    scenario: dict[str, str],
    n_boot: int = stats.DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = stats.DEFAULT_LEVEL,
) -> dict[tuple[str, str, str], stats.Interval]:
    """(kind, scenario or ALL, at) -> the run's own rate (percent) with its bootstrap interval over
    queries, as the report gives it (``bsa.stats``)."""
    samples = [
        SampleScore(qid, i, scenario[qid], (), safety, think)
        for (qid, i), (safety, think) in verdicts.items()
    ]
    k = max(Counter(qid for qid, _ in verdicts).values(), default=1)
    ci = stats.bootstrap_ci(stats.per_query(samples, k), 0.5, n_boot, seed, level)
    if isinstance(ci, stats.Skipped):
        return {}
    out = {}
    for (kind, at), key in _STAT_KEYS.items():
        for name in [ALL, *_scenarios(list(verdicts), scenario)]:
            got = ci.get(key if name == ALL else scenario_metric(name, key))
            if got is not None:
                out[(kind, name, at)] = got
    return out


def rule_shares(run: JudgedRun, keys: Sequence[Sample]) -> dict[str, float | None]:
    """Per kind, the share of ``keys``' verdicts a rule set (no reasoning trace, a refusal)."""
    out: dict[str, float | None] = {}
    for kind in KINDS:
        n = len(keys)
        out[kind] = sum((qid, i, kind) in run.ruled for qid, i in keys) / n if n else None
    return out


def _rule_notes(calib: dict[str, float | None], other: dict[str, float | None], where: str) -> list[str]:
    notes = []
    for kind in KINDS:
        a, b = calib.get(kind), other.get(kind)
        if a is not None and b is not None and abs(a - b) > RULE_SHARE_TOLERANCE:
            notes.append(
                f"{where}: {100 * b:.1f}% of its {kind} verdicts were set by rule, against "
                f"{100 * a:.1f}% in the calibration; rule verdicts agree by construction, so the "
                "calibrated rates carry an error the intervals do not show"
            )
    return notes


def _run_json(run: JudgedRun) -> dict[str, Any]:
    return {
        "path": str(run.path) if run.path else None,
        "judge": run.judge,
        "prompts": run.prompt_name,
        "prompts_sha256": run.prompts,
    }


@dataclass(frozen=True)
class Calibrated:
    """A calibration's results: ``data`` JSON-ready (what --out writes), ``agreement`` the
    ``bsa.agreement`` result its console tables are printed from."""

    data: dict[str, Any]
    agreement: Agreement


def calibration(
    p: Pair,
    n_boot: int = stats.DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = stats.DEFAULT_LEVEL,
    pool: str = "auto",
    min_youden: float = correction.DEFAULT_MIN_YOUDEN,
) -> Calibrated:
    """The calibration of ``p.new``'s judge to ``p.ref``'s on their shared samples: agreement, error
    rates, and the successor's metrics there raw and corrected beside the reference's."""
    if pool not in POOL_CHOICES:
        raise CalibrationError(f"--pool {pool!r}: choose one of {', '.join(POOL_CHOICES)}")
    agreed = agreement.compare([p.ref, p.new], n_boot, seed, level)
    ref_v, new_v = p.ref_verdicts, p.new_verdicts
    shared_ref = {key: ref_v[key] for key in p.shared}
    shared_new = {key: new_v[key] for key in p.shared}
    metrics = corrected(p, shared_new, p.scenario, n_boot, seed, level, pool, min_youden)
    reference = reference_metrics(shared_ref, p.scenario, n_boot, seed, level)
    for kind, per in metrics.items():
        for name, g in per.items():
            for at in ("at_1", "at_k"):
                r = reference.get((kind, name, at))
                g[at]["reference"] = None if r is None else r.estimate
                g[at]["reference_low"] = None if r is None else r.low
                g[at]["reference_high"] = None if r is None else r.high
    notes = []
    if p.ref.judge == p.new.judge and p.ref.prompts == p.new.prompts:
        notes.append(
            f"RUN_REF and RUN_NEW were judged by the same judge ({p.ref.judge}) with the same prompts: "
            "this calibration measures its run-to-run variation only"
        )
    only_ref, only_new = len(ref_v) - len(p.shared), len(new_v) - len(p.shared)
    if only_ref or only_new:
        notes.append(
            f"{only_ref} judged sample(s) only in RUN_REF and {only_new} only in RUN_NEW are left out; "
            f"the calibration uses the {len(p.shared)} shared ones"
            + (f" (--apply {_run_name(p.new)} corrects all of RUN_NEW's)" if only_new else "")
        )
    data = {
        "name": p.name,
        "reference": _run_json(p.ref),
        "successor": _run_json(p.new),
        "shared_samples": len(p.shared),
        "shared_queries": len({qid for qid, _ in p.shared}),
        "k": max(Counter(qid for qid, _ in p.shared).values()),
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
        "pool": pool,
        "units": {"agreement": "fraction", "error_rates": "fraction", "metrics": "percent"},
        "assumptions": list(ASSUMPTIONS),
        "method": METHOD,
        "rule_share": rule_shares(p.new, p.shared),
        "agreement": agreement.to_json(agreed, [p.ref, p.new]),
        "error_rates": error_rates(p, level),
        "metrics": metrics,
        "applied": [],
        "notes": notes,
    }
    return Calibrated(data, agreed)


def apply(
    p: Pair,
    other: JudgedRun,
    n_boot: int = stats.DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = stats.DEFAULT_LEVEL,
    pool: str = "auto",
    min_youden: float = correction.DEFAULT_MIN_YOUDEN,
) -> dict[str, Any]:
    """Another run judged by the successor, its metrics corrected with the calibration's error rates
    and named "calibrated to <reference judge> via <calibration runs>"."""
    where = f"--apply {other.path or other.name}"
    if p.new.judge in (UNKNOWN_JUDGE, ""):
        raise CalibrationError(
            f"{where}: RUN_NEW's judge is not recorded, so it cannot be told whether the run was judged "
            "by the same successor; give run dirs written by python -m bsa or python -m bsa.rejudge"
        )
    if other.judge != p.new.judge or (other.prompts and p.new.prompts and other.prompts != p.new.prompts):
        raise CalibrationError(
            f"{where}: judged by {_judge_line(other)}, but the calibration measured "
            f"{_judge_line(p.new)}; its error rates hold for that judge and prompt set only. Judge the "
            f"run with it first (python -m bsa.rejudge {other.path or other.name} judge=… with RUN_NEW's "
            "judge settings), or calibrate the run's own judge"
        )
    verdicts = judged_samples(other)
    if not verdicts:
        raise CalibrationError(f"{where}: no sample with both judgments; finish the run (resume=…) first")
    missing = [
        s for s in _scenarios(list(verdicts), other.scenarios) if s not in _scenarios(p.shared, p.scenario)
    ]
    notes = _rule_notes(rule_shares(p.new, p.shared), rule_shares(other, list(verdicts)), where)
    if missing:
        notes.append(
            f"{where}: the calibration has no sample of {', '.join(missing)}; what is corrected with "
            "error rates per scenario (think, under --pool auto) cannot be there; calibrate on samples "
            "of every scenario (or pool the error rates: --pool kind)"
        )
    return {
        "name": p.name,
        "run": _run_json(other),
        "n_samples": len(verdicts),
        "n_queries": len({qid for qid, _ in verdicts}),
        "rule_share": rule_shares(other, list(verdicts)),
        "metrics": corrected(p, verdicts, other.scenarios, n_boot, seed, level, pool, min_youden),
        "notes": notes,
    }


# ---------------------------------------------------------------------------------------------------
# Run dirs.


def calibrate(
    ref_dir: Path,
    new_dir: Path,
    apply_to: Sequence[Path] = (),
    n_boot: int = stats.DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = stats.DEFAULT_LEVEL,
    pool: str = "auto",
) -> Calibrated:
    """The calibration of RUN_NEW's judge to RUN_REF's, applied to each of ``apply_to``."""
    if n_boot < 1:
        raise CalibrationError(
            f"--n-boot {n_boot}: must be at least 1 ({stats.DEFAULT_N_BOOT} is the default)"
        )
    if not 0 < level < 1:
        raise CalibrationError(f"--level {level}: must lie strictly between 0 and 1, e.g. 0.95")
    if ref_dir.resolve() == new_dir.resolve():
        raise _same_dir(ref_dir)
    try:
        # As bsa.agreement reads runs: the judge from run.json (else the judgments), named by dir and
        # judge (by path where both dirs have one name).
        p = pair(*agreement.load_all([ref_dir, new_dir]))
        result = calibration(p, n_boot, seed, level, pool)
        for other in apply_to:
            applied = apply(p, agreement.load(other), n_boot, seed, level, pool)
            result.data["applied"].append(applied)
            result.data["notes"] += applied["notes"]
    except AgreementError as e:
        raise CalibrationError(str(e)) from None
    return result


def to_json(result: Calibrated) -> str:
    return json.dumps(
        result.data,
        indent=2,
        ensure_ascii=False,
        allow_nan=False,
    )


# ---------------------------------------------------------------------------------------------------
# Console.


def _fmt(v: float | None, lo: float | None, hi: float | None, digits: int) -> str:
    from bsa.report.columns import fmt_interval

    return fmt_interval(v, lo, hi, digits)


def _se_sp(g: dict[str, Any]) -> str:
    se, sp = g.get("sensitivity"), g.get("specificity")
    if se is None and sp is None:
        return "per scenario" if g.get("error_rates") == "per scenario" else "—"
    cell = f"{'—' if se is None else f'{se:.3f}'} / {'—' if sp is None else f'{sp:.3f}'}"
    return f"{cell} pooled" if g.get("error_rates") == "pooled over scenarios" else cell


def _metric_rows(metrics: dict[str, Any], reference: bool) -> tuple[list[list[str]], list[str]]:
    rows, reasons = [], []
    for kind, per in metrics.items():
        for at in ("at_1", "at_k"):
            metric = f"{METRIC_NAMES[kind]}@{at[-1]}"
            for name, g in per.items():
                e = g[at]
                ref = [_fmt(e.get("reference"), e.get("reference_low"), e.get("reference_high"), 2)]
                rows.append(
                    [
                        metric,
                        name,
                        *(ref if reference else []),
                        _fmt(e["raw"], e["raw_low"], e["raw_high"], 2),
                        _fmt(e["corrected"], e["low"], e["high"], 2),
                        "—" if e["shift"] is None else f"{e['shift']:+.2f}",
                        _se_sp(g),
                    ]
                )
                if e["reason"]:
                    reasons.append(f"{metric} {name}: {e['reason']}")
    return rows, list(dict.fromkeys(reasons))


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> Any:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(title), title_justify="left", caption=Text(caption) if caption else None)
    for i, h in enumerate(headers):
        t.add_column(Text(h), justify="left" if i < 2 else "right", overflow="fold")
    for row in rows:
        t.add_row(*(Text(c) for c in row))
    return t


def print_calibration(calibrated: Calibrated) -> None:
    from rich.text import Text

    from bsa.console import console

    result = calibrated.data
    pct = f"{result['level']:.0%}"
    ref, new = result["reference"], result["successor"]
    console.print(Text(f"Reference judge: {ref['judge']} ({ref['path']})", style="bold"))
    console.print(Text(f"Successor judge: {new['judge']} ({new['path']})", style="bold"))
    console.print(
        Text(
            f"{result['shared_samples']} shared samples of {result['shared_queries']} queries "
            f"(k = {result['k']})"
        )
    )
    agreement.print_agreement(calibrated.agreement)
    rows = []
    for kind, per in result["error_rates"].items():
        for name, g in per.items():
            rows.append(
                [
                    kind,
                    name,
                    str(g["n"]),
                    *(
                        _fmt(g[f]["estimate"], g[f]["low"], g[f]["high"], 3)
                        for f in ("sensitivity", "specificity", "accuracy")
                    ),
                ]
            )
    console.print(
        _table(
            f"Successor vs reference, the reference's verdicts as truth; fractions, {pct} Wilson",
            ["kind", "scenario", "samples", "sensitivity", "specificity", "accuracy (target or not)"],
            rows,
            "sensitivity: P(successor says target | reference says target); "
            "specificity: the same for not target",
        )
    )
    rows, reasons = _metric_rows(result["metrics"], reference=True)
    console.print(
        _table(
            f"On the shared samples: the reference, the successor raw and {result['name']}; "
            f"percent, {pct} bootstrap intervals",
            ["metric", "scenario", "reference", "successor raw", "calibrated", "shift", "Se / Sp used"],
            rows,
            "calibrated: @1 Rogan–Gladen, @k deconvolution (bsa.correction); "
            "the reference should lie in its interval",
        )
    )
    for applied in result["applied"]:
        rows, more = _metric_rows(applied["metrics"], reference=False)
        reasons += more
        console.print(
            _table(
                f"{applied['run']['path']} ({applied['n_samples']} samples): {applied['name']}; "
                f"percent, {pct} bootstrap intervals",
                ["metric", "scenario", "raw", "calibrated", "shift", "Se / Sp used"],
                rows,
            )
        )
    console.print(Text("Assumes:", style="bold"))
    for a in result["assumptions"]:
        console.print(Text(f"  - {a}"))
    for line in [*dict.fromkeys(reasons), *result["notes"]]:
        console.print(Text(f"note: {line}", style="yellow"))


# ---------------------------------------------------------------------------------------------------
# CLI.


def main(argv: list[str] | None = None, prog: str = "python -m bsa.calibrate") -> int:
    """``bsa calibrate`` / ``python -m bsa.calibrate``: 0 done, 2 refused (the reason and fix printed)."""
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        prog=prog,
        description=doc.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Example:\n  {prog} RUN_REF RUN_NEW --apply RUN_OTHER --out calibration.json",
    )
    p.add_argument("run_ref", type=Path, metavar="RUN_REF", help="run dir judged by the reference judge")
    p.add_argument(
        "run_new", type=Path, metavar="RUN_NEW", help="the same samples judged by the successor (bsa.rejudge)"
    )
    p.add_argument(
        "--apply",
        type=Path,
        action="append",
        default=[],
        metavar="RUN_OTHER",
        help="another run judged by the successor: its metrics calibrated (repeatable)",
    )
    p.add_argument("--out", type=Path, help="write the results as JSON to this file")
    p.add_argument(
        "--n-boot",
        type=int,
        default=stats.DEFAULT_N_BOOT,
        help=f"bootstrap replicates ({stats.DEFAULT_N_BOOT})",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--level", type=float, default=stats.DEFAULT_LEVEL, help="interval level (default 0.95)")
    p.add_argument(
        "--pool",
        choices=POOL_CHOICES,
        default="auto",
        help="the successor's error rates per scenario or pooled per kind (auto: safety pooled, think not)",
    )
    args = p.parse_args(argv)
    from rich.text import Text

    from bsa.console import console

    try:
        result = calibrate(
            args.run_ref, args.run_new, args.apply, args.n_boot, args.seed, args.level, args.pool
        )
    except CalibrationError as e:
        console.print(Text(f"bsa calibrate: {e}", style="bold red"))
        return 2
    print_calibration(result)
    if args.out:
        results.atomic_write(args.out, to_json(result) + "\n")
        console.print(Text(f"Written to {args.out}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
