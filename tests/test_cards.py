"""Model cards answer today or say when they stopped: every card composes, API cards cite the provider
page they were checked against, a retired model is refused before any call with its successors named,
and the paper's judge is a pinned snapshot (README: "Model cards: how a card is kept current")."""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import CONF, REPO, compose_config

from bsa.config import Config, ConfigError, ModelConfig, retired_problem, validate
from bsa.report.reference import REFERENCE_CSV, REFERENCE_NAMES

# Retired by their providers (issue 19's audit, 2026-12): no card may name one without `retired:`.
RETIRED_IDS = (
    "deepseek/deepseek-reasoner",
    "claude-3-7-sonnet-20250219",
    "claude-sonnet-4-20250514",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "glm-z1",  # the whole GLM-Z1 series is offline on BigModel
)
PAPER_JUDGE = "openai/gpt-4o-2024-08-06"
# Cards that name no model of their own (the user gives it) or are not reasoning models.
GENERIC = {"openai_compatible", "vllm_local", "smollm2"}
REQUIRED = {
    "openai_compatible": ["model.name=hosted_vllm/m", "model.api_base=http://127.0.0.1:9/v1"],
    "vllm_local": ["model.hf_model=Qwen/Qwen3-8B"],
}
CARDS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def card(name: str) -> Config:
    return compose_config([f"model={name}", *REQUIRED.get(name, [])])


def api_hosted(m: ModelConfig) -> bool:
    """A provider's API, not a server the user or bsa runs (hosted_vllm/, a served backend)."""
    return m.serve.backend == "none" and not m.name.startswith("hosted_vllm/")


def names_retired_id(name: str) -> bool:
    return any(r in name for r in RETIRED_IDS)


@pytest.mark.parametrize("name", CARDS)
def test_every_card_names_a_live_model_or_says_when_it_retired(name: str) -> None:
    m = card(name).model
    if api_hosted(m) and names_retired_id(m.name):
        assert m.retired, f"model={name}: {m.name} is retired by its provider; set retired: and successors:"
    if m.retired:
        datetime.date.fromisoformat(m.retired)  # YYYY-MM-DD
        assert m.successors, f"model={name}: a retired card names its successors"
        assert m.docs, f"model={name}: a retired card cites where its retirement is documented"
    elif api_hosted(m) and name not in GENERIC:
        assert m.docs and m.docs.startswith("https://"), f"model={name}: cite the provider page (docs:)"
    if name not in GENERIC:
        assert m.reasoning, f"model={name}: every leaderboard model is a reasoning model (reasoning: true)"


def test_every_leaderboard_row_has_a_card() -> None:
    published = set(pd.read_csv(REFERENCE_CSV)["Models"])
    assert published == set(REFERENCE_NAMES.values())
    missing = [c for c in REFERENCE_NAMES if c not in CARDS]
    assert missing == [], f"leaderboard rows without a card: {missing}"


@pytest.mark.parametrize("name", [c for c in CARDS if card(c).model.retired])
def test_a_retired_card_is_refused_with_its_successors(name: str) -> None:
    cfg = card(name)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    msg = str(err.value)
    assert f"model={name}: {cfg.model.name} was retired on {cfg.model.retired}" in msg
    for successor in cfg.model.successors:
        assert successor in msg
    assert "model.retired=null" in msg  # the way out, for an account that still reaches it
    # … which works: the same card, with the retirement waived, passes every other check.
    validate(compose_config([f"model={name}", "model.retired=null"]))


def test_only_a_past_date_retires_and_a_malformed_one_is_named() -> None:
    today = datetime.date(2026, 12, 6)
    m = ModelConfig(name="provider/m", retired="2027-01-14", successors=["provider/n"])
    assert retired_problem(m, today) is None  # announced, still served
    assert retired_problem(ModelConfig(name="provider/m", retired="2026-12-06"), today) is not None
    problem = retired_problem(ModelConfig(name="provider/m", retired="14/01/2027"), today)
    assert problem == "model.retired='14/01/2027': not a date; write YYYY-MM-DD (or model.retired=null)"
    # A model of no card is named by its id; open weights are offered where the card has them.
    problem = retired_problem(ModelConfig(name="provider/x", retired="2026-01-01", hf_model="org/x"), today)
    assert problem is not None and problem.startswith("model.name=provider/x: provider/x was retired on ")
    assert "model=vllm_local model.hf_model=org/x" in problem and "its successors: none named" in problem


def test_the_judges_are_pinned_and_current() -> None:
    assert compose_config(["model=deepseek_r1"]).judge.name == PAPER_JUDGE
    assert compose_config(["judge=gpt4o"]).judge.name == PAPER_JUDGE
    members = [m.name for m in compose_config(["judge=ensemble"]).judge.members]
    assert members[0] == PAPER_JUDGE
    assert not any(names_retired_id(m) for m in members), members


def _bsa(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # No provider key: nothing could be called even if bsa tried.
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_TOKEN"))}
    env.update({"BSA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"})
    cmd = [sys.executable, "-m", "bsa", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


def test_the_headline_command_names_a_model_that_still_answers(tmp_path: Path) -> None:
    out = _bsa("model=deepseek_r1", "mitigation=rules", "--cfg", "job", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    job = yaml.safe_load(out.stdout)
    model = job["model"]
    assert not names_retired_id(model["name"]) and model["retired"] is None, model["name"]
    assert model["docs"].startswith("https://") and model["reasoning"] is True
    assert job["judge"]["name"] == PAPER_JUDGE


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when the block ends: nothing listens there


def test_a_retired_card_is_refused_by_the_cli_before_any_call(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}/v1"  # were anything called, it would be "unreachable"
    data = tmp_path / "data.csv"
    data.write_text("id,query,risk_summary,dataset_name,label\n")  # never read: refused before
    run_dir = tmp_path / "run"
    out = _bsa(
        "model=glm_z1_airx", f"model.api_base={dead}", f"judge.api_base={dead}", f"dataset.path={data}",
        f"judge.prompts_dir={tmp_path}", f"hydra.run.dir={run_dir}",
        tmp_path=tmp_path,
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert "model=glm_z1_airx: openai/glm-z1-airx was retired on 2026-11-23" in text, text
    assert "zai/glm-4.6" in text and "model.retired=null" in text
    assert "unreachable" not in text and "cannot connect" not in text
    assert not (run_dir / "run.json").exists()  # a refused run leaves no run dir behind
