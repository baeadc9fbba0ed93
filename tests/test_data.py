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
from bsa.data import (
    COLUMNS,
    CUSTOM_SUFFIX,
    DEMO_PATH,
    DatasetError,
    LabelProblem,
    Query,
    as_dict,
    label_categories,
    load,
    parse_label,
    queries_sha256,
    read,
    risk_summary_problem,
    select,
    validate,
)

RO, CS, OS = SCENARIOS
PREFIX = {RO: "ro", CS: "cs", OS: "os"}
EXPECTED_COLUMNS = "id, query, risk_summary, dataset_name, label"


def record(
    qid: str, scenario: str = RO, label: str = "Rumors-Fabricated News", **over: Any
) -> dict[str, Any]:
    # A Cognitive Shortcut summary names each query's risk on its own line, as the benchmark's do.
    risk = (
        f"Query A: synthetic risk {qid}\nQuery B: other risk {qid}"
        if scenario == CS
        else f"synthetic risk {qid}"
    )
    rec: dict[str, Any] = {
        "id": qid,
        "query": f"synthetic query {qid}",
        "risk_summary": risk,
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
            risk_summary="Query A: synthetic risk  q1 \nQuery B: other risk  q1 ",
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
    # The real rows pass the strict checks as they are: no alias, no custom category needed.
    assert not any(c.endswith(CUSTOM_SUFFIX) for q in qs for c in q.categories)
    assert {c for q in qs for c in q.categories} == set(CATEGORIES)


def test_real_dataset_hash_is_the_same_in_every_format(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    src = benchmark_path()
    qs = read(src)
    recs = [as_dict(q) for q in qs]
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "d.parquet")
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(b"\xef\xbb\xbf" + src.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    digest = queries_sha256(qs)
    assert queries_sha256(read(write_jsonl(tmp_path / "d.jsonl", recs))) == digest
    assert queries_sha256(read(tmp_path / "d.parquet")) == digest
    assert queries_sha256(read(crlf)) == digest
    assert queries_sha256(qs[1:]) != digest


def test_every_real_cognitive_shortcut_risk_summary_has_both_parts() -> None:
    qs = [q for q in read(benchmark_path()) if q.scenario == CS]
    assert len(qs) == 1200
    assert [q.id for q in qs if risk_summary_problem(q.risk_summary) is not None] == []


# --- risk summary checks: a Cognitive Shortcut row names both queries' risks ------------------------

CS_LABEL = "Query A: Rumors-X\nQuery B: Pornography-Y"
RISK_FIX = (
    "expected two lines, 'Query A: <the first query's risk>' and 'Query B: <the second query's risk>', "
    "as every Cognitive Shortcut row of the benchmark has (the think judge grades the reasoning against "
    "both); to accept it anyway set dataset.allow_partial_risk_summary=true"
)


@pytest.mark.parametrize(
    ("summary", "problem"),
    [
        ("Query A: spreads a false rumour", "no 'Query B:' part"),
        ("Query B: shares explicit images", "no 'Query A:' part"),
        ("One risk for the whole pair", "no 'Query A:' or 'Query B:' part"),
        ("", "no 'Query A:' or 'Query B:' part"),
        ("Query A: spreads a rumour\nQuery B:   ", "an empty 'Query B:' part"),
        ("Query B: images\nQuery A: rumour", "2 lines, not one 'Query A:' line then one 'Query B:' line"),
        ("Query A: rumour\nand more\nQuery B: images", "3 lines, not one 'Query A:' line then one"),
    ],
)
def test_risk_summary_problem_names_what_is_missing(summary: str, problem: str) -> None:
    assert (risk_summary_problem(summary) or "").startswith(problem)


@pytest.mark.parametrize(
    "summary",
    ["Query A: rumour\nQuery B: images", "query a:  rumour\r\n\r\nQUERY B:images\r\n"],
)
def test_risk_summary_with_both_parts_passes(summary: str) -> None:
    assert risk_summary_problem(summary) is None


def test_cs_risk_summary_naming_one_query_is_refused_with_row_id_and_fix(tmp_path: Path) -> None:
    one = record("b", CS, CS_LABEL, risk_summary="Query A: spreads a false rumour")
    path = write_csv(tmp_path / "d.csv", [record("a"), one])
    assert read_error(path) == (
        f"{path}: row 2, column 'risk_summary': Cognitive Shortcut risk summary with no 'Query B:' "
        f"part: 'Query A: spreads a false rumour' (id b); {RISK_FIX}"
    )


def test_partial_risk_summary_is_loaded_only_when_allowed(tmp_path: Path) -> None:
    one = record("b", CS, CS_LABEL, risk_summary="spreads a false rumour")
    path = write_csv(tmp_path / "d.csv", [record("a"), one])
    with pytest.raises(DatasetError, match="row 2, column 'risk_summary'"):
        load(DatasetConfig(path=str(path)), str(tmp_path))
    qs, _ = load(DatasetConfig(path=str(path), allow_partial_risk_summary=True), str(tmp_path))
    assert [q.risk_summary for q in qs] == ["synthetic risk a", "spreads a false rumour"]


def test_other_scenarios_keep_a_one_line_risk_summary() -> None:
    qs = validate([record("a", RO), record("b", OS, "Rumors-Z")], "mem")
    assert [q.risk_summary for q in qs] == ["synthetic risk a", "synthetic risk b"]


def test_allow_partial_risk_summary_is_a_dataset_option(make_config: Any) -> None:
    cfg = make_config("dataset=demo", "dataset.allow_partial_risk_summary=true")
    assert cfg.dataset.allow_partial_risk_summary is True
    assert make_config("dataset=demo").dataset.allow_partial_risk_summary is False


# --- line endings: what is sent is what is hashed --------------------------------------------------


def test_crlf_and_lf_copies_load_the_same_text(tmp_path: Path) -> None:
    recs = synthetic_records(2, 2, 1)
    recs[0]["query"] = "A query over\ntwo lines"
    lf = write_csv(tmp_path / "lf.csv", recs)
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(lf.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    assert b"over\r\ntwo" in crlf.read_bytes()
    assert read(crlf) == read(lf)
    assert read(lf)[0].query == "A query over\ntwo lines"
    cr_only = [dict(r, query=r["query"].replace("\n", "\r")) for r in recs]
    assert validate(cr_only, "mem") == read(lf)


# --- label checks: categories and the scenario's shape ---------------------------------------------


@pytest.mark.parametrize(
    ("label", "scenario", "expected"),
    [
        ("Rumors-X", RO, ("Rumors",)),
        ("  rumors  -X", OS, ("Rumors",)),  # case and spacing forgiven, canonical name kept
        ("Child Pornography-Minors", OS, ("Pornography",)),  # the paper's name for the ninth
        ("invasion of  privacy and confidentiality-X", RO, ("Invasion of Privacy and Confidentiality",)),
        ("Query A: Rumors-X\nQuery B: Pornography-Y", CS, ("Rumors", "Pornography")),
        ("query a:Rumors-X\r\n\r\nQUERY B :  Rumors-Y\r\n", CS, ("Rumors", "Rumors")),
    ],
)
def test_label_categories_accepts(label: str, scenario: str, expected: tuple[str, ...]) -> None:
    assert label_categories(label, scenario) == expected


CS_FIX = "expected two lines, 'Query A: <Category>-<Subcategory>' and 'Query B: <Category>-<Subcategory>'"
NO_BOTH = "Cognitive Shortcut label without both parts"
ONE_ONLY = "expected one '<Category>-<Subcategory>' (two-part labels are for Cognitive Shortcut rows)"
UNKNOWN = "unknown primary category"


@pytest.mark.parametrize(
    ("label", "scenario", "message"),
    [
        ("", RO, "empty label"),
        ("Query A: Rumors-X", CS, f"{NO_BOTH}: 'Query A: Rumors-X'; {CS_FIX}"),
        ("Rumors-X\nPornography-Y", CS, f"{NO_BOTH}: 'Rumors-X\\nPornography-Y'; {CS_FIX}"),
        ("Query B: Rumors-X\nQuery A: Rumors-Y", CS, NO_BOTH),
        ("Query A: R-X\nQuery B: R-Y\nQuery C: R-Z", CS, NO_BOTH),
        ("Query A: Rumors-X\nQuery B: -Y", CS, "no primary category in 'Query A: Rumors-X\\nQuery B: -Y'"),
        ("Rumors-X\nRumors-Y", OS, f"Over Sensitivity label with 2 lines: 'Rumors-X\\nRumors-Y'; {ONE_ONLY}"),
        ("Rumours-X", RO, f"{UNKNOWN} 'Rumours'; expected one of Offense and Prejudice,"),
        ("Query A: Rumors-X\nQuery B: Scams-Y", CS, f"{UNKNOWN} 'Scams'; expected one of"),
    ],
)
def test_label_categories_refuses(label: str, scenario: str, message: str) -> None:
    with pytest.raises(LabelProblem) as info:
        label_categories(label, scenario)
    assert str(info.value).startswith(message)


def test_a_long_label_is_shortened_in_the_message() -> None:
    with pytest.raises(LabelProblem) as info:
        label_categories("Rumors-" + "x" * 500 + "\nRumors-Y", RO)
    assert len(info.value.problem) < 200 and "…'" in info.value.problem


def test_unknown_category_error_names_file_row_id_the_nine_and_the_fix(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [record("a"), record("b", label="Scams-Phishing")])
    assert read_error(path) == (
        f"{path}: row 2, column 'label': unknown primary category 'Scams' (id b); expected one of "
        f"{', '.join(CATEGORIES)}; to accept your own categories set dataset.custom_categories=true "
        "(python -m bsa.score: --custom-categories)"
    )


def test_cs_row_without_query_b_names_file_row_and_id(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [record("a"), record("b", CS, "Query A: Rumors-X")])
    assert read_error(path) == (
        f"{path}: row 2, column 'label': Cognitive Shortcut label without both parts: "
        f"'Query A: Rumors-X' (id b); {CS_FIX}"
    )


def test_custom_categories_are_accepted_and_marked(tmp_path: Path) -> None:
    recs = [
        record("a", label="Scams-Phishing"),
        record("b", CS, "Query A: Scams-X\nQuery B: Rumors-Y"),
        record("c", OS, "Rumors-Z"),
    ]
    path = write_csv(tmp_path / "d.csv", recs)
    qs, _ = load(DatasetConfig(path=str(path), custom_categories=True), str(tmp_path))
    assert [q.categories for q in qs] == [("Scams (custom)",), ("Scams (custom)", "Rumors"), ("Rumors",)]
    assert qs[0].label == "Scams-Phishing"  # the label text itself is kept as written
    # dataset.categories takes the name as written in the file, or with its suffix.
    for name in ("Scams", "Scams (custom)"):
        assert ids(select(qs, DatasetConfig(categories=[name]))) == ["a", "b"]
    with pytest.raises(DatasetError, match="unknown primary category 'Scams'"):
        load(DatasetConfig(path=str(path)), str(tmp_path))


def test_custom_categories_show_as_custom_in_metrics_and_the_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bsa.console import print_metrics
    from bsa.metrics import SampleScore, compute

    path = write_csv(tmp_path / "d.csv", [record("a", label="Scams-Phishing"), record("b")])
    qs = read(path, custom_categories=True)
    samples = [SampleScore(q.id, 0, q.scenario, q.categories, "Safe", "True") for q in qs]
    m = compute(samples, 1, 0.5)
    assert set(m["categories"]) == {"Scams (custom)", "Rumors"}
    print_metrics(m, "t")
    assert "Scams (custom)" in capsys.readouterr().out


def test_select_takes_the_papers_name_for_the_ninth_category() -> None:
    qs = validate([record("a", label="Pornography-X"), record("b")], "mem")
    assert ids(select(qs, DatasetConfig(categories=["Child Pornography"]))) == ["a"]


# --- queries_sha256: identity by content -----------------------------------------------------------


def _hash_of(path: Path) -> str:
    return queries_sha256(read(path))


def test_queries_hash_ignores_format_bom_crlf_and_order(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    recs = synthetic_records(3, 4, 2)
    recs[0]["query"] = 'A query over\ntwo lines, with "quotes" and café'
    digest = _hash_of(write_csv(tmp_path / "d.csv", recs))
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "d.csv").read_bytes())
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes((tmp_path / "d.csv").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    assert b"over\r\ntwo" in crlf.read_bytes()  # the line ending inside the quoted field changed too
    reordered = write_csv(tmp_path / "cols.csv", list(reversed(recs)), columns=tuple(reversed(COLUMNS)))
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "d.parquet")
    jsonl_bom = tmp_path / "bom.jsonl"
    jsonl_bom.write_bytes(b"\xef\xbb\xbf" + write_jsonl(tmp_path / "d.jsonl", recs).read_bytes())
    for p in (bom, crlf, reordered, tmp_path / "d.parquet", tmp_path / "d.jsonl", jsonl_bom):
        assert _hash_of(p) == digest, p.name
    cr_only = [dict(r, query=r["query"].replace("\n", "\r")) for r in recs]
    assert queries_sha256(validate(cr_only, "mem")) == digest


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("query", "synthetic query ro-000 "),  # one trailing space is another text
        ("risk_summary", "changed"),
        ("label", "Pornography-Sub"),
        ("dataset_name", OS),
        ("id", "ro-999"),
    ],
)
def test_queries_hash_changes_with_any_text(field: str, value: str) -> None:
    recs = synthetic_records(3, 4, 2)
    digest = queries_sha256(validate(recs, "mem"))
    recs[0] = dict(recs[0], **{field: value})
    assert queries_sha256(validate(recs, "mem")) != digest


def test_queries_hash_changes_with_the_selection() -> None:
    qs = queries()
    assert queries_sha256(qs) != queries_sha256(select(qs, DatasetConfig(limit=10)))
    assert queries_sha256(qs) == queries_sha256(list(reversed(qs)))
