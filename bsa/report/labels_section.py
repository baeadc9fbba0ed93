"""The report's section on human labels: for each run with a ``label_scores.json`` (written by
``python -m bsa.labels score``), the judge's measured accuracy and the raw beside the corrected
Safe@1 / Think@1 (and @k), with intervals. Runs without labels add nothing."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bsa.report.columns import fmt_interval

if TYPE_CHECKING:
    from bsa.report.tables import Table

SCORES_JSON = "label_scores.json"  # bsa.labels.SCORES_JSON; not imported: bsa.labels loads numpy
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


def _md(s: str) -> str:
    """Run-derived text in Markdown: many renderers pass HTML through (as bsa.report.markdown does)."""
    return html.escape(s, quote=False)


def _e(s: str) -> str:
    return html.escape(s, quote=True)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "run"


def tables(scores: dict[str, Any], title: str) -> tuple[Table, Table, list[str]]:
    """The judge table, the raw-vs-corrected table and the notes (why a correction is missing)."""
    from bsa.report.tables import Table  # lazily: the renderers that import this module import tables

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


def markdown_lines(run_dir: Path, title: str) -> list[str]:
    """The run's part of the section in Markdown; [] when it has no label scores."""
    scores = load_scores(run_dir)
    if scores is None:
        return []
    from bsa.report.markdown import table_md  # lazily: markdown.py imports this module

    judge, corrected, notes = tables(scores, title)
    out = [f"### {_md(title)}", "", _md(_intro(scores)), "", table_md(judge), "", table_md(corrected), ""]
    out += [f"- {_md(n)}" for n in notes]
    return [*out, ""] if notes else out


def html_fragment(run_dir: Path, title: str) -> str:
    """The run's part of the section in HTML; "" when it has no label scores. Everything escaped."""
    scores = load_scores(run_dir)
    if scores is None:
        return ""
    from bsa.report.html import table_html  # lazily: html.py imports this module

    judge, corrected, notes = tables(scores, title)
    items = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return f"<h3>{_e(title)}</h3><p>{_e(_intro(scores))}</p>{table_html(judge)}{table_html(corrected)}" + (
        f"<ul class='notes'>{items}</ul>" if items else ""
    )


def section_markdown(runs: Iterable[tuple[str, Path]]) -> list[str]:
    """The whole section for (label, run dir) pairs, with its heading; [] when no run has labels."""
    body = [line for title, path in runs for line in markdown_lines(path, title)]
    return [f"## {SECTION_TITLE}", "", *body] if body else []


def section_html(runs: Iterable[tuple[str, Path]]) -> str:
    """The whole section in HTML, with its heading; "" when no run has labels."""
    body = "".join(html_fragment(path, title) for title, path in runs)
    return f"<h2>{SECTION_TITLE}</h2>{body}" if body else ""
