"""``python -m bsa.rejudge SOURCE [overrides]``: judge existing generations again, call no model.

SOURCE is a bsa run dir (its generations, composed with its own overrides plus yours: e.g.
``judge=gpt4o judge.prompts=published``) or the output CSV of the upstream batch script
(``id, question, answer, reasoning_content, status, …``; ids ``<query id>_<sample>``) with
``--dataset FILE``. A new run dir records which generations it judged (path and sha256).
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bsa import contract, results, rundir
from bsa.compose import Composed
from bsa.config import Config
from bsa.contract import ID, SAMPLE_INDEX
from bsa.reasoning import extract
from bsa.run import GivenGenerations

UPSTREAM_REQUIRED = ("id", "answer", "reasoning_content")
# Overrides of the source run that a re-judge must not inherit: where it wrote, what it resumed.
_NOT_INHERITED = ("resume", "output_dir", "hydra")
_SUFFIX = re.compile(r"^(.*?)[_\-](\d+)$")


class RejudgeError(ValueError):
    """The source cannot be re-judged; the message names what and how to fix it."""


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(inherited: list[str], given: list[str]) -> list[str]:
    """The source run's overrides, then the given ones; a given key replaces the inherited one, and a
    given group (``judge=gpt4o``) drops the inherited settings inside that group (``judge.name=…``)."""
    given_keys = {_key(o) for o in given}
    kept = []
    for o in inherited:
        key = _key(o)
        if key.split(".", 1)[0] in _NOT_INHERITED or key in given_keys:
            continue
        if any(key.startswith(g + ".") for g in given_keys if "." not in g):
            continue
        kept.append(o)
    return kept + list(given)


def upstream_generations(
    records: Iterable[dict[str, Any]], query_ids: set[str], k: int, model: str, where: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Generation rows from the upstream batch script's output; also notes on rows left out.

    An id is a query id, or a query id with a sample suffix (``_3``, ``-3``); a query's samples are
    numbered 0.. in the order of their suffixes. Rows whose status is not success carry no answer
    (the call failed upstream): left out and counted, never judged as empty answers.
    """
    by_query: dict[str, list[tuple[int, int, dict[str, Any]]]] = defaultdict(list)
    unknown: list[str] = []
    failed = 0
    for n, rec in enumerate(records, start=2):  # line 1 is the header
        rid = str(rec.get("id") or "").strip()
        if rid in query_ids:
            qid, suffix = rid, -1
        else:
            m = _SUFFIX.match(rid)
            if m is None or m.group(1) not in query_ids:
                unknown.append(rid or f"(empty id, line {n})")
                continue
            qid, suffix = m.group(1), int(m.group(2))
        status = str(rec.get("status") or "success").strip().lower()
        if status != "success":
            failed += 1
            continue
        by_query[qid].append((suffix, n, rec))
    if unknown:
        raise RejudgeError(
            f"{where}: {len(unknown)} ids match no query of the dataset (first: {', '.join(unknown[:3])}); "
            "ids must be '<query id>' or '<query id>_<sample>'. Is --dataset the file the answers were "
            "generated from?"
        )
    rows = []
    for qid, samples in by_query.items():
        if len(samples) > k:
            raise RejudgeError(
                f"{where}: query {qid} has {len(samples)} samples but sampling.k={k}; "
                f"give sampling.k={len(samples)} (or more)"
            )
        samples.sort(key=lambda s: (s[0], s[1]))
        if len({s[0] for s in samples}) < len(samples):
            raise RejudgeError(f"{where}: query {qid} appears twice with the same id; one row per sample")
        for i, (_, _, rec) in enumerate(samples):
            ex = extract({"content": rec.get("answer"), "reasoning_content": rec.get("reasoning_content")})
            rows.append(
                {
                    ID: qid,
                    SAMPLE_INDEX: i,
                    "scenario": None,  # filled from the dataset below
                    "model": model,
                    "mitigation": "unknown (upstream)",
                    "reasoning": ex.reasoning,
                    "answer": ex.answer,
                    "finish_reason": None,
                    "flags": list(ex.flags),
                    "usage": {"total_tokens": _int(rec.get("tokens"))},
                    "latency_s": None,
                    "cost_usd": None,
                    "upstream_id": str(rec.get("id")),
                }
            )
    notes = [f"{failed} rows with a status other than success were left out (failed upstream calls)"]
    return rows, notes if failed else []


def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def read_upstream_csv(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # the upstream script writes a BOM
    except UnicodeDecodeError as e:
        raise RejudgeError(f"{path}: not UTF-8 ({e})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in UPSTREAM_REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise RejudgeError(
            f"{path}: columns {', '.join(missing)} missing (found {', '.join(reader.fieldnames or [])}); "
            "expected the upstream batch script's output: id, question, answer, reasoning_content, status"
        )
    return list(reader)


def _default_run_dir(source: Path) -> Path:
    now = datetime.now()
    return Path("outputs") / now.strftime("%Y-%m-%d") / f"{now.strftime('%H-%M-%S')}_rejudge_{source.stem}"


# Overrides that name the run dir, read as python -m bsa reads them (hydra.run.dir defaults to resume).
_RUN_DIR_KEYS = ("hydra.run.dir", "output_dir", "resume")


def _compose(overrides: list[str]) -> Composed:
    """The CLI's compose path (``bsa.compose``): the config, its run dir, its .hydra/ files."""
    from bsa.compose import compose

    return compose(overrides)


def _named(composed: Composed, given: list[str]) -> Path | None:
    """The run dir that the ``given`` overrides name (hydra.run.dir=, output_dir=, resume=), as
    python -m bsa would use it; None where they name none."""
    return composed.run_dir if any(_key(o) in _RUN_DIR_KEYS for o in given) else None


@dataclass
class Prepared:
    overrides: list[str]  # the merged overrides
    hydra_files: dict[str, str]  # the new run dir's .hydra/: the composed config, overrides, choices
    cfg: Config
    given: GivenGenerations
    run_dir: Path | None = None  # the run dir the given overrides name (hydra.run.dir=, …), if any


def prepare(
    source: Path, overrides: list[str], dataset: str | None = None, model_name: str | None = None
) -> Prepared:
    """The config and the generations to judge, for a run dir or an upstream CSV."""
    from omegaconf import OmegaConf

    from bsa import data

    if source.is_dir():
        gen_path = source / results.GENERATIONS
        if not gen_path.is_file():
            raise RejudgeError(f"{source}: no {results.GENERATIONS}; is this a bsa run dir?")
        files = rundir.read(source, lenient=True)  # its judgments are not needed: they are made anew
        if contract.GENERATIONS_JSONL in files.errors:
            raise files.errors[contract.GENERATIONS_JSONL]
        saved = files.hydra_file(contract.OVERRIDES_YAML)
        inherited = OmegaConf.to_container(OmegaConf.load(saved)) if saved.is_file() else []
        assert isinstance(inherited, list)
        extra = [f"dataset.path={dataset}"] if dataset else []
        merged = merge_overrides([str(o) for o in inherited], extra + overrides)
        composed = _compose(merged)
        cfg = composed.cfg
        rows, info = files.generations, files.info or {}
        provenance = {
            "format": "bsa run dir",
            "path": str(gen_path.resolve()),
            "sha256": data.file_sha256(gen_path),
            "rows": len(rows),
            "model": model_name or info.get("model") or cfg.model.name,
        }
        return Prepared(
            merged, composed.hydra_files, cfg, GivenGenerations(rows, provenance), _named(composed, overrides)
        )

    if not source.is_file():
        raise RejudgeError(f"{source}: no such run dir or file")
    if not dataset and not any(_key(o) == "dataset.path" for o in overrides):
        raise RejudgeError(
            f"{source}: an upstream results CSV needs the dataset its questions came from: --dataset FILE"
        )
    model = model_name or f"upstream:{source.stem}"
    # The model is not called: any model file serves; the paper's judge is the default as for any
    # non-demo model, and the user's overrides win.
    base = ["model=openai_compatible", f"model.name={model}", "model.api_base=null"]
    if dataset:
        base += ["dataset=bsa", f"dataset.path={dataset}"]
    merged = merge_overrides(base, overrides)
    composed = _compose(merged)
    cfg = composed.cfg
    queries, _ = data.load(cfg.dataset, cfg.cache.dir)
    by_id = {q.id: q for q in queries}
    rows, notes = upstream_generations(
        read_upstream_csv(source), set(by_id), cfg.sampling.k, model, str(source)
    )
    for r in rows:
        r["scenario"] = by_id[r["id"]].scenario
    provenance = {
        "format": "upstream batch CSV",
        "path": str(source.resolve()),
        "sha256": data.file_sha256(source),
        "rows": len(rows),
        "model": model,
        "notes": notes,
    }
    return Prepared(
        merged, composed.hydra_files, cfg, GivenGenerations(rows, provenance), _named(composed, overrides)
    )


def main(argv: list[str] | None = None, prog: str = "python -m bsa.rejudge") -> None:
    from bsa import console
    from bsa.__main__ import execute
    from bsa.compose import secret_overrides

    p = argparse.ArgumentParser(
        prog=prog,
        description="Judge an existing run's generations (or the upstream batch script's output CSV) again,\n"
        "with any judge or prompt set, without calling the model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Examples:\n  {prog} RUN_DIR judge=gpt4o judge.prompts=bsa hydra.run.dir=outputs/rejudged\n"
        f"  {prog} upstream_results.csv --dataset dataset.csv judge=gpt4o --out outputs/upstream",
    )
    p.add_argument("source", type=Path, help="a bsa run dir, or the upstream script's output CSV")
    p.add_argument(
        "overrides",
        nargs="*",
        help="config overrides, as bsa run takes them, e.g. judge=gpt4o judge.prompts=published; "
        "hydra.run.dir=DIR is the new run dir (as --out DIR)",
    )
    p.add_argument("--dataset", help="the dataset file the generations answer (needed for an upstream CSV)")
    p.add_argument(
        "--out",
        type=Path,
        help="the new run dir (default: hydra.run.dir=DIR if given, "
        "else outputs/<date>/<time>_rejudge_<source>)",
    )
    p.add_argument("--model-name", help="the name to record for the model that generated the answers")
    args = p.parse_intermixed_args(argv)
    secrets = secret_overrides(args.overrides)
    if secrets:
        p.error(f"{', '.join(secrets)} looks like a secret; put it in an environment variable instead")
    # Only hydra.run.dir is read: a re-judge composes the config but runs no Hydra job (no launcher,
    # no sweep), so any other hydra override would be ignored without a word.
    unread = [o for o in args.overrides if _key(o).split("/")[0].split(".")[0] == "hydra"]
    unread = [o for o in unread if _key(o) != "hydra.run.dir"]
    if unread:
        p.error(
            f"{', '.join(unread)}: a re-judge runs no Hydra job, so this would have no effect; of Hydra's "
            "settings it reads only hydra.run.dir=DIR, the new run dir (the same as --out DIR)"
        )
    try:
        prep = prepare(args.source, args.overrides, args.dataset, args.model_name)
    except (RejudgeError, ValueError, OSError) as e:
        console.console.print(f"[bold red]bsa.rejudge: {e}[/]")
        sys.exit(2)
    if args.out and prep.run_dir and args.out.resolve() != prep.run_dir.resolve():
        console.console.print(
            f"[bold red]bsa.rejudge: --out {args.out} and the overrides' run dir {prep.run_dir} differ; "
            "name the new run dir once[/]"
        )
        sys.exit(2)
    run_dir = args.out or prep.run_dir or _default_run_dir(args.source)
    if args.source.is_dir() and run_dir.resolve() == args.source.resolve():
        console.console.print(
            "[bold red]bsa.rejudge: the new run dir (--out, hydra.run.dir) must not be the source run[/]"
        )
        sys.exit(2)
    given = prep.given
    console.console.print(
        f"Re-judging {given.provenance['rows']} generations of {args.source} "
        f"(sha256 {given.provenance['sha256'][:12]}); no model call is made."
    )
    for note in given.provenance.get("notes", []):
        console.console.print(f"[yellow]{note}[/]")
    # The report and a later resume read the composed config from .hydra/, as for python -m bsa.
    execute(prep.cfg, run_dir, given, prep.hydra_files)


if __name__ == "__main__":
    main()
