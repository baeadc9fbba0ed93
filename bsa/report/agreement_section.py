"""The report's judge-agreement section: runs that judged the same samples with different judges (or
judge prompts), and how far those judges agree (``bsa.agreement``), as Markdown and HTML.

Runs are grouped by what makes their generations the same (model, mitigation, sampling, decoding);
``bsa.agreement`` then keeps only samples whose text is identical in every run, so a group of runs
that sampled differently is reported as not comparable rather than as judges disagreeing. The section
is blocks (``agreement_blocks``: tables and text, as data); the report's shared renderers turn them
into Markdown and HTML.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

from bsa import agreement, stats
from bsa.agreement import Agreement, AgreementError, Cell
from bsa.report.blocks import Block, Code, Fold, Heading, Items, Muted, Para, Table
from bsa.report.html import blocks_html
from bsa.report.markdown import blocks_md
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


def _confusion_table(c: Cell) -> Table:
    assert c.confusion is not None
    rows = [
        [label, *map(str, row)] for label, row in zip(c.confusion.labels, c.confusion.counts, strict=True)
    ]
    return Table("", ["A \\ B", *c.confusion.labels], rows, wrap=frozenset())


def agreement_blocks(groups: Sequence[AgreementGroup]) -> list[Block]:
    """The section's body (without its heading): per group, its runs (A, B, …), the agreement table,
    its notes and the confusion matrices; or how to compare judges when no group exists."""
    if not groups:
        before, _, after = NO_GROUPS.partition("{command}")
        return [Para((before, Code(COMMAND), after), muted=True)]
    out: list[Block] = [Para((INTRO,))]
    for i, g in enumerate(groups):
        out.append(Heading(f"{g.shared}: {' vs '.join(g.judges)}"))
        runs = zip(string.ascii_uppercase, g.judges, g.runs, strict=False)  # A, B, …: as in the tables
        out.append(Items(tuple((f"{x}: {n} ", Muted(f"({r.label}, {r.path})")) for x, n, r in runs)))
        if isinstance(g.result, stats.Skipped):
            out.append(Para((f"Not compared: {g.result.reason}.",), muted=True))
            continue
        rows = [list(row) for row in agreement.summary_rows(g.result)]
        out.append(Table(f"agreement-{i}", list(agreement.SUMMARY_HEADERS), rows, wrap=frozenset()))
        notes = agreement.notes(g.result)
        if notes:
            out.append(Items(tuple((n,) for n in notes)))
        confusions: list[Block] = []
        for c in agreement.shown_confusions(g.result):
            confusions += [Para((f"{c.kind} / {c.scenario} (rows A, columns B)",)), _confusion_table(c)]
        if confusions:
            out.append(Fold("Confusion matrices", tuple(confusions)))
    return out


def agreement_markdown(groups: Sequence[AgreementGroup]) -> list[str]:
    """The section's body (without its heading) as Markdown lines."""
    return blocks_md(agreement_blocks(groups))


def agreement_html(groups: Sequence[AgreementGroup]) -> str:
    """The section's body (without its heading) as HTML."""
    return blocks_html(agreement_blocks(groups))


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
