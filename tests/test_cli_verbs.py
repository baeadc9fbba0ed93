"""One command line, ``bsa <verb>`` (bsa/cli.py): the verbs, their help, and the older entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO
from helpers import responder, scripted_overrides, write_dataset
from scripted_server import ScriptedServer
from test_pipeline import QUERY_IDS, ROWS, scripted

from bsa import cli
from bsa.config import Config
from bsa.run import run

VERBS = (
    "run",
    "estimate",
    "view",
    "report",
    "score",
    "labels",
    "agreement",
    "rejudge",
    "calibrate",
    "models",
    "export",
    "gate",
)
# The older entry points, kept: python -m bsa.<module>
MODULES = ("report", "score", "view", "labels", "agreement", "rejudge", "calibrate", "cards")


def _bsa(*args: str) -> tuple[int, str]:
    """``bsa ARGS`` in this process: its exit code and output."""
    out = CliRunner().invoke(cli.cli, list(args), prog_name="bsa")
    if out.exception and not isinstance(out.exception, SystemExit):
        raise out.exception
    return out.exit_code, out.output


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "BSA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}


def test_bsa_help_names_every_verb_in_40_lines() -> None:
    code, out = _bsa("--help")
    assert code == 0
    assert len(out.splitlines()) <= 40, out
    listed = [
        line.split()[0]
        for line in out.split("Verbs:")[1].splitlines()
        if line.startswith("  ") and line.split()
    ]
    assert tuple(listed[: len(VERBS)]) == VERBS
    assert "base_" not in out and "hydra:" not in out  # no YAML dump
    assert _bsa("-h")[1] == out


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_has_a_help_with_its_options_and_an_example(verb: str) -> None:
    code, out = _bsa(verb, "--help")
    assert code == 0, out
    assert out.lower().startswith("usage: bsa " + verb), out[:200]
    assert "-h, --help" in out and "\nExample" in out, out
    assert f"  bsa {verb} " in out.split("\nExample")[1], "the example is a command of this verb"


def test_run_help_lists_the_config_groups_and_their_choices() -> None:
    code, out = _bsa("run", "--help")
    assert code == 0
    groups = out.split("Config groups")[1].split("\n\n")[0]
    model = groups.split("  model ")[1].split("\n  sampling")[0]
    for card in ("deepseek_r1", "qwq_32b", "smollm2*", "openai_compatible", "vllm_local"):
        assert card in model, card
    assert "retired" in model and "glm_z1_airx" in model  # listed apart from the current ones
    for line in ("judge ", "dataset ", "mitigation ", "sampling ", "+experiment ", "hydra/launcher "):
        assert f"\n  {line}" in groups, line
    assert "gpt4o*" in groups and "none*" in groups and "rules" in groups
    assert "base_" not in out  # the schemas in Hydra's ConfigStore are no choices
    for option in ("-m, --multirun", "--cfg job", "hydra.run.dir=DIR", "sampling.k=N", "-v, --verbose"):
        assert option in out, option
    # With overrides before it, --help is still this help; no verb means run.
    assert _bsa("model=deepseek_r1", "--help") == (0, out)


def test_python_m_bsa_is_the_same_command_and_hydra_still_owns_the_run(tmp_path: Path) -> None:
    def bsa(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "bsa", *args]
        return subprocess.run(
            cmd, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120
        )

    helped = bsa("--help")
    assert helped.returncode == 0 and "Verbs:" in helped.stdout and "rejudge" in helped.stdout
    plain = bsa("model=deepseek_r1", "sampling.k=3", "--cfg", "job")
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "name: bedrock/us.deepseek.r1-v1:0" in plain.stdout and "k: 3" in plain.stdout
    verbed = bsa("run", "model=deepseek_r1", "sampling.k=3", "--cfg", "job")
    assert verbed.returncode == 0 and verbed.stdout == plain.stdout
    key = bsa("run", "-v", "model=deepseek_r1", "--cfg", "job", "-p", "verbose")
    assert key.returncode == 0 and key.stdout.strip() == "True", key.stdout + key.stderr[-2000:]
    assert not (tmp_path / "outputs").exists()  # --cfg runs nothing
    typo = bsa("veiw", "RUN")
    assert typo.returncode == 2 and "Did you mean `bsa view`?" in typo.stderr


def test_estimate_prints_the_dry_run_and_writes_no_run_dir(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    run_dir = tmp_path / "run"
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        cmd = [
            sys.executable, "-m", "bsa", "estimate",
            *scripted_overrides(server.api_base, data), f"hydra.run.dir={run_dir}",
        ]  # fmt: skip
        out = subprocess.run(cmd, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
        assert server.requests == []  # no call, not even the probe
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    said = " ".join(out.stdout.split())
    assert "model (hosted_vllm/target): estimated" in said and "judge (hosted_vllm/judge)" in said
    assert "Nothing was called (dry_run=true)" in said
    assert not run_dir.exists()


def _source_run(tmp_path: Path, make_config: Callable[..., Config], api_base: str) -> Path:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    src = tmp_path / "src"
    overrides = scripted_overrides(api_base, data)
    run(make_config(*overrides), src)
    (src / ".hydra").mkdir(parents=True, exist_ok=True)  # what python -m bsa writes; run() alone does not
    (src / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return src


def test_rejudge_writes_where_hydra_run_dir_says(
    tmp_path: Path, make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a run dir that went to ./outputs would show here
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        src = _source_run(tmp_path, make_config, server.api_base)
        server.requests.clear()
        out = tmp_path / "rejudged"
        with pytest.raises(SystemExit) as e:
            cli.main([
                "rejudge", str(src), "judge=openai_compatible", "judge.name=hosted_vllm/judge",
                f"judge.api_base={server.api_base}", "judge.prompts=bsa", f"cache.dir={tmp_path / 'c2'}",
                "progress=false", f"hydra.run.dir={out}",
            ])  # fmt: skip
        assert e.value.code == 0
        assert server.chat_requests("target") == [] and len(server.chat_requests("judge")) == 12
    assert json.loads((out / "run.json").read_text())["judge_prompts"]["set"] == "bsa"
    assert (out / "metrics.json").is_file() and not (tmp_path / "outputs").exists()
    saved = (out / ".hydra" / "overrides.yaml").read_text()
    assert "judge.prompts=bsa" in saved and "hydra.run.dir" not in saved  # as Hydra saves a run's


def test_rejudge_refuses_what_it_would_ignore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_config: Callable[..., Config]
) -> None:
    from bsa.rejudge import main

    src = tmp_path / "src"
    with pytest.raises(SystemExit) as e:
        main([str(src), "hydra.job.chdir=true", "hydra/launcher=joblib"])
    said = " ".join(capsys.readouterr().err.split())
    assert e.value.code == 2
    assert "hydra.job.chdir=true, hydra/launcher=joblib: a re-judge runs no Hydra job" in said
    assert "hydra.run.dir=DIR" in said
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        src = _source_run(tmp_path, make_config, server.api_base)
    with pytest.raises(SystemExit) as e:
        main([str(src), f"hydra.run.dir={tmp_path / 'a'}", "--out", str(tmp_path / "b"), "progress=false"])
    assert e.value.code == 2 and "name the new run dir once" in " ".join(capsys.readouterr().out.split())
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("module", MODULES)
def test_the_older_module_entry_points_still_answer_help(module: str) -> None:
    cmd = [sys.executable, "-m", f"bsa.{module}", "--help"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("usage: ") and "Example" in out.stdout
