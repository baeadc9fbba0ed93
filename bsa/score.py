"""``python -m bsa.score FILE.csv [--k K] [--alpha A] [--out metrics.json]``

Scores a results CSV in the upstream evaluate.py input format (model_name, id, dataset_name,
Safe_Ans_Check, Thk_Acc_Judge; one row per sample, several models allowed) with the same metrics as
a bsa run, so results of the upstream pipeline and ours can be compared. Optionally joins a
dataset (``--dataset``) for per-category metrics; without it categories are empty.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from bsa.config import DEFAULT_ALPHA, SCENARIOS
from bsa.metrics import SampleScore, compute
from bsa.results import UNSCORED, UPSTREAM_COLUMNS
from bsa.verdict import THINK_LABELS


class ScoreError(ValueError):
    pass


def _label(value: str, allowed: tuple[str, ...]) -> str | None:
    """A CSV cell as a label; empty or 'Unscored' is unscored; 'true'/'TRUE' read as 'True'."""
    v = value.strip()
    if not v or v == UNSCORED:
        return None
    for a in allowed:
        if v.casefold() == a.casefold():
            return a
    return v  # an unknown label counts as scored and not the target, as upstream treats it


def read_results(
    path: Path, categories: dict[str, tuple[str, ...]] | None = None
) -> dict[str, list[SampleScore]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ScoreError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ScoreError(f"{path}: not UTF-8; re-save it as UTF-8") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in UPSTREAM_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ScoreError(
            f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(UPSTREAM_COLUMNS)}"
        )
    per_model: dict[str, list[SampleScore]] = defaultdict(list)
    counters: dict[tuple[str, str], int] = defaultdict(int)
    for n, row in enumerate(reader, start=1):
        scenario = row["dataset_name"].strip()
        if scenario not in SCENARIOS:
            raise ScoreError(
                f"{path}: row {n}, column 'dataset_name': {scenario!r} is not one of {', '.join(SCENARIOS)}"
            )
        model, qid = row["model_name"], row["id"]
        idx = counters[(model, qid)]
        counters[(model, qid)] += 1
        per_model[model].append(
            SampleScore(
                id=qid,
                sample_index=idx,
                scenario=scenario,
                categories=(categories or {}).get(qid, ()),
                safety=_label(row["Safe_Ans_Check"], ("Safe", "Unsafe")),
                think=_label(row["Thk_Acc_Judge"], THINK_LABELS[scenario]),
            )
        )
    if not per_model:
        raise ScoreError(f"{path}: no rows")
    return dict(per_model)


def score_file(path: Path, k: int, alpha: float, dataset: Path | None = None) -> dict[str, dict[str, Any]]:
    categories = None
    if dataset is not None:
        from bsa.data import read

        categories = {q.id: q.categories for q in read(dataset)}
    return {model: compute(samples, k, alpha) for model, samples in read_results(path, categories).items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bsa.score", description=__doc__.split("\n\n")[1])
    p.add_argument("file", type=Path, help="results CSV in the upstream evaluate.py input format")
    p.add_argument("--k", type=int, default=5, help="samples per query (default 5)")
    p.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help="F-score weight (default evaluate.py's)"
    )
    p.add_argument("--out", type=Path, help="write the metrics JSON here")
    p.add_argument("--dataset", type=Path, help="BSA dataset file, for per-category metrics")
    args = p.parse_args(argv)
    if args.k < 1:
        p.error(f"--k {args.k}: must be at least 1")
    if not 0 < args.alpha < 1:
        p.error(f"--alpha {args.alpha}: must lie strictly between 0 and 1")
    from bsa import console

    try:
        per_model = score_file(args.file, args.k, args.alpha, args.dataset)
    except (ScoreError, ValueError) as e:
        console.console.print(f"[bold red]bsa.score: {e}[/]")
        return 2
    for model, m in per_model.items():
        console.print_metrics(m, f"{model} ({args.file.name})")
    if args.out:
        payload = next(iter(per_model.values())) if len(per_model) == 1 else per_model
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        console.console.print(f"Metrics written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
