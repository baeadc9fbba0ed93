"""bsa.data: label parsing, validation errors (exact messages), file formats, selection, loading."""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bsa.config import CATEGORIES, SCENARIOS, DatasetConfig
from bsa.data import COLUMNS, DEMO_PATH, DatasetError, Query, load, parse_label, read, select, validate

RO, CS, OS = SCENARIOS
PREFIX = {RO: "ro", CS: "cs", OS: "os"}
EXPECTED_COLUMNS = "id, query, risk_summary, dataset_name, label"


def record(
    qid: str, scenario: str = RO, label: str = "Rumors-Fabricated News", **over: Any
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": qid,
        "query": f"synthetic query {qid}",
        "risk_summary": f"synthetic risk {qid}",
        "dataset_name": scenario,
        "label": label,
    }
    rec.update(over)
    return rec


def synthetic_records(n_ro: int, n_cs: int, n_os: int) -> list[dict[str, Any]]:
    """Made-up rows (never benchmark rows): categories cycle through CATEGORIES; CS rows carry two."""
    recs: list[dict[str, Any]] = []
    for scenario, n in ((RO, n_ro), (CS, n_cs), (OS, n_os)):
        for i in range(n):
            a, b = CATEGORIES[i % len(CATEGORIES)], CATEGORIES[(i + 1) % len(CATEGORIES)]
            label = f"Query A: {a}-Sub\nQuery B: {b}-Sub" if scenario == CS else f"{a}-Sub"
            recs.append(record(f"{PREFIX[scenario]}-{i:03d}", scenario, label))
    return recs


def write_csv(path: Path, recs: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(recs)
    return path


def write_jsonl(path: Path, recs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def read_error(path: Path) -> str:
    with pytest.raises(DatasetError) as info:
        read(path)
    return str(info.value)


def queries(n_ro: int = 30, n_cs: int = 60, n_os: int = 10) -> list[Query]:
    return validate(synthetic_records(n_ro, n_cs, n_os), "synthetic")


# --- parse_label -----------------------------------------------------------------------------------


def test_parse_label_single() -> None:
    assert parse_label("Rumors-Fabricated News") == ("Rumors",)
    assert parse_label("Invasion of Privacy and Confidentiality-Invasion of Personal Privacy") == (
        "Invasion of Privacy and Confidentiality",
    )


def test_parse_label_query_a_and_b() -> None:
    label = "Query A: Violence and Terrorism-Weapons\nQuery B: Ethics and Morality-Deception"
    assert parse_label(label) == ("Violence and Terrorism", "Ethics and Morality")


def test_parse_label_tolerates_crlf_blank_lines_and_case() -> None:
    label = "query a:  Rumors-X\r\n\r\nQUERY B:Pornography-Y\r\n"
    assert parse_label(label) == ("Rumors", "Pornography")


def test_parse_label_same_category_twice_is_kept_twice() -> None:
    # Deduplication is the metrics' job (a category counts a query once); the label keeps both lines.
    assert parse_label("Query A: Rumors-X\nQuery B: Rumors-Y") == ("Rumors", "Rumors")


def test_parse_label_empty() -> None:
    assert parse_label("") == ()
    assert parse_label("  \n ") == ()


# --- validate / read errors ------------------------------------------------------------------------


def test_validate_returns_typed_queries() -> None:
    qs = validate([record(" q1 ", CS, "Query A: Rumors-X\nQuery B: Pornography-Y")], "mem")
    assert qs == [
        Query(
            id="q1",
            query="synthetic query  q1 ",
            risk_summary="synthetic risk  q1 ",
            scenario=CS,
            label="Query A: Rumors-X\nQuery B: Pornography-Y",
            categories=("Rumors", "Pornography"),
        )
    ]


def test_missing_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [record("a")], columns=COLUMNS[:-1])
    assert read_error(path) == (
        f"{path}: missing column(s) 'label'; found 'id', 'query', 'risk_summary', 'dataset_name'; "
        f"expected {EXPECTED_COLUMNS}"
    )


def test_unknown_scenario_names_row_value_and_choices(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [record("a"), record("b", "Risk omision")])
    assert read_error(path) == (
        f"{path}: row 2, column 'dataset_name': 'Risk omision' is not one of "
        "Risk Omission, Cognitive Shortcut, Over Sensitivity"
    )


def test_empty_query(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [record("a", query="   ")])
    assert read_error(path) == f"{path}: row 1, column 'query': empty query (id a)"


def test_empty_id() -> None:
    with pytest.raises(DatasetError, match=r"^mem: row 1, column 'id': empty id$"):
        validate([record("  ")], "mem")


def test_empty_label() -> None:
    with pytest.raises(DatasetError, match=r"^mem: row 1, column 'label': empty label \(id a\)$"):
        validate([record("a", label="")], "mem")


def test_duplicate_id_names_both_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [record("a"), record("b"), record("a")])
    assert read_error(path) == f"{path}: row 3, column 'id': duplicate id 'a' (first at row 1)"


def test_non_string_value_in_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [record("a"), record(7)])  # type: ignore[arg-type]
    # "a int" / "an int": the article is cosmetic, the rest is the contract.
    assert re.fullmatch(
        re.escape(f"{path}: row 2, column 'id': value is ") + r"an? int, not text", read_error(path)
    )


def test_null_value_in_jsonl_is_missing(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [record("a", risk_summary=None)])
    assert read_error(path) == f"{path}: row 1, column 'risk_summary': value is missing"


def test_jsonl_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(record("a")) + "\n{broken\n", encoding="utf-8")
    assert read_error(path).startswith(f"{path}: line 2 is not valid JSON (")
    path.write_text("[1, 2]\n", encoding="utf-8")
    assert read_error(path) == f"{path}: line 1 is not a JSON object"


def test_wrong_encoding(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    header = ",".join(COLUMNS) + "\n"
    path.write_bytes((header + "a,caf\u00e9 query,risk,Risk Omission,Rumors-X\n").encode("latin-1"))
    offset = len(header) + len("a,caf")
    assert read_error(path) == (
        f"{path}: not UTF-8 (invalid byte 0xe9 at offset {offset}); re-save the file as UTF-8"
    )


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    write_csv(path, [record("a")])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert [q.id for q in read(path)] == ["a"]


@pytest.mark.parametrize("content", [b"", ("\ufeff" + ",".join(COLUMNS) + "\n").encode()])
def test_empty_file_or_header_only(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    assert read_error(path) == f"{path}: the file has no rows; expected columns {EXPECTED_COLUMNS}"


def test_empty_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    assert read_error(path) == f"{path}: the file has no rows; expected columns {EXPECTED_COLUMNS}"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    assert read_error(path) == f"{path}: no such file; check dataset.path"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert read_error(tmp_path) == f"{tmp_path}: is a directory, not a dataset file"


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(b"this is not parquet")
    assert read_error(path).startswith(f"{path}: not a readable Parquet file (")


# --- formats ---------------------------------------------------------------------------------------


def test_csv_jsonl_and_parquet_load_the_same_rows(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    recs = synthetic_records(3, 4, 2)
    recs[0]["query"] = 'A query with "quotes", commas,\nand a newline — and unicode: café'
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "d.parquet")
    loaded = {
        "csv": read(write_csv(tmp_path / "d.csv", recs)),
        "jsonl": read(write_jsonl(tmp_path / "d.jsonl", recs)),
        "ndjson": read(write_jsonl(tmp_path / "d.ndjson", recs)),
        "parquet": read(tmp_path / "d.parquet"),
    }
    assert len(loaded["csv"]) == 9
    assert loaded["csv"][0].query == recs[0]["query"]
    for fmt, qs in loaded.items():
        assert qs == loaded["csv"], fmt


# --- select ----------------------------------------------------------------------------------------


def ids(qs: list[Query]) -> list[str]:
    return [q.id for q in qs]


def test_select_without_filters_keeps_everything_in_order() -> None:
    qs = queries()
    assert select(qs, DatasetConfig()) == qs


def test_select_by_scenarios() -> None:
    out = select(queries(), DatasetConfig(scenarios=[OS, RO]))
    assert Counter(q.scenario for q in out) == {RO: 30, OS: 10}


def test_select_by_categories_matches_either_cs_category() -> None:
    qs = queries()
    out = select(qs, DatasetConfig(categories=["Rumors"]))
    assert out
    assert all("Rumors" in q.categories for q in out)
    assert {q.id for q in out} == {q.id for q in qs if "Rumors" in q.categories}
    # A CS row with Rumors as its *second* category is selected too.
    assert any(q.scenario == CS and q.categories[1] == "Rumors" for q in out)


def test_select_by_ids() -> None:
    qs = queries()
    out = select(qs, DatasetConfig(ids=["os-001", "ro-000"]))
    assert ids(out) == ["ro-000", "os-001"]  # dataset order, not the order asked


def test_select_unknown_id_is_an_error() -> None:
    with pytest.raises(DatasetError) as info:
        select(queries(), DatasetConfig(ids=["ro-000", "nope"]))
    assert str(info.value) == "dataset.ids: not in the (filtered) data: nope"


def test_select_id_filtered_out_by_scenario_is_an_error() -> None:
    with pytest.raises(DatasetError, match="not in the \\(filtered\\) data: ro-000"):
        select(queries(), DatasetConfig(scenarios=[CS], ids=["ro-000"]))


def test_select_unknown_scenario_name() -> None:
    with pytest.raises(DatasetError) as info:
        select(queries(), DatasetConfig(scenarios=["Risk omision"]))
    assert str(info.value) == (
        "dataset.scenarios: unknown 'Risk omision'; expected any of "
        "Risk Omission, Cognitive Shortcut, Over Sensitivity"
    )


def test_select_unknown_category_name() -> None:
    with pytest.raises(DatasetError) as info:
        select(queries(), DatasetConfig(categories=["Rumours"]))
    assert str(info.value).startswith("dataset.categories: unknown 'Rumours'; expected any of ")
    assert "Rumors" in str(info.value)


@pytest.mark.parametrize(("limit", "expected"), [(10, {RO: 3, CS: 6, OS: 1}), (7, {RO: 2, CS: 4, OS: 1})])
def test_limit_is_stratified_by_scenario(limit: int, expected: dict[str, int]) -> None:
    # 30/60/10 of 100. limit 10: quotas 3, 6, 1 exactly. limit 7: quotas 2.1, 4.2, 0.7 -> floors
    # 2, 4, 0 and the one left over goes to the largest remainder (OS, 0.7).
    out = select(queries(), DatasetConfig(limit=limit, seed=1))
    assert len(out) == limit
    assert dict(Counter(q.scenario for q in out)) == expected


def test_limit_is_seeded() -> None:
    qs = queries()
    a = select(qs, DatasetConfig(limit=10, seed=1))
    assert ids(select(qs, DatasetConfig(limit=10, seed=1))) == ids(a)
    assert ids(select(qs, DatasetConfig(limit=10, seed=2))) != ids(a)
    order = {q.id: i for i, q in enumerate(qs)}
    assert [order[i] for i in ids(a)] == sorted(order[i] for i in ids(a))


def test_limit_at_or_above_size_keeps_all() -> None:
    qs = queries()
    assert select(qs, DatasetConfig(limit=100)) == qs
    assert select(qs, DatasetConfig(limit=500)) == qs


def test_per_scenario_limit() -> None:
    out = select(queries(n_ro=30, n_cs=60, n_os=3), DatasetConfig(per_scenario_limit=5, seed=4))
    assert dict(Counter(q.scenario for q in out)) == {RO: 5, CS: 5, OS: 3}  # OS has only 3


def test_per_scenario_limit_then_limit() -> None:
    out = select(queries(), DatasetConfig(per_scenario_limit=10, limit=6, seed=0))
    assert dict(Counter(q.scenario for q in out)) == {RO: 2, CS: 2, OS: 2}


@pytest.mark.parametrize("field", ["limit", "per_scenario_limit"])
def test_non_positive_limits_are_errors(field: str) -> None:
    with pytest.raises(DatasetError) as info:
        select(queries(), DatasetConfig(**{field: 0}))
    assert str(info.value) == f"dataset.{field}=0: must be at least 1 (or null for all)"


def test_filters_selecting_nothing_are_an_error() -> None:
    with pytest.raises(DatasetError, match="the filters select no query"):
        select(queries(n_os=0), DatasetConfig(scenarios=[OS]))


# --- load ------------------------------------------------------------------------------------------


def test_load_demo(tmp_path: Path) -> None:
    if not DEMO_PATH.is_file():
        pytest.skip(f"demo data not there yet: {DEMO_PATH}")
    qs, path = load(DatasetConfig(demo=True), str(tmp_path))
    assert path == DEMO_PATH
    assert qs
    assert {q.scenario for q in qs} <= set(SCENARIOS)
    assert all(set(q.categories) <= set(CATEGORIES) for q in qs)
    assert not (tmp_path / "datasets").exists()  # a local file: nothing downloaded


def test_load_path_wins_over_demo(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "mine.csv", [record("only")])
    qs, used = load(DatasetConfig(path=str(path), demo=True), str(tmp_path))
    assert (ids(qs), used) == (["only"], path)


def test_load_without_a_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"^dataset: no source; set dataset.path=FILE"):
        load(DatasetConfig(), str(tmp_path))


# --- the real benchmark file -----------------------------------------------------------------------


def benchmark_path() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "bsa" / "dataset.csv"
    candidates = [default] + ([Path(os.environ["BSA_DATASET"])] if os.environ.get("BSA_DATASET") else [])
    for p in candidates:
        if p.is_file():
            return p
    pytest.skip(f"BSA dataset not found at {default}: set BSA_DATASET to the benchmark CSV")


def test_real_dataset_shape() -> None:
    qs = read(benchmark_path())
    assert len(qs) == 2000
    assert dict(Counter(q.scenario for q in qs)) == {RO: 600, CS: 1200, OS: 200}
    assert all(len(q.categories) == 2 for q in qs if q.scenario == CS)
    assert all(len(q.categories) == 1 for q in qs if q.scenario != CS)
    unknown = {c for q in qs for c in q.categories} - set(CATEGORIES)
    assert not unknown, f"categories outside config.CATEGORIES: {sorted(unknown)}"
