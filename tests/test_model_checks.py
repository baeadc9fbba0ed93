"""What a run checks of the models that answer it, against scripted servers: a reply from another
model than the one asked for stops the run (or, allowed, marks it not comparable); a reasoning card
whose first samples carry no trace stops early; a dollar budget needs a price for every model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import responder, write_dataset
from helpers import scripted_overrides as overrides
from scripted_server import Reply, ScriptedServer
from test_resilience import make_rows, rule_for

from bsa.config import Config, ConfigError
from bsa.llm import same_model
from bsa.run import RunIncomplete, run


@pytest.mark.parametrize(
    ("asked", "answered", "same"),
    [
        ("openai/gpt-4o", "gpt-4o-2024-08-06", True),  # an alias answers as its snapshot
        ("openai/gpt-4o-2024-08-06", "gpt-4o-2024-08-06", True),
        ("openai/gpt-4o", "gpt-4o-mini", False),
        ("together_ai/deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-R1", True),
        ("deepseek/deepseek-reasoner", "deepseek-v3.2", False),  # the name kept, another model behind it
        ("gemini/gemini-2.5-pro", "models/gemini-2.5-pro", True),
        ("gemini/gemini-2.5-pro", "gemini-3-pro-preview", False),
        ("anthropic/claude-3-7-sonnet-20250219", "claude-3-7-sonnet-20250219", True),
        ("hosted_vllm/smollm2", "smollm2", True),
        ("hosted_vllm/target", "", True),  # a server that names no model
    ],
)
def test_same_model(asked: str, answered: str, same: bool) -> None:
    assert same_model(asked, answered) is same


def _renamed(inner: Callable[[dict[str, Any]], Reply], name: str) -> Callable[[dict[str, Any]], Reply]:
    def respond(body: dict[str, Any]) -> Reply:
        reply = inner(body)
        if body["model"] == "target":
            reply.model = name
        return reply

    return respond


def test_a_substituted_model_stops_the_run_or_is_marked_not_comparable(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(6)
    data = write_dataset(tmp_path / "d.csv", rows)
    serve = _renamed(responder({r["query"]: r["id"] for r in rows}, rule_for(rows)), "successor-v2")
    with ScriptedServer(serve) as server:
        with pytest.raises(RunIncomplete) as err:
            run(make_config(*overrides(server.api_base, data), "concurrency=1"), tmp_path / "stopped")
        assert len(server.chat_requests("target")) <= 2  # stopped at the first reply
        assert "answered as 'successor-v2', not the model asked for" in str(err.value)
        assert "model.allow_substitution=true" in str(err.value)
        assert err.value.results.generations == []  # nothing of the other model was kept
        res = run(
            make_config(*overrides(server.api_base, data), "model.allow_substitution=true"),
            tmp_path / "allowed",
        )
    assert {g["response_model"] for g in res.generations} == {"successor-v2"}
    assert {j["response_model"] for j in res.judgments} == {"judge"}
    m = json.loads((tmp_path / "allowed" / "metrics.json").read_text())
    assert m["not_comparable"].startswith("answered by another model")
    info = json.loads((tmp_path / "allowed" / "run.json").read_text())
    assert info["answering_models"]["model"] == {"hosted_vllm/target": {"successor-v2": 12}}
    assert info["answering_models"]["substituted"] is True

    from bsa.report.comparability import paper_match
    from bsa.report.loading import load_run

    loaded = load_run(tmp_path / "allowed")
    assert not paper_match(loaded).comparable
    assert loaded.answered_by == "answered by successor-v2"

    from bsa.report import build
    from bsa.report.tables import details_table

    details = details_table(build([loaded], n_boot=50))
    assert any("hosted_vllm/target (answered by successor-v2)" in cell for cell in details.rows[0])


def test_a_reasoning_card_without_reasoning_stops_early(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(40)
    data = write_dataset(tmp_path / "d.csv", rows)
    ids = {r["query"]: r["id"] for r in rows}
    # Thinking off at the provider: the answer only, no trace anywhere.
    plain = responder(ids, rule_for(rows), shape=lambda r, a: {"content": a})
    with ScriptedServer(plain) as server:
        cfg = make_config(*overrides(server.api_base, data, k=2), "model.reasoning=true", "concurrency=2")
        with pytest.raises(RunIncomplete) as err:
            run(cfg, tmp_path / "run")
        asked = len(server.chat_requests("target"))
    assert "50 of the first 50 samples of hosted_vllm/target carry no reasoning trace" in str(err.value)
    assert "thinking is not enabled" in str(err.value)
    assert asked < 60  # of the 80: stopped after the first 50 and the few in flight
    # The same card with a trace runs through.
    with ScriptedServer(responder(ids, rule_for(rows))) as server:
        res = run(
            make_config(*overrides(server.api_base, data, k=2), "model.reasoning=true"), tmp_path / "ok"
        )
    assert res.complete


def test_a_dollar_budget_needs_a_price_for_every_model(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(3)
    data = write_dataset(tmp_path / "d.csv", rows)
    with ScriptedServer(responder({r["query"]: r["id"] for r in rows}, rule_for(rows))) as server:
        base = [*overrides(server.api_base, data), "max_cost_usd=1"]
        with pytest.raises(
            ConfigError, match=r"no price for model hosted_vllm/target, judge hosted_vllm/judge"
        ):
            run(make_config(*base), tmp_path / "refused")
        assert server.requests == [] and not (tmp_path / "refused").exists()
        priced = [
            "model.input_cost_per_mtok=2",
            "model.output_cost_per_mtok=10",
            "judge.input_cost_per_mtok=0",
            "judge.output_cost_per_mtok=0",
        ]
        res = run(make_config(*base, *priced), tmp_path / "priced")
    # The scripted usage: 10 prompt and 20 completion tokens per call, 6 model calls.
    assert res.stats.cost_usd == pytest.approx(6 * (10 * 2 + 20 * 10) / 1e6)
    assert all(g["cost_usd"] == pytest.approx((10 * 2 + 20 * 10) / 1e6) for g in res.generations)


def test_a_seed_for_anthropic_is_refused_before_any_call(make_config: Callable[..., Config]) -> None:
    from bsa.config import validate

    cfg = make_config("model=openai_compatible", "model.name=anthropic/claude-sonnet-4-6", "sampling.seed=0")
    with pytest.raises(ConfigError, match=r"sampling\.seed=0: anthropic/claude-sonnet-4-6 takes no seed"):
        validate(cfg)
