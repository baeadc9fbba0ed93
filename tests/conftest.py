"""Shared fixtures: compose the real bsa/conf/ with Hydra's compose API; locate the BSA dataset."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bsa.config import Config, register_configs

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "bsa" / "conf"  # the configs ship inside the package
sys.path.insert(0, str(Path(__file__).parent))  # tests/scripted_server.py

register_configs()

# The published judge prompts (the default judge.prompts of every real judge) are loaded at run time
# and never committed: the tests read the copy in ../shared, as CI and a developer's checkout have it.
SHARED_PROMPTS = REPO.parent / "shared" / "bsa" / "upstream_prompts"
if SHARED_PROMPTS.is_dir():
    os.environ.setdefault("BSA_PROMPTS_DIR", str(SHARED_PROMPTS))


def dataset_path() -> Path | None:
    """The BSA benchmark file: $BSA_DATASET, else ../shared/bsa/dataset.csv beside the repo."""
    env = os.environ.get("BSA_DATASET")
    for p in ([Path(env)] if env else []) + [REPO.parent / "shared" / "bsa" / "dataset.csv"]:
        if p.is_file():
            return p
    return None


def compose_config(overrides: list[str]) -> Config:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        dcfg = compose(config_name="config", overrides=overrides)
    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, Config)
    return cfg


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    """Compose the real bsa/conf/ with overrides; cache and outputs go to tmp_path; no progress bars."""

    def make(*overrides: str) -> Config:
        base = [f"cache.dir={tmp_path / 'cache'}", "progress=false"]
        return compose_config(base + list(overrides))

    return make
