"""Issue 21 item 9, in a notebook: no 'install "ipywidgets"' warning per progress refresh (three per
``evaluate``) where ipywidgets is missing, and a cancelled ``aevaluate`` stops its worker."""

from __future__ import annotations

import asyncio
import io
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import MINI_QUERY_IDS, MINI_ROWS, responder, scripted_overrides, write_dataset
from rich.console import Console
from scripted_server import Reply, ScriptedServer

from bsa import api, console, scheduler
from bsa.config import Config
from bsa.run import run


def scripted(kind: str, qid: str, i: int) -> str:
    return (
        "Safe" if kind == "safety" else {"q1": "True", "q2": "Fully Covered", "q3": "Precise Coverage"}[qid]
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "mini.csv", MINI_ROWS)


@pytest.fixture
def notebook(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The console as Rich sees Jupyter (force_jupyter), without ipywidgets; what it displays, as text."""
    shown: list[str] = []
    display = types.ModuleType("IPython.display")
    display.display = lambda obj, **_: shown.append(str(getattr(obj, "text", obj)))  # type: ignore[attr-defined]
    ipython = types.ModuleType("IPython")
    ipython.display = display  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # an import of it fails, installed or not
    monkeypatch.setattr(console, "console", Console(force_jupyter=True, file=io.StringIO(), highlight=False))
    monkeypatch.setattr(scheduler, "_said_no_widgets", False)
    return shown


def test_a_notebook_without_ipywidgets_gets_one_note_and_no_warning(
    tmp_path: Path, data: Path, make_config: Callable[..., Config], notebook: list[str]
) -> None:
    """Before: UserWarning 'install "ipywidgets" for Jupyter support' at each refresh of the live display."""
    with ScriptedServer(responder(MINI_QUERY_IDS, scripted)) as server:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for name in ("one", "two"):  # two runs in one notebook session
                cfg = make_config(*scripted_overrides(server.api_base, data), "progress=true")
                assert run(cfg, tmp_path / name).complete
    assert not [w for w in caught if "ipywidgets" in str(w.message)]
    notes = [text for text in notebook if "ipywidgets" in text]
    assert len(notes) == 1 and "pip install ipywidgets" in notes[0]


def test_a_terminal_keeps_its_progress_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "console", Console(force_jupyter=False, file=io.StringIO()))
    assert scheduler._progress(True).disable is False
    assert scheduler._progress(False).disable is True


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("bsa-aevaluate")]


def test_cancelling_aevaluate_stops_its_worker_and_its_calls(tmp_path: Path, data: Path) -> None:
    """Before: the awaiting task was cancelled, the worker thread went on calling the server."""
    first = threading.Event()
    fast = responder(MINI_QUERY_IDS, scripted)

    def slow(body: dict[str, Any]) -> Reply:
        first.set()
        time.sleep(0.5)
        return fast(body)

    with ScriptedServer(slow) as server:
        overrides = [
            *scripted_overrides(server.api_base, data, k=4),
            f"cache.dir={tmp_path / 'cache'}",
            "progress=false",
            "concurrency=2",
            f"hydra.run.dir={tmp_path / 'run'}",
        ]

        async def cancel_it() -> float:
            task = asyncio.create_task(api.aevaluate(overrides))
            while not first.is_set():
                await asyncio.sleep(0.02)
            task.cancel()
            began = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - began

        took = asyncio.run(cancel_it())
        deadline = time.monotonic() + 5
        while _workers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _workers() == [], "the worker thread still runs"
        asked = len(server.chat_requests())
        time.sleep(1.5)  # longer than a reply takes: a worker still running would ask again
        assert len(server.chat_requests()) == asked
    assert took < 5
    assert asked < len(MINI_ROWS) * 4 * 3  # stopped before it had asked for everything
    # As Ctrl-C: the run dir says it was interrupted, with what it finished.
    assert '"status": "interrupted"' in (tmp_path / "run" / "run.json").read_text()
