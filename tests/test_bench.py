"""``make bench`` in miniature: every client runs in every round, on the same request set, with the
machine's probe and the ratios to the floor printed (tests/bench_rounds.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench_rounds import CLIENTS, TITLES, direct_transport_available
from conftest import dataset_path

BENCH = Path(__file__).resolve().parent / "bench_rounds.py"


@pytest.mark.skipif(
    dataset_path() is None,
    reason="BSA dataset not found: set BSA_DATASET or put it at ../shared/bsa/dataset.csv",
)
def test_bench_runs_every_client_in_every_round_against_the_floor(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--requests", "15", "--rounds", "2", "--latency-ms", "10", "--concurrency", "4"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "BSA_BENCH_BASE"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    expected = [k for k in CLIENTS if k != "bsa-direct" or direct_transport_available()]
    expected.remove("bsa-base")  # only with BSA_BENCH_BASE=another checkout
    if "bsa-direct" not in expected:
        assert "bsa-direct skipped" in text
    for kind in expected:
        assert TITLES[kind] in text, f"{kind} missing from the table:\n{text}"
    assert "round 1: probe" in text and "round 2: probe" in text
    assert "wall ÷ floor" in text and "CPU ÷ floor" in text

    got = json.loads(out.read_text())
    rounds = got["rounds"]
    assert len(rounds) == 2
    assert rounds[0]["order"] != rounds[1]["order"], "the order must rotate between rounds"
    for r in rounds:
        assert r["probe_cpu_ms"] > 0
        assert sorted(r["clients"]) == sorted(expected)
        for kind, c in r["clients"].items():
            # One request set for all: 1 query × k=5 × (a generation and two judgments).
            assert c["requests"] == 15, (kind, c)
            assert not c["error"] and not c["failed"], (kind, c)
            assert c["cpu_s"] > 0 and c["wall_s"] >= c["ideal_s"] * 0.9, (kind, c)
            assert c["server_max_in_flight"] <= 4, (kind, c)
            assert "wall_vs_floor" in c and "cpu_vs_floor" in c, (kind, c)
        assert r["clients"]["floor"]["wall_vs_floor"] == 1.0
    summary = got["summary"]
    assert sorted(summary) == sorted(expected)
    for row in summary.values():
        assert row["cpu_ms_per_request"]["min"] <= row["cpu_ms_per_request"]["median"]
