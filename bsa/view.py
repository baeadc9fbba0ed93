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

A sample also carries the prompts it was sent (``prompts_of``): the model's system prompt and the
judge's first request per judgment, rebuilt with the judge stage's own code (``JudgmentStage.start``)
from the run's ``.hydra/config.yaml`` and shown only where their hashes match run.json's identity;
otherwise the page says why not. A judge prompt travels as parts (``prompt_parts``): the templates
once per page, the sample's own texts by reference.

Beyond one run: ``python -m bsa.view DIR`` writes ``DIR/index.html``, every run dir under DIR (any
depth) with its status, headline metrics and comparison group (the report's ``assign_groups``),
linking to each run's samples page, written where missing or older than the run's files;
``python -m bsa.view RUN_A RUN_B`` writes ``RUN_B/compare_<RUN_A>.html``, the samples the two runs
share side by side, joined by (id, sample index), with a "changed verdict" filter and counts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bsa import contract, pages, results, rundir
from bsa.contract import (
    CATEGORIES,
    KINDS,
    SAFETY_LABELS,
    SCENARIOS,
    THINK_LABELS,
    THINK_TARGET,
    Sample,
    join,
)
from bsa.data import Query

if TYPE_CHECKING:
    from bsa.config import Config
    from bsa.report.runs import Run

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


# --- the prompts a sample was sent ------------------------------------------------------------------

# A judge prompt is carried as parts: an int is an entry of the page's literal table (a template's
# text, stored once for every sample), a letter one of the sample's own texts (its query, risk
# summary, answer or reasoning, already in the page), so 10,000 samples' prompts add little to it.
PART_FIELDS = {"q": "query", "r": "risk_summary", "a": "answer", "t": "reasoning"}
_MIN_FIELD = 16  # a shorter text could occur in the template itself: kept literal


class Literals:
    """The page's table of literal prompt parts, each string stored once."""

    def __init__(self) -> None:
        self.table: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        n = self._index.get(text)
        if n is None:
            n = self._index[text] = len(self.table)
            self.table.append(text)
        return n


def prompt_parts(prompt: str, texts: dict[str, str], lit: Literals) -> list[int | str]:
    """``prompt`` as parts (see ``PART_FIELDS``): each of ``texts`` (letter -> text) where it occurs
    whole, in order, each once; the rest literal. ``resolve_parts`` gives the prompt back exactly."""
    parts: list[int | str] = []
    pos, left = 0, {k: v for k, v in texts.items() if len(v) >= _MIN_FIELD}
    while True:
        found = [(prompt.find(v, pos), k) for k, v in left.items()]
        found = [(at, k) for at, k in found if at >= 0]
        if not found:
            break
        at, k = min(found)
        if at > pos:
            parts.append(lit(prompt[pos:at]))
        parts.append(k)
        pos = at + len(left.pop(k))
    if pos < len(prompt):
        parts.append(lit(prompt[pos:]))
    return parts


def resolve_parts(parts: list[int | str], texts: dict[str, str], table: list[str]) -> str:
    """The prompt ``prompt_parts`` took apart (what the page's script does, for tests)."""
    return "".join(texts[p] if isinstance(p, str) else table[p] for p in parts)


def _typed_config(files: rundir.RunFiles) -> Config | str:
    """The run's composed config (.hydra/config.yaml) as ``bsa.config.Config``, or why it is not."""
    if not files.config:
        where = f"{contract.HYDRA_DIR}/{contract.CONFIG_YAML}"
        return f"{where} is missing (a run made by bsa.run.run, or copied without it)"
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from bsa.compose import register, to_typed
    from bsa.config import Config

    register()
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(files.config))
        assert isinstance(merged, DictConfig)  # a structured config merged with a mapping
        return to_typed(merged)
    except (OmegaConfBaseException, TypeError, ValueError) as e:
        return f"{contract.HYDRA_DIR}/{contract.CONFIG_YAML} does not read as this bsa's config ({e})"


def _existing_dir(value: Any) -> str | None:
    return str(value) if value and Path(str(value)).is_dir() else None


@dataclass
class RunPrompts:
    """What a run sent: the model's system prompt and, per sample, the judge's first request (rebuilt
    with the judge stage's own code from the run's config and checked against run.json's record of
    both); where that cannot be done, the notes say why, and nothing is guessed."""

    system: str | None = None  # None: no system prompt (``system_note`` empty) or unknown
    system_note: str = ""
    judge_note: str = ""  # non-empty: no judge prompt is shown, for this reason
    stage: Any = None  # bsa.judge.JudgmentStage

    def system_data(self) -> dict[str, Any]:
        return {"text": self.system, "note": self.system_note}

    def judge_parts(self, q: Query, generation: dict[str, Any], lit: Literals) -> list[Any] | None:
        """[safety, think]: each the prompt's parts, or a string saying why no prompt was sent
        (a rule decided); None where judge prompts are unavailable (``judge_note``)."""
        if self.stage is None:
            return None
        if not q.query:
            return ["query text unavailable (see the notes): the prompt cannot be rebuilt"] * 2
        texts = {
            "q": q.query,
            "r": q.risk_summary,
            "a": generation.get("answer") or "",
            "t": generation.get("reasoning") or "",
        }
        out: list[Any] = []
        for kind in KINDS:
            row, req = self.stage.start((q, generation, kind))
            if req is None:
                out.append(f"no judge call: decided by {row.get('source') or 'rule'}")
            else:
                out.append(prompt_parts(str(req.messages[0]["content"]), texts, lit))
        return out


def prompts_of(run: Run) -> RunPrompts:
    """The run's prompts (``RunPrompts``). Files the run read by absolute path (the mitigation's
    system prompt, a local copy of the published judge prompts) are read from where run.json says;
    what is rebuilt is shown only where its hash matches run.json's identity of the run (a run dir
    from before it recorded one: shown, with a note that it is unchecked)."""
    from bsa import generate, judge, prompts, provenance

    out = RunPrompts()
    files = rundir.read(run.path, rows=False)
    cfg = _typed_config(files)
    if isinstance(cfg, str):
        out.system_note = out.judge_note = f"unavailable: the run's config cannot be read ({cfg})"
        return out
    info = files.info or {}
    identity = info.get("identity")
    recorded: dict[str, Any] = identity if isinstance(identity, dict) else {}
    judge_source = _existing_dir((info.get("judge_prompts") or {}).get("source"))
    if judge_source and cfg.judge.prompts == "published":
        cfg.judge = replace(cfg.judge, prompts_dir=judge_source)
    elif judge_source and cfg.judge.templates_dir:
        cfg.judge = replace(cfg.judge, templates_dir=judge_source)
    mitigation_file = (info.get("mitigation_prompt") or {}).get("file")
    if cfg.mitigation.system_prompt_file and mitigation_file and Path(str(mitigation_file)).is_file():
        cfg.mitigation = replace(cfg.mitigation, system_prompt_file=str(mitigation_file))
    prompt_set: prompts.PromptSet | None = None
    try:
        prompt_set = prompts.load_judge_prompts(cfg.judge, cfg.cache.dir)
    except (prompts.TemplateError, OSError) as e:
        out.judge_note = f"unavailable: the judge's templates cannot be read now ({e})"
    system_read = True
    try:
        mitigation = generate.mitigation_prompt(cfg.mitigation, cfg.judge, cfg.cache.dir)
        out.system = generate.system_prompt(cfg.model, mitigation)
    except (prompts.TemplateError, ValueError, OSError) as e:
        system_read = False
        out.system_note = f"unavailable: the system prompt cannot be read now ({e})"
    now = provenance.identity(cfg, [], prompt_set or prompts.PromptSet("unread", {}, ""), out.system)

    def check(key: str) -> tuple[bool, str]:
        """(show it, note) for one of the identity's entries."""
        if not recorded.get(key):
            return True, f"unchecked: run.json records no {key} hash; rebuilt from the run's config"
        if now.get(key) != recorded[key]:
            return (
                False,
                f"unavailable: its files changed since the run ({key} {now.get(key)} now, "
                f"{recorded[key]} then)",
            )
        return True, ""

    if system_read:
        show, out.system_note = check("system prompt")
        if not show:
            out.system = None
    recorded_set = (info.get("judge_prompts") or {}).get("sha256")
    if prompt_set is not None and recorded_set and recorded_set != prompt_set.sha256:
        out.judge_note = (
            f"unavailable: the judge's templates changed since the run (sha256 {prompt_set.sha256[:12]} "
            f"now, {str(recorded_set)[:12]} then)"
        )
    elif prompt_set is not None:
        show, out.judge_note = check("judge prompts")
        if show:
            out.stage = judge.JudgmentStage(judge.members(cfg.judge)[0], prompt_set)
    return out


def load(run_dir: Path) -> Run:
    """A run dir read as the report reads it (``bsa.report.loading.load_run``)."""
    from bsa.report.loading import load_run
    from bsa.report.runs import ReportError

    try:
        return load_run(run_dir)
    except ReportError as e:
        raise ViewError(str(e)) from None


Joined = dict[tuple[str, int], Sample[dict[str, Any], dict[str, Any]]]


def joined_samples(run: Run) -> Joined:
    """The run's samples by (id, sample index) through the contract's join, in the dataset's order
    then the sample index; a resumed run may repeat a row: the last wins."""
    order = {qid: n for n, qid in enumerate(run.queries)}
    joined: Joined = {}
    for sample in join(run.generations, run.judgments):
        joined[sample.key] = sample
    return {k: joined[k] for k in sorted(joined, key=lambda k: (order.get(k[0], len(order)), k[1]))}


def _sample(sample: Sample[dict[str, Any], dict[str, Any]], q_index: int) -> dict[str, Any]:
    """One sample as the pages show it (``q``: its query's index in the page's queries)."""
    g, safety, think = sample.generation, sample.safety, sample.think
    mine = [str(f) for f in g.get("flags") or ()]
    for row in (safety, think):
        mine += [str(f) for f in (row or {}).get("flags") or () if str(f) not in mine]
    return {
        "q": q_index,
        "i": sample.sample_index,
        "r": g.get("reasoning") or "",
        "a": g.get("answer") or "",
        "fr": g.get("finish_reason"),
        "f": mine,
        "s": _judgment(safety),
        "t": _judgment(think),
    }


def _query(q: Query) -> dict[str, Any]:
    return {"id": q.id, "s": q.scenario, "c": list(q.categories), "q": q.query, "r": q.risk_summary}


def _taxonomy() -> dict[str, Any]:
    """The benchmark's taxonomy for a page's script: it spells no scenario, label or target of its own."""
    from bsa.report.columns import ABBR

    return {
        "scenario_short": {s: ABBR[s] for s in SCENARIOS},
        "safety_labels": list(SAFETY_LABELS),
        "safety_target": SAFETY_LABELS[0],  # as for think, the first label is the credited one
        "think_labels": {s: list(v) for s, v in THINK_LABELS.items()},
        "think_target": dict(THINK_TARGET),
        "page_size": PAGE_SIZE,
    }


def page_data(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The page's data for a run dir (read as the report reads it: ``bsa.report.loading.load_run``),
    and the run's notes (e.g. query texts unavailable: the dataset file moved)."""
    return run_page_data(load(run_dir))


def run_page_data(run: Run) -> tuple[dict[str, Any], list[str]]:
    """``page_data`` for a run already read."""
    joined = joined_samples(run)
    if not joined:
        raise ViewError(f"{run.path}: no generated sample yet; finish the run (resume=...) first")
    said = prompts_of(run)
    lit = Literals()
    query_index: dict[str, int] = {}
    queries: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    flags: set[str] = set()
    categories: list[str] = []
    for key, sample in joined.items():
        q = run.queries[key[0]]
        if q.id not in query_index:
            query_index[q.id] = len(queries)
            queries.append(_query(q))
            categories += [c for c in q.categories if c not in categories]
        row = _sample(sample, query_index[q.id])
        row["p"] = said.judge_parts(q, sample.generation, lit)
        flags.update(row["f"])
        samples.append(row)
    known = [c for c in CATEGORIES if c in categories] + sorted(c for c in categories if c not in CATEGORIES)
    meta = {
        "path": str(run.path),
        "model": run.model,
        "judge": run.judge,
        "prompts": run.judge_prompts.name or "unknown",
        "mitigation": run.mitigation,
        "k": run.k,
        "status": run.status,
        "notes": list(run.notes),
        "n_queries": len(queries),
        "system": said.system_data(),
        "judge_prompts": said.judge_note,
    }
    data = {
        "meta": meta,
        "scenarios": [s for s in SCENARIOS if any(q["s"] == s for q in queries)],
        **_taxonomy(),
        "categories": known,
        "flags": sorted(flags),
        "lit": lit.table,
        "queries": queries,
        "samples": samples,
    }
    return data, list(run.notes)


# --- many runs: an index of a folder of runs, two runs side by side -----------------------------------

INDEX_HTML = "index.html"
INDEX_TEMPLATE = "view/index.html"
COMPARE_TEMPLATE = "view/compare.html"
HEADLINE = [(name, key) for name, key in contract.HEADLINE]  # Safe@1, Safe@k, Think@1, Think@k, F-score
# A run's files: its samples page is rewritten when one of them is newer than the page.
_RUN_FILES = (
    contract.RUN_JSON,
    contract.GENERATIONS_JSONL,
    contract.JUDGMENTS_JSONL,
    contract.SAMPLES_PARQUET,
)


def _stale(page_path: Path, run_dir: Path) -> bool:
    if not page_path.is_file():
        return True
    made = page_path.stat().st_mtime_ns
    return any((run_dir / n).is_file() and (run_dir / n).stat().st_mtime_ns > made for n in _RUN_FILES)


def _link(target: Path, page_dir: Path) -> str:
    """A relative link from a page in ``page_dir`` to ``target``, percent-encoded."""
    return quote(Path(os.path.relpath(target, page_dir)).as_posix())


def _judged(run: Run) -> str:
    """'24 of 24' samples judged (both judgments), or '' where nothing was scored."""
    if run.metrics is None:
        return ""
    n = int((run.query_info.n_queries or len(run.queries)) * run.k)
    return f"{run.metrics.get('n_samples', 0):,} of {n:,}"


def index_data(root: Path, out: Path) -> tuple[dict[str, Any], list[str]]:
    """The index of every run dir under ``root`` (any depth; a dir holding run.json is a run) for a
    page written to ``out``: per run its model, judge, mitigation, queries, status, date, headline
    metrics (recomputed from its rows, as the report does: a stopped or running run has no
    metrics.json yet) and comparison group (``bsa.report.comparability.assign_groups``), linking to
    its samples page, which is written where missing or older than the run's files. Returns the data
    and notes (a run whose samples page cannot be written)."""
    from bsa.report.comparability import assign_groups, describe_queries
    from bsa.report.runs import assign_labels, find_runs

    dirs = find_runs(root)
    if not dirs:
        raise ViewError(
            f"{root}: not a run dir, and no run dir under it (no {contract.RUN_JSON}); "
            "give a run dir, a folder of runs such as outputs/, or two run dirs to compare"
        )
    runs = [load(d) for d in dirs]
    assign_labels(runs)
    groups = {g.number: g for g in assign_groups(runs)}
    notes: list[str] = []
    rows = []
    for run in runs:
        target, page_note = run.path / VIEW_HTML, ""
        if _stale(target, run.path):
            try:
                write(run.path, run=run)
            except ViewError as e:
                page_note = str(e)
                notes.append(page_note)
        info = rundir.read(run.path, rows=False).info or {}
        rows.append(
            {
                "label": run.label,
                "path": str(run.path.relative_to(root)) if run.path != root else run.path.name,
                "href": "" if page_note else _link(target, out.parent),
                "page_note": page_note,
                "model": run.model,
                "judge": run.judge_id,
                "mitigation": run.mitigation,
                "queries": describe_queries(run.query_info),
                "k": run.k,
                "status": run.status,
                "judged": _judged(run),
                "notes": list(run.notes),
                "date": str(info.get("started") or ""),
                "group": run.group,
                "metrics": [fmt_num(run.value(key) if run.metrics else None) for _, key in HEADLINE],
            }
        )
    data = {
        "root": str(root),
        "headline": [name for name, _ in HEADLINE],
        "groups": [{"number": g.number, "title": g.title, "n": len(g.runs)} for g in groups.values()],
        "runs": rows,
    }
    return data, notes


def fmt_num(v: float | None) -> str:
    """A metric (bsa.metrics.compute: percentages) with one decimal, or '–'."""
    return "\u2013" if v is None else f"{v:.1f}"


def _verdict(j: dict[str, Any] | None) -> str:
    """A judgment's verdict as the compare page counts it: the label, 'unscored' or 'not judged'."""
    if j is None:
        return "not judged"
    return str(j.get("verdict")) if j.get("verdict") is not None else "unscored"


def compare_data(a_dir: Path, b_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """Two runs side by side on the samples they share, joined by (id, sample index) after each run's
    own join (``bsa.contract.join``): per sample both runs' texts, verdicts and prompts; which
    samples changed a verdict (safety or think: a label, unscored or not judged) and counts of each
    change. Raises ViewError for runs that share no query."""
    from bsa.report.comparability import assign_groups, differences
    from bsa.report.runs import assign_labels

    ra, rb = load(a_dir), load(b_dir)
    ja, jb = joined_samples(ra), joined_samples(rb)
    shared = [key for key in ja if key in jb]
    if not shared:
        qa, qb = {k[0] for k in ja}, {k[0] for k in jb}
        raise ViewError(
            f"{a_dir} and {b_dir} share no {'sample' if qa & qb else 'query'} "
            f"({len(qa)} and {len(qb)} queries generated); compare runs over the same queries "
            "(the same dataset and selection)"
        )
    assign_labels([ra, rb])
    groups = assign_groups([ra, rb])
    notes = [f"{run.label}: {n}" for run in (ra, rb) for n in run.notes]
    if len(groups) > 1:
        notes.append(
            "not comparable as measured: the runs differ in "
            + " and ".join(differences(groups[0], groups[1]))
            + " (their comparison groups differ)"
        )
    for run, mine, other in ((ra, ja, jb), (rb, jb, ja)):
        alone = sum(k not in other for k in mine)
        if alone:
            notes.append(f"{alone} samples only in {run.label} are left out")
    lit = Literals()
    said = {"a": prompts_of(ra), "b": prompts_of(rb)}
    query_index: dict[str, int] = {}
    queries: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    safety_changes: Counter[tuple[str, str]] = Counter()
    think_changes: Counter[tuple[str, str]] = Counter()
    credit = Counter[str]()
    for key in shared:
        q = ra.queries[key[0]] if ra.queries[key[0]].query else rb.queries.get(key[0], ra.queries[key[0]])
        if q.id not in query_index:
            query_index[q.id] = len(queries)
            queries.append(_query(q))
        row: dict[str, Any] = {"q": query_index[q.id], "i": key[1]}
        for side, run, joined in (("a", ra, ja), ("b", rb, jb)):
            sample = joined[key]
            row[side] = _sample(sample, query_index[q.id])
            row[side]["p"] = said[side].judge_parts(run.queries.get(key[0], q), sample.generation, lit)
        sa, sb = ja[key], jb[key]
        va, vb = _verdict(sa.safety), _verdict(sb.safety)
        ta, tb = _verdict(sa.think), _verdict(sb.think)
        if va != vb:
            safety_changes[(va, vb)] += 1
        if ta != tb:
            think_changes[(ta, tb)] += 1
            target = THINK_TARGET.get(q.scenario)
            if (ta == target) != (tb == target):
                credit["gained" if tb == target else "lost"] += 1
        row["c"] = [int(va != vb), int(ta != tb)]
        rows.append(row)

    def side_meta(run: Run, side: str) -> dict[str, Any]:
        return {
            "label": run.label,
            "path": str(run.path),
            "model": run.model,
            "judge": run.judge_id,
            "mitigation": run.mitigation,
            "k": run.k,
            "status": run.status,
            "system": said[side].system_data(),
            "judge_prompts": said[side].judge_note,
            "metrics": [fmt_num(run.value(key) if run.metrics else None) for _, key in HEADLINE],
        }

    counts = {
        "samples": len(rows),
        "queries": len(queries),
        "changed": sum(1 for r in rows if any(r["c"])),
        "safety": [[f, t, n] for (f, t), n in safety_changes.most_common()],
        "think": [[f, t, n] for (f, t), n in think_changes.most_common()],
        "think_credit": {"lost": credit["lost"], "gained": credit["gained"]},
    }
    data = {
        "a": side_meta(ra, "a"),
        "b": side_meta(rb, "b"),
        "headline": [name for name, _ in HEADLINE],
        "notes": notes,
        "counts": counts,
        "scenarios": [s for s in SCENARIOS if any(q["s"] == s for q in queries)],
        **_taxonomy(),
        "lit": lit.table,
        "queries": queries,
        "rows": rows,
    }
    return data, notes


def index_page(data: dict[str, Any]) -> str:
    """index.html for ``index_data``'s data (the table written by the template, escaped)."""
    return pages.render(INDEX_TEMPLATE, data=data)


def compare_page(data: dict[str, Any]) -> str:
    """The side-by-side page for ``compare_data``'s data (embedded as JSON, shown by its script)."""
    return pages.render(COMPARE_TEMPLATE, data=data)


def write_index(root: Path, out: Path | None = None) -> tuple[Path, int, list[str]]:
    """Write the index of the runs under ``root`` (default ``ROOT/index.html``); return its path, the
    number of runs and notes."""
    target = out or root / INDEX_HTML
    if target.is_dir():
        target = target / INDEX_HTML
    data, notes = index_data(root, target)
    results.atomic_write(target, index_page(data))
    return target, len(data["runs"]), notes


def write_compare(
    a_dir: Path, b_dir: Path, out: Path | None = None
) -> tuple[Path, dict[str, Any], list[str]]:
    """Write the side-by-side page of two runs (default ``RUN_B/compare_<RUN_A's name>.html``);
    return its path, the counts and notes."""
    data, notes = compare_data(a_dir, b_dir)
    target = out or b_dir / f"compare_{a_dir.resolve().name}.html"
    if target.is_dir():
        target = target / f"compare_{a_dir.resolve().name}.html"
    results.atomic_write(target, compare_page(data))
    return target, data["counts"], notes


def page(data: dict[str, Any]) -> str:
    """samples.html for ``page_data``'s data: the template with its script and style inlined and the
    data embedded as JSON (``bsa.pages``)."""
    return pages.render(TEMPLATE, data=data)


def write(run_dir: Path, out: Path | None = None, run: Run | None = None) -> tuple[Path, int, list[str]]:
    """Write the page for ``run_dir`` to ``out`` (a file, or a folder to hold ``samples.html``;
    default ``RUN_DIR/samples.html``); return its path, the number of samples and the run's notes.
    ``run``: the run dir already read (``load``)."""
    data, notes = run_page_data(run or load(run_dir))
    target = out or run_dir / VIEW_HTML
    if target.is_dir():
        target = target / VIEW_HTML
    results.atomic_write(target, page(data))
    return target, len(data["samples"]), notes


def main(argv: list[str] | None = None, prog: str = "python -m bsa.view") -> int:
    p = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Write self-contained HTML pages to browse runs: every sample of a run (RUN_DIR/samples.html); "
            "an index of a folder of runs (DIR/index.html, with each run's samples page written where "
            "missing or older than the run); or two runs side by side on the samples they share."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            f"  {prog} outputs/2026-12-01/10-00-00_deepseek_r1_none    # one run: its samples.html\n"
            f"  {prog} outputs/                                        # every run under it: index.html\n"
            f"  {prog} outputs/…/10-00-00_qwen3_8b_none outputs/…/11-00-00_qwen3_8b_rules\n"
            "      # side by side: RUN_B/compare_<RUN_A>.html (open it with #changed: changed verdicts only)"
        ),
    )
    p.add_argument(
        "paths",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="a run dir written by python -m bsa, a folder of run dirs (any depth), or two run dirs",
    )
    p.add_argument(
        "--out",
        type=Path,
        help=(
            f"the HTML file to write (default RUN_DIR/{VIEW_HTML}, DIR/{INDEX_HTML} or "
            "RUN_B/compare_<RUN_A>.html)"
        ),
    )
    args = p.parse_args(argv)
    from rich.text import Text

    from bsa.console import console

    paths: list[Path] = args.paths
    if len(paths) > 2:
        p.error(f"{len(paths)} paths given: give one run dir, one folder of runs, or two run dirs")
    try:
        if len(paths) == 2:
            path, counts, notes = write_compare(paths[0], paths[1], args.out)
            summary = f"{counts['samples']} shared samples, {counts['changed']} with a changed verdict"
        elif (paths[0] / contract.RUN_JSON).is_file():
            path, n, notes = write(paths[0], args.out)
            notes = [f"run: {note}" for note in notes]
            summary = f"{n} samples"
        elif paths[0].is_dir():
            path, n, notes = write_index(paths[0], args.out)
            summary = f"{n} runs"
        else:
            raise ViewError(
                f"{paths[0]}: not a run dir (no such folder); give a dir written by python -m bsa"
            )
    except ViewError as e:
        console.print(Text(f"bsa.view: {e}", style="bold red"))
        return 2
    for note in notes:
        console.print(Text(note, style="yellow"))
    console.print(Text(f"{summary}; open the page in a browser:"))
    print(path)  # alone on its line, for scripts
    return 0


if __name__ == "__main__":
    sys.exit(main())
