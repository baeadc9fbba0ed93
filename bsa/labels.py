"""Human labels: measure the judge against them and correct the run's metrics for its error.

``python -m bsa.labels export RUN_DIR [--n 200] [--seed 0] [--out DIR]`` draws a sample of the run's
judged samples, stratified by scenario and the judge's two verdicts, and writes ``labels.csv``
(columns id, sample_index, safety, think; label cells empty) and ``label.html``, a self-contained page
to fill them in: it shows each sample's query, risk summary, reasoning and answer, never the judge's
verdicts (labels must be blind to them), keeps the work in the browser's localStorage and saves the
filled CSV.

``python -m bsa.labels score RUN_DIR LABELS.csv [--out FILE.json] [--pool auto|scenario|kind]``
compares the labels with the judge's verdicts (accuracy, precision and recall of the target label,
confusion matrix, per kind and scenario, with intervals) and corrects Safe@1/Think@1 (Rogan–Gladen)
and Safe@k/Think@k for the measured error, with the judge's error rates per scenario or pooled over
them (auto: safety pooled, think per scenario); see ``bsa.correction`` for the method. Rich tables on
the console; JSON to ``RUN_DIR/label_scores.json`` or ``--out``.

Each labelled sample stands for N_h / n_h samples of the run, h its stratum (scenario, safety
verdict, think verdict), n_h the samples labelled there, so the labels may come from any sample that
is uniform within strata (the export is; extra rows labelled by hand within a stratum keep it so).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bsa import contract, correction, pages
from bsa.contract import ID, SAMPLE_INDEX, SCENARIOS, VERDICT, join
from bsa.report.columns import fmt_interval
from bsa.stats import DEFAULT_LEVEL, DEFAULT_N_BOOT
from bsa.verdict import SAFETY, SAFETY_LABELS, THINK, THINK_LABELS, THINK_TARGET, Verdict, labels_for, parse

COLUMNS: tuple[str, ...] = (ID, SAMPLE_INDEX, SAFETY, THINK)
KINDS: tuple[str, ...] = (SAFETY, THINK)
LABELS_CSV = "labels.csv"
LABEL_HTML = "label.html"
SCORES_JSON = contract.LABEL_SCORES_JSON
PAGE_TEMPLATE = "labels/page.html"  # bsa/templates/labels/: the page, its script and its stylesheet
DEFAULT_N = 200
ALL = "all"
POOL_CHOICES = ("auto", "scenario", "kind")
METRIC_NAMES = {SAFETY: "Safe", THINK: "Think"}


class LabelError(ValueError):
    """Labels cannot be exported or scored; the message names the file, row and column, and the fix."""


@dataclass(frozen=True)
class Item:
    """One judged sample of a run, with what a labeller needs to see and the judge's verdicts."""

    id: str
    sample_index: int
    scenario: str
    safety: str | None  # the judge's verdict; None = unscored
    think: str | None
    query: str
    risk_summary: str
    reasoning: str
    answer: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.id, self.sample_index)

    def verdict(self, kind: str) -> str | None:
        return self.safety if kind == SAFETY else self.think


def target(kind: str, scenario: str) -> str:
    return "Safe" if kind == SAFETY else THINK_TARGET[scenario]


def stratum(item: Item) -> str:
    """The export's sampling stratum: scenario and both verdicts (unscored is a value of its own)."""
    return f"{item.scenario} | safety={item.safety or 'unscored'} | think={item.think or 'unscored'}"


# --- reading a run ----------------------------------------------------------------------------------


def load_items(run_dir: Path) -> tuple[list[Item], list[str]]:
    """The run's samples that have both judgments, in the run's order, and the run's notes."""
    from bsa.report.loading import load_run  # the report's reader: dataset re-read, torn rows skipped
    from bsa.report.runs import ReportError

    try:
        run = load_run(run_dir)
    except ReportError as e:
        raise LabelError(str(e)) from None
    items: dict[tuple[str, int], Item] = {}
    for sample in join(run.generations, run.judgments):
        g, safety, think = sample.generation, sample.safety, sample.think
        q = run.queries.get(g[ID])
        if q is None or safety is None or think is None:
            continue
        items[sample.key] = Item(  # a resumed run may repeat a row: the last one wins, as in the judgments
            id=q.id,
            sample_index=g[SAMPLE_INDEX],
            scenario=q.scenario,
            safety=safety.get(VERDICT),
            think=think.get(VERDICT),
            query=q.query,
            risk_summary=q.risk_summary,
            reasoning=g.get("reasoning") or "",
            answer=g.get("answer") or "",
        )
    return list(items.values()), run.notes


# --- export -----------------------------------------------------------------------------------------


def allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """How many to draw from each stratum: equal shares, a stratum smaller than its share given whole
    and its leftover shared by the rest; the last few go to the largest strata (ties by name).

    Equal shares, not proportional ones: the judge's rare verdicts get enough labels to measure its
    error on them; the weights N_h / n_h undo the over-representation when scoring.
    """
    if n < 1:
        raise LabelError(f"--n {n}: must be at least 1 (200 is the default)")
    alloc: dict[str, int] = {}
    left = n
    pending = sorted((h for h in sizes if sizes[h] > 0), key=lambda h: (sizes[h], h))
    while pending:
        share = left // len(pending)
        if sizes[pending[0]] <= share:
            h = pending.pop(0)
            alloc[h] = sizes[h]
            left -= sizes[h]
            continue
        extra = left - share * len(pending)  # every pending stratum holds more than share
        for i, h in enumerate(sorted(pending, key=lambda h: (-sizes[h], h))):
            alloc[h] = share + (1 if i < extra else 0)
        break
    return alloc


def select(items: Sequence[Item], n: int, seed: int) -> list[Item]:
    """A seeded sample stratified by ``stratum``, shuffled: grouped by verdict, the order would tell
    the labeller what the judge said. Samples with neither verdict scored are left out: they enter
    no metric."""
    groups: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        if it.safety is not None or it.think is not None:
            groups[stratum(it)].append(it)
    rng = random.Random(seed)
    chosen: list[Item] = []
    for h, k in sorted(allocate({h: len(g) for h, g in groups.items()}, n).items()):
        chosen += rng.sample(groups[h], k)
    rng.shuffle(chosen)
    return chosen


def labels_csv(items: Sequence[Item], filled: dict[tuple[str, int], dict[str, str]] | None = None) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for it in items:
        got = (filled or {}).get(it.key, {})
        w.writerow([it.id, it.sample_index, got.get(SAFETY, ""), got.get(THINK, "")])
    return buf.getvalue()


def label_html(items: Sequence[Item]) -> str:
    """The labelling page: the samples embedded as JSON, shown with textContent only (model text is
    untrusted), no external resource; ``bsa/templates/labels/`` holds the page, its controls and the
    ``#selftest`` mode, inlined by ``bsa.pages``."""
    keys = json.dumps([it.key for it in items])
    data = {
        "key": hashlib.sha256(keys.encode()).hexdigest()[:16],  # localStorage key: one per export
        "columns": list(COLUMNS),
        "safety_labels": list(SAFETY_LABELS),
        "think_labels": {s: list(v) for s, v in THINK_LABELS.items()},
        "items": [
            {
                ID: it.id,
                SAMPLE_INDEX: it.sample_index,
                "scenario": it.scenario,
                "query": it.query,
                "risk_summary": it.risk_summary,
                "reasoning": it.reasoning,
                "answer": it.answer,
            }
            for it in items
        ],
    }
    n_safety, n_think = len(SAFETY_LABELS), max(map(len, THINK_LABELS.values()))
    return pages.render(
        PAGE_TEMPLATE,
        data=data,
        safety_keys=f"1–{n_safety}",  # the number keys choose a label: safety's, then think's
        think_keys=f"{n_safety + 1}–{n_safety + n_think}",
    )


def export(
    run_dir: Path, out: Path, n: int = DEFAULT_N, seed: int = 0, force: bool = False
) -> tuple[list[Item], list[str]]:
    """Write ``labels.csv`` and ``label.html`` for a stratified sample of ``n`` into ``out``; return
    the sample and the run's notes (e.g. query texts unavailable: the dataset file moved)."""
    target_csv = out / LABELS_CSV
    if target_csv.exists() and not force:
        raise LabelError(
            f"{target_csv} exists and may hold labels already; pass --force to overwrite it, or another --out"
        )
    items, notes = load_items(run_dir)
    if not items:
        raise LabelError(f"{run_dir}: no sample with both judgments; finish the run (resume=...) first")
    chosen = select(items, n, seed)
    from bsa.results import atomic_write

    atomic_write(target_csv, labels_csv(chosen))
    atomic_write(out / LABEL_HTML, label_html(chosen))
    return chosen, notes


# --- reading labels ---------------------------------------------------------------------------------


def _match(cell: str, kind: str, scenario: str) -> str | None:
    """A cell as a label, matched as a judge's verdict is (any case or spacing): None if it is none."""
    parsed = parse(json.dumps({"verdict": cell}), kind, scenario)
    return parsed.label if isinstance(parsed, Verdict) else None


def read_labels(path: Path, items: Sequence[Item]) -> dict[tuple[str, int], dict[str, str]]:
    """The labels of ``path`` by (id, sample_index): {kind: label}; a blank cell is not labelled."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LabelError(f"{path}: no such file; give the labels.csv written by `export`") from None
    except UnicodeDecodeError:
        raise LabelError(f"{path}: not UTF-8; re-save it as UTF-8 (CSV UTF-8 in a spreadsheet)") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [f.strip().casefold() for f in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in fields]
    if missing:
        raise LabelError(
            f"{path}: missing column(s) {', '.join(missing)}; the header must be {','.join(COLUMNS)}"
        )
    reader.fieldnames = fields
    by_key = {it.key: it for it in items}
    samples_of: dict[str, list[int]] = defaultdict(list)
    for it in items:
        samples_of[it.id].append(it.sample_index)
    out: dict[tuple[str, int], dict[str, str]] = {}
    first_row: dict[tuple[str, int], int] = {}
    for row in reader:
        rowno = reader.line_num  # the row a spreadsheet shows (header = 1; blank lines count)
        cells = {c: (row.get(c) or "").strip() for c in COLUMNS}
        if not any(cells.values()):
            continue
        qid, idx_text = cells[ID], cells[SAMPLE_INDEX]
        where = f"{path}: row {rowno}"
        if qid not in samples_of:
            raise LabelError(
                f"{where}, column 'id': {qid!r} is not a judged query of this run; "
                "was the file exported from another run?"
            )
        try:
            idx = int(idx_text)
        except ValueError:
            raise LabelError(
                f"{where}, column 'sample_index': {idx_text!r} is not a whole number; "
                "copy it from the exported labels.csv"
            ) from None
        if (qid, idx) not in by_key:
            have = ", ".join(map(str, sorted(samples_of[qid])))
            raise LabelError(
                f"{where}, column 'sample_index': query {qid!r} has no judged sample {idx} "
                f"in this run (it has {have})"
            )
        if (qid, idx) in first_row:
            raise LabelError(
                f"{where}: id {qid!r} sample {idx} is labelled twice (also row {first_row[(qid, idx)]}); "
                "keep one row"
            )
        first_row[(qid, idx)] = rowno
        scenario = by_key[(qid, idx)].scenario
        got: dict[str, str] = {}
        for kind in KINDS:
            if not cells[kind]:
                continue
            label = _match(cells[kind], kind, scenario)
            if label is None:
                allowed = ", ".join(labels_for(kind, scenario))
                raise LabelError(
                    f"{where}, column {kind!r}: {cells[kind]!r} is not one of {allowed} "
                    f"(the {kind} labels of {scenario}); fix the spelling or leave the cell blank"
                )
            got[kind] = label
        out[(qid, idx)] = got
    return out


# --- scoring (pure: items and labels in, a JSON-able dict out) --------------------------------------


@dataclass(frozen=True)
class _Labelled:
    item: Item
    label: str
    weight: float


def _labelled(
    items: Sequence[Item], labels: dict[tuple[str, int], dict[str, str]], kind: str
) -> tuple[list[_Labelled], int]:
    """The samples labelled for ``kind`` whose judge gave a verdict, weighted N_h / n_h; and how many
    labelled samples had none (they enter no metric, so they measure nothing)."""
    population = Counter(stratum(it) for it in items)
    mine = [(it, labels[it.key][kind]) for it in items if kind in labels.get(it.key, {})]
    unscored = sum(it.verdict(kind) is None for it, _ in mine)
    mine = [(it, lab) for it, lab in mine if it.verdict(kind) is not None]
    labelled = Counter(stratum(it) for it, _ in mine)
    return [_Labelled(it, lab, population[stratum(it)] / labelled[stratum(it)]) for it, lab in mine], unscored


def _rate(r: correction.Rate) -> dict[str, Any]:
    return asdict(r)


def _confusion(
    rows: list[_Labelled], kind: str, labels: Sequence[str], binary_scenario: bool
) -> dict[str, Any]:
    """Rows: the human's label, columns: the judge's; counts of labelled samples and weighted shares
    (the estimated share of the run's samples in each cell)."""

    def name(label: str, scenario: str) -> str:
        if not binary_scenario:
            return label
        return "target" if label == target(kind, scenario) else "not target"

    counts = np.zeros((len(labels), len(labels)), dtype=int)
    share = np.zeros((len(labels), len(labels)))
    index = {label: i for i, label in enumerate(labels)}
    for r in rows:
        i = index[name(r.label, r.item.scenario)]
        j = index[name(r.item.verdict(kind) or "", r.item.scenario)]
        counts[i, j] += 1
        share[i, j] += r.weight
    total = share.sum()
    return {
        "labels": list(labels),
        "rows": "human label",
        "columns": "judge verdict",
        "counts": counts.tolist(),
        "weighted_share": (share / total).round(6).tolist() if total > 0 else share.tolist(),
    }


def _agreement(rows: list[_Labelled], kind: str, level: float) -> dict[str, Any]:
    truth = np.array([r.label == target(kind, r.item.scenario) for r in rows], dtype=bool)
    judged = np.array([r.item.verdict(kind) == target(kind, r.item.scenario) for r in rows], dtype=bool)
    same = np.array([r.label == r.item.verdict(kind) for r in rows], dtype=bool)
    weight = np.array([r.weight for r in rows], dtype=float)
    a = correction.label_agreement(truth, judged, weight, same, level)
    return {name: _rate(getattr(a, name)) for name in a.__dataclass_fields__}


def judge_scores(
    items: Sequence[Item], labels: dict[tuple[str, int], dict[str, str]], level: float = DEFAULT_LEVEL
) -> dict[str, Any]:
    """Per kind, per scenario and over all: agreement (fractions) and the confusion matrix."""
    out: dict[str, Any] = {}
    scenarios = [s for s in SCENARIOS if any(it.scenario == s for it in items)]
    for kind in KINDS:
        rows, unscored = _labelled(items, labels, kind)
        per: dict[str, Any] = {}
        for s in [ALL, *scenarios]:
            mine = [r for r in rows if s in (ALL, r.item.scenario)]
            if s == ALL and kind == THINK:
                names: Sequence[str] = ("target", "not target")
            else:
                names = labels_for(kind, scenarios[0] if s == ALL else s)
            per[s] = {
                "target": _target_name(kind, s),
                "n_labelled": len(mine),
                **_agreement(mine, kind, level),
                "confusion": _confusion(mine, kind, names, s == ALL and kind == THINK),
            }
        per[ALL]["labelled_but_unscored"] = unscored
        out[kind] = per
    return out


def _target_name(kind: str, scenario: str) -> str:
    if kind == SAFETY:
        return "Safe"
    return "each scenario's target label" if scenario == ALL else THINK_TARGET[scenario]


def _query_counts(items: Sequence[Item], kind: str, scenario: str) -> correction.QueryCounts:
    hits: dict[str, int] = {}
    scored: dict[str, int] = {}
    for it in items:
        if it.scenario != scenario:
            continue
        v = it.verdict(kind)
        hits.setdefault(it.id, 0)
        scored.setdefault(it.id, 0)
        if v is not None:
            scored[it.id] += 1
            hits[it.id] += v == target(kind, scenario)
    return correction.QueryCounts(
        np.array(list(hits.values()), dtype=int), np.array(list(scored.values()), dtype=int)
    )


def pooled(kind: str, pool: str) -> bool:
    """Whether ``kind``'s error rates are pooled over scenarios: ``auto`` pools safety (one safety
    prompt and label set for every scenario) and keeps think per scenario (a prompt and labels each)."""
    if pool not in POOL_CHOICES:
        raise LabelError(f"--pool {pool!r}: choose one of {', '.join(POOL_CHOICES)}")
    return pool == "kind" or (pool == "auto" and kind == SAFETY)


def corrected_metrics(
    items: Sequence[Item],
    labels: dict[tuple[str, int], dict[str, str]],
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    min_youden: float = correction.DEFAULT_MIN_YOUDEN,
    pool: str = "auto",
) -> dict[str, Any]:
    """Per kind, over all queries and per scenario: raw and corrected @1 and @k (percent)."""
    out: dict[str, Any] = {}
    scenarios = [s for s in SCENARIOS if any(it.scenario == s for it in items)]
    for kind in KINDS:
        rows, _ = _labelled(items, labels, kind)
        groups = {}
        for s in scenarios:
            mine = [r for r in rows if r.item.scenario == s]
            ls = correction.LabelSample(
                truth=np.array([r.label == target(kind, s) for r in mine], dtype=bool),
                judged=np.array([r.item.verdict(kind) == target(kind, s) for r in mine], dtype=bool),
                weight=np.array([r.weight for r in mine], dtype=float),
                strata=tuple(stratum(r.item) for r in mine),
                target=repr(target(kind, s)),
            )
            groups[s] = (_query_counts(items, kind, s), ls)
        res = correction.correct(
            groups, n_boot, seed, level, min_youden, all_name=ALL, pooled=pooled(kind, pool)
        )
        rates = "pooled over scenarios" if pooled(kind, pool) else "per scenario"
        per: dict[str, Any] = {}
        for name in [ALL, *scenarios]:
            c = res[name]
            per[name] = {
                "at_1": {**asdict(c.at_1), "shift": c.at_1.shift},
                "at_k": {**asdict(c.at_k), "shift": c.at_k.shift},
                "sensitivity": c.sensitivity,
                "specificity": c.specificity,
                "error_rates": rates,
                "undefined_replicates": c.undefined_replicates,
            }
        out[kind] = per
    return out


def score(
    run_dir: Path,
    labels_path: Path,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    min_youden: float = correction.DEFAULT_MIN_YOUDEN,
    pool: str = "auto",
) -> dict[str, Any]:
    """The judge measured on the labels, and the run's metrics corrected: the label_scores.json dict."""
    items, notes = load_items(run_dir)
    if not items:
        raise LabelError(f"{run_dir}: no sample with both judgments; nothing to compare labels with")
    labels = read_labels(labels_path, items)
    n_labels = {kind: sum(kind in got for got in labels.values()) for kind in KINDS}
    if not any(n_labels.values()):
        raise LabelError(f"{labels_path}: every label cell is blank; label some samples first (label.html)")
    return {
        "run_dir": str(run_dir),
        "labels_file": str(labels_path),
        "n_labelled": n_labels,
        "n_samples": len(items),
        "k": max(Counter(it.id for it in items).values()),
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
        "units": {"judge": "fraction", "corrected": "percent"},
        "method": (
            "Labelled samples weighted N_h/n_h by stratum (scenario × safety × think verdict). Judge "
            "rates: Wilson intervals with Kish's effective n. @1: Rogan–Gladen per scenario, combined "
            "query-weighted; @k: deconvolution of judged counts per query under per-sample error "
            "independent given the truth. Intervals: percentile bootstrap resampling labels (within "
            "strata) and queries (whole)."
        ),
        "notes": notes,
        "judge": judge_scores(items, labels, level),
        "corrected": corrected_metrics(items, labels, n_boot, seed, level, min_youden, pool),
    }


# --- console ----------------------------------------------------------------------------------------


def _rate_cell(r: dict[str, Any]) -> str:
    return fmt_interval(r["estimate"], r["low"], r["high"], 3)


def _se_sp(g: dict[str, Any]) -> str:
    se, sp = g.get("sensitivity"), g.get("specificity")
    if se is None and sp is None:
        return "per scenario" if g.get("error_rates") == "per scenario" else "—"
    cell = f"{'—' if se is None else f'{se:.3f}'} / {'—' if sp is None else f'{sp:.3f}'}"
    return f"{cell} pooled" if g.get("error_rates") == "pooled over scenarios" else cell


def print_scores(result: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    from bsa.console import console

    pct = f"{result['level']:.0%}"
    t = Table(
        title=Text(f"Judge vs human labels ({result['labels_file']}); fractions, {pct} Wilson"),
        title_justify="left",
    )
    for col in (
        "kind",
        "scenario",
        "labelled",
        "accuracy",
        "precision (target)",
        "recall (target)",
        "specificity",
    ):
        t.add_column(col, justify="left" if col in ("kind", "scenario") else "right", overflow="fold")
    for kind, per in result["judge"].items():
        for s, g in per.items():
            t.add_row(
                kind,
                s,
                str(g["n_labelled"]),
                _rate_cell(g["accuracy"]),
                _rate_cell(g["precision"]),
                _rate_cell(g["recall"]),
                _rate_cell(g["specificity"]),
            )
    console.print(t)
    for kind, per in result["judge"].items():
        for s, g in per.items():
            if s == ALL and kind == SAFETY and len(per) == 2:
                continue  # one scenario: its matrix is the same
            cm = g["confusion"]
            m = Table(
                title=Text(f"{kind} · {s}: rows human, columns judge (labelled samples)"),
                title_justify="left",
            )
            m.add_column("human \\ judge")
            for label in cm["labels"]:
                m.add_column(label, justify="right")
            for label, row in zip(cm["labels"], cm["counts"], strict=True):
                m.add_row(label, *(str(c) for c in row))
            console.print(m)
    c = Table(
        title=Text(f"Raw vs corrected for the judge's measured error; percent, {pct} bootstrap intervals"),
        title_justify="left",
    )
    for col in ("metric", "scenario", "raw", "corrected", "shift", "Se / Sp used"):
        c.add_column(col, justify="left" if col in ("metric", "scenario") else "right", overflow="fold")
    reasons = []
    for kind, per in result["corrected"].items():
        for at in ("at_1", "at_k"):
            for s, g in per.items():
                e = g[at]
                c.add_row(
                    f"{METRIC_NAMES[kind]}@{at[-1]}",
                    s,
                    fmt_interval(e["raw"], e["raw_low"], e["raw_high"], 2),
                    fmt_interval(e["corrected"], e["low"], e["high"], 2),
                    "—" if e["shift"] is None else f"{e['shift']:+.2f}",
                    _se_sp(g),
                )
                if e["reason"]:
                    reasons.append(f"{METRIC_NAMES[kind]}@{at[-1]} {s}: {e['reason']}")
    c.caption = "@1: Rogan–Gladen; @k: deconvolution under per-sample error (bsa.correction)"
    console.print(c)
    for r in dict.fromkeys(reasons):
        console.print(Text(f"note: {r}", style="yellow"))
    for n in result.get("notes") or []:
        console.print(Text(f"run: {n}", style="yellow"))


# --- CLI --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None, prog: str = "python -m bsa.labels") -> int:
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Example:\n  {prog} export RUN_DIR --n 200 --out labels/\n"
        f"  {prog} score RUN_DIR labels/labels.csv",
    )
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser(
        "export",
        help="write labels.csv and label.html for a stratified sample",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Example:\n  {prog} export RUN_DIR --n 200 --out labels/",
    )
    e.add_argument("run_dir", type=Path)
    e.add_argument("--n", type=int, default=DEFAULT_N, help=f"samples to label (default {DEFAULT_N})")
    e.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    e.add_argument("--out", type=Path, help="output dir (default RUN_DIR/labels)")
    e.add_argument("--force", action="store_true", help="overwrite an existing labels.csv")
    s = sub.add_parser(
        "score",
        help="measure the judge on the labels and correct the metrics",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Example:\n  {prog} score RUN_DIR labels/labels.csv --out label_scores.json",
    )
    s.add_argument("run_dir", type=Path)
    s.add_argument("labels", type=Path, help="the filled labels.csv")
    s.add_argument("--out", type=Path, help=f"JSON output (default RUN_DIR/{SCORES_JSON})")
    s.add_argument(
        "--n-boot", type=int, default=DEFAULT_N_BOOT, help=f"bootstrap replicates ({DEFAULT_N_BOOT})"
    )
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    s.add_argument("--level", type=float, default=DEFAULT_LEVEL, help="interval level (default 0.95)")
    s.add_argument(
        "--pool",
        choices=POOL_CHOICES,
        default="auto",
        help="the judge's error rates per scenario or pooled per kind (auto: safety pooled, think not)",
    )
    args = p.parse_args(argv)
    from rich.text import Text

    from bsa.console import console

    try:
        if args.command == "export":
            out = args.out or args.run_dir / "labels"
            chosen, notes = export(args.run_dir, out, args.n, args.seed, args.force)
            for note in notes:
                console.print(Text(f"run: {note}", style="yellow"))
            console.print(  # Text: a path is not markup
                Text(
                    f"{len(chosen)} samples to label: open {out / LABEL_HTML} in a browser (or fill "
                    f"{out / LABELS_CSV} by hand), then: {prog} score {args.run_dir} LABELS.csv"
                )
            )
            return 0
        if args.n_boot < 1:
            p.error(f"--n-boot {args.n_boot}: must be at least 1")
        if not 0 < args.level < 1:
            p.error(f"--level {args.level}: must lie strictly between 0 and 1, e.g. 0.95")
        result = score(args.run_dir, args.labels, args.n_boot, args.seed, args.level, pool=args.pool)
    except LabelError as err:
        console.print(Text(f"bsa.labels: {err}", style="bold red"))
        return 2
    print_scores(result)
    out = args.out or args.run_dir / SCORES_JSON
    from bsa.results import atomic_write

    atomic_write(out, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    console.print(Text(f"Label scores written to {out}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
