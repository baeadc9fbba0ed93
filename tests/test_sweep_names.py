"""Issue 21 item 7: a sweep point's dir is named by the swept overrides only (``1_alpha-0.7``), not by
every override of the command (≈150 characters of model, judge, api_base, dataset, k, seed…); the
full overrides stay in the point's ``.hydra/overrides.yaml``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from helpers import responder, scripted_overrides, write_dataset
from scripted_server import ScriptedServer
from test_pipeline import QUERY_IDS, ROWS, scripted

from bsa import sweep


def _dirs(sweep_dir: Path) -> list[str]:
    return sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]])
def test_a_bsa_sweep_names_its_points_by_the_swept_key(tmp_path: Path, launcher: list[str]) -> None:
    """Before: 0_dataset-bsa__judge-openai_compatible__judge.name-hosted_vllm-judge__model-…__sampling.k-2…"""
    if launcher:  # the name is made where the point runs: a joblib worker too
        pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[sweep]'")
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    sweep_dir = tmp_path / "sweep"
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        given = [*scripted_overrides(server.api_base, data, k=2), "progress=false", "alpha=0.5,0.7"]
        cmd = [
            sys.executable, "-m", "bsa", "-m", *given, f"cache.dir={tmp_path / 'cache'}",
            f"hydra.sweep.dir={sweep_dir}", *launcher,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    points = [name for name in _dirs(sweep_dir) if name != sweep.REPORT_DIR]
    assert points == ["0_alpha-0.5", "1_alpha-0.7"]
    for name, alpha in zip(points, ("0.5", "0.7"), strict=True):
        kept = yaml.safe_load((sweep_dir / name / ".hydra" / "overrides.yaml").read_text())
        assert {
            "model.name=hosted_vllm/target",
            "sampling.k=2",
            f"dataset.path={data}",
            f"alpha={alpha}",
        } <= set(kept)


# A Hydra app with bsa's callback and subdir: an experiment's grid (hydra.sweeper.params) is swept too,
# a command-line value replaces that axis, and a key given one value names no point.
APP = """
import hydra

@hydra.main(version_base="1.3", config_path=None, config_name="app")
def task(cfg):
    pass

if __name__ == "__main__":
    from hydra.core.config_store import ConfigStore
    ConfigStore.instance().store(name="app", node={
        "a": 0, "b": 0, "c": "x", "d": 0,
        "hydra": {
            "callbacks": {"points": {"_target_": "bsa.sweep.SweepPoints"}},
            "sweeper": {"params": {"b": "1,2", "d": "1,2,3"}},
            "job": {"config": {"override_dirname": {"kv_sep": "-", "item_sep": "__"}}},
            "sweep": {"subdir": "${hydra.job.num}_${bsa_dirname:${hydra.job.override_dirname},60}"},
        },
    })
    task()
"""


def test_an_experiments_grid_is_swept_and_a_fixed_key_names_nothing(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP))
    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, str(app), "-m", "a=7", "c=x,y", "d=4", f"hydra.sweep.dir={sweep_dir}"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert _dirs(sweep_dir) == ["0_b-1__c-x", "1_b-1__c-y", "2_b-2__c-x", "3_b-2__c-y"]


def test_swept_keys_reads_the_command_line_over_the_grid() -> None:
    swept, fixed = sweep.swept_keys(
        [
            "model=a,b",
            "+experiment=study",
            "sampling.k=2",
            "x=choice(1)",
            "y=range(0,3)",
            "d=5",
            "t=interval(0,1)",
        ],
        {"d": "1,2", "e": "3,4"},
    )
    assert swept == {"model", "y", "e", "t"}
    assert fixed == {"experiment", "sampling.k", "x", "d"}


def test_a_long_name_drops_key_prefixes_then_is_cut_with_a_hash() -> None:
    grid = "sampling.temperature-0.6__sampling.top_k-20__sampling.top_p-0.95"  # the decoding study
    assert sweep.dirname(grid, sweep.POINT_LIMIT) == "temperature-0.6__top_k-20__top_p-0.95"
    assert sweep.dirname(grid) == grid  # under the default limit, kept whole
    # Last parts that would clash keep their prefixes; too long still, the name is cut with a hash.
    clash = "judge.temperature-0.5__model.name-hosted_vllm/Qwen/Qwen3-8B__sampling.temperature-0.6"
    a = sweep.dirname(clash, sweep.POINT_LIMIT)
    b = sweep.dirname(clash.replace("0.6", "0.7"), sweep.POINT_LIMIT)
    assert (
        max(len(a), len(b)) <= sweep.POINT_LIMIT and a != b and a.startswith("judge.temperature-0.5__model")
    )
