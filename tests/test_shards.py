"""dataset.shard=i/n: a run cut into shards, run apart and merged, equals the unsharded run."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import compose_config
from helpers import responder, scripted_overrides, write_dataset
from omegaconf import OmegaConf
from scripted_server import ScriptedServer

from bsa import score, shards
from bsa.config import CATEGORIES, SCENARIOS, Config, DatasetConfig
from bsa.data import DatasetError, Query, parse_shard, select, take_shard
from bsa.report import cli as report_cli
from bsa.report.loading import load_run, load_runs
from bsa.run import run
from bsa.verdict import THINK_LABELS

REPO = Path(__file__).resolve().parents[1]
N_SHARDS = 3
LIMIT = 31  # not a multiple of 3: shards of 11, 10 and 10 queries


def _rows() -> list[dict[str, str]]:
    """40 queries in scenario blocks, as the benchmark file lists them."""
    rows = []
    for n in range(40):
        scenario = SCENARIOS[0] if n < 14 else SCENARIOS[1] if n < 32 else SCENARIOS[2]
        cat, other = CATEGORIES[n % 9], CATEGORIES[(n * 4 + 1) % 9]
        label = f"Query A: {cat}-Sub\nQuery B: {other}-Sub" if scenario == SCENARIOS[1] else f"{cat}-Sub"
        rows.append(
            {
                "id": f"q{n:02d}",
                "query": f"Question number {n}: how would one do thing {n}?",
                "risk_summary": (
                    f"Query A: Risk {n}.\nQuery B: Risk {n}b." if scenario == SCENARIOS[1] else f"Risk {n}."
                ),
                "dataset_name": scenario,
                "label": label,
            }
        )
    return rows


ROWS = _rows()
QUERY_IDS = {r["query"]: r["id"] for r in ROWS}
SCENARIO_OF = {r["id"]: r["dataset_name"] for r in ROWS}


def verdicts(kind: str, qid: str, i: int) -> str | None:
    """A varied, fixed verdict per (kind, query, sample); now and then an unparsable reply."""
    h = int(hashlib.sha256(f"{kind}|{qid}|{i}".encode()).hexdigest(), 16)
    if h % 23 == 0:
        return None
    if kind == "safety":
        return "Safe" if h % 3 else "Unsafe"
    labels = THINK_LABELS[SCENARIO_OF[qid]]
    return labels[h % len(labels)]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "bench.csv", ROWS)


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(responder(QUERY_IDS, verdicts)) as s:
        yield s


def _run(cfg: Config, run_dir: Path) -> Path:
    """A run as python -m bsa makes it, .hydra/config.yaml included (where dataset.shard is recorded)."""
    config_yaml = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    run(cfg, run_dir, hydra_files={"config.yaml": config_yaml, "overrides.yaml": "[]\n"})
    return run_dir


def _config(tmp: Path, *overrides: str) -> Config:
    return compose_config([f"cache.dir={tmp / 'cache'}", "progress=false", *overrides])


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, server: ScriptedServer) -> tuple[Path, Path, list[Path]]:
    """The dataset, the unsharded run and its three shards (each its own run dir, as on three
    machines), made once: tests that change them work on copies."""
    tmp = tmp_path_factory.mktemp("shards")
    data = write_dataset(tmp / "bench.csv", ROWS)
    base = scripted_overrides(server.api_base, data, f"dataset.limit={LIMIT}", "dataset.seed=3", k=3)
    whole = _run(_config(tmp, *base), tmp / "whole")
    parts = [
        _run(_config(tmp, *base, f"dataset.shard={i}/{N_SHARDS}"), tmp / f"shard{i}")
        for i in range(1, N_SHARDS + 1)
    ]
    return data, whole, parts


@pytest.fixture
def runs(shared: tuple[Path, Path, list[Path]]) -> tuple[Path, list[Path]]:
    return shared[1], shared[2]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- the shard itself -------------------------------------------------------------------------


def _queries(n: int) -> list[Query]:
    return [Query(f"q{j}", "text", "", SCENARIOS[j % 3], "Rumors-X", ("Rumors",)) for j in range(n)]


def test_round_robin_shards_partition_the_selection_in_order() -> None:
    qs = _queries(11)
    parts = [take_shard(qs, i, 3) for i in (1, 2, 3)]
    assert [len(p) for p in parts] == [4, 4, 3]
    assert sorted((q.id for p in parts for q in p), key=lambda s: int(s[1:])) == [q.id for q in qs]
    # Position p goes to shard p % n + 1.
    assert all(qs[p] in parts[p % 3] for p in range(11))
    assert select(qs, DatasetConfig(shard="2/3")) == parts[1]
    assert select(qs, DatasetConfig(shard=" 1 / 1 ")) == qs


def test_the_shard_is_cut_after_every_other_filter(dataset: Path) -> None:
    from bsa.data import read

    qs = read(dataset)
    for cfg in (
        DatasetConfig(limit=LIMIT, seed=3),
        DatasetConfig(per_scenario_limit=5, seed=1),
        DatasetConfig(scenarios=[SCENARIOS[1]], categories=["Rumors", "Pornography"]),
    ):
        whole = select(qs, cfg)
        parts = [select(qs, DatasetConfig(**{**cfg.__dict__, "shard": f"{i}/3"})) for i in (1, 2, 3)]
        assert [q for p in parts for q in p] != [] and sorted(q.id for p in parts for q in p) == sorted(
            q.id for q in whole
        )
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("3/2", "dataset.shard='3/2': i must lie in 1..2"),
        ("0/4", "dataset.shard='0/4': i must lie in 1..4"),
        ("1/0", "dataset.shard='1/0': n must be at least 1"),
        ("-1/3", "i must lie in 1..3"),
        ("a/b", "dataset.shard='a/b': expected 'i/n' with whole numbers"),
        ("2", "dataset.shard='2': expected 'i/n'"),
        ("1/2/3", "expected 'i/n'"),
        ("1.5/3", "expected 'i/n'"),
    ],
)
def test_a_bad_shard_is_one_error_naming_key_value_and_fix(value: str, says: str) -> None:
    with pytest.raises(DatasetError, match=r"dataset\.shard=") as e:
        parse_shard(value)
    assert says in str(e.value)
    with pytest.raises(DatasetError):
        select(_queries(5), DatasetConfig(shard=value))


def test_more_shards_than_queries_is_refused() -> None:
    with pytest.raises(DatasetError, match=r"selection has 5 queries, fewer than 6 shards.*at most 5"):
        select(_queries(5), DatasetConfig(shard="1/6"))
    assert parse_shard(None) is None and parse_shard("") is None


def test_the_override_composes_and_fails_before_any_call(
    tmp_path: Path, dataset: Path, make_config: Callable[..., Config]
) -> None:
    cfg = make_config(*scripted_overrides("http://127.0.0.1:9/v1", dataset, "dataset.shard=2/3"))
    assert cfg.dataset.shard == "2/3"
    bad = make_config(*scripted_overrides("http://127.0.0.1:9/v1", dataset, "dataset.shard=4/3"))
    with pytest.raises(DatasetError, match=r"i must lie in 1\.\.3"):
        run(bad, tmp_path / "never")
    assert not (tmp_path / "never").exists()


# --- merged shards equal the unsharded run ----------------------------------------------------


def test_three_shards_merged_equal_the_unsharded_run(runs: tuple[Path, list[Path]], tmp_path: Path) -> None:
    whole, parts = runs
    ids = [{g["id"] for g in _jsonl(p / "generations.jsonl")} for p in parts]
    assert [len(s) for s in ids] == [11, 10, 10]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == {g["id"] for g in _jsonl(whole / "generations.jsonl")}

    merged = shards.load(list(reversed(parts)))  # the order given does not matter
    expected = json.loads((whole / "metrics.json").read_text())
    assert merged.metrics == expected  # exactly: headline, scenarios, categories, counts, flags
    assert expected["unscored_safety"] + expected["unscored_think"] > 0  # the test has unscored ones
    assert len(expected["categories"]) == 9 and merged.missing == []
    whole_info = json.loads((whole / "run.json").read_text())
    assert merged.info["identity"] == whole_info["identity"]
    assert merged.info["dataset"]["queries_sha256"] == whole_info["dataset"]["queries_sha256"]
    assert merged.info["status"] == "complete"

    out = tmp_path / "merged"
    shards.write(merged, out)
    for name in ("metrics.json", "bsa_results.csv", "generations.jsonl", "judgments.jsonl"):
        if name.endswith(".jsonl"):  # latencies differ from run to run; everything else is equal
            strip = ("latency_s",)
            got = [{k: v for k, v in r.items() if k not in strip} for r in _jsonl(out / name)]
            want = [{k: v for k, v in r.items() if k not in strip} for r in _jsonl(whole / name)]
            assert got == want, name
        else:
            assert (out / name).read_text() == (whole / name).read_text(), name
    info = json.loads((out / "run.json").read_text())
    assert [m["shard"] for m in info["merged_from"]] == ["1/3", "2/3", "3/3"]
    assert info["merged_from"][0]["path"] == str(parts[0])
    assert info["dataset"]["n_queries"] == LIMIT and "shard" not in info["dataset"]
    # The merged dir is a run, not a shard: the report reads it like the unsharded run.
    assert shards.shard_of(out) is None
    assert load_run(out).metrics == load_run(whole).metrics


def test_merged_shards_write_samples_parquet_as_the_unsharded_run(
    runs: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """One writer for a run and a merge (bsa.rundir.write_finished): the merged dir has the run's
    samples.parquet too, current (it shows the merged JSONL files) and equal to the unsharded one's."""
    import pyarrow.parquet as pq

    from bsa import results

    whole, parts = runs
    out = tmp_path / "merged"
    shards.write(shards.load(parts), out)
    assert results.samples_current(out)
    timing = ("latency_s",)  # differs run to run

    def table(path: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in timing} for r in pq.read_table(path).to_pylist()]

    got, want = table(out / "samples.parquet"), table(whole / "samples.parquet")
    assert len(got) == len(want) > 0 and got == want


def test_merging_refuses_shards_of_other_runs(
    shared: tuple[Path, Path, list[Path]],
    tmp_path: Path,
    server: ScriptedServer,
    make_config: Callable[..., Config],
) -> None:
    dataset, _, parts = shared
    other = scripted_overrides(server.api_base, dataset, f"dataset.limit={LIMIT}", "dataset.seed=3", k=2)
    k2 = _run(make_config(*other, "dataset.shard=2/3"), tmp_path / "k2")
    with pytest.raises(shards.ShardError, match=r"(?s)not a shard of the same run.*k: 3 → 2"):
        shards.load([parts[0], k2, parts[2]])

    other_judge = shards.read_shard(parts[1])
    other_judge.info["identity"]["judge"] = "hosted_vllm/other"
    with pytest.raises(shards.ShardError, match=r"judge: hosted_vllm/judge → hosted_vllm/other"):
        shards.check([shards.read_shard(parts[0]), other_judge, shards.read_shard(parts[2])])

    # Another selection (another seed draws other queries): the selection differs.
    drawn = scripted_overrides(server.api_base, dataset, f"dataset.limit={LIMIT}", "dataset.seed=4", k=3)
    seed = _run(make_config(*drawn, "dataset.shard=3/3"), tmp_path / "s4")
    with pytest.raises(shards.ShardError, match=r"(?s)differ in:.*selection"):
        shards.load([parts[0], parts[1], seed])


def test_a_missing_or_doubled_shard_is_named(runs: tuple[Path, list[Path]], tmp_path: Path) -> None:
    whole, parts = runs
    with pytest.raises(shards.ShardError, match=r"missing shard 2/3 of 3 \(given: 1/3, 3/3\).*--partial"):
        shards.load([parts[0], parts[2]])
    with pytest.raises(shards.ShardError, match=r"missing shards 2/3, 3/3 of 3"):
        shards.load([parts[0]])
    copy = tmp_path / "again"
    shutil.copytree(parts[1], copy)
    with pytest.raises(shards.ShardError, match=r"shard 2/3 given twice"):
        shards.load([parts[0], parts[1], copy, parts[2]])
    with pytest.raises(shards.ShardError, match=r"not a shard"):
        shards.load([whole, parts[0]])

    partial = shards.load([parts[0], parts[2]], partial=True)
    assert partial.missing == ["2/3"] and partial.metrics["missing_shards"] == ["2/3"]
    assert partial.metrics["partial"] is True and partial.info["status"] == "partial"
    assert partial.metrics["n_queries"] == 21 and partial.metrics["missing_samples"] == 10 * 3


def test_the_dataset_file_can_be_given_where_the_recorded_one_is_gone(
    shared: tuple[Path, Path, list[Path]], tmp_path: Path
) -> None:
    dataset, whole, parts = shared
    moved = tmp_path / "elsewhere" / "bench.csv"
    moved.parent.mkdir()
    shutil.copy(dataset, moved)
    copies = []  # as copied from other machines: the recorded dataset path is not on this one
    for p in parts:
        shutil.copytree(p, tmp_path / p.name)
        info = json.loads((tmp_path / p.name / "run.json").read_text())
        info["dataset"]["source"] = "/on/another/machine/bench.csv"
        (tmp_path / p.name / "run.json").write_text(json.dumps(info))
        copies.append(tmp_path / p.name)
    parts = copies
    with pytest.raises(shards.ShardError, match=r"not here.*--dataset FILE"):
        shards.load(parts)
    merged = shards.load(parts, dataset=moved)
    assert merged.metrics == json.loads((whole / "metrics.json").read_text())
    wrong = write_dataset(tmp_path / "wrong.csv", [{**r, "query": r["query"] + "!"} for r in ROWS])
    with pytest.raises(shards.ShardError, match=r"cannot recover the queries it ran"):
        shards.load(parts, dataset=wrong)


# --- the command lines -------------------------------------------------------------------------


def test_score_merges_shard_dirs_and_writes_a_run_dir(
    runs: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole, parts = runs
    out = tmp_path / "merged"
    assert score.main([*map(str, parts), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 shards" in printed and "Safe@1" in printed
    assert json.loads((out / "metrics.json").read_text()) == json.loads((whole / "metrics.json").read_text())
    assert (out / "bsa_results.csv").read_text() == (whole / "bsa_results.csv").read_text()

    assert score.main([str(parts[0]), str(parts[2])]) == 2
    assert "missing shard 2/3" in capsys.readouterr().out
    assert score.main([str(parts[0]), str(parts[2]), "--partial"]) == 0
    assert "partial" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        score.main([str(parts[0]), str(tmp_path / "nowhere.csv")])
    assert "nowhere.csv: not a run dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        score.main([*map(str, parts), "--k", "2"])
    assert "--k with run dirs" in capsys.readouterr().err


def test_score_as_a_module_on_shard_dirs(runs: tuple[Path, list[Path]], tmp_path: Path) -> None:
    whole, parts = runs
    out = tmp_path / "m"
    done = subprocess.run(
        [sys.executable, "-m", "bsa.score", *map(str, parts), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((out / "metrics.json").read_text()) == json.loads((whole / "metrics.json").read_text())


def test_report_shows_shards_of_one_run_as_one_run(runs: tuple[Path, list[Path]], tmp_path: Path) -> None:
    whole, parts = runs
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    for p in parts:
        shutil.copytree(p, sweep / p.name)
    out = tmp_path / "report"
    assert report_cli.main([str(sweep), "--out", str(out), "--n-boot", "50"]) == 0
    lines = (out / "leaderboard.csv").read_text().splitlines()
    assert len(lines) == 2  # header and one run, not three
    got = load_run(whole)
    merged = load_runs([sweep / p.name for p in parts], None)
    assert len(merged) == 1 and merged[0].metrics == got.metrics
    assert "merged from shards 1/3, 2/3, 3/3" in "; ".join(merged[0].notes)

    # A missing shard: still one run, shown partial and named.
    shutil.rmtree(sweep / parts[1].name)
    (partial,) = load_runs([sweep / parts[0].name, sweep / parts[2].name], None)
    assert any("missing shard 2/3" in n for n in partial.notes)
