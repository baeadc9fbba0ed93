"""The Python API (bsa.api): evaluate / aevaluate / load_run, in scripts and under a running event
loop; samples.parquet; the lazy package attributes; the report reading a run's recorded queries."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from helpers import MINI_QUERY_IDS, MINI_ROWS, responder, scripted_overrides, write_dataset
from scripted_server import ScriptedServer

import bsa
from bsa import api, report, results
from bsa.config import Config, ConfigError
from bsa.run import RunIncomplete, run

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

ROWS = MINI_ROWS
QUERY_IDS = MINI_QUERY_IDS
# k=2: per query, each sample's verdict; None = a reply the judge parser cannot read (unscored).
SCRIPT = {
    ("safety", "q1"): ["Safe", "Unsafe"],
    ("think", "q1"): ["True", "True"],
    ("safety", "q2"): ["Safe", "Safe"],
    ("think", "q2"): ["Fully Covered", "Partially Covered"],
    ("safety", "q3"): ["Safe", "Safe"],
    ("think", "q3"): ["Over Sensitive", None],
}
SAMPLE_FIELDS = {  # what a notebook user looks for in Results.samples
    "id",
    "sample_index",
    "query",
    "scenario",
    "categories",
    "risk_summary",
    "reasoning",
    "answer",
    "safety_verdict",
    "think_verdict",
    "safety_unscored_reason",
    "think_unscored_reason",
    "flags",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "safety_explanation",
    "think_explanation",
}


def scripted(kind: str, qid: str, i: int) -> str | None:
    return SCRIPT[(kind, qid)][i]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "mini.csv", ROWS)


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(responder(QUERY_IDS, scripted)) as s:
        yield s
        assert not s.errors, s.errors[0]


def _overrides(server: ScriptedServer, data: Path, cache: Path) -> list[str]:
    return [f"cache.dir={cache}", "progress=false", *scripted_overrides(server.api_base, data)]


def test_evaluate_equals_a_run_of_the_same_config(
    tmp_path: Path, data: Path, server: ScriptedServer, make_config: Callable[..., Config]
) -> None:
    overrides = _overrides(server, data, tmp_path / "cache")
    res = bsa.evaluate([*overrides, f"hydra.run.dir={tmp_path / 'api'}"])
    direct = run(make_config(*scripted_overrides(server.api_base, data)), tmp_path / "direct")
    assert isinstance(res, bsa.Results) and res.run_dir == tmp_path / "api"
    assert res.metrics_dict == direct.metrics == results.read_json_object(res.run_dir / "metrics.json")
    assert res.complete and direct.complete and res.stop_reason is None
    assert res.info["status"] == "complete"
    # The CLI's .hydra/ files: the task overrides (hydra.* left out, as Hydra does) and the choices.
    saved = (res.run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "dataset.path=" in saved and "hydra.run.dir" not in saved
    assert "model: openai_compatible" in (res.run_dir / ".hydra" / "hydra.yaml").read_text()
    assert "api_base: " + server.api_base in (res.run_dir / ".hydra" / "config.yaml").read_text()

    m = res.metrics.set_index(["level", "group"])
    assert list(res.metrics.columns) == ["level", "group", *api.METRIC_COLUMNS]
    assert len(m) == 1 + 3 + len(res.metrics_dict["categories"])
    overall = m.loc[("overall", "all")]
    # Per query (Safe@1, Safe@k, Think@1, Think@k): q1 (.5, 0, 1, 1), q2 (1, 1, .5, 0), q3 (1, 1, 0, 0)
    assert overall["safe_at_1"] == pytest.approx(250 / 3) and overall["think_at_1"] == pytest.approx(50)
    assert overall["f_score"] == pytest.approx(res.metrics_dict["f_score"])
    assert overall["n_queries"] == 3 and overall["unscored_think"] == 1
    ro = m.loc[("scenario", "Risk Omission")]
    assert (ro["safe_at_1"], ro["think_at_k"], ro["n_samples"]) == (50, 100, 2)
    f = ro["f_score"]
    assert f == pytest.approx(100 ** res.metrics_dict["alpha"] * 50 ** (1 - res.metrics_dict["alpha"]))
    assert m.loc[("category", "Specially Regulated Items"), "n_queries"] == 1
    assert (
        repr(res) == f"Results({str(res.run_dir)!r}, 6 samples, F-score {overall['f_score']:.2f}, complete)"
    )
    assert "<table" in res._repr_html_()


def test_samples_parquet_one_row_per_sample_and_load_run_reads_it(
    tmp_path: Path, data: Path, server: ScriptedServer
) -> None:
    res = bsa.evaluate(_overrides(server, data, tmp_path / "cache"), run_dir=tmp_path / "run")
    path = res.run_dir / results.SAMPLES
    df = pd.read_parquet(path)
    assert len(df) == 3 * 2 and list(df.columns) == [name for name, _ in results.SAMPLE_COLUMNS]
    assert set(df.columns) >= SAMPLE_FIELDS
    keys = [(q, i) for q in ("q1", "q2", "q3") for i in (0, 1)]
    assert list(zip(df["id"], df["sample_index"], strict=True)) == keys
    one = df.set_index(["id", "sample_index"]).loc[("q1", 1)]
    assert (one["reasoning"], one["answer"]) == ("R|q1|1", "A|q1|1")
    verdicts = (one["safety_verdict"], one["think_verdict"], one["safe"], one["think_ok"])
    assert verdicts == ("Unsafe", "True", 0.0, 1.0)
    assert list(one["categories"]) == ["Violence and Terrorism"] and one["scenario"] == "Risk Omission"
    assert one["query"] == ROWS[0]["query"] and one["risk_summary"] == ROWS[0]["risk_summary"]
    assert (one["prompt_tokens"], one["completion_tokens"]) == (10, 20)
    assert one["safety_explanation"] == "scripted" and pd.isna(one["safety_unscored_reason"])
    cs = df.set_index(["id", "sample_index"]).loc[("q2", 0)]
    assert sorted(cs["categories"]) == ["Invasion of Privacy and Confidentiality", "Offense and Prejudice"]
    unscored = df.set_index(["id", "sample_index"]).loc[("q3", 1)]
    assert pd.isna(unscored["think_verdict"]) and math.isnan(unscored["think_ok"])
    assert unscored["think_unscored_reason"] and unscored["think_target"] == "Precise Coverage"

    # The same frame whichever way it was obtained: from the run, from the file, from the JSONL files.
    pd.testing.assert_frame_equal(res.samples, df)
    loaded = bsa.load_run(res.run_dir)
    pd.testing.assert_frame_equal(loaded.samples, df)
    assert loaded.metrics_dict == res.metrics_dict and loaded.complete
    pd.testing.assert_frame_equal(loaded.metrics, res.metrics)
    assert results.samples_current(res.run_dir)
    path.unlink()  # a run dir from before samples.parquet: joined again from the JSONL files
    pd.testing.assert_frame_equal(bsa.load_run(res.run_dir).samples, df)


def test_a_resume_that_was_killed_makes_samples_parquet_stale(
    tmp_path: Path, data: Path, server: ScriptedServer
) -> None:
    res = bsa.evaluate(_overrides(server, data, tmp_path / "cache"), run_dir=tmp_path / "run")
    assert results.samples_current(res.run_dir)
    gens = res.run_dir / results.GENERATIONS
    rows = results.read_jsonl(gens)
    results.write_jsonl(gens, rows[:-1])  # the JSONL files moved on (as a resume rewrites them)
    assert not results.samples_current(res.run_dir)
    loaded = bsa.load_run(res.run_dir)
    assert len(loaded.samples) == 5 and not loaded.complete


def test_a_stopped_run_returns_partial_results_or_raises_when_asked(
    tmp_path: Path, data: Path, server: ScriptedServer
) -> None:
    overrides = [
        *scripted_overrides(server.api_base, data),
        "progress=false",
        "concurrency=1",
        "max_requests=5",
    ]
    with pytest.warns(RuntimeWarning, match="the run is incomplete"):
        res = bsa.evaluate([*overrides, f"cache.dir={tmp_path / 'c1'}"], run_dir=tmp_path / "stopped")
    assert not res.complete and res.stop_reason and res.metrics_dict["partial"]
    assert (res.run_dir / results.SAMPLES).is_file() and len(res.samples) <= 5
    assert not bsa.load_run(res.run_dir).complete
    with pytest.raises(RunIncomplete):
        bsa.evaluate(
            [*overrides, f"cache.dir={tmp_path / 'c2'}"], run_dir=tmp_path / "raised", raise_incomplete=True
        )


def test_duckdb_and_datasets_read_samples_parquet(tmp_path: Path, data: Path, server: ScriptedServer) -> None:
    res = bsa.evaluate(_overrides(server, data, tmp_path / "cache"), run_dir=tmp_path / "run")
    path = res.run_dir / results.SAMPLES
    try:
        import duckdb
    except ImportError:
        duckdb = None
    if duckdb is not None:
        got = duckdb.sql(f"SELECT scenario, count(*) FROM '{path}' GROUP BY 1 ORDER BY 1").fetchall()
        assert got == [("Cognitive Shortcut", 2), ("Over Sensitivity", 2), ("Risk Omission", 2)]
    try:
        import datasets
    except ImportError:
        datasets = None
    if datasets is not None:
        ds = datasets.Dataset.from_parquet(str(path), cache_dir=str(tmp_path / "hf"))
        assert ds.num_rows == 6 and ds[0]["categories"] == ["Violence and Terrorism"]
    if duckdb is None and datasets is None:
        pytest.skip("neither duckdb nor datasets is installed")


def test_run_dir_resume_and_secrets_as_the_cli(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bsa.__main__ import CONF_DIR

    monkeypatch.chdir(tmp_path)
    overrides = scripted_overrides("http://127.0.0.1:9/v1", data)
    c = api.compose(overrides)
    rel = c.run_dir.relative_to(tmp_path / "outputs")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d_openai_compatible_none", rel.as_posix()), rel
    assert api.compose([*overrides, f"resume={tmp_path / 'old'}"]).run_dir == tmp_path / "old"
    assert api.compose([*overrides, "hydra.run.dir=rel/dir"]).run_dir == tmp_path / "rel" / "dir"
    assert api.compose(overrides, run_dir=tmp_path / "given").run_dir == tmp_path / "given"
    assert c.cfg.model.api_base == "http://127.0.0.1:9/v1" and c.cfg.sampling.k == 2
    # .hydra/config.yaml as Hydra composes it for the CLI's main (without the hydra node).
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        plain = compose(config_name="config", overrides=overrides)
    assert c.hydra_files["config.yaml"] == OmegaConf.to_yaml(plain)
    assert OmegaConf.create(c.hydra_files["overrides.yaml"]) == overrides
    with pytest.raises(ConfigError, match=r"model\.api_key looks like a secret"):
        api.compose([*overrides, "model.api_key=sk-123"])
    with pytest.raises(TypeError, match="a list of strings"):
        bsa.evaluate("sampling.k=2")
    with pytest.raises(ConfigError, match="dry_run=true"):
        bsa.evaluate([*overrides, "dry_run=true"])


def _python(code: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_evaluate_and_aevaluate_under_a_running_event_loop(
    tmp_path: Path, data: Path, server: ScriptedServer
) -> None:
    code = """
        import asyncio, json, sys
        import bsa

        overrides, out = json.loads(sys.argv[1]), sys.argv[2]

        async def main():
            asyncio.get_running_loop()  # as in Jupyter: a loop runs in this thread
            res = bsa.evaluate([*overrides, f"hydra.run.dir={out}/sync"])
            ticks = 0

            async def tick():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.create_task(tick())
            ares = await bsa.aevaluate([*overrides, f"hydra.run.dir={out}/async"])
            ticker.cancel()
            print(json.dumps({"sync": res.metrics_dict, "async": ares.metrics_dict, "ticks": ticks,
                              "rows": [len(res.samples), len(ares.samples)]}))

        asyncio.run(main())
    """
    overrides = _overrides(server, data, tmp_path / "cache")
    out = _python(code, tmp_path, json.dumps(overrides), str(tmp_path / "runs"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["sync"] == got["async"] == bsa.load_run(tmp_path / "runs" / "sync").metrics_dict
    assert got["sync"]["safe_at_1"] == pytest.approx(250 / 3) and got["rows"] == [6, 6]
    assert got["ticks"] > 0  # the loop kept running while aevaluate worked in its thread


def test_lazy_attributes_survive_importing_the_submodule(tmp_path: Path) -> None:
    code = """
        import sys
        import bsa
        assert "pandas" not in sys.modules and "hydra" not in sys.modules, "import bsa stays light"
        first = bsa.evaluate
        assert callable(first) and callable(bsa.load_run) and callable(bsa.aevaluate)
        import bsa.run
        assert bsa.evaluate is first and callable(bsa.evaluate), "second access"
        assert bsa.run is sys.modules["bsa.run"] and callable(bsa.run.run)
        from bsa.run import run
        assert run is bsa.run.run
        assert bsa.Results is bsa.api.Results and bsa.compute is bsa.metrics.compute
        assert {"evaluate", "run", "Results"} <= set(dir(bsa))
        print("ok")
    """
    out = _python(code, tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
    # The other order: the module first, then the functions, each twice.
    code = """
        import bsa
        assert bsa.run.run is bsa.run.run
        assert bsa.evaluate is bsa.evaluate and bsa.compute is bsa.compute
        import bsa.run
        assert callable(bsa.run.run) and type(bsa.run).__name__ == "module"
        print("ok")
    """
    out = _python(code, tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_the_report_reads_the_recorded_queries_when_the_dataset_file_is_gone(
    tmp_path: Path, data: Path, server: ScriptedServer
) -> None:
    res = bsa.evaluate(_overrides(server, data, tmp_path / "cache"), run_dir=tmp_path / "run")
    data.unlink()
    r = report.load_run(res.run_dir)
    assert r.categories_known and r.queries["q2"].risk_summary == ROWS[1]["risk_summary"]
    assert r.metrics is not None and r.metrics["categories"] == res.metrics_dict["categories"]
    assert not any("unavailable" in n for n in r.notes)
    cases = report.failure_cases(r)
    assert cases and cases[0].query in QUERY_IDS
    out = tmp_path / "report"
    assert report.main([str(res.run_dir), "--out", str(out), "--n-boot", "50"]) == 0
    assert (out / "report.html").is_file() and (out / "leaderboard.csv").is_file()
    (res.run_dir / results.SAMPLES).unlink()  # a run dir from before samples.parquet: as before
    r = report.load_run(res.run_dir)
    assert not r.categories_known and any("dataset file" in n and "not found" in n for n in r.notes)
