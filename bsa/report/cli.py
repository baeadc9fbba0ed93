"""``python -m bsa.report [RUN_DIRS…] [--out DIR]``, ``… --compare RUN_A RUN_B [--out DIR]``

Compares runs the way the paper does, with error bars: one leaderboard row per run, 95% bootstrap
intervals over queries, paired tests of mitigations and decoding settings, the Think@1–Safe@1
correlation, plots, and an SSA diagnosis with failure cases. Runs compare within comparison groups
(same queries, same judge model, same judge prompts); the published leaderboard stands beside runs
judged the paper's way (GPT-4o, the published prompts, the 2,000 benchmark queries). With no
RUN_DIRS it finds every run under outputs/ (single runs and multirun sweeps); a RUN_DIR may also be
a folder holding runs. Writes report.md, a self-contained report.html
(plots embedded) and leaderboard.csv into outputs/report/ (or --out). ``--compare`` prints B minus A
for every metric, paired on the queries both runs judged; with --out it also writes compare.md,
compare.html and compare.json there.

Shards (``dataset.shard=i/n``): the run dirs of one run's shards, named together or found under a
folder, are one run in the report, merged as ``bsa.shards`` merges them (the same metrics as the
unsharded run); a missing shard leaves that run partial, named in its notes. A merged run dir
(``python -m bsa.score SHARD_DIR… --out DIR``) stands for the shards it lists, found beside it.

Metrics are recomputed from each run's generations and judgments (so a stopped run shows what it
finished, marked) with ``bsa.metrics.compute``; intervals come from ``bsa.stats``.
"""

from __future__ import annotations

import argparse
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bsa import pages, results, stats
from bsa.contract import RUN_JSON
from bsa.report.assemble import Report, build
from bsa.report.blocks import Table
from bsa.report.columns import METRICS
from bsa.report.comparability import ASPECTS, describe_judging, key
from bsa.report.loading import load_run, load_runs
from bsa.report.markdown import table_md
from bsa.report.outputs import COMPARE_TEMPLATE, print_report, render_html, render_markdown
from bsa.report.pairs import SIGNIFICANT, Pair, compare
from bsa.report.plots import Figures, make_figures
from bsa.report.runs import DEFAULT_ROOT, REPORT_DIR, ReportError, Run, assign_labels, discover
from bsa.report.tables import leaderboard_frame, pair_table
from bsa.report.terminal import rich_table


def write_report(report: Report, out_dir: Path, examples: int = 3) -> Figures:
    figs = make_figures(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, png in figs.images.items():
        (out_dir / f"{name}.png").write_bytes(png)
    results.atomic_write(out_dir / "report.md", render_markdown(report, figs))
    results.atomic_write(out_dir / "report.html", render_html(report, figs, examples))
    results.atomic_write(out_dir / "leaderboard.csv", leaderboard_frame(report).to_csv(index=False))
    return figs


COMPARE_FILES = ("compare.md", "compare.html", "compare.json")


def run_compare(
    paths: Sequence[Path], n_boot: int, seed: int, alpha: float | None, out_dir: Path | None = None
) -> int:
    """Print B minus A for every metric, paired on the queries both runs judged; with ``out_dir``,
    write the same as compare.md, compare.html and compare.json there."""
    from rich.markup import escape

    from bsa.console import console

    for p in paths:
        if not (p / RUN_JSON).is_file():
            raise ReportError(f"{p}: not a run dir (no run.json); --compare takes two run dirs")
    a, b = (load_run(p, alpha) for p in paths)
    assign_labels([a, b])
    if a.label == b.label:
        a.label, b.label = f"A: {a.label}", f"B: {b.label}"
    warnings = []
    if a.query_set != b.query_set:
        warnings.append("The runs are over different query sets; comparing on the queries both judged.")
    judged = [w for w, x, y in zip(ASPECTS[1:], key(a)[1:], key(b)[1:], strict=True) if x != y]
    if judged:
        warnings.append(
            f"The runs differ in {' and '.join(judged)} ({describe_judging(a)} vs {describe_judging(b)}): "
            "the difference mixes what the runs did with how they were judged."
        )
    for w in warnings:
        console.print(f"[yellow]{escape(w)}[/]")
    diffs = compare(a, b, n_boot, seed)
    if isinstance(diffs, stats.Skipped):
        raise ReportError(f"cannot compare {a.path} and {b.path}: {diffs.reason}")
    notes = [f"{r.label}: {'; '.join(r.notes)}" for r in (a, b) if r.notes]
    for note in notes:
        console.print(f"[yellow]{escape(note)}[/]")
    n = next(iter(diffs.values())).n_queries
    title = f"{b.label} minus {a.label}, paired on {n} queries ({n_boot} replicates)"
    table = pair_table(Pair(a, b, "compare", diffs), 0)
    console.print(rich_table(table, title))
    if out_dir is not None:
        compared = _Compared(a, b, diffs, table, title, warnings + notes, n_boot, seed)
        out_dir.mkdir(parents=True, exist_ok=True)
        results.atomic_write(out_dir / "compare.md", compared.markdown())
        results.atomic_write(out_dir / "compare.html", compared.html())
        results.atomic_write(out_dir / "compare.json", compared.json())
        console.print(f"Comparison written to [bold]{escape(str(out_dir))}[/] ({', '.join(COMPARE_FILES)})")
    return 0


class _Compared:
    """One --compare result, as the files written beside the console table."""

    def __init__(
        self,
        a: Run,
        b: Run,
        diffs: dict[str, stats.PairedDiff],
        table: Table,
        title: str,
        notes: list[str],
        n_boot: int,
        seed: int,
    ) -> None:
        self.a, self.b, self.diffs, self.table, self.title = a, b, diffs, table, title
        self.notes, self.n_boot, self.seed = notes, n_boot, seed

    def _method(self) -> str:
        return (
            f"Paired bootstrap over queries ({self.n_boot} replicates, seed {self.seed}): each replicate "
            "draws the queries both runs judged, a query's samples together; the difference is B minus A "
            f"in percentage points, with its 95% interval and two-sided p (significant: p < {SIGNIFICANT})."
        )

    def _runs(self) -> list[tuple[str, Run]]:
        return [("A", self.a), ("B", self.b)]

    def markdown(self) -> str:
        def md(text: str) -> str:  # run-derived text: escaped, as in report.md
            return html.escape(text, quote=False)

        out = [f"# {md(self.title)}", ""]
        out += [
            f"- **{n}**: {md(r.label)} — {md(str(r.path))} ({md(describe_judging(r))})"
            for n, r in self._runs()
        ]
        out += ["", table_md(self.table), "", md(self._method()), ""]
        out += [f"- {md(note)}" for note in self.notes]
        return "\n".join(out).rstrip() + "\n"

    def html(self) -> str:
        return pages.render(
            COMPARE_TEMPLATE,
            title=self.title,
            runs=[(n, r, describe_judging(r)) for n, r in self._runs()],
            differences=self.table,
            method=self._method(),
            notes=self.notes,
        )

    def json(self) -> str:
        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        def run(r: Run) -> dict[str, Any]:
            return {
                "label": r.label,
                "path": str(r.path),
                "model": r.model,
                "mitigation": r.mitigation,
                "sampling": r.sampling,
                "judge": r.judge_id,
                "judging": describe_judging(r),
                "status": r.status,
            }

        differences = {}
        for name, metric in METRICS:
            d = self.diffs.get(metric)
            if d is None:
                continue
            p = num(d.p_value)
            differences[metric] = {
                "name": name,
                "a": num(d.a),
                "b": num(d.b),
                "difference": num(d.diff),
                "ci_low": num(d.low),
                "ci_high": num(d.high),
                "p_value": p,
                "significant": None if p is None or d.diff is None else p < SIGNIFICANT,
                "n_queries": d.n_queries,
            }
        doc = {
            "a": run(self.a),
            "b": run(self.b),
            "n_queries": next(iter(self.diffs.values())).n_queries,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "level": stats.DEFAULT_LEVEL,
            "significance": SIGNIFICANT,
            "differences": differences,
            "notes": self.notes,
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None, prog: str = "python -m bsa.report") -> int:
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Examples:\n  {prog}    (every run under outputs/, written to outputs/report/)\n"
        f"  {prog} RUN_A RUN_B --out report/\n  {prog} --compare RUN_NONE RUN_RULES",
    )
    p.add_argument(
        "runs", nargs="*", type=Path, help="run dirs or folders holding them (default: all under --root)"
    )
    p.add_argument(
        "--out",
        type=Path,
        help=f"where to write the report (default: <root>/{REPORT_DIR}); with --compare: "
        "compare.md, compare.html and compare.json (default: print only)",
    )
    p.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help="where to look for runs (default: outputs)"
    )
    p.add_argument(
        "--compare", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"), help="paired test of B minus A"
    )
    p.add_argument(
        "--n-boot", type=int, default=stats.DEFAULT_N_BOOT, help="bootstrap replicates (default 2000)"
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--alpha", type=float, help="recompute every F-score with this α (default: each run's)")
    p.add_argument("--examples", type=int, default=3, help="failure cases per run and weak spot (default 3)")
    args = p.parse_args(argv)
    if args.n_boot < 1:
        p.error(f"--n-boot {args.n_boot}: must be at least 1 (default 2000)")
    if args.alpha is not None and not 0 < args.alpha < 1:
        p.error(f"--alpha {args.alpha}: must lie strictly between 0 and 1")
    if args.examples < 0:
        p.error(f"--examples {args.examples}: must be 0 or more (default 3)")
    from rich.markup import escape

    from bsa.console import console

    try:
        if args.compare:
            return run_compare(args.compare, args.n_boot, args.seed, args.alpha, args.out)
        runs = load_runs(discover(args.runs, args.root), args.alpha)
        report = build(runs, args.n_boot, args.seed)
        out_dir = args.out or args.root / REPORT_DIR
        write_report(report, out_dir, args.examples)
    except ReportError as e:
        console.print(f"[bold red]bsa.report: {escape(str(e))}[/]")
        return 2
    print_report(report, out_dir)
    return 0
