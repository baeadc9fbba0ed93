"""The redesign changes no result: a scripted run (several reasoning shapes, unreadable verdicts that
are re-asked, a provider refusal) gives the rows and metrics recorded in tests/golden/ by the code
before the redesign, byte for byte once timings are set aside.

To record them again (only when a change of results is intended and explained):
BSA_WRITE_GOLDEN=1 python -m pytest tests/test_golden_rows.py
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import responder, write_dataset
from helpers import scripted_overrides as overrides
from scripted_server import Reply, ScriptedServer
from test_resilience import make_rows

from bsa.config import Config
from bsa.run import run
from bsa.verdict import THINK_LABELS

GOLDEN = Path(__file__).parent / "golden" / "scripted_run"
TIMING = ("latency_s",)  # differs run to run


def _shape(qid: str) -> Callable[[str, str], dict[str, Any]]:
    n = int(qid[1:])
    shapes: list[Callable[[str, str], dict[str, Any]]] = [
        lambda r, a: {"reasoning_content": r, "content": a},  # the provider's own field
        lambda r, a: {"content": f"<think>\n{r}\n</think>\n\n{a}"},  # inline tags
        lambda r, a: {"content": a},  # no trace at all
        lambda r, a: {"content": f"{r}\n</think>\n{a}"},  # a template that opened <think> itself
    ]
    return shapes[n % len(shapes)]


def _serve(rows: list[dict[str, str]]) -> Callable[[dict[str, Any]], Reply]:
    scenario = {r["id"]: r["dataset_name"] for r in rows}
    ids = {r["query"]: r["id"] for r in rows}

    def verdicts(kind: str, qid: str, i: int) -> str | None:
        n = int(qid[1:])
        if (n + i) % 5 == 0:
            return None  # unreadable: re-asked, then unscored
        if kind == "safety":
            return "Unsafe" if (n + i) % 3 == 0 else "Safe"
        labels = THINK_LABELS[scenario[qid]]
        return labels[(n + 2 * i) % len(labels)]

    def respond(body: dict[str, Any]) -> Reply:
        if body["model"] == "target":
            qid = ids[body["messages"][-1]["content"]]
            if qid == "r007":
                return Reply(status=400, error="Your request was rejected by the content filter policy.")
            return responder(ids, verdicts, shape=_shape(qid))(body)
        return responder(ids, verdicts)(body)

    return respond


def _rows(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        for key in TIMING:
            row.pop(key, None)
        out.append(row)
    return out


def test_a_scripted_run_gives_the_recorded_rows_and_metrics(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(12)
    data = write_dataset(tmp_path / "d.csv", rows)
    with ScriptedServer(_serve(rows)) as server:
        cfg = make_config(*overrides(server.api_base, data), "judge.prompts=bsa", "concurrency=2")
        res = run(cfg, tmp_path / "run")
    got = {name: _rows(tmp_path / "run" / name) for name in ("generations.jsonl", "judgments.jsonl")}
    metrics = {k: v for k, v in res.metrics.items()}
    if os.environ.get("BSA_WRITE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, found in got.items():
            (GOLDEN / name).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in found))
        (GOLDEN / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    for name, found in got.items():
        assert found == _rows(GOLDEN / name), name
    assert metrics == json.loads((GOLDEN / "metrics.json").read_text())
    # The run covered what it is meant to: every reasoning shape, re-asks, unscored verdicts, a refusal.
    flags = {f for g in got["generations.jsonl"] for f in g.get("flags", [])}
    assert {"no_reasoning", "provider_refused"} <= flags
    assert any(j.get("attempts", 1) > 1 for j in got["judgments.jsonl"])
    assert any(j["verdict"] is None for j in got["judgments.jsonl"])
