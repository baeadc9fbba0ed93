"""A run dir never lies: a resume of other content is refused before anything is written, naming
each difference; nothing finished is deleted; the same queries in another encoding are the same run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO
from helpers import responder, scripted_overrides, write_dataset
from scripted_server import ScriptedServer
from test_pipeline import QUERY_IDS, ROWS, scripted

from bsa import report
from bsa.config import Config
from bsa.run import ConfigError, run


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tmp_path: Path, make_config: Callable[..., Config]) -> tuple[Path, Path]:
    """A finished 3-query, k=2 run dir and its dataset file."""
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        run(make_config(*scripted_overrides(server.api_base, data, "judge.prompts=bsa")), tmp_path / "run")
    return tmp_path / "run", data


def _resume(
    make_config: Callable[..., Config], run_dir: Path, data: Path, *extra: str
) -> tuple[ConfigError | None, int]:
    """Resume into ``run_dir``: (the refusal, if any; requests the server saw)."""
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        cfg = make_config(*scripted_overrides(server.api_base, data, "judge.prompts=bsa", *extra))
        try:
            run(cfg, run_dir)
        except ConfigError as e:
            return e, len(server.requests)
        return None, len(server.requests)


def test_changed_queries_under_the_same_ids_are_refused_and_nothing_is_written(
    finished: tuple[Path, Path], make_config: Callable[..., Config]
) -> None:
    run_dir, data = finished
    before = _snapshot(run_dir)
    edited = [dict(r, query=r["query"] + " Please answer in French.") for r in ROWS]
    write_dataset(data, edited)
    err, requests = _resume(make_config, run_dir, data)
    assert err is not None and requests == 0
    text = str(err)
    assert "holds a run of other content" in text and "Nothing in the run dir was changed" in text
    assert "queries: 3 queries, sha256 " in text and " → 3 queries, sha256 " in text
    assert _snapshot(run_dir) == before


def test_an_edited_judge_template_is_refused(
    finished: tuple[Path, Path], make_config: Callable[..., Config], tmp_path: Path
) -> None:
    run_dir, data = finished
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "bsa" / "templates" / "judge", templates)
    err, _ = _resume(make_config, run_dir, data, f"judge.templates_dir={templates}")
    # The same text from another folder is the same prompt set by content, but not by name.
    assert err is not None and "judge prompts: bsa, sha256 " in str(err) and "→ custom, sha256" in str(err)
    before = _snapshot(run_dir)
    (templates / "safety.md").write_text((templates / "safety.md").read_text() + "\nBe brief.\n")
    err, requests = _resume(make_config, run_dir, data, f"judge.templates_dir={templates}")
    assert err is not None and requests == 0 and _snapshot(run_dir) == before


def test_a_narrower_selection_never_shrinks_the_run_dir(
    finished: tuple[Path, Path], make_config: Callable[..., Config]
) -> None:
    run_dir, data = finished
    rows_before = (run_dir / "generations.jsonl").read_text().count("\n")
    err, requests = _resume(make_config, run_dir, data, "dataset.limit=1")
    assert err is not None and requests == 0
    assert "queries: 3 queries, sha256 " in str(err) and "→ 1 queries, sha256 " in str(err)
    assert (run_dir / "generations.jsonl").read_text().count("\n") == rows_before == 6


def test_other_k_alpha_judge_or_sampling_each_named(
    finished: tuple[Path, Path], make_config: Callable[..., Config]
) -> None:
    run_dir, data = finished
    err, _ = _resume(make_config, run_dir, data, "sampling.k=3", "alpha=0.61", "sampling.temperature=0.3")
    text = str(err)
    assert "k: 2 → 3" in text and "alpha: 0.7639364807041505 → 0.61" in text
    assert 'sampling: {"seed": 0} → {"seed": 0, "temperature": 0.3}' in text


def test_the_same_queries_with_a_bom_and_crlf_resume_with_no_call(
    finished: tuple[Path, Path], make_config: Callable[..., Config], tmp_path: Path
) -> None:
    run_dir, data = finished
    other = tmp_path / "same.csv"
    other.write_bytes(b"\xef\xbb\xbf" + data.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    err, requests = _resume(make_config, run_dir, other)
    assert err is None and requests == 0
    # …and the report puts both in one query set: identity is the content, not the bytes.
    again = tmp_path / "again"
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        run(make_config(*scripted_overrides(server.api_base, other, "judge.prompts=bsa")), again)
    runs = [report.load_run(run_dir), report.load_run(again)]
    assert runs[0].query_set == runs[1].query_set and runs[0].query_info.key == runs[1].query_info.key
    assert all("changed since the run" not in " ".join(r.notes) for r in runs)


def test_a_torn_last_line_is_dropped_and_every_whole_row_kept(
    finished: tuple[Path, Path], make_config: Callable[..., Config]
) -> None:
    run_dir, data = finished
    path = run_dir / "judgments.jsonl"
    whole = path.read_text().splitlines()
    path.write_text("\n".join(whole[:-1]) + "\n" + whole[-1][:20])  # a crash mid-write
    err, requests = _resume(make_config, run_dir, data)
    assert err is None and requests == 1  # only the judgment whose line was torn is asked again
    assert len(path.read_text().splitlines()) == len(whole)


def test_a_refused_resume_from_the_command_line_leaves_hydra_files_alone(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    run_dir = tmp_path / "run"
    env = {**os.environ, "BSA_CACHE_DIR": str(tmp_path / "cache")}
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        base = [sys.executable, "-m", "bsa", *scripted_overrides(server.api_base, data, "judge.prompts=bsa")]
        first = subprocess.run([*base, f"hydra.run.dir={run_dir}", "progress=false"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=300)  # fmt: skip
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
        before = _snapshot(run_dir / ".hydra")
        assert set(before) == {"config.yaml", "overrides.yaml", "hydra.yaml"}
        k3 = [*base, "sampling.k=3", f"resume={run_dir}", "progress=false"]
        second = subprocess.run(k3, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 2
    assert "k: 2 → 3" in " ".join(second.stdout.split())
    assert _snapshot(run_dir / ".hydra") == before
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["identity"]["k"] == "2"
    # The report still reads the run as it was: k=2 and its own choices.
    loaded = report.load_run(run_dir)
    assert loaded.k == 2 and loaded.model_config == "openai_compatible"
