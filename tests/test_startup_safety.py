"""Before the first call, a run changes nothing it should not: an unwritable run dir or cache is refused
in one line; a re-run of a finished run dir that fails its checks leaves it byte for byte as it was; a
key pasted where a variable's name belongs is refused unseen and unsaved; refusals and dry runs leave
no run dir; Ctrl-C before the first call says nothing was run and exits 3. A loopback scripted server
plays model and judge (tests/helpers.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import REPO
from helpers import responder, scripted_overrides, write_dataset
from scripted_server import ScriptedServer
from test_pipeline import QUERY_IDS, ROWS, scripted

from bsa.config import Config, ConfigError, env_name_problem
from bsa.run import run
from bsa.server import free_port

# A made-up key of OpenAI's project-key shape: it must never be printed or written.
FAKE_KEY = "sk-proj-Zq7xT2mV9kLp4RwY8nB3cH6dF1gJ5sA0eU"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "BSA_CACHE_DIR": str(tmp / "cache"), "PYTHONUNBUFFERED": "1", **extra}


def _bsa(
    args: list[str], tmp: Path, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bsa", "progress=false", *args]
    return subprocess.run(cmd, cwd=cwd, env=env or _env(tmp), capture_output=True, text=True, timeout=300)


def _said(out: subprocess.CompletedProcess[str]) -> str:
    return " ".join((out.stdout + out.stderr).split())  # the console wraps long lines


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run dir finished from the command line (its .hydra/ files, run.json "complete") and its data."""
    tmp = tmp_path_factory.mktemp("finished")
    data = write_dataset(tmp / "mini.csv", ROWS)
    run_dir = tmp / "run"
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        args = [*scripted_overrides(server.api_base, data, "judge.prompts=bsa"), f"hydra.run.dir={run_dir}"]
        out = _bsa(args, tmp)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return run_dir, data


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty read-only mount: chmod stops no root, a read-only file system stops everyone."""
    ro = tmp_path / "ro"
    ro.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot mount a read-only tmpfs here (needs root or CAP_SYS_ADMIN): {e}")
    try:
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], check=False, capture_output=True, timeout=30)


# 1. A run dir or cache dir that cannot be written: one line, exit 2, before any call.


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("run_dir", "run dir {ro}: cannot write there (Read-only file system"),
        ("new_run_dir", "hydra.run.dir={ro}/a/b: cannot make the run dir there (Read-only file system"),
        ("cache_dir", "cache.dir={ro}/cache: cannot write there (Read-only file system"),
    ],
)
def test_an_unwritable_run_dir_or_cache_is_refused_before_any_call(
    where: str, said: str, read_only_dir: Path, tmp_path: Path
) -> None:
    ro = read_only_dir
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    dirs = {
        "run_dir": [f"hydra.run.dir={ro}"],
        "new_run_dir": [f"hydra.run.dir={ro}/a/b"],
        "cache_dir": [f"hydra.run.dir={tmp_path / 'run'}", f"cache.dir={ro}/cache"],
    }[where]
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        out = _bsa([*scripted_overrides(server.api_base, data, "judge.prompts=bsa"), *dirs], tmp_path)
        assert server.requests == []
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert said.format(ro=ro) in _said(out)
    assert "Traceback" not in out.stderr and "Unable to configure handler" not in _said(out)
    assert not (tmp_path / "run").exists()


def test_a_file_where_the_run_dir_should_be_is_refused(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    (tmp_path / "taken").write_text("a file, not a directory\n")
    out = _bsa(
        [*scripted_overrides("http://127.0.0.1:9/v1", data), f"hydra.run.dir={tmp_path}/taken/run"], tmp_path
    )
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert f"cannot make the run dir there ({tmp_path}/taken is not a directory)" in _said(out)
    assert "Traceback" not in out.stderr


# 2. A re-run of a finished run dir that fails its checks leaves it exactly as it was.


@pytest.mark.parametrize("failure", ["missing key", "dead api_base"])
def test_a_failed_rerun_leaves_a_finished_run_dir_byte_for_byte(
    failure: str, finished_run: tuple[Path, Path], tmp_path: Path
) -> None:
    source, data = finished_run
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    before = _snapshot(run_dir)
    assert {".hydra/config.yaml", ".hydra/overrides.yaml", "run.json", "__main__.log"} <= set(before)
    assert b'"status": "complete"' in before["run.json"]
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        if failure == "missing key":
            api_base, extra = server.api_base, ["judge.api_key_env=BSA_TEST_UNSET_JUDGE_KEY"]
        else:
            api_base, extra = f"http://127.0.0.1:{free_port()}/v1", []
        args = [*scripted_overrides(api_base, data, "judge.prompts=bsa", *extra), f"resume={run_dir}"]
        env = _env(tmp_path)
        env.pop("BSA_TEST_UNSET_JUDGE_KEY", None)
        out = _bsa(args, tmp_path, env)
        assert server.requests == []
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    expected = "BSA_TEST_UNSET_JUDGE_KEY is not set" if failure == "missing key" else "is unreachable"
    assert expected in _said(out)
    assert _snapshot(run_dir) == before


def test_an_endpoint_that_is_down_is_refused_before_any_run_dir_exists(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """An endpoint bsa does not start is asked with the other prerequisites: down, the run is refused
    in the same one message, and no run dir is made (a server bsa starts is checked once it runs)."""
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    cfg = make_config(*scripted_overrides(f"http://127.0.0.1:{free_port()}/v1", data, "judge.prompts=bsa"))
    with pytest.raises(ConfigError, match="is unreachable"):
        run(cfg, tmp_path / "run", hydra_files={"overrides.yaml": "[]\n"})
    assert not (tmp_path / "run").exists()


# 3. A key where a variable's name belongs: refused, never shown, never written.


@pytest.mark.parametrize(
    "value",
    [
        FAKE_KEY,
        "sk-ant-api03-Zq7xT2mV9kLp4RwY8nB3cH6dF1gJ5sA0eU",
        "AIzaSyZq7xT2mV9kLp4RwY8nB3cH6dF1gJ5sA0e",
        "hf_Zq7xT2mV9kLp4RwY8nB3cH6dF1gJ5sA0e",
        "gsk_Zq7xT2mV9kLp4RwY8nB3cH6dF1gJ5sA0e",
        "xai-Zq7xT2mV9kLp4RwY8nB3cH6dF1gJ5sA0e",
        "Zq7xT2mV9kLp4RwY8nB3cH6dF1gJ5sA0e",
        "3f9a0c1e2d4b5a6978c0d1e2f3a4b5c6d7e8f9a0",
        "MY-KEY",
        "",
    ],
)
def test_key_shaped_values_are_not_variable_names(value: str) -> None:
    problem = env_name_problem("judge.api_key_env", value)
    assert problem is not None and "judge.api_key_env" in problem and "MY_PROVIDER_KEY" in problem
    assert not value or value not in problem


@pytest.mark.parametrize(
    "name", ["OPENAI_API_KEY", "DEEPSEEK_API_KEY", "AZURE_OPENAI_API_KEY_2", "HF_TOKEN", "my_key", "_K1"]
)
def test_variable_names_pass(name: str) -> None:
    assert env_name_problem("model.api_key_env", name) is None


@pytest.mark.parametrize(
    "override",
    [
        f"judge.api_key_env={FAKE_KEY}",
        f"model.api_key_env={FAKE_KEY}",
        f"judge.deployments=[{{api_base: 'http://127.0.0.1:9/v1', api_key_env: {FAKE_KEY}}}]",
    ],
)
def test_a_key_pasted_as_a_variable_name_is_refused_unseen_and_unsaved(override: str, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    run_dir = tmp_path / "run"
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        args = [*scripted_overrides(server.api_base, data, "judge.prompts=bsa"), override]
        out = _bsa([*args, f"hydra.run.dir={run_dir}"], tmp_path)
        assert server.requests == []
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert "api_key_env: the value is not the name of an environment variable" in _said(out)
    assert FAKE_KEY not in out.stdout + out.stderr
    assert not run_dir.exists()


def test_a_key_in_a_composed_env_field_is_refused_before_anything_is_written(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """The same check on the composed config, whatever set the field (a YAML file, the API)."""
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    cfg = make_config(
        *scripted_overrides("http://127.0.0.1:9/v1", data, "judge.prompts=bsa"),
        f"model.deployments=[{{api_base: 'http://127.0.0.1:9/v1'}}, {{api_key_env: {FAKE_KEY}}}]",
    )
    with pytest.raises(ConfigError) as err:
        run(cfg, tmp_path / "run", hydra_files={"config.yaml": f"api_key_env: {FAKE_KEY}\n"})
    assert "model.deployments[1].api_key_env: the value is not the name" in str(err.value)
    assert FAKE_KEY not in str(err.value)
    assert not (tmp_path / "run").exists()


# 4. Refusals and dry runs leave no run dir (Hydra made one for each, with __main__.log in it).


def test_a_refused_run_leaves_no_run_dir(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    out = _bsa(
        [*scripted_overrides("http://127.0.0.1:9/v1", data, k=0), f"hydra.run.dir={tmp_path}/out/a/b"],
        tmp_path,
    )
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert "sampling.k=0: must be at least 1" in _said(out)
    assert "Finished rows" not in _said(out)  # there are none, and no run dir to keep them in
    assert not (tmp_path / "out").exists()


def test_a_dry_run_leaves_no_run_dir(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    work = tmp_path / "work"  # the default run dir, outputs/<date>/<time>_…, is made under the cwd
    work.mkdir()
    out = _bsa([*scripted_overrides("http://127.0.0.1:9/v1", data, "judge.prompts=bsa"), "dry_run=true"],
               tmp_path, cwd=work)  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Nothing was called" in _said(out)
    assert list(work.iterdir()) == []


# 5. Ctrl-C before the first call: nothing was run, exit 3.


class _Silent:
    """A server that takes connections and never answers: the run waits in its preflight check."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.api_base = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.connected = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.connected.set()

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


def test_ctrl_c_before_the_first_call_says_nothing_was_run_and_exits_3(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    run_dir = tmp_path / "run"
    silent = _Silent()
    try:
        args = [*scripted_overrides(silent.api_base, data, "judge.prompts=bsa"), f"hydra.run.dir={run_dir}"]
        cmd = [sys.executable, "-m", "bsa", "progress=false", *args]
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert silent.connected.wait(120), "the run never reached its preflight check"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        silent.close()
    said = " ".join(out.decode().split())
    assert proc.returncode == 3, said[-2000:]
    assert "Interrupted before the first call: nothing was run" in said
    assert "partial metrics" not in said
    assert not run_dir.exists()
