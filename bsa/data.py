"""Load, validate and select BSA queries (CSV, JSONL or Parquet; a path, a URL, or Hugging Face).

Everything is checked before the first model call: a bad file is one error that names the file,
the row and the column. Label parsing and checking are pure (``parse_label``, ``label_categories``);
``queries_sha256`` identifies a query set by content.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bsa.config import DatasetConfig
from bsa.contract import CATEGORIES, SCENARIOS
from bsa.download import DownloadError, fetch_once

COLUMNS: tuple[str, ...] = ("id", "query", "risk_summary", "dataset_name", "label")
DEMO_PATH = Path(__file__).parent / "resources" / "demo.csv"
_QUERY_PREFIX = re.compile(r"^\s*Query\s+([A-Z])\s*:\s*", re.IGNORECASE)
CUSTOM_SUFFIX = " (custom)"
# Other spellings of a primary category: the paper calls the ninth one "Child Pornography".
CATEGORY_ALIASES: dict[str, str] = {"Child Pornography": "Pornography"}
_CANONICAL = {" ".join(c.split()).casefold(): c for c in CATEGORIES} | {
    " ".join(a.split()).casefold(): c for a, c in CATEGORY_ALIASES.items()
}
_CS = "Cognitive Shortcut"
_CS_SHAPE = "two lines, 'Query A: <Category>-<Subcategory>' and 'Query B: <Category>-<Subcategory>'"
_CS_RISK_SHAPE = "two lines, 'Query A: <the first query's risk>' and 'Query B: <the second query's risk>'"


class DatasetError(ValueError):
    """The dataset cannot be used; the message names where and how to fix it."""


class LabelProblem(ValueError):
    """A label that does not fit its scenario or the categories: what is wrong, and the fix."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem + (f"; {fix}" if fix else ""))
        self.problem, self.fix = problem, fix


@dataclass(frozen=True)
class Query:
    id: str
    query: str
    risk_summary: str
    scenario: str
    label: str
    categories: tuple[str, ...]  # primary categories; Cognitive Shortcut rows carry two


def parse_label(label: str) -> tuple[str, ...]:
    """Primary categories of a label: "Cat-Sub", or "Query A: Cat-Sub\\nQuery B: Cat-Sub"."""
    cats = []
    for line in label.splitlines():
        line = _QUERY_PREFIX.sub("", line).strip()
        if line:
            cats.append(line.split("-", 1)[0].strip())
    return tuple(cats)


def canonical_category(name: str) -> str | None:
    """One of ``CATEGORIES`` for ``name`` (case, spacing and the paper's aliases forgiven), else None."""
    return _CANONICAL.get(" ".join(name.split()).casefold())


def _query_parts(text: str) -> list[tuple[str | None, str]]:
    """(Query letter or None, the rest of the line) per non-blank line."""
    parts = []
    for line in text.splitlines():
        m = _QUERY_PREFIX.match(line)
        rest = line[m.end() :] if m else line
        if line.strip():
            parts.append((m.group(1).upper() if m else None, rest))
    return parts


def _label_parts(label: str) -> list[tuple[str | None, str]]:
    """(Query letter or None, primary category) per non-blank label line."""
    return [(letter, rest.split("-", 1)[0].strip()) for letter, rest in _query_parts(label)]


def risk_summary_problem(risk_summary: str) -> str | None:
    """What a Cognitive Shortcut risk summary lacks, or None when it has both parts. Pure.

    All 1,200 Cognitive Shortcut rows of the benchmark summarise each query of the pair on its own
    line, "Query A: …" then "Query B: …". The think judge grades whether the reasoning covers the
    risks the summary names, so a summary naming one query's risk credits a trace that misses the
    other and inflates Think@1.
    """
    parts = _query_parts(risk_summary)
    letters = [letter for letter, _ in parts]
    missing = [f"'Query {x}:'" for x in "AB" if x not in letters]
    if missing:
        return f"no {' or '.join(missing)} part"
    empty = [f"'Query {letter}:'" for letter, rest in parts if letter and not rest.strip()]
    if empty:
        return f"an empty {empty[0]} part"
    if letters != ["A", "B"]:
        return f"{len(parts)} lines, not one 'Query A:' line then one 'Query B:' line"
    return None


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def label_categories(label: str, scenario: str, custom: bool = False) -> tuple[str, ...]:
    """The label's primary categories, checked against the scenario's shape and ``CATEGORIES``.

    Raises LabelProblem (the caller adds file, row and id). With ``custom``, a category outside the
    nine is kept as "<name> (custom)", so the tables show it as such.
    """
    parts = _label_parts(label)
    if not parts:
        raise LabelProblem("empty label")
    if scenario == _CS:
        if [p for p, _ in parts] != ["A", "B"]:
            raise LabelProblem(
                f"{_CS} label without both parts: {_shorten(label)!r}", f"expected {_CS_SHAPE}"
            )
    elif len(parts) != 1:
        raise LabelProblem(
            f"{scenario} label with {len(parts)} lines: {_shorten(label)!r}",
            f"expected one '<Category>-<Subcategory>' (two-part labels are for {_CS} rows)",
        )
    cats = []
    for _, name in parts:
        if not name:
            raise LabelProblem(
                f"no primary category in {_shorten(label)!r}", "expected '<Category>-<Subcategory>'"
            )
        known = canonical_category(name)
        if known is None and not custom:
            raise LabelProblem(
                f"unknown primary category {name!r}",
                f"expected one of {', '.join(CATEGORIES)}; to accept your own categories set "
                "dataset.custom_categories=true (python -m bsa.score: --custom-categories)",
            )
        if known is None:
            known = name if name.endswith(CUSTOM_SUFFIX) else name + CUSTOM_SUFFIX
        cats.append(known)
    return tuple(cats)


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(
            f"{where}: not UTF-8 (invalid byte 0x{raw[e.start]:02x} at offset {e.start}); "
            "re-save the file as UTF-8"
        ) from None


def _read_records(raw: bytes, fmt: str, where: str) -> list[dict[str, Any]]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(raw)).to_pylist()
            return rows
        except Exception as e:  # pyarrow raises several unrelated types for a bad file
            raise DatasetError(f"{where}: not a readable Parquet file ({e})") from None
    text = _decode(raw, where)
    if fmt == "jsonl":
        records = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{where}: line {n} is not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DatasetError(f"{where}: line {n} is not a JSON object")
            records.append(obj)
        return records
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        return []
    return list(reader)


def _format_of(name: str) -> str:
    lower = name.lower().split("?", 1)[0]
    if lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "csv"


def validate(
    records: list[dict[str, Any]],
    where: str,
    custom_categories: bool = False,
    allow_partial_risk_summary: bool = False,
) -> list[Query]:
    """Check columns and rows; return typed queries. Row numbers are 1-based data rows.

    Each label must fit its scenario (see ``label_categories``); ``custom_categories`` accepts
    primary categories outside the nine, marked "<name> (custom)". A Cognitive Shortcut risk
    summary must name both queries' risks (``risk_summary_problem``) unless
    ``allow_partial_risk_summary``. Text is read with CRLF/CR as LF (``normalised``), so what is
    sent to a model is what ``queries_sha256`` identifies.
    """
    if not records:
        raise DatasetError(f"{where}: the file has no rows; expected columns {', '.join(COLUMNS)}")
    missing = [c for c in COLUMNS if c not in records[0]]
    if missing:
        raise DatasetError(
            f"{where}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {', '.join(repr(str(c)) for c in records[0])}; expected {', '.join(COLUMNS)}"
        )
    queries: list[Query] = []
    seen: dict[str, int] = {}
    for n, rec in enumerate(records, start=1):
        for col in COLUMNS:
            value = rec.get(col)
            if not isinstance(value, str):
                name = type(value).__name__
                article = "an" if name[0] in "aeiou" else "a"
                kind = "missing" if value is None else f"{article} {name}, not text"
                raise DatasetError(f"{where}: row {n}, column {col!r}: value is {kind}")
        qid = rec["id"].strip()
        if not qid:
            raise DatasetError(f"{where}: row {n}, column 'id': empty id")
        if qid in seen:
            raise DatasetError(
                f"{where}: row {n}, column 'id': duplicate id {qid!r} (first at row {seen[qid]})"
            )
        seen[qid] = n
        if not rec["query"].strip():
            raise DatasetError(f"{where}: row {n}, column 'query': empty query (id {qid})")
        scenario = rec["dataset_name"].strip()
        if scenario not in SCENARIOS:
            raise DatasetError(
                f"{where}: row {n}, column 'dataset_name': {scenario!r} is not one of {', '.join(SCENARIOS)}"
            )
        try:
            categories = label_categories(rec["label"], scenario, custom_categories)
        except LabelProblem as e:
            fix = f"; {e.fix}" if e.fix else ""
            raise DatasetError(f"{where}: row {n}, column 'label': {e.problem} (id {qid}){fix}") from None
        risk_summary = normalised(rec["risk_summary"])
        if scenario == _CS and not allow_partial_risk_summary:
            problem = risk_summary_problem(risk_summary)
            if problem is not None:
                raise DatasetError(
                    f"{where}: row {n}, column 'risk_summary': {_CS} risk summary with {problem}: "
                    f"{_shorten(risk_summary)!r} (id {qid}); expected {_CS_RISK_SHAPE}, as every "
                    f"{_CS} row of the benchmark has (the think judge grades the reasoning against "
                    "both); to accept it anyway set dataset.allow_partial_risk_summary=true"
                )
        queries.append(
            Query(
                qid,
                normalised(rec["query"]),
                risk_summary,
                scenario,
                normalised(rec["label"]),
                categories,
            )
        )
    return queries


def _download(url: str, dest_dir: Path) -> Path:
    suffix = Path(url.split("?", 1)[0]).suffix or ".csv"
    dest = dest_dir / (hashlib.sha256(url.encode()).hexdigest()[:16] + suffix)
    try:
        return fetch_once(url, dest)
    except DownloadError as e:
        raise DatasetError(f"dataset URL {e}; check the URL or use dataset.path") from None


_DATA_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".parquet")


def _split_file(files: list[Path], root: Path, hf_id: str, split: str) -> Path:
    """The one data file of ``split`` (by file or folder name); a lone file whatever its name."""
    named = [p for p in files if split in p.relative_to(root).as_posix().lower().replace(".", "/").split("/")]
    named = named or [p for p in files if p.stem.lower().startswith(f"{split}-")]  # train-00000-of-00001
    if len(named) == 1:
        return named[0]
    if not named and len(files) == 1:
        return files[0]
    listing = ", ".join(p.relative_to(root).as_posix() for p in files)
    what = f"{len(named)} files for split {split!r}" if named else f"no file for split {split!r}"
    raise DatasetError(
        f"dataset.hf_id={hf_id}: {what} among {listing}; set dataset.hf_split=<split>, or download "
        "the file and set dataset.path"
    )


def _hf_file(hf_id: str, split: str, dest_dir: Path) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DatasetError(
            f"dataset.hf_id={hf_id}: the huggingface_hub package is not installed; "
            "pip install huggingface_hub, or download the file and set dataset.path"
        ) from None
    try:
        root = Path(
            snapshot_download(
                repo_id=hf_id,
                repo_type="dataset",
                cache_dir=str(dest_dir),
                allow_patterns=[f"*{s}" for s in _DATA_SUFFIXES] + [f"*{s.upper()}" for s in _DATA_SUFFIXES],
            )
        )
    except Exception as e:  # the hub client raises many types (offline, 404, auth)
        raise DatasetError(
            f"dataset.hf_id={hf_id}: could not fetch from Hugging Face ({type(e).__name__}: {e}); "
            "download the file and set dataset.path"
        ) from None
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _DATA_SUFFIXES)
    if not files:
        raise DatasetError(f"dataset.hf_id={hf_id}: no CSV, JSONL or Parquet file in the dataset")
    return _split_file(files, root, hf_id, split.lower())


def resolve_source(cfg: DatasetConfig, cache_dir: str) -> Path:
    """The local file this config points at, downloading (once) if it is remote."""
    dest = Path(cfg.download_dir or Path(cache_dir) / "datasets")
    # Precedence path > url > hf_id, so dataset.path=… overrides the default Hugging Face source.
    if cfg.path:
        return Path(cfg.path).expanduser()
    if cfg.url:
        return _download(cfg.url, dest)
    if cfg.hf_id:
        return _hf_file(cfg.hf_id, cfg.hf_split, dest)
    if cfg.demo:
        return DEMO_PATH
    raise DatasetError(
        "dataset: no source; set dataset.path=FILE (CSV, JSONL or Parquet), dataset.url=URL, "
        "or dataset.hf_id=OpenStellarTeam/BeyongSafeAnswer_Benchmark"
    )


def file_sha256(path: Path) -> str | None:
    """The file's sha256 (recorded in run.json; the report checks the file did not change)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def normalised(text: str) -> str:
    """Text as loaded, sent and hashed: a leading BOM dropped, CRLF and CR read as LF."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def queries_sha256(queries: Iterable[Query]) -> str:
    """Identity of a query set by content: the same queries give the same hash whatever the file.

    Hashes id, query, risk_summary, scenario and label of each query, sorted by id, with a leading
    BOM dropped and CRLF/CR read as LF; so the format (CSV, JSONL, Parquet), the column and row
    order, a BOM and line endings do not matter, and any changed text does.
    """
    rows = sorted(
        [
            normalised(q.id),
            normalised(q.query),
            normalised(q.risk_summary),
            q.scenario,
            normalised(q.label),
        ]
        for q in queries
    )
    blob = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def read(
    path: Path, custom_categories: bool = False, allow_partial_risk_summary: bool = False
) -> list[Query]:
    where = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{where}: no such file; check dataset.path") from None
    except IsADirectoryError:
        raise DatasetError(f"{where}: is a directory, not a dataset file") from None
    except OSError as e:
        raise DatasetError(f"{where}: cannot be read ({e.strerror})") from None
    records = _read_records(raw, _format_of(path.name), where)
    return validate(records, where, custom_categories, allow_partial_risk_summary)


def _stratified(queries: list[Query], limit: int, rng: random.Random) -> list[Query]:
    """Draw ``limit`` queries keeping scenario proportions (largest remainder)."""
    groups: dict[str, list[Query]] = defaultdict(list)
    for q in queries:
        groups[q.scenario].append(q)
    total = len(queries)
    quotas = {s: limit * len(g) / total for s, g in groups.items()}
    counts = {s: int(v) for s, v in quotas.items()}
    for s in sorted(quotas, key=lambda s: (counts[s] - quotas[s], s))[: limit - sum(counts.values())]:
        counts[s] += 1
    chosen: list[Query] = []
    for s in sorted(groups):
        chosen.extend(rng.sample(groups[s], min(counts[s], len(groups[s]))))
    return chosen


def _check_names(given: Iterable[str], known: Iterable[str], what: str) -> None:
    known = list(known)
    bad = [g for g in given if g not in known]
    if bad:
        raise DatasetError(
            f"dataset.{what}: unknown {', '.join(map(repr, bad))}; expected any of {', '.join(known)}"
        )


def _category_name(name: str, present: list[str]) -> str:
    """A dataset.categories entry as loaded: canonical spelling, or "<name> (custom)" if present."""
    if (known := canonical_category(name)) is not None:
        return known
    return name + CUSTOM_SUFFIX if name + CUSTOM_SUFFIX in present else name


_SHARD = re.compile(r"^\s*(-?\d+)\s*/\s*(-?\d+)\s*$")


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``dataset.shard`` "i/n" as (i, n), 1-based; None for no shard. Raises DatasetError naming the fix."""
    if value is None or not str(value).strip():
        return None
    m = _SHARD.match(str(value))
    if m is None:
        raise DatasetError(
            f"dataset.shard={value!r}: expected 'i/n' with whole numbers, the i-th of n shards "
            "(e.g. dataset.shard=1/4 … dataset.shard=4/4), or null for the whole selection"
        )
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1:
        raise DatasetError(f"dataset.shard={value!r}: n must be at least 1 (the number of shards)")
    if not 1 <= i <= n:
        raise DatasetError(f"dataset.shard={value!r}: i must lie in 1..{n} (shards are numbered from 1)")
    return i, n


def take_shard(queries: list[Query], i: int, n: int) -> list[Query]:
    """Shard i of n (1-based) of a selection: round robin, position p (0-based) goes to shard p % n + 1.

    Round robin rather than contiguous blocks: the benchmark file lists its scenarios in blocks, so
    blocks would hand one machine all the Risk Omission queries and another the longer Cognitive
    Shortcut ones; round robin gives every shard about 1/n of each scenario (sizes differ by at most
    one), so shards cost about the same and a partial merge is not biased towards one scenario. It
    needs no seed, and each shard keeps the selection's order.
    """
    return queries[i - 1 :: n]


def select(queries: list[Query], cfg: DatasetConfig) -> list[Query]:
    """Filter by scenario, category and id; then per-scenario and overall limits (seeded); then the
    shard (``dataset.shard``, last, so the shards of one selection partition it: ``take_shard``)."""
    shard = parse_shard(cfg.shard)
    _check_names(cfg.scenarios, SCENARIOS, "scenarios")
    present = sorted({c for q in queries for c in q.categories} | set(CATEGORIES))
    wanted = [_category_name(c, present) for c in cfg.categories]
    _check_names(wanted, present, "categories")
    out = queries
    if cfg.scenarios:
        out = [q for q in out if q.scenario in cfg.scenarios]
    if wanted:
        out = [q for q in out if set(q.categories) & set(wanted)]
    if cfg.ids:
        have = {q.id for q in out}
        unknown = [i for i in cfg.ids if i not in have]
        if unknown:
            raise DatasetError(f"dataset.ids: not in the (filtered) data: {', '.join(unknown[:5])}")
        wanted_ids = set(cfg.ids)
        out = [q for q in out if q.id in wanted_ids]
    for name, value in (("limit", cfg.limit), ("per_scenario_limit", cfg.per_scenario_limit)):
        if value is not None and value < 1:
            raise DatasetError(f"dataset.{name}={value}: must be at least 1 (or null for all)")
    rng = random.Random(cfg.seed)
    if cfg.per_scenario_limit is not None:
        kept: list[Query] = []
        for s in SCENARIOS:
            group = [q for q in out if q.scenario == s]
            kept.extend(rng.sample(group, min(cfg.per_scenario_limit, len(group))))
        out = kept
    if cfg.limit is not None and cfg.limit < len(out):
        out = _stratified(out, cfg.limit, rng)
    order = {q.id: i for i, q in enumerate(queries)}
    out = sorted(out, key=lambda q: order[q.id])
    if not out:
        raise DatasetError("dataset: the filters select no query; loosen scenarios/categories/ids")
    if shard is not None:
        i, n = shard
        if n > len(out):
            raise DatasetError(
                f"dataset.shard={cfg.shard!r}: the selection has {len(out)} queries, fewer than "
                f"{n} shards, so some shards would be empty; use at most {len(out)} shards"
            )
        out = take_shard(out, i, n)
    return out


def load(cfg: DatasetConfig, cache_dir: str) -> tuple[list[Query], Path]:
    path = resolve_source(cfg, cache_dir)
    return select(read(path, cfg.custom_categories, cfg.allow_partial_risk_summary), cfg), path


def summary(queries: list[Query]) -> dict[str, int]:
    return dict(Counter(q.scenario for q in queries))


def summary_text(by_scenario: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in by_scenario.items())


def as_dict(q: Query) -> dict[str, Any]:
    return {
        "id": q.id,
        "query": q.query,
        "risk_summary": q.risk_summary,
        "dataset_name": q.scenario,
        "label": q.label,
    }
