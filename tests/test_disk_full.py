"""A run dir whose disk fills mid-run: a clean stop (exit 3, the path and the space needed named),
no half-written row, run.json "partial", and a resume after freeing space that makes no repeated call
and gives the exact metrics. The disk is a small tmpfs (the tests run as root); where mounting is not
allowed the test skips, saying so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from helpers import responder, write_dataset
from helpers import scripted_overrides as overrides
from scripted_server import Reply, ScriptedServer
from test_resilience import make_rows, rule_for

from bsa.config import Config
from bsa.run import run

PAD = "x" * 6000  # per reasoning trace: 24 samples fill a 300 kB disk halfway through the run


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mnt)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {made.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _padded(inner: Callable[[dict[str, Any]], Reply]) -> Callable[[dict[str, Any]], Reply]:
    def respond(body: dict[str, Any]) -> Reply:
        reply = inner(body)
        if body["model"] == "target":
            reply.message["reasoning_content"] += PAD
        return reply

    return respond


def test_disk_full_stops_cleanly_and_a_resume_is_exact(
    tmp_path: Path, small_disk: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(12)
    data = write_dataset(tmp_path / "d.csv", rows)
    serve = _padded(responder({r["query"]: r["id"] for r in rows}, rule_for(rows)))
    run_dir = small_disk / "run"
    cache = tmp_path / "cache"
    with ScriptedServer(serve) as server:
        reference = run(
            make_config(*overrides(server.api_base, data), f"cache.dir={tmp_path / 'ref-cache'}"),
            tmp_path / "ref",
        )
        calls = len(server.requests)
        cmd = [sys.executable, "-m", "bsa", *overrides(server.api_base, data), f"hydra.run.dir={run_dir}"]
        env = {**os.environ, "BSA_CACHE_DIR": str(cache), "COLUMNS": "400"}
        out = subprocess.run([*cmd, "progress=false"], cwd=REPO, env=env, capture_output=True, text=True)
        asked = len(server.requests) - calls
        text = " ".join((out.stdout + out.stderr).split())
        assert out.returncode == 3, text[-3000:]
        assert "Traceback" not in text
        assert f"no space left to write {run_dir}" in text and "more is needed to finish" in text, text[
            -3000:
        ]
        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "partial" and "no space left" in info["stop_reason"]
        written = {}
        for name in ("generations.jsonl", "judgments.jsonl"):
            raw = (run_dir / name).read_text()
            assert raw == "" or raw.endswith("\n"), f"{name} ends in a half-written row"
            written[name] = [json.loads(line) for line in raw.splitlines()]  # every line whole
        assert 0 < len(written["generations.jsonl"]) < 24

        subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
        before = len(server.requests)
        resumed = subprocess.run([*cmd, "progress=false"], cwd=REPO, env=env, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        # No request was asked twice: the answers that arrived after the disk filled came from the cache.
        assert asked + len(server.requests) - before == calls
    m = json.loads((run_dir / "metrics.json").read_text())
    for key in ("safe_at_1", "safe_at_k", "think_at_1", "think_at_k", "f_score"):
        assert m[key] == reference.metrics[key], key
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    assert not (run_dir / ".bsa-reserve").exists()
