"""Every sample of a run, browsable: ``python -m bsa.view RUN_DIR [--out FILE]``.

Writes one self-contained HTML page (default ``RUN_DIR/samples.html``; no network, inline script and
style only) listing every generated sample of the run with its query, risk summary, reasoning, answer
and both judgments (verdict, explanation, the judge's raw output per attempt, an ensemble's members),
filterable by scenario, primary category, safety verdict, think verdict, flag and unscored, with a
text search.

Built for a full run (2,000 queries × k = 5 = 10,000 samples): the data is one JSON blob (query texts
once per query), parsed once and dropped from the DOM; the list is paginated (100 rows a page) and a
sample's texts are rendered only when it is expanded; filters run over arrays, the search is debounced
(Enter searches at once), narrows the previous hits when the text grows, and lower-cases each field
once (all text in idle time after the first render, the others on first use). Model and judge text is
untrusted: it is only ever set with ``textContent`` or text nodes, never parsed as HTML.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bsa import pages, results
from bsa.contract import CATEGORIES, SAFETY_LABELS, SCENARIOS, THINK_LABELS, THINK_TARGET, Sample, join

VIEW_HTML = "samples.html"
PAGE_SIZE = 100
TEMPLATE = "view/page.html"  # bsa/templates/view/: the page, its script and its stylesheet

script_json = pages.script_json  # how the page's data is embedded (the JSON element #bsa-data)


class ViewError(ValueError):
    """No page can be made; the message names the path and what to do."""


def _judgment(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A judgment row as the page shows it; None: not judged (yet)."""
    if row is None:
        return None
    raw = row.get("raw")
    out: dict[str, Any] = {
        "v": row.get("verdict"),
        "u": row.get("unscored_reason"),
        "e": row.get("explanation") or "",
        "raw": [str(x) for x in raw] if isinstance(raw, list) else ([str(raw)] if raw else []),
        "src": row.get("source") or "",
        "m": row.get("judge_model") or "",
        "f": [str(f) for f in row.get("flags") or ()],
    }
    members = row.get("members")
    if isinstance(members, list) and members:
        out["mem"] = [_judgment(m) for m in members if isinstance(m, dict)]
    return out


def page_data(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The page's data for a run dir (read as the report reads it: ``bsa.report.loading.load_run``),
    and the run's notes (e.g. query texts unavailable: the dataset file moved)."""
    from bsa.report.columns import ABBR
    from bsa.report.loading import load_run
    from bsa.report.runs import ReportError

    try:
        run = load_run(run_dir)
    except ReportError as e:
        raise ViewError(str(e)) from None
    order = {qid: n for n, qid in enumerate(run.queries)}  # the dataset's order
    joined: dict[tuple[str, int], Sample[dict[str, Any], dict[str, Any]]] = {}
    for sample in join(run.generations, run.judgments):  # a resumed run may repeat a row: the last wins
        joined[sample.key] = sample
    if not joined:
        raise ViewError(f"{run_dir}: no generated sample yet; finish the run (resume=...) first")
    query_index: dict[str, int] = {}
    queries: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    flags: set[str] = set()
    categories: list[str] = []
    for key in sorted(joined, key=lambda k: (order.get(k[0], len(order)), k[1])):
        g, safety, think = joined[key].generation, joined[key].safety, joined[key].think
        q = run.queries[key[0]]
        if q.id not in query_index:
            query_index[q.id] = len(queries)
            queries.append(
                {"id": q.id, "s": q.scenario, "c": list(q.categories), "q": q.query, "r": q.risk_summary}
            )
            categories += [c for c in q.categories if c not in categories]
        mine = [str(f) for f in g.get("flags") or ()]
        for row in (safety, think):
            mine += [str(f) for f in (row or {}).get("flags") or () if str(f) not in mine]
        flags.update(mine)
        samples.append(
            {
                "q": query_index[q.id],
                "i": key[1],
                "r": g.get("reasoning") or "",
                "a": g.get("answer") or "",
                "fr": g.get("finish_reason"),
                "f": mine,
                "s": _judgment(safety),
                "t": _judgment(think),
            }
        )
    known = [c for c in CATEGORIES if c in categories] + sorted(c for c in categories if c not in CATEGORIES)
    meta = {
        "path": str(run_dir),
        "model": run.model,
        "judge": run.judge,
        "prompts": run.judge_prompts.name or "unknown",
        "mitigation": run.mitigation,
        "k": run.k,
        "status": run.status,
        "notes": list(run.notes),
        "n_queries": len(queries),
    }
    data = {
        "meta": meta,
        # The taxonomy: the page spells no scenario, label or target of its own.
        "scenarios": [s for s in SCENARIOS if any(q["s"] == s for q in queries)],
        "scenario_short": {s: ABBR[s] for s in SCENARIOS},
        "categories": known,
        "flags": sorted(flags),
        "safety_labels": list(SAFETY_LABELS),
        "safety_target": SAFETY_LABELS[0],  # as for think, the first label is the credited one
        "think_labels": {s: list(v) for s, v in THINK_LABELS.items()},
        "think_target": dict(THINK_TARGET),
        "page_size": PAGE_SIZE,
        "queries": queries,
        "samples": samples,
    }
    return data, list(run.notes)


def page(data: dict[str, Any]) -> str:
    """samples.html for ``page_data``'s data: the template with its script and style inlined and the
    data embedded as JSON (``bsa.pages``)."""
    return pages.render(TEMPLATE, data=data)


def write(run_dir: Path, out: Path | None = None) -> tuple[Path, int, list[str]]:
    """Write the page for ``run_dir`` to ``out`` (a file, or a folder to hold ``samples.html``;
    default ``RUN_DIR/samples.html``); return its path, the number of samples and the run's notes."""
    data, notes = page_data(run_dir)
    target = out or run_dir / VIEW_HTML
    if target.is_dir():
        target = target / VIEW_HTML
    results.atomic_write(target, page(data))
    return target, len(data["samples"]), notes


def main(argv: list[str] | None = None, prog: str = "python -m bsa.view") -> int:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Write one self-contained HTML page to browse, filter and search every sample of a run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Example:\n  {prog} outputs/2026-12-01/10-00-00_deepseek_r1_none --out samples.html",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run dir written by python -m bsa")
    p.add_argument("--out", type=Path, help=f"the HTML file to write (default RUN_DIR/{VIEW_HTML})")
    args = p.parse_args(argv)
    from rich.text import Text

    from bsa.console import console

    try:
        path, n, notes = write(args.run_dir, args.out)
    except ViewError as e:
        console.print(Text(f"bsa.view: {e}", style="bold red"))
        return 2
    for note in notes:
        console.print(Text(f"run: {note}", style="yellow"))
    console.print(Text(f"{n} samples; open the page in a browser:"))
    print(path)  # alone on its line, for scripts
    return 0


if __name__ == "__main__":
    sys.exit(main())
