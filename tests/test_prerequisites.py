"""Every missing prerequisite of a run in one message, before any run dir exists: the headline command
offline, with no data, no published prompts and no keys, used to take four attempts to learn them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_every_missing_prerequisite_is_said_at_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_TOKEN"))}
    env.pop("BSA_DATASET", None)
    env.pop("BSA_PROMPTS_DIR", None)
    env.update(BSA_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="300")
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "bsa", "model=deepseek_r1_together", "mitigation=published_rules",
        f"dataset.path={tmp_path / 'missing.csv'}", f"judge.prompts_dir={tmp_path / 'no-prompts'}",
        f"hydra.run.dir={run_dir}", "progress=false",
    ]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 2, text[-3000:]
    assert "this run cannot start;" in text and "problems, all found before any call" in text, text[-3000:]
    for needed in ("missing.csv", "no-prompts", "TOGETHERAI_API_KEY", "OPENAI_API_KEY"):
        assert needed in text, (needed, text[-3000:])
    assert "Traceback" not in text
    assert not run_dir.exists()
