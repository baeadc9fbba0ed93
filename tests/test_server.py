"""Managed servers: command construction, readiness, failure and shutdown (no GPU needed)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scripted_server import Reply, ScriptedServer

from bsa.config import ServeConfig
from bsa.server import (
    ManagedServer,
    ServerError,
    ServerPool,
    free_port,
    in_process_sweep,
    launch_key,
    llama_cpp_command,
    models_ready,
    reasoning_parser_for,
    smollm2_gguf,
    vllm_command,
)


@pytest.mark.parametrize(
    ("hf_model", "parser"),
    [
        ("Qwen/Qwen3-8B", "qwen3"),
        ("Qwen/QwQ-32B", "qwen3"),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseek_r1"),
        ("deepseek-ai/DeepSeek-R1", "deepseek_r1"),
        ("meta-llama/Llama-3.1-8B-Instruct", None),
    ],
)
def test_reasoning_parser_by_family(hf_model: str, parser: str | None) -> None:
    assert reasoning_parser_for(hf_model) == parser


def test_vllm_command_with_lora_and_options() -> None:
    serve = ServeConfig(
        backend="vllm",
        served_name="qwen",
        lora_modules={"safety": "/ckpt/safety-lora"},
        max_model_len=32768,
        gpu_memory_utilization=0.9,
        tensor_parallel_size=2,
        extra_args=["--enforce-eager"],
    )
    cmd = vllm_command(serve, "Qwen/Qwen3-8B", 8123)
    i = cmd.index("serve")
    assert cmd[i : i + 2] == ["serve", "Qwen/Qwen3-8B"]
    joined = " ".join(cmd)
    for part in (
        "--host 127.0.0.1 --port 8123",
        "--served-model-name qwen",
        "--reasoning-parser qwen3",
        "--enable-lora --lora-modules safety=/ckpt/safety-lora",
        "--max-model-len 32768",
        "--gpu-memory-utilization 0.9",
        "--tensor-parallel-size 2",
    ):
        assert part in joined
    assert cmd[-1] == "--enforce-eager"


def test_vllm_needs_a_model_id() -> None:
    with pytest.raises(ServerError, match=r"model\.hf_model"):
        vllm_command(ServeConfig(backend="vllm"), None, 8000)


def test_explicit_reasoning_parser_wins() -> None:
    cmd = vllm_command(ServeConfig(backend="vllm", reasoning_parser="granite"), "Qwen/Qwen3-8B", 1)
    assert cmd[cmd.index("--reasoning-parser") + 1] == "granite"


def test_llama_cpp_command_uses_the_shipped_gguf() -> None:
    gguf = smollm2_gguf()
    assert gguf.suffix == ".gguf" and gguf.stat().st_size > 50_000_000
    cmd = llama_cpp_command(ServeConfig(backend="llama_cpp", served_name="smollm2", n_threads=2), 8001)
    assert cmd[:3] == [sys.executable, "-m", "llama_cpp.server"]
    joined = " ".join(cmd)
    assert f"--model {gguf}" in joined and "--model_alias smollm2" in joined and "--n_threads 2" in joined


def test_missing_gguf_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="no such GGUF file"):
        llama_cpp_command(ServeConfig(backend="llama_cpp", model_path=str(tmp_path / "x.gguf")), 1)


def test_readiness_probe() -> None:
    assert not models_ready(f"http://127.0.0.1:{free_port()}/v1", timeout_s=0.5)
    with ScriptedServer(lambda body: Reply()) as s:
        assert models_ready(s.api_base)


def _fake(tmp_path: Path, script: str, timeout: float = 10.0) -> ManagedServer:
    """A ManagedServer whose command is a small Python program (stands in for vLLM/llama.cpp)."""
    srv = ManagedServer(ServeConfig(backend="llama_cpp", startup_timeout_s=timeout), None, tmp_path)
    srv.cmd = [sys.executable, "-c", script]
    return srv


def test_server_that_exits_early_reports_its_log(tmp_path: Path) -> None:
    srv = _fake(tmp_path, "import sys; print('CUDA out of memory'); sys.exit(3)")
    with pytest.raises(ServerError, match=r"exited with code 3 before it was ready(.|\n)*CUDA out of memory"):
        with srv:
            pass


def test_server_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    srv = _fake(tmp_path, "import time; print('loading weights', flush=True); time.sleep(600)", timeout=1.5)
    t0 = time.monotonic()
    with pytest.raises(ServerError, match=r"did not answer .*/models within 2s(.|\n)*loading weights"):
        with srv:
            pass
    assert time.monotonic() - t0 < 20
    assert srv.proc is None  # stopped


def test_real_server_process_group_is_stopped_on_error(tmp_path: Path) -> None:
    port = free_port()
    script = (
        "import http.server, json, subprocess, sys\n"
        # a child process, as vLLM has workers
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        b = json.dumps({'data': []}).encode(); self.send_response(200)\n"
        "        self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n"
        "    def log_message(self, *a): pass\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    )
    srv = ManagedServer(ServeConfig(backend="llama_cpp", port=port, startup_timeout_s=20), None, tmp_path)
    srv.cmd = [sys.executable, "-c", script]
    with pytest.raises(RuntimeError, match="boom"):
        with srv:
            pgid = os.getpgid(srv.proc.pid)  # type: ignore[union-attr]
            assert models_ready(srv.api_base)
            raise RuntimeError("boom")
    deadline = time.monotonic() + 10
    while (alive := _live_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive == [], f"orphans left: {alive}"


def _live_members(pgid: int) -> list[str]:
    """Processes of the group that are not zombies (this container's init may not reap them)."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True).stdout
    return [
        p
        for p, g, st in (line.split() for line in out.splitlines())
        if int(g) == pgid and not st.startswith("Z")
    ]


@pytest.mark.gpu
@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="needs a GPU and vLLM")
def test_vllm_real_launch(tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    serve = ServeConfig(backend="vllm", served_name="qwen", max_model_len=4096, startup_timeout_s=900)
    with ManagedServer(serve, "Qwen/Qwen3-0.6B", tmp_path) as srv:
        assert models_ready(srv.api_base)


# --- The process-wide pool (bsa.server.acquire): one server per launch command, kept across points.

# Stands in for `vllm serve …`: takes the same arguments, answers /v1/models, and notes each start.
FAKE_VLLM = """
import http.server, json, os, sys
args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
with open(os.environ["BSA_TEST_STARTS"], "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "args": args}) + "\\n")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = json.dumps({"data": [{"id": args[args.index("--served-model-name") + 1]}]}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def fake_vllm(serve: ServeConfig, hf_model: str | None, log_dir: Path, role: str) -> ManagedServer:
    """A real ManagedServer for vLLM whose program is FAKE_VLLM, given vLLM's own arguments."""
    srv = ManagedServer(serve, hf_model, log_dir, role)
    srv.cmd = [sys.executable, "-c", FAKE_VLLM, *srv.cmd[srv.cmd.index("serve") :]]
    return srv


@pytest.fixture
def starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[dict[str, Any]]]:
    path = tmp_path / "starts.jsonl"
    monkeypatch.setenv("BSA_TEST_STARTS", str(path))
    return lambda: [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


VLLM = ServeConfig(backend="vllm", served_name="m", startup_timeout_s=30)


def test_launch_key_ignores_a_free_port_but_not_a_fixed_one(tmp_path: Path) -> None:
    a, b = (ManagedServer(VLLM, "Qwen/Qwen3-8B", tmp_path) for _ in range(2))
    assert a.port != b.port and launch_key(a) == launch_key(b)
    assert "{port}" in launch_key(a) and str(a.port) not in launch_key(a)
    assert launch_key(ManagedServer(VLLM, "Qwen/Qwen3-14B", tmp_path)) != launch_key(a)
    lora = dataclasses.replace(VLLM, lora_modules={"safety": "/ckpt/lora"})
    assert launch_key(ManagedServer(lora, "Qwen/Qwen3-8B", tmp_path)) != launch_key(a)
    fixed = dataclasses.replace(VLLM, port=8123)
    assert "8123" in launch_key(ManagedServer(fixed, "Qwen/Qwen3-8B", tmp_path))


def test_pool_reuses_the_server_of_the_same_command_and_replaces_another(
    tmp_path: Path, starts: Callable[[], list[dict[str, Any]]]
) -> None:
    pool = ServerPool(fake_vllm)
    with pool.acquire(VLLM, "Qwen/Qwen3-8B", tmp_path / "p0", "model", keep=True) as first:
        assert not first.reused and models_ready(first.api_base)
        proc = first.server.proc
    assert proc is not None and proc.poll() is None  # kept after its point
    with pool.acquire(dataclasses.replace(VLLM), "Qwen/Qwen3-8B", tmp_path / "p1", keep=True) as again:
        assert again.reused and again.server is first.server and again.api_base == first.api_base
        assert again.log_path == tmp_path / "p0" / "server_model.log"  # where it was started
    assert len(starts()) == 1
    with pool.acquire(VLLM, "Qwen/Qwen3-14B", tmp_path / "p2", keep=True) as other:
        assert not other.reused and other.api_base != first.api_base and models_ready(other.api_base)
        assert proc.poll() is not None  # the idle 8B server was stopped before the 14B one started
    assert [s["args"][1] for s in starts()] == ["Qwen/Qwen3-8B", "Qwen/Qwen3-14B"]
    assert len(pool) == 1
    pool.close()
    assert len(pool) == 0 and other.server.proc is None


def test_pool_never_stops_a_server_in_use(tmp_path: Path, starts: Callable[[], list[dict[str, Any]]]) -> None:
    pool = ServerPool(fake_vllm)
    judge = dataclasses.replace(VLLM, served_name="j")
    with pool.acquire(VLLM, "Qwen/Qwen3-8B", tmp_path, "model", keep=True) as model:
        with pool.acquire(judge, "Qwen/Qwen3-8B", tmp_path, "judge", keep=True) as j:
            assert j.api_base != model.api_base
            assert models_ready(model.api_base) and models_ready(j.api_base)
    assert len(starts()) == 2 and len(pool) == 2
    procs = [model.server.proc, j.server.proc]
    pool.close()
    assert all(p is not None and p.poll() is not None for p in procs)


def test_outside_a_sweep_the_server_stops_when_its_run_ends(
    tmp_path: Path, starts: Callable[[], list[dict[str, Any]]]
) -> None:
    assert not in_process_sweep()
    pool = ServerPool(fake_vllm)
    for _ in range(2):
        with pool.acquire(VLLM, "Qwen/Qwen3-8B", tmp_path) as lease:  # keep: in_process_sweep()
            assert not lease.reused
            proc = lease.server.proc
        assert proc is not None and proc.poll() is not None and len(pool) == 0
    assert len(starts()) == 2


def test_a_pooled_server_that_died_is_started_again(
    tmp_path: Path, starts: Callable[[], list[dict[str, Any]]]
) -> None:
    pool = ServerPool(fake_vllm)
    with pool.acquire(VLLM, "Qwen/Qwen3-8B", tmp_path, keep=True) as lease:
        dead = lease.server.proc
    assert dead is not None
    os.killpg(dead.pid, signal.SIGKILL)
    dead.wait(timeout=10)
    with pool.acquire(VLLM, "Qwen/Qwen3-8B", tmp_path, keep=True) as lease:
        assert not lease.reused and models_ready(lease.api_base)
    assert len(starts()) == 2
    pool.close()


def test_a_server_that_fails_to_start_is_not_pooled(tmp_path: Path) -> None:
    def broken(serve: ServeConfig, hf_model: str | None, log_dir: Path, role: str) -> ManagedServer:
        srv = ManagedServer(serve, hf_model, log_dir, role)
        srv.cmd = [sys.executable, "-c", "import sys; print('CUDA out of memory'); sys.exit(3)"]
        return srv

    pool = ServerPool(broken)
    with pytest.raises(ServerError, match="CUDA out of memory"):
        with pool.acquire(VLLM, "Qwen/Qwen3-8B", tmp_path, keep=True):
            pass
    assert len(pool) == 0
