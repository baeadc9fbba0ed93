"""Sweeps that finish: in `python -m bsa -m …` a failed point is recorded and the other points run;
the sweep then writes its report, names each failed point (overrides, why, run dir) and exits 1.
Ctrl-C still stops the whole sweep. Sweep subdirs carry the swept values. A loopback scripted server
plays model and judge (tests/helpers.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from helpers import responder, scripted_overrides, write_dataset
from scripted_server import Reply, ScriptedServer
from test_pipeline import QUERY_IDS, ROWS, scripted

from bsa import sweep

# Point 1 (sampling.k=0) is refused by the validator: bad input, exit 2 in a single run.
K_VALUES = ("2", "0", "1")


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "BSA_CACHE_DIR": str(tmp / "cache"), "PYTHONUNBUFFERED": "1"}


def _command(api_base: str, data: Path, sweep_dir: Path, *extra: str) -> list[str]:
    base = [o for o in scripted_overrides(api_base, data) if not o.startswith("sampling.k=")]
    return [
        sys.executable, "-m", "bsa", "-m", *base, "progress=false", f"hydra.sweep.dir={sweep_dir}", *extra,
    ]  # fmt: skip


def _said(out: subprocess.CompletedProcess) -> str:
    return " ".join((out.stdout + out.stderr).split())


def _points(sweep_dir: Path) -> dict[str, Path]:
    """The point dirs by job number."""
    return {p.name.split("_")[0]: p for p in sweep_dir.iterdir() if p.is_dir() and p.name[0].isdigit()}


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """A 3-point sweep, sampling.k=2,0,1, whose middle point fails."""
    tmp = tmp_path_factory.mktemp("sweep")
    data = write_dataset(tmp / "mini.csv", ROWS)
    sweep_dir = tmp / "sweep"
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        cmd = _command(server.api_base, data, sweep_dir, f"sampling.k={','.join(K_VALUES)}")
        out = subprocess.run(cmd, cwd=REPO, env=_env(tmp), capture_output=True, text=True, timeout=400)
        assert not server.errors, server.errors[0]
    return out, sweep_dir


def test_a_failed_point_is_named_at_the_end_and_the_others_run(
    failing: tuple[subprocess.CompletedProcess, Path],
) -> None:
    out, sweep_dir = failing
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    points = _points(sweep_dir)
    assert sorted(points) == ["0", "1", "2"]
    # The points before and after the failed one ran to the end.
    for num, k in (("0", 2), ("2", 1)):
        info = json.loads((points[num] / "run.json").read_text())
        assert info["status"] == "complete" and info["k"] == k
        metrics = json.loads((points[num] / "metrics.json").read_text())
        assert metrics["partial"] is False and metrics["n_queries"] == len(ROWS)
        assert not (points[num] / sweep.FAILED).exists()
    # The failed point never got a run.json (the validator refused it first): failed.json says why.
    assert not (points["1"] / "run.json").exists()
    failed = json.loads((points["1"] / sweep.FAILED).read_text())
    assert failed["status"] == "bad input" and failed["exit_code"] == 2
    assert "sampling.k=0: must be at least 1" in failed["reason"]
    assert "sampling.k=0" in failed["overrides"]
    # The summary at the end: how many completed, which point failed (by what it sweeps), why, where.
    said = _said(out)
    assert f"Sweep {sweep_dir}: 2 of 3 points complete. 1 failed:" in said
    why = "bad input (exit 2): ConfigError: invalid configuration: sampling.k=0: must be at least 1"
    assert f"#1 sampling.k=0: {why}" in said
    assert f"run dir: {points['1']}" in said
    assert said.rindex("1 failed:") > said.rindex("Results:")  # after the last point's own output
    summary = json.loads((sweep_dir / sweep.SUMMARY).read_text())
    assert summary["failed"] == 1
    assert [(p["num"], p["status"], p["exit_code"]) for p in summary["points"]] == [
        (0, "complete", 0),
        (1, "bad input", 2),
        (2, "complete", 0),
    ]


def test_sweep_subdirs_carry_the_swept_values(failing: tuple[subprocess.CompletedProcess, Path]) -> None:
    _, sweep_dir = failing
    points = _points(sweep_dir)
    for num, k in zip("012", K_VALUES, strict=True):
        # Named by the swept key only (issue 21): the fixed overrides (model, judge, paths, URLs)
        # stay in the point's .hydra/overrides.yaml, not in its name.
        assert points[num].name == f"{num}_sampling.k-{k}"


def test_the_sweep_report_is_written_under_the_sweep_dir(
    failing: tuple[subprocess.CompletedProcess, Path],
) -> None:
    _, sweep_dir = failing
    report_dir = sweep_dir / sweep.REPORT_DIR
    for name in ("report.md", "report.html", "leaderboard.csv"):
        assert (report_dir / name).is_file(), name
    rows = (report_dir / "leaderboard.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # header, and the two points that wrote a run


def test_a_single_run_keeps_its_exit_code_and_message(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    cmd = [
        sys.executable, "-m", "bsa", *scripted_overrides("http://127.0.0.1:9/v1", data, k=0),
        f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout[-3000:] + out.stderr[-3000:]
    assert "bsa: invalid configuration: sampling.k=0: must be at least 1" in _said(out)
    assert not (tmp_path / "run" / sweep.FAILED).exists()  # a single run's failure is said, not filed


class _Slow:
    def __init__(self, delay_s: float) -> None:
        self.inner, self.delay_s = responder(QUERY_IDS, scripted), delay_s

    def __call__(self, body: dict[str, Any]) -> Reply:
        time.sleep(self.delay_s)
        return self.inner(body)


def test_ctrl_c_stops_the_whole_sweep(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    sweep_dir = tmp_path / "sweep"
    with ScriptedServer(_Slow(0.2)) as server:
        cmd = _command(server.api_base, data, sweep_dir, "sampling.k=2", "alpha=0.5,0.7", "concurrency=1")
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.stat().st_size for p in sweep_dir.glob("0_*/generations.jsonl")):
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)  # once: calls in flight finish, then the sweep stops
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-3000:]
    said = " ".join(out.split())
    assert "Sweep interrupted: 0 of the points started had completed." in said
    assert f"hydra.sweep.dir={sweep_dir}" in said
    assert sorted(_points(sweep_dir)) == ["0"]  # the second point never started
    (point,) = sweep.read_points(sweep_dir)
    assert point["status"] == "incomplete" and "interrupted" in point["reason"]
    info = json.loads((_points(sweep_dir)["0"] / "run.json").read_text())
    assert info["status"] == "stopped" and info["stop_reason"].startswith("interrupted")


# Any exception a point raises outside bsa's own outcomes (here: a task that raises) is shown, recorded
# and counted; the sweep still runs to its end and names it.
APP = """
import sys
import hydra
from bsa import sweep

@hydra.main(version_base="1.3", config_path=None, config_name="app")
def task(cfg):
    if cfg.a == 2:
        raise RuntimeError("boom at a=2")
    print("POINT", cfg.a, flush=True)

if __name__ == "__main__":
    from hydra.core.config_store import ConfigStore
    ConfigStore.instance().store(name="app", node={
        "a": 0,
        "hydra": {
            "callbacks": {"points": {"_target_": "bsa.sweep.SweepPoints"}},
            "sweep": {"subdir": "${hydra.job.num}_${bsa_dirname:${hydra.job.override_dirname}}"},
        },
    })
    task()
    sys.exit(sweep.exit_code())
"""


JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


@pytest.mark.parametrize("launcher", [[], JOBLIB], ids=["in-process", "joblib"])
def test_an_exception_in_a_point_is_recorded_and_the_sweep_runs_to_its_end(
    tmp_path: Path, launcher: list[str]
) -> None:
    if launcher:  # points in worker processes: the subdir resolver and the records work there too
        pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[sweep]'")
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP))
    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, str(app), "-m", "a=1,2,3", f"hydra.sweep.dir={sweep_dir}", *launcher]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    points = sorted(line for line in out.stdout.splitlines() if line.startswith("POINT"))
    assert points == ["POINT 1", "POINT 3"]
    assert "RuntimeError: boom at a=2" in out.stderr  # the traceback is shown
    said = _said(out)
    assert "2 of 3 points complete. 1 failed: #1 a=2: error (exit 1): RuntimeError: boom at a=2" in said
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name[0] != ".") == [
        "0_a-1", "1_a-2", "2_a-3",
    ]  # fmt: skip
    assert json.loads((sweep_dir / sweep.SUMMARY).read_text())["failed"] == 1
    assert json.loads((sweep_dir / "1_a-2" / sweep.FAILED).read_text())["exit_code"] == 1


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("mitigation-rules__model-qwen3_8b", "mitigation-rules__model-qwen3_8b"),
        ("model.name-hosted_vllm/Qwen/Qwen3-8B", "model.name-hosted_vllm-Qwen-Qwen3-8B"),
        (
            "dataset.scenarios-[Risk Omission,Over Sensitivity]",
            "dataset.scenarios-Risk-Omission-Over-Sensitivity",
        ),
        ("judge.name-../../etc", "judge.name-..-..-etc"),
        ("a-x:y?z*", "a-x-y-z"),
        ("", ""),
    ],
)
def test_dirname_is_one_safe_directory_name(text: str, name: str) -> None:
    assert sweep.dirname(text) == name


def test_dirname_cuts_a_long_name_and_keeps_it_unique() -> None:
    a, b = "x" * 300 + "-1", "x" * 300 + "-2"
    assert len(sweep.dirname(a)) == sweep.DIRNAME_LIMIT
    assert sweep.dirname(a) != sweep.dirname(b) and sweep.dirname(a) == sweep.dirname(a)
