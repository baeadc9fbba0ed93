"""The report's section on human labels: for each run with a ``label_scores.json`` (written by
``python -m bsa.labels score``), the judge's measured accuracy and the raw beside the corrected
Safe@1 / Think@1 (and @k), with intervals. Runs without labels add nothing. The section is blocks
(``section_blocks``: tables and text, as data); the report's shared renderers write them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bsa.contract import LABEL_SCORES_JSON
from bsa.report.blocks import Block, Heading, Items, Para, Table
from bsa.report.columns import fmt_interval
from bsa.report.html import blocks_html
from bsa.report.markdown import blocks_md

SCORES_JSON = LABEL_SCORES_JSON  # as bsa.labels.SCORES_JSON: both from the contract
SECTION_TITLE = "Judge error measured on human labels"
_KIND = {"safety": "Safe", "think": "Think"}


def load_scores(run_dir: Path) -> dict[str, Any] | None:
    """The run's label scores, or None when it has none (or they are unreadable)."""
    try:
        obj = json.loads((Path(run_dir) / SCORES_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) and "judge" in obj and "corrected" in obj else None


def _rate(r: dict[str, Any]) -> str:
    return fmt_interval(r.get("estimate"), r.get("low"), r.get("high"), 3)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "run"


def tables(scores: dict[str, Any], title: str) -> tuple[Table, Table, list[str]]:
    """The judge table, the raw-vs-corrected table and the notes (why a correction is missing)."""
    judge = Table(
        f"labels-judge-{_slug(title)}",
        ["kind", "scenario", "labelled", "accuracy", "precision (target)", "recall (target)", "specificity"],
        [],
    )
    for kind, per in scores["judge"].items():
        for scenario, g in per.items():
            judge.rows.append(
                [
                    kind,
                    scenario,
                    str(g.get("n_labelled", 0)),
                    _rate(g["accuracy"]),
                    _rate(g["precision"]),
                    _rate(g["recall"]),
                    _rate(g["specificity"]),
                ]
            )
    corrected = Table(
        f"labels-corrected-{_slug(title)}", ["metric", "scenario", "raw", "corrected", "shift"], []
    )
    notes: list[str] = []
    for at in ("at_1", "at_k"):
        for kind, per in scores["corrected"].items():
            for scenario, g in per.items():
                if at == "at_k" and scenario != "all":
                    continue  # @k per scenario is in label_scores.json; the report keeps to the headline
                e = g[at]
                name = f"{_KIND.get(kind, kind)}@{at[-1]}"
                shift = e.get("shift")
                corrected.rows.append(
                    [
                        name,
                        scenario,
                        fmt_interval(e.get("raw"), e.get("raw_low"), e.get("raw_high"), 2),
                        fmt_interval(e.get("corrected"), e.get("low"), e.get("high"), 2),
                        "—" if shift is None else f"{shift:+.2f}",
                    ]
                )
                if e.get("reason"):
                    notes.append(f"{name} {scenario}: {e['reason']}")
                if e.get("corrected") is None:
                    corrected.warn_rows.add(len(corrected.rows) - 1)
    return judge, corrected, list(dict.fromkeys(notes))


def _intro(scores: dict[str, Any]) -> str:
    n = scores.get("n_labelled") or {}
    level = f"{scores.get('level', 0.95):.0%}"
    return (
        f"{n.get('safety', 0)} safety and {n.get('think', 0)} think labels "
        f"from {scores.get('labels_file', '?')}. "
        f"Judge rates are fractions with {level} Wilson intervals (labels weighted by how many samples of "
        f"the run each stands for). Corrected rates (percent): @1 by Rogan–Gladen with the measured "
        f"sensitivity and specificity, @k by deconvolving each query's judged count; their {level} "
        "bootstrap intervals resample both the labels and the queries."
        + "".join(
            f" {_KIND.get(kind, kind)}: error rates {per['all']['error_rates']}."
            for kind, per in scores["corrected"].items()
            if isinstance(per.get("all"), dict) and per["all"].get("error_rates")
        )
    )


def run_blocks(run_dir: Path, title: str) -> list[Block]:
    """The run's part of the section; [] when it has no label scores."""
    scores = load_scores(run_dir)
    if scores is None:
        return []
    judge, corrected, notes = tables(scores, title)
    out: list[Block] = [Heading(title), Para((_intro(scores),)), judge, corrected]
    return [*out, Items(tuple((n,) for n in notes))] if notes else out


def section_blocks(runs: Iterable[tuple[str, Path]]) -> list[Block]:
    """The whole section for (label, run dir) pairs, with its heading; [] when no run has labels."""
    body = [b for title, path in runs for b in run_blocks(path, title)]
    return [Heading(SECTION_TITLE, 2), *body] if body else []


def markdown_lines(run_dir: Path, title: str) -> list[str]:
    """The run's part of the section in Markdown; [] when it has no label scores."""
    return blocks_md(run_blocks(run_dir, title))


def html_fragment(run_dir: Path, title: str) -> str:
    """The run's part of the section in HTML; "" when it has no label scores. Everything escaped."""
    return blocks_html(run_blocks(run_dir, title))


def section_markdown(runs: Iterable[tuple[str, Path]]) -> list[str]:
    """The whole section in Markdown; [] when no run has labels."""
    return blocks_md(section_blocks(runs))


def section_html(runs: Iterable[tuple[str, Path]]) -> str:
    """The whole section in HTML; "" when no run has labels."""
    return blocks_html(section_blocks(runs))
