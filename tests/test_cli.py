"""The command lines: python -m bsa (Hydra app) and python -m bsa.score."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from helpers import responder, write_dataset
from scripted_server import ScriptedServer
from test_pipeline import QUERY_IDS, ROWS, scripted

from bsa.score import main as score_main


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "BSA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"]])
def test_help_does_not_import_litellm(args: list[str]) -> None:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['bsa', *{args!r}]\n"
        "try:\n    runpy.run_module('bsa', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "assert 'litellm' not in sys.modules, 'litellm imported by --help'\n"
        "print('OK')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert ("Verbs:" if args == ["--help"] else "Config groups") in out.stdout  # bsa/cli.py
    assert out.stdout.strip().endswith("OK")


def test_the_issue_example_command_against_an_openai_compatible_server(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    run_dir = tmp_path / "run"
    with ScriptedServer(responder(QUERY_IDS, scripted, judge_model="j")) as server:
        cmd = [
            sys.executable, "-m", "bsa",
            f"dataset.path={data}",
            "model=openai_compatible", "model.name=hosted_vllm/m", f"model.api_base={server.api_base}",
            "judge=openai_compatible", "judge.name=hosted_vllm/j", f"judge.api_base={server.api_base}",
            "dataset=bsa", "sampling.k=2", "sampling.seed=0", f"hydra.run.dir={run_dir}",
        ]  # fmt: skip
        out = subprocess.run(cmd, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Safe@1" in out.stdout and "Per scenario" in out.stdout and "cache hits" in out.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["safe_at_1"] == pytest.approx(250 / 3)
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    # bsa.score on our own results CSV gives the same numbers.
    out_json = tmp_path / "scored.json"
    assert (
        score_main(
            [str(run_dir / "bsa_results.csv"), "--k", "2", "--out", str(out_json), "--dataset", str(data)]
        )
        == 0
    )
    scored = json.loads(out_json.read_text())
    for key in ("safe_at_1", "safe_at_k", "think_at_1", "think_at_k", "f_score"):
        assert scored[key] == pytest.approx(metrics[key]), key
    assert scored["categories"] == metrics["categories"]  # same code, same inputs: exact


def test_errors_exit_2_with_the_reason(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "bsa", "dataset=bsa", f"dataset.path={tmp_path / 'missing.csv'}",
        "model=openai_compatible", "model.name=hosted_vllm/m", "model.api_base=http://127.0.0.1:9/v1",
        "judge=openai_compatible", "judge.name=hosted_vllm/j", "judge.api_base=http://127.0.0.1:9/v1",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "missing.csv: no such file; check dataset.path" in " ".join(out.stdout.split())


def test_the_bsa_console_script_works_from_any_directory(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "bsa"
    if not script.exists():
        pytest.skip(f"no console script at {script} (package not installed with pip)")
    out = subprocess.run(
        [str(script), "--cfg", "job"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "name: hosted_vllm/smollm2" in out.stdout  # the shipped configs, composed
    out = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("Usage: bsa") and "Verbs:" in out.stdout
