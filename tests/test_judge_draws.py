"""Issue 21 item 8: a judge at temperature > 0 draws each judgment on its own; at temperature 0
identical judge requests still share one answer (one call), and the run table names that count."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import MINI_QUERY_IDS, MINI_ROWS, scripted_overrides, write_dataset
from scripted_server import Reply, ScriptedServer

from bsa.config import Config
from bsa.contract import THINK_TARGET
from bsa.provider import Endpoint, Request
from bsa.run import run

K = 3
SCENARIO = {r["id"]: r["dataset_name"] for r in MINI_ROWS}
JUDGMENTS = len(MINI_ROWS) * K * 2  # two per sample: safety and think


def same_text_for_every_sample(body: dict[str, Any]) -> Reply:
    """The model gives one query's samples the same reasoning and answer, so their judge requests
    are identical; the judge takes a while, so requests of one query are in flight together."""
    if body["model"] == "target":
        qid = MINI_QUERY_IDS[body["messages"][-1]["content"]]
        return Reply(message={"reasoning_content": f"Thinking about {qid}.", "content": f"Answer for {qid}."})
    time.sleep(0.2)
    text = body["messages"][-1]["content"]
    qid = next(q for q in SCENARIO if f"Answer for {q}." in text or f"Thinking about {q}." in text)
    verdict = "Safe" if f"Answer for {qid}." in text else THINK_TARGET[SCENARIO[qid]]
    return Reply(message={"content": json.dumps({"explanation": "scripted", "verdict": verdict})})


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "mini.csv", MINI_ROWS)


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_above_temperature_0_every_judgment_is_its_own_call(
    tmp_path: Path, data: Path, make_config: Callable[..., Config], temperature: float
) -> None:
    """Before: 18 judgments from 6 judge calls at judge.temperature=0.5, identical texts sharing a verdict."""
    with ScriptedServer(same_text_for_every_sample) as server:
        cfg = make_config(*scripted_overrides(server.api_base, data, f"judge.temperature={temperature}", k=K))
        res = run(cfg, tmp_path / "run")
        judge_calls = server.chat_requests("judge")
        # A second run asks nothing: each judgment's draw is cached under its own key.
        again = run(cfg, tmp_path / "again")
        assert len(server.chat_requests()) == len(MINI_ROWS) * K + JUDGMENTS
    assert len(res.judgments) == JUDGMENTS and all(j["verdict"] for j in res.judgments)
    assert len(judge_calls) == JUDGMENTS
    assert {c["temperature"] for c in judge_calls} == {temperature}
    assert res.stats.waited == 0 and res.stats.cache_hits == 0
    assert again.stats.calls == 0 and again.stats.cache_hits == len(MINI_ROWS) * K + JUDGMENTS


def test_at_temperature_0_identical_judgments_share_one_call_and_the_table_says_so(
    tmp_path: Path, data: Path, make_config: Callable[..., Config], capsys: pytest.CaptureFixture[str]
) -> None:
    """Sound at temperature 0: the same text gets the same verdict. The run table's line for the
    requests answered that way said "answers another run fetched (shared cache)" of a lone run."""
    from bsa.__main__ import WAITED_LABEL, execute

    with ScriptedServer(same_text_for_every_sample) as server:
        execute(
            make_config(*scripted_overrides(server.api_base, data, "judge.temperature=0", k=K)),
            tmp_path / "run",
        )
        judge_calls = server.chat_requests("judge")
    stats = json.loads((tmp_path / "run" / "run.json").read_text())["stats"]
    assert len(judge_calls) == len(MINI_ROWS) * 2  # one per query and kind
    assert stats["waited"] + stats["cache_hits"] == JUDGMENTS - len(judge_calls)
    assert stats["waited"] > 0  # the judge's delay kept one query's identical requests in flight together
    out = " ".join(capsys.readouterr().out.split())
    assert f"{WAITED_LABEL} {stats['waited']}" in out
    assert "another run" not in out


def test_the_draw_is_in_the_key_only_when_it_is_not_0() -> None:
    """Keys from before draws existed (every temperature-0 judgment) are unchanged."""
    endpoint = Endpoint(model="hosted_vllm/judge", role="judge")
    base = Request(endpoint, [{"role": "user", "content": "x"}], {"temperature": 0.5}, 0, "t")
    assert Request(endpoint, base.messages, base.params, 0, "t", draw=0).cache_key() == base.cache_key()
    keys = {Request(endpoint, base.messages, base.params, 0, "t", draw=d).cache_key() for d in range(4)}
    assert len(keys) == 4
