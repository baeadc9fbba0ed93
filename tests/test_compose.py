"""One compose path (bsa.compose): the CLI, the API and the tools compose the same typed config from
the same overrides, and refuse the same secret and pasted-key overrides before composing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import bsa.__main__ as cli_main
from bsa import api, compose, rejudge
from bsa.config import Config, ConfigError

BSA = Path(compose.__file__).resolve().parent

OVERRIDES = [
    "model=openai_compatible",
    "model.name=hosted_vllm/m",
    "model.api_base=http://127.0.0.1:9/v1",
    "judge=openai_compatible",
    "judge.name=hosted_vllm/j",
    "judge.api_base=http://127.0.0.1:9/v1",
    "mitigation=rules",
    "sampling.k=2",
]

# A made-up key in the shape of a real one: never to be echoed back.
FAKE_KEY = "sk-proj-Zq4xT9mB2vLw8RkN3sYc7HdP"
SECRET = "model.api_key=" + FAKE_KEY
PASTED = "judge.api_key_env=" + FAKE_KEY
REFUSED = {SECRET: "looks like a secret", PASTED: "not the name of an environment variable"}


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bsa", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def _rejudge_source(tmp_path: Path, overrides: list[str]) -> Path:
    """A run dir as python -m bsa leaves it, as far as a re-judge reads it before judging."""
    src = tmp_path / "src"
    (src / ".hydra").mkdir(parents=True)
    (src / "generations.jsonl").write_text("")
    (src / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
    return src


def test_the_cli_the_api_and_rejudge_compose_the_same_typed_config(tmp_path: Path) -> None:
    composed = compose.compose(OVERRIDES)
    assert isinstance(composed.cfg, Config)
    assert composed.cfg.sampling.k == 2 and composed.cfg.mitigation.name == "rules"
    # The API is the same function.
    assert api.compose is compose.compose and api.Composed is compose.Composed
    again = api.compose(OVERRIDES)  # its default run dir is named by the time: compared apart
    assert (again.cfg, again.hydra_files) == (composed.cfg, composed.hydra_files)
    # The CLI (@hydra.main): --cfg job prints the task config it would convert and run.
    out = _cli(tmp_path, *OVERRIDES, "--cfg", "job")
    assert out.returncode == 0, out.stderr
    printed = OmegaConf.create(out.stdout)
    assert printed == OmegaConf.create(composed.hydra_files["config.yaml"])
    assert compose.to_typed(OmegaConf.merge(OmegaConf.structured(Config), printed)) == composed.cfg
    assert not (tmp_path / "outputs").exists()  # --cfg runs nothing and makes no run dir
    # A re-judge composes the source run's overrides the same way.
    prep = rejudge.prepare(_rejudge_source(tmp_path, OVERRIDES), [])
    assert prep.overrides == OVERRIDES
    assert prep.cfg == composed.cfg and prep.hydra_files == composed.hydra_files


def test_the_run_verb_shares_every_part_of_the_compose_path() -> None:
    # @hydra.main reads the same config dir; the checks, the files and the conversion are the same objects.
    assert cli_main.CONF_DIR is compose.CONF_DIR
    assert cli_main.hydra_files is compose.hydra_files
    assert cli_main.secret_overrides is compose.secret_overrides
    assert cli_main.key_valued_env_overrides is compose.key_valued_env_overrides
    assert cli_main.to_typed is compose.to_typed and cli_main.override_problems is compose.override_problems


@pytest.mark.parametrize("bad", sorted(REFUSED))
def test_the_api_refuses_a_secret_or_a_pasted_key(bad: str) -> None:
    with pytest.raises(ConfigError, match=REFUSED[bad]) as e:
        api.compose([*OVERRIDES, bad])
    assert FAKE_KEY not in str(e.value)


@pytest.mark.parametrize("bad", sorted(REFUSED))
@pytest.mark.parametrize("cfg", [(), ("--cfg", "job")], ids=["run", "cfg_job"])
def test_the_cli_refuses_a_secret_or_a_pasted_key(tmp_path: Path, bad: str, cfg: tuple[str, ...]) -> None:
    out = _cli(tmp_path, *OVERRIDES, bad, f"hydra.run.dir={tmp_path / 'run'}", *cfg)
    assert out.returncode == 2
    assert REFUSED[bad] in out.stderr
    assert FAKE_KEY not in out.stdout + out.stderr
    assert not (tmp_path / "run").exists()  # refused before Hydra started


@pytest.mark.parametrize("bad", sorted(REFUSED))
def test_rejudge_refuses_a_secret_or_a_pasted_key(
    tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _rejudge_source(tmp_path, OVERRIDES)
    with pytest.raises(ConfigError, match=REFUSED[bad]):
        rejudge.prepare(src, [bad])
    with pytest.raises(SystemExit) as e:
        rejudge.main([str(src), bad, "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    said = capsys.readouterr()
    assert FAKE_KEY not in said.out + said.err
    assert not (tmp_path / "out").exists()


def _files_matching(pattern: str) -> list[str]:
    """The modules of bsa whose source matches ``pattern`` (a multi-line regex)."""
    found = re.compile(pattern, re.MULTILINE)
    return [str(p.relative_to(BSA.parent)) for p in sorted(BSA.rglob("*.py")) if found.search(p.read_text())]


def test_only_bsa_compose_composes() -> None:
    hydra_compose = r"initialize_config_dir|initialize_config_module|hydra\.compose|from hydra import"
    assert _files_matching(hydra_compose) == ["bsa/compose.py"]
    assert _files_matching(r"OmegaConf\.to_object") == ["bsa/compose.py"]
    assert _files_matching(r"^@hydra\.main") == ["bsa/__main__.py"]  # the run verb's entry (see bsa.compose)
    # One definition of the config dir: the package's "conf" folder is named in bsa/compose.py only.
    assert _files_matching(r"""/ ["']conf["']""") == ["bsa/compose.py"]
