"""One compose path: overrides in, the typed config, its run dir and its ``.hydra/`` files out.

Everything that turns overrides into a config lives here, once:

- ``CONF_DIR``: the package's config dir (``bsa/conf/``), and ``register``: the schemas
  (``bsa.config.register_configs``: ConfigStore nodes and the ``bsa_or`` resolver);
- ``override_problems``: the checks that must run *before* composing, because Hydra writes the
  overrides in clear (``.hydra/overrides.yaml``) and a sweep's launcher prints them: a secret given
  as an override (``model.api_key=…``) and a key pasted as a ``*_env`` value (``judge.api_key_env=sk-…``);
- ``hydra_files``: the run dir's ``.hydra/`` files; ``to_typed``: the one conversion from Hydra's
  ``DictConfig`` to ``bsa.config.Config`` (no ``DictConfig`` below it);
- ``compose(overrides, run_dir=None) -> Composed``: Hydra's compose API on ``CONF_DIR``, used by
  ``bsa.api`` (``evaluate``, ``estimate``, ``compose``), ``bsa.rejudge`` and every tool that needs a
  config. Hydra's compose API keeps global state, so compositions are serialised and a Hydra app
  (or notebook) that initialised Hydra keeps its state.

The run verb (``bsa run``, ``python -m bsa``, ``bsa.__main__``) alone enters through
``@hydra.main``, for what only Hydra's app gives: ``-m`` sweeps with their launchers (joblib,
submitit, bsa_slurm), the run dir made before the task (``hydra.run.dir``) with its callbacks
(``bsa.job_dir.RunDirCallback``), ``--cfg``/``--info``/``--hydra-help`` and Hydra's job logging.
It composes from the same ``CONF_DIR`` with the same ``register``, refuses the same
``override_problems`` before Hydra starts, and converts and writes with the same ``to_typed`` and
``hydra_files``: a run verb and ``compose`` given the same overrides yield the same ``Config``.
"""

from __future__ import annotations

import copy
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from bsa.config import Config

# The configs ship inside the package (bsa/conf/), found from this file wherever bsa is installed.
# Absolute: a relative path is read as a Python module path when entered through the `bsa` script.
CONF_DIR = str(Path(__file__).resolve().parent / "conf")
CONFIG_NAME = "config"
VERSION_BASE = "1.3"

# Hydra's compose API keeps global state (GlobalHydra, HydraConfig): one composition at a time.
_COMPOSE_LOCK = threading.Lock()


def register() -> None:
    """The config schemas in Hydra's ConfigStore and bsa's resolvers (idempotent)."""
    from bsa.config import register_configs

    register_configs()


# Override keys that carry a secret; their values would be saved in clear in .hydra/overrides.yaml.
_SECRET_KEY = re.compile(r"(^|[._])(api_?key|key|token|secret|password|authorization)$", re.IGNORECASE)


def secret_overrides(args: Sequence[str]) -> list[str]:
    """The override keys among ``args`` that would put a secret on the command line."""
    found = []
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key = arg.split("=", 1)[0].lstrip("+~")
        if _SECRET_KEY.search(key) and not key.endswith("_env"):
            found.append(key)
    return found


# A ``*_env`` key with its value, also inside a list or dict override (model.deployments=[{…}]).
_ENV_ITEM = re.compile(r"([\w.\[\]]*_env)\s*[:=]\s*['\"]?([^,()\[\]{}'\"\s]*)")
_ENV_VALUE = re.compile(r"[^,()\[\]{}'\"\s]+")  # the values of a sweep (A,B) or choice(A,B)
_NOT_A_NAME = {"null", "choice", "range", "glob", "interval", "shuffle", "sort", "tag"}  # override grammar


def key_valued_env_overrides(args: Sequence[str]) -> list[str]:
    """What is wrong with each ``*_env`` override of ``args`` whose value looks like a key, not the
    name of an environment variable (``judge.api_key_env=sk-…``); the value is never repeated."""
    from bsa.config import env_name_problem

    problems = []
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.lstrip("+~").split("=", 1)
        if "${" in value:  # an interpolation: config.validate checks what it resolves to
            continue
        if key.endswith("_env"):
            values = [(key, v) for v in _ENV_VALUE.findall(value)]
        else:
            values = [(f"{key}[…].{k}", v) for k, v in _ENV_ITEM.findall(value)]
        for where, v in values:
            if v and v not in _NOT_A_NAME and (problem := env_name_problem(where, v)):
                problems.append(problem)
    return problems


def override_problems(args: Sequence[str], given: str = "given as an override") -> list[str]:
    """Why ``args`` must not be composed (a secret, else each key pasted as a ``*_env`` value), or [].

    Checked before Hydra starts: it would save the values in clear in ``.hydra/overrides.yaml``."""
    secrets = secret_overrides(args)
    if secrets:
        return [
            f"{', '.join(secrets)} looks like a secret {given}; it would be saved in clear in the run dir "
            "(.hydra/overrides.yaml). Put the key in an environment variable and name that variable "
            "instead, e.g. model.api_key_env=MY_PROVIDER_KEY (or judge.api_key_env=…)."
        ]
    return key_valued_env_overrides(args)


def hydra_files(dcfg: DictConfig, overrides: list[str], choices: dict[str, Any]) -> dict[str, str]:
    """The run dir's .hydra/ files: the composed config, the overrides, and the group choices."""
    from omegaconf import OmegaConf

    return {
        "config.yaml": OmegaConf.to_yaml(dcfg),
        "overrides.yaml": OmegaConf.to_yaml(OmegaConf.create(overrides)),
        "hydra.yaml": OmegaConf.to_yaml(OmegaConf.create({"hydra": {"runtime": {"choices": choices}}})),
    }


def to_typed(dcfg: DictConfig) -> Config:
    """The composed task config (no ``hydra`` key) as ``bsa.config.Config``."""
    from omegaconf import OmegaConf

    from bsa.config import Config

    cfg = OmegaConf.to_object(dcfg)
    if not isinstance(cfg, Config):
        raise TypeError(f"the composed config is a {type(cfg).__name__}, not bsa.config.Config")
    return cfg


@dataclass(frozen=True)
class Composed:
    """What the CLI would run for these overrides: the typed config, its run dir and .hydra/ files."""

    cfg: Config
    run_dir: Path
    hydra_files: dict[str, str]


def override_list(overrides: Sequence[str]) -> list[str]:
    """``overrides`` as a list of strings; one string is refused, not split into characters."""
    if isinstance(overrides, str):  # a string is a sequence too: its characters would be the overrides
        raise TypeError(f"overrides: a list of strings, e.g. [{overrides!r}], not one string")
    return [str(o) for o in overrides]


def compose(overrides: Sequence[str] = (), run_dir: str | Path | None = None) -> Composed:
    """Compose the CLI's config from ``overrides``; ``run_dir`` (if given) wins over the config's
    (``output_dir=…``, else ``hydra.run.dir``, which ``resume=…`` sets, as the CLI picks it).

    Raises ``bsa.config.ConfigError`` for a secret or a pasted key among the overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.initialize import get_gh_backup, restore_gh_from_backup
    from omegaconf import OmegaConf, open_dict, read_write

    from bsa.config import ConfigError

    args = override_list(overrides)
    problems = override_problems(args)
    if problems:
        raise ConfigError("\n".join(problems))
    register()
    with _COMPOSE_LOCK:
        backup = get_gh_backup()  # a Hydra app (or notebook) that initialised Hydra keeps its state
        GlobalHydra.instance().clear()
        hydra_config = HydraConfig.instance()
        before = hydra_config.cfg
        try:
            with initialize_config_dir(config_dir=CONF_DIR, version_base=VERSION_BASE):
                full = hydra_compose(config_name=CONFIG_NAME, overrides=args, return_hydra_config=True)
            # hydra.run.dir interpolates ${hydra:runtime.choices.model}: resolve it as Hydra's run_job does.
            hydra_config.set_config(full)
            where = str(OmegaConf.select(full, "hydra.run.dir"))
            task = OmegaConf.to_container(full.hydra.overrides.task)  # hydra.* overrides left out
            assert isinstance(task, list)
            choices = OmegaConf.to_container(full.hydra.runtime.choices)
            assert isinstance(choices, dict)
            dcfg = copy.deepcopy(full)
            with read_write(dcfg), open_dict(dcfg):
                del dcfg["hydra"]  # the task's config, as Hydra hands it to the CLI's main
            cfg = to_typed(dcfg)
            files = hydra_files(dcfg, [str(o) for o in task], {str(k): v for k, v in choices.items()})
        finally:
            hydra_config.cfg = before
            restore_gh_from_backup(backup)
    if run_dir is not None:
        chosen = Path(run_dir)
    elif cfg.output_dir:
        chosen = Path(cfg.output_dir)
    else:
        chosen = Path(os.path.abspath(where))  # Hydra's runtime.output_dir, which the CLI uses
    return Composed(cfg, chosen, files)
