"""Sweeps beyond one process: `python -m bsa -m` with the joblib and submitit_local launchers (points
in parallel processes sharing one cache dir), and managed servers kept across the points of an
in-process sweep (bsa.server.acquire). No GPU: a loopback scripted server, and a stand-in for vLLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO
from helpers import responder, scripted_overrides, write_dataset
from scripted_server import ScriptedServer
from test_pipeline import QUERY_IDS, ROWS, scripted

pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[sweep]'")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[sweep]'")

K = 2
CALLS = len(ROWS) * K * 3  # each sample: one generation, two judgments


def _request_key(body: dict) -> str:
    return json.dumps([body["model"], body["messages"], body.get("seed")], sort_keys=True)


def _sweep(tmp_path: Path, launcher: list[str], sweep_dir: Path) -> tuple[subprocess.CompletedProcess, list]:
    """Two points (alpha=0.5,0.7: the same calls) against one scripted server and one cache dir."""
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        cmd = [
            sys.executable, "-m", "bsa", "-m",
            *scripted_overrides(server.api_base, data, k=K),
            f"cache.dir={tmp_path / 'cache'}", "progress=false", "alpha=0.5,0.7",
            f"hydra.sweep.dir={sweep_dir}", *launcher,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
        assert not server.errors, server.errors
    return out, server.chat_requests()


def _points(sweep_dir: Path) -> list[Path]:
    """The sweep's run dirs (not its report/ or hidden bookkeeping)."""
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and (p / "run.json").is_file())


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    volatile = ("latency_s", "cost_usd")  # a point that got its answers from the cache waited less
    kept = [{k: v for k, v in r.items() if k not in volatile} for r in rows]
    return sorted(kept, key=lambda r: json.dumps(r, sort_keys=True))


def _check_points(sweep_dir: Path) -> list[dict]:
    points = _points(sweep_dir)
    assert [p.name.split("_")[0] for p in points] == ["0", "1"]
    metrics = []
    for p in points:
        for name in ("run.json", "generations.jsonl", "judgments.jsonl", "metrics.json", "bsa_results.csv"):
            assert (p / name).is_file(), f"{p / name} missing"
        assert json.loads((p / "run.json").read_text())["status"] == "complete"
        metrics.append(json.loads((p / "metrics.json").read_text()))
    a, b = points
    for name in ("generations.jsonl", "judgments.jsonl"):
        rows = _rows(a / name)
        assert len(rows) == len(ROWS) * K * (1 if name.startswith("gen") else 2)
        assert rows == _rows(b / name), name
    # alpha moves the F-score only
    assert metrics[0]["safe_at_1"] == metrics[1]["safe_at_1"]
    assert metrics[0]["f_score"] != metrics[1]["f_score"]
    return metrics


def _each_call_once(requests: list[dict]) -> None:
    counts = Counter(_request_key(r) for r in requests)
    assert len(counts) == CALLS and set(counts.values()) == {1}, counts.most_common(3)


def test_joblib_sweep_points_in_parallel_processes_share_one_cache(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    out, requests = _sweep(tmp_path, launcher, sweep_dir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in out.stdout + out.stderr
    _each_call_once(requests)
    metrics = _check_points(sweep_dir)
    # The same command in the same sweep dir (as a requeued SLURM job runs it): each point continues
    # in its own run dir, nothing is called again and the rows stay as they were.
    before = {p.name: (p / "judgments.jsonl").read_bytes() for p in _points(sweep_dir)}
    out, requests = _sweep(tmp_path, launcher, sweep_dir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert requests == []
    assert {p.name: (p / "judgments.jsonl").read_bytes() for p in _points(sweep_dir)} == before
    assert _check_points(sweep_dir) == metrics


def test_submitit_local_sweep_points_in_parallel_processes_share_one_cache(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    out, requests = _sweep(tmp_path, ["hydra/launcher=submitit_local"], sweep_dir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    _each_call_once(requests)
    _check_points(sweep_dir)
    # submitit's job folders (one per point, named by job id = the job's pid) are under the sweep dir
    jobs = [p for p in (sweep_dir / ".submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == 2
    logs = [next(j.glob("*_log.out")).read_text() for j in jobs]
    assert all("Results:" in log for log in logs)


# A Hydra app whose task acquires a managed server, as bsa.run does; the server is a stand-in for
# `vllm serve` (tests/test_server.py FAKE_VLLM). Check runs after StopServers at the end of the multirun.
APP = """
import json
from pathlib import Path
import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
import bsa.server
from bsa.config import ServeConfig
from test_server import fake_vllm  # tests/ is on PYTHONPATH, for joblib's workers too

PROCS = []

class Check(Callback):
    def on_multirun_end(self, config, **kwargs):
        print("ALIVE_AFTER_MULTIRUN", sum(p.poll() is None for p in PROCS), flush=True)

@hydra.main(version_base="1.3", config_path=None, config_name="app")
def main(cfg):
    if bsa.server.POOL.factory is not fake_vllm:  # once per process, whichever runs the point
        bsa.server.POOL = bsa.server.ServerPool(fake_vllm)
    serve = ServeConfig(backend="vllm", served_name="m", startup_timeout_s=30)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with bsa.server.acquire(serve, cfg.hf_model, run_dir, "model") as lease:
        PROCS.append(lease.server.proc)
        point = {{"hf_model": cfg.hf_model, "a": cfg.a, "reused": lease.reused, "api_base": lease.api_base}}
        # a file per point, not stdout: joblib's workers share the parent's pipe, and a loaded CI
        # machine once lost two workers' lines while every job succeeded
        (run_dir / "point.json").write_text(json.dumps(point))

if __name__ == "__main__":
    from hydra.core.config_store import ConfigStore
    ConfigStore.instance().store(name="app", node={{
        "hf_model": "Qwen/Qwen3-8B", "a": 0,
        # Hydra calls end callbacks in reverse order: StopServers, then Check
        "hydra": {{"callbacks": {{
            "check": {{"_target_": "__main__.Check"}},
            "stop": {{"_target_": "bsa.sweep.StopServers"}},
        }}}},
    }})
    main()
"""


def _app(tmp_path: Path, *args: str) -> tuple[list[dict], list[dict], str]:
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP.format()))
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "BSA_TEST_STARTS": str(tmp_path / "starts.jsonl"), "PYTHONPATH": path}
    cmd = [sys.executable, str(app), "-m", "hf_model=Qwen/Qwen3-8B,Qwen/Qwen3-14B", "a=1,2",
           f"hydra.sweep.dir={tmp_path / 'sweep'}", *args]  # fmt: skip
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    point_files = sorted((tmp_path / "sweep").glob("*/point.json"), key=lambda f: int(f.parent.name))
    points = [json.loads(f.read_text()) for f in point_files]
    starts = [json.loads(line) for line in (tmp_path / "starts.jsonl").read_text().splitlines()]
    for s in starts:  # every server is gone once the sweep is
        with pytest.raises(ProcessLookupError):
            os.kill(s["pid"], 0)
    return points, starts, out.stdout


def test_an_in_process_sweep_keeps_one_server_per_model(tmp_path: Path) -> None:
    points, starts, stdout = _app(tmp_path)
    assert [(p["hf_model"], p["a"], p["reused"]) for p in points] == [
        ("Qwen/Qwen3-8B", 1, False),
        ("Qwen/Qwen3-8B", 2, True),
        ("Qwen/Qwen3-14B", 1, False),
        ("Qwen/Qwen3-14B", 2, True),
    ]
    assert points[0]["api_base"] == points[1]["api_base"] != points[2]["api_base"] == points[3]["api_base"]
    assert [s["args"][1] for s in starts] == ["Qwen/Qwen3-8B", "Qwen/Qwen3-14B"]
    assert "ALIVE_AFTER_MULTIRUN 0" in stdout  # stopped by bsa.sweep.StopServers, not only at exit


def test_a_joblib_sweep_starts_a_server_per_point_and_leaves_none(tmp_path: Path) -> None:
    points, starts, _ = _app(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert len(points) == 4 and not any(p["reused"] for p in points)
    assert len(starts) == 4


def test_bsa_slurm_builds_on_the_plugin_config_without_shadowing_it() -> None:
    import warnings

    from conftest import CONF
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with warnings.catch_warnings():
        # a file named like the plugin's config would be "validated against ConfigStore schema"
        warnings.filterwarnings("error", message=".*ConfigStore schema.*")
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            ours = compose("config", ["hydra/launcher=bsa_slurm", "hydra.launcher.partition=p"], True)
            plugin = compose("config", ["hydra/launcher=submitit_slurm"], return_hydra_config=True)
    launcher = ours.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.max_num_timeout) == ("p", 720, 3)
    assert launcher.submitit_folder == f"{ours.hydra.sweep.dir}/.submitit/%j"  # job logs: in the sweep dir
    assert plugin.hydra.launcher.timeout_min == 60  # the plugin's own config is untouched
    assert list(ours.hydra.callbacks) == ["stop_managed_servers", "sweep_points", "run_dir"]
    instantiate(launcher)  # the plugin accepts every key
