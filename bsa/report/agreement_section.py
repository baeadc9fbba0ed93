"""The report's judge-agreement section: runs that judged the same samples with different judges (or
judge prompts), and how far those judges agree (``bsa.agreement``), as Markdown and HTML.

Runs are grouped by what makes their generations the same (model, mitigation, sampling, decoding);
``bsa.agreement`` then keeps only samples whose text is identical in every run, so a group of runs
that sampled differently is reported as not comparable rather than as judges disagreeing. This module
renders its own small tables: importing the report's renderers here would make an import cycle once
``assemble`` builds this section.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from bsa import agreement, stats
from bsa.agreement import Agreement, AgreementError, Cell
from bsa.report.runs import Run

COMMAND = "python -m bsa.agreement RUN_A RUN_B"
NO_GROUPS = (
    "No two runs judged the same samples with different judges or judge prompts; compare any runs "
    "over the same generations with {command}."
)
INTRO = (
    "Judges compared on the same samples (same query, sample index and generated text): raw agreement "
    "(the mean over judge pairs for more than two), Cohen's κ (two judges) and Krippendorff's α "
    "(nominal; a verdict one judge left unscored is a missing value), with [95% bootstrap intervals] "
    "over queries (a query's samples stay together). units: scored by every judge; partial: in α "
    "only; left out: not in every run, or set by rule, or generated differently."
)


@dataclass
class AgreementGroup:
    runs: list[Run]
    judges: list[str]  # the name each run's judge has in ``result``, in the order of ``runs``
    shared: str  # what the runs have in common: model · mitigation · sampling
    result: Agreement | stats.Skipped


def _judge_identity(run: Run) -> tuple[str, str]:
    """The judge (an ensemble by its members) and its prompts."""
    return run.judge_id, run.judge_prompts.key


def find_groups(runs: Sequence[Run]) -> list[list[Run]]:
    """Runs with the same generation settings judged by two or more judges (or prompt sets); of
    repeats of one judge, the latest complete run stands for it (runs come in path order)."""
    by_setting: dict[tuple[str, ...], dict[tuple[str, str], Run]] = {}
    for r in runs:
        if r.metrics is None:
            continue
        setting = (r.model, r.mitigation, r.mitigation_sha256 or "", r.sampling, r.decoding)
        judges = by_setting.setdefault(setting, {})
        ident = _judge_identity(r)
        if ident not in judges or r.complete or not judges[ident].complete:
            judges[ident] = r
    return [list(judges.values()) for judges in by_setting.values() if len(judges) > 1]


def _names(group: Sequence[Run]) -> list[str]:
    """Each run's judge, with its prompt set where prompt sets differ; the run label if still tied."""
    names = [r.judge_id for r in group]
    if len({r.judge_prompts.key for r in group}) > 1:
        names = [
            f"{n} · prompts {r.judge_prompts.name or 'unknown'}" for n, r in zip(names, group, strict=True)
        ]
    return names if len(set(names)) == len(names) else [r.label for r in group]


def agreement_groups(
    runs: Sequence[Run], n_boot: int = stats.DEFAULT_N_BOOT, seed: int = 0
) -> list[AgreementGroup]:
    """The agreement of every group of ``find_groups``; a group that cannot be compared says why."""
    out = []
    for group in find_groups(runs):
        names = _names(group)
        judged = [
            agreement.judged_run(
                name,
                r.generations,
                r.judgments,
                r.judge,
                r.judge_prompts.sha256,
                r.path,
                r.judge_prompts.name,
            )
            for name, r in zip(names, group, strict=True)
        ]
        try:
            result: Agreement | stats.Skipped = agreement.compare(judged, n_boot, seed)
        except AgreementError as e:
            result = stats.Skipped(str(e))
        first = group[0]
        shared = f"{first.model_short} · {first.mitigation} · {first.sampling} ({first.decoding})"
        out.append(AgreementGroup(group, names, shared, result))
    return out


def _confusion_rows(c: Cell) -> tuple[list[str], list[list[str]]]:
    assert c.confusion is not None
    headers = ["A \\ B", *c.confusion.labels]
    rows = [
        [label, *map(str, row)] for label, row in zip(c.confusion.labels, c.confusion.counts, strict=True)
    ]
    return headers, rows


# ---------------------------------------------------------------------------------------------------
# Markdown


def _md(s: str) -> str:
    return html.escape(s, quote=False)  # many Markdown renderers pass HTML through; names are untrusted


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(s: str) -> str:
        return _md(s).replace("|", "\\|").replace("\n", " ")

    return [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows),
    ]


def agreement_markdown(groups: Sequence[AgreementGroup]) -> list[str]:
    """The section's body (without its heading) as Markdown lines."""
    if not groups:
        return [NO_GROUPS.format(command=f"`{COMMAND}`"), ""]
    out = [_md(INTRO), ""]
    for g in groups:
        out += [f"### {_md(g.shared)}: {_md(' vs '.join(g.judges))}", ""]
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        out += [
            f"- {letters[i]}: {_md(n)} ({_md(r.label)}, {_md(str(r.path))})"
            for i, (n, r) in enumerate(zip(g.judges, g.runs, strict=True))
        ]
        out.append("")
        if isinstance(g.result, stats.Skipped):
            out += [f"Not compared: {_md(g.result.reason)}.", ""]
            continue
        out += [*_md_table(agreement.SUMMARY_HEADERS, agreement.summary_rows(g.result)), ""]
        notes = agreement.notes(g.result)
        out += [*(f"- {_md(n)}" for n in notes), *([""] if notes else [])]
        for c in agreement.shown_confusions(g.result):
            headers, rows = _confusion_rows(c)
            out += [f"Confusion, {_md(c.kind)} / {_md(c.scenario)} (rows A, columns B):", ""]
            out += [*_md_table(headers, rows), ""]
    return out


# ---------------------------------------------------------------------------------------------------
# HTML (the report's CSS styles .scroll, table and details)


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], table_id: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    ident = f' id="{_e(table_id)}"' if table_id else ""
    return (
        f'<div class="scroll"><table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    )


def agreement_html(groups: Sequence[AgreementGroup]) -> str:
    """The section's body (without its heading) as HTML."""
    if not groups:
        return f"<p class='muted'>{NO_GROUPS.format(command=f'<code>{_e(COMMAND)}</code>')}</p>"
    parts = [f"<p>{_e(INTRO)}</p>"]
    for i, g in enumerate(groups):
        parts.append(f"<h3>{_e(g.shared)}: {_e(' vs '.join(g.judges))}</h3>")
        runs = "".join(
            f"<li>{chr(ord('A') + j)}: {_e(n)} <span class='muted'>({_e(r.label)}, {_e(r.path)})</span></li>"
            for j, (n, r) in enumerate(zip(g.judges, g.runs, strict=True))
        )
        parts.append(f"<ul class='notes'>{runs}</ul>")
        if isinstance(g.result, stats.Skipped):
            parts.append(f"<p class='muted'>Not compared: {_e(g.result.reason)}.</p>")
            continue
        parts.append(
            _html_table(agreement.SUMMARY_HEADERS, agreement.summary_rows(g.result), f"agreement-{i}")
        )
        notes = agreement.notes(g.result)
        if notes:
            parts.append("<ul class='notes'>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
        confusions = "".join(
            f"<p>{_e(c.kind)} / {_e(c.scenario)} (rows A, columns B)</p>" + _html_table(*_confusion_rows(c))
            for c in agreement.shown_confusions(g.result)
        )
        if confusions:
            parts.append(f"<details><summary>Confusion matrices</summary>{confusions}</details>")
    return "".join(parts)


def agreement_lines(groups: Sequence[AgreementGroup]) -> list[str]:
    """One plain line per group for the console summary (no markup: callers escape or use Text)."""
    out = []
    for g in groups:
        head = f"Judge agreement, {g.shared}: {' vs '.join(g.judges)}"
        if isinstance(g.result, stats.Skipped):
            out.append(f"{head}: not compared ({g.result.reason})")
            continue
        bits = []
        for kind in agreement.KINDS:
            c = g.result.cell(kind)
            stat = c.kappa if len(g.judges) == 2 else c.alpha
            symbol = "κ" if len(g.judges) == 2 else "α"
            bits.append(f"{kind} {agreement.fmt(c.raw)} agree, {symbol} {agreement.fmt(stat)}")
        out.append(f"{head}: {'; '.join(bits)}")
    return out
