"""Asking the provider before a run (bsa.probe), against scripted servers: a retired id and a wrong
key are refused in seconds in the provider's words; a model that shuts down soon is warned about, one
already shut down refused; `bsa models` lists the cards and `--check` asks their providers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from helpers import responder, write_dataset
from helpers import scripted_overrides as overrides
from scripted_server import Reply, ScriptedServer
from test_resilience import make_rows, rule_for

from bsa.cards import Card, check, load_cards
from bsa.config import Config
from bsa.llm import Endpoint, ModelCallError
from bsa.probe import ask
from bsa.run import run

RETIRED = {
    "error": {
        "message": "The model `target` has been deprecated and no longer exists.",
        "type": "invalid_request_error",
        "code": "model_not_found",
    }
}


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("BSA_PROBE_KEY", "sk-right-one")
    yield "BSA_PROBE_KEY"


def test_a_retired_id_is_refused_in_seconds_in_the_providers_words(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(3)
    data = write_dataset(tmp_path / "d.csv", rows)
    inner = responder({r["query"]: r["id"] for r in rows}, rule_for(rows))

    def respond(body: dict[str, Any]) -> Reply:
        if body["model"] == "target":
            return Reply(status=404, error_body=RETIRED)
        return inner(body)

    listed = [{"id": "successor-model"}, {"id": "judge"}]
    with ScriptedServer(respond, models=listed) as server:
        t0 = time.monotonic()
        with pytest.raises(ModelCallError) as err:
            run(make_config(*overrides(server.api_base, data)), tmp_path / "run")
        assert time.monotonic() - t0 < 10
        # One 1-token probe, then nothing: no query was sent.
        asked = server.chat_requests("target")
        assert len(asked) == 1 and asked[0]["max_tokens"] == 1
    text = str(err.value)
    assert "does not serve this model" in text and "has been deprecated and no longer exists" in text
    assert "It lists: successor-model, judge" in text and "bsa models" in text


def test_a_wrong_key_is_refused_with_the_providers_words(
    tmp_path: Path, make_config: Callable[..., Config], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = make_rows(3)
    data = write_dataset(tmp_path / "d.csv", rows)
    monkeypatch.setenv(key, "sk-wrong-one")
    with ScriptedServer(
        responder({}, rule_for(rows)), models=[{"id": "target"}], key="sk-right-one"
    ) as server:
        cfg = make_config(*overrides(server.api_base, data), f"model.api_key_env={key}")
        with pytest.raises(ModelCallError) as err:
            run(cfg, tmp_path / "run")
        assert server.requests == []
    assert "refused the key in BSA_PROBE_KEY (HTTP 401: Incorrect API key provided.)" in str(err.value)
    assert "sk-wrong-one" not in str(err.value)


def test_shutdown_dates_warn_within_30_days_and_refuse_after(key: str) -> None:
    today = date(2026, 12, 20)
    soon = {"id": "gpt-4o-2024-08-06", "shutdown_date": "2027-01-14"}
    gone = {"id": "gpt-4o-2024-05-13", "shutdown_date": int(time.mktime((2026, 10, 23, 12, 0, 0, 0, 0, 0)))}
    later = {"id": "gpt-5", "shutdown_date": (today + timedelta(days=90)).isoformat()}
    with ScriptedServer(lambda body: Reply(), models=[soon, gone, later]) as server:

        def ep(model: str) -> Endpoint:
            return Endpoint(f"openai/{model}", server.api_base, key, role="judge")

        (warning,) = ask(ep("gpt-4o-2024-08-06"), today=today)
        assert "shuts gpt-4o-2024-08-06 down on 2027-01-14 (in 25 days)" in warning
        assert ask(ep("gpt-4o-2024-08-06"), today=date(2026, 12, 6)) == []  # 39 days out: no warning
        with pytest.raises(ModelCallError, match=r"shut gpt-4o-2024-05-13 down on 2026-10-23"):
            ask(ep("gpt-4o-2024-05-13"), today=today)
        assert ask(ep("gpt-5"), today=today) == []
        assert server.requests == []  # the list told all: no completion was asked


def test_bsa_models_lists_every_card_and_check_asks_the_providers(key: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bsa", "models"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    cards = load_cards()
    assert {c.name for c in cards} >= {"deepseek_r1", "gpt4o", "smollm2"}
    for c in cards:
        assert f"{c.group}={c.name}" in out.stdout
    with ScriptedServer(lambda body: Reply(), models=[{"id": "m"}], key="sk-right-one") as server:
        ok = Card("model", "mine", "hosted_vllm/m", server.api_base, key)
        assert check(ok) == "ok"
        unset = Card("model", "other", "openai/x", server.api_base, "BSA_UNSET_VARIABLE")
        assert check(unset) == "not asked: BSA_UNSET_VARIABLE is not set"
        retired = Card("model", "old", "openai/x", retired="2026-01-01", successors=("openai/y",))
        assert check(retired) == "not asked: retired" and retired.status == "retired 2026-01-01 → openai/y"
        os.environ[key] = "sk-wrong"
        assert check(ok).startswith("REFUSED: model hosted_vllm/m: ")
