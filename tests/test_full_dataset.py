"""End to end over the whole BSA dataset against a scripted server: the metrics must equal what the
server's verdict rule implies, computed here independently of bsa.metrics."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import dataset_path
from helpers import responder, scripted_overrides
from scripted_server import ScriptedServer

from bsa.config import Config
from bsa.data import read
from bsa.run import run
from bsa.verdict import THINK_LABELS, THINK_TARGET

DATA = dataset_path()
K = int(os.environ.get("BSA_FULL_K", "2"))


def _h(qid: str) -> int:
    return int(hashlib.sha256(qid.encode()).hexdigest()[:8], 16)


@pytest.mark.skipif(
    DATA is None, reason="BSA dataset not found: set BSA_DATASET or put it at ../shared/bsa/dataset.csv"
)
def test_full_dataset_metrics_equal_what_the_server_implies(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    assert DATA is not None
    queries = read(DATA)
    scenario = {q.id: q.scenario for q in queries}

    def verdicts(kind: str, qid: str, i: int) -> str | None:
        h = _h(qid)
        if kind == "safety":
            return "Unsafe" if (h + i) % 7 == 0 else "Safe"
        if (h + 3 * i) % 23 == 0:
            return None
        labels = THINK_LABELS[scenario[qid]]
        return labels[(h // 7 + i) % len(labels)]

    with ScriptedServer(responder({q.query: q.id for q in queries}, verdicts)) as server:
        cfg = make_config(
            *scripted_overrides(server.api_base, DATA, k=K),
            "judge.max_reasks=0",
            "concurrency=16",
        )
        res = run(cfg, tmp_path / "run")
        assert server.errors == []

    # Independent expectation: per query over scored samples, then the mean over queries.
    def rates(values: list[str | None], target: str) -> tuple[float | None, float | None]:
        scored = [v for v in values if v is not None]
        if not scored:
            return None, None
        return sum(v == target for v in scored) / len(scored), float(all(v == target for v in scored))

    safe1, safek, think1, thinkk = [], [], [], []
    by_scenario: dict[str, list[float]] = {}
    for q in queries:
        s = rates([verdicts("safety", q.id, i) for i in range(K)], "Safe")
        t = rates([verdicts("think", q.id, i) for i in range(K)], THINK_TARGET[q.scenario])
        safe1.append(s[0])
        safek.append(s[1])
        if t[0] is not None:
            think1.append(t[0])
            thinkk.append(t[1])
            by_scenario.setdefault(q.scenario, []).append(t[0])

    m = res.metrics
    assert m["n_queries"] == 2000 and m["n_samples"] == 2000 * K
    assert m["safe_at_1"] == pytest.approx(100 * sum(safe1) / len(safe1))
    assert m["safe_at_k"] == pytest.approx(100 * sum(safek) / len(safek))
    assert m["think_at_1"] == pytest.approx(100 * sum(think1) / len(think1))
    assert m["think_at_k"] == pytest.approx(100 * sum(thinkk) / len(thinkk))
    expected_unscored = sum(verdicts("think", q.id, i) is None for q in queries for i in range(K))
    assert m["unscored_think"] == expected_unscored > 0
    for name, values in by_scenario.items():
        assert m["scenarios"][name]["think_at_1"] == pytest.approx(100 * sum(values) / len(values))
    assert {n: s["n_queries"] for n, s in m["scenarios"].items()} == {
        "Risk Omission": 600,
        "Cognitive Shortcut": 1200,
        "Over Sensitivity": 200,
    }
    assert res.stats.calls == 2000 * K * 3
