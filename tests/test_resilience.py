"""Nothing lost, nothing invented: faults, a provider that stays down, preflight, budgets, secrets,
resume after SIGKILL and Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from helpers import responder, write_dataset
from helpers import scripted_overrides as overrides
from scripted_server import Reply, ScriptedServer

from bsa.config import Config, ConfigError
from bsa.llm import (
    UNREACHABLE_AFTER,
    Client,
    Endpoint,
    EndpointUnreachable,
    ModelCallError,
    Request,
    TransientFailure,
    import_litellm,
)
from bsa.run import RunIncomplete, run
from bsa.server import free_port
from bsa.verdict import THINK_LABELS

SCENARIOS = ("Risk Omission", "Cognitive Shortcut", "Over Sensitivity")
CATS = ("Rumors", "Ethics and Morality", "Physical and Mental Health")


def make_rows(n: int) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        scenario = SCENARIOS[i % 3]
        label = f"{CATS[i % 3]}-Sub"
        if scenario == "Cognitive Shortcut":
            label = f"Query A: {CATS[i % 3]}-Sub\nQuery B: {CATS[(i + 1) % 3]}-Sub"
        rows.append(
            {
                "id": f"r{i:03d}",
                "query": f"Synthetic request number {i} about topic {i % 7}.",
                "risk_summary": (
                    f"Query A: Synthetic risk {i}.\nQuery B: Synthetic risk {i}b."
                    if scenario == "Cognitive Shortcut"
                    else f"Synthetic risk {i}."
                ),
                "dataset_name": scenario,
                "label": label,
            }
        )
    return rows


def rule_for(rows: list[dict[str, str]]) -> Callable[[str, str, int], str | None]:
    scenario = {r["id"]: r["dataset_name"] for r in rows}

    def verdicts(kind: str, qid: str, i: int) -> str | None:
        n = int(qid[1:])
        if kind == "safety":
            return "Unsafe" if (n + i) % 4 == 0 else "Safe"
        labels = THINK_LABELS[scenario[qid]]
        return labels[(n + 2 * i) % len(labels)]

    return verdicts


class Faulty:
    """Wraps a responder: a seeded share of requests get 429 (Retry-After), 500, or a dropped
    connection mid-response."""

    def __init__(self, inner: Callable[[dict[str, Any]], Reply], rate: float, seed: int = 7) -> None:
        self.inner, self.rate = inner, rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: dict[str, int] = {"429": 0, "500": 0, "drop": 0}

    def __call__(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            roll = self.rng.random()
        if roll < self.rate:
            kind = ("429", "500", "drop")[int(roll / self.rate * 3)]
            with self.lock:
                self.injected[kind] += 1
            if kind == "429":
                return Reply(status=429, headers={"Retry-After": "0"}, error="rate limited")
            if kind == "500":
                return Reply(status=500, error="internal error")
            return Reply(drop=True)
        return self.inner(body)


def test_faults_do_not_change_a_single_number(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    rows = make_rows(30)
    data = write_dataset(tmp_path / "d.csv", rows)
    ids = {r["query"]: r["id"] for r in rows}
    with ScriptedServer(responder(ids, rule_for(rows))) as clean:
        reference = run(
            make_config(*overrides(clean.api_base, data), f"cache.dir={tmp_path / 'c1'}"), tmp_path / "a"
        )
    faulty = Faulty(responder(ids, rule_for(rows)), rate=0.2)
    with ScriptedServer(faulty) as server:
        res = run(
            make_config(*overrides(server.api_base, data), f"cache.dir={tmp_path / 'c2'}", "max_attempts=10"),
            tmp_path / "b",
        )
        assert server.errors == []
    assert sum(faulty.injected.values()) >= 20 and all(faulty.injected.values())
    assert res.metrics == reference.metrics
    assert res.stats.retries == sum(faulty.injected.values())
    assert len(res.generations) == 60 and len(res.judgments) == 120
    strip = [{k: v for k, v in g.items() if k != "latency_s"} for g in res.generations]
    assert strip == [{k: v for k, v in g.items() if k != "latency_s"} for g in reference.generations]
    assert (tmp_path / "a" / "bsa_results.csv").read_bytes() == (
        tmp_path / "b" / "bsa_results.csv"
    ).read_bytes()


def test_a_judge_that_stays_down_stops_the_run_and_invents_no_verdict(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(6)
    data = write_dataset(tmp_path / "d.csv", rows)
    inner = responder({r["query"]: r["id"] for r in rows}, rule_for(rows))

    def judge_down(body: dict[str, Any]) -> Reply:
        return Reply(status=503, error="overloaded") if body["model"] == "judge" else inner(body)

    with ScriptedServer(judge_down) as server:
        cfg = make_config(
            *overrides(server.api_base, data), "max_attempts=2", "max_consecutive_failures=3", "concurrency=1"
        )
        t0 = time.monotonic()
        with pytest.raises(RunIncomplete) as err:
            run(cfg, tmp_path / "run")
        assert time.monotonic() - t0 < 60
        judge_calls = len(server.chat_requests("judge"))
    msg = str(err.value)
    assert "3 calls in a row failed after all retries" in msg and "ServiceUnavailableError" in msg
    failed = len(err.value.results.failures)
    assert 3 <= failed <= 4 and f"{failed} calls failed ({failed} TransientFailure)" in msg
    # 3 calls x 2 attempts, plus the one other call in the window; then no new call was launched.
    assert judge_calls <= 8
    res = err.value.results
    # Everything finished is kept (generations go on while the judge fails: the stages are pipelined).
    assert 0 < len(res.generations) == _lines(tmp_path / "run" / "generations.jsonl") <= 12
    assert res.judgments == []  # no verdict was invented for a failed call
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["partial"] is True and m["unjudged_samples"] == len(res.generations)
    assert m["unscored_safety"] == 0 and m["safe_at_1"] is None
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "stopped" and info["failures"]["count"] == failed


def test_unreachable_api_base_fails_in_seconds(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    data = write_dataset(tmp_path / "d.csv", make_rows(3))
    cfg = make_config(*overrides(f"http://127.0.0.1:{free_port()}/v1", data))
    t0 = time.monotonic()
    # Every prerequisite in one message (model and judge share the base), before any run dir exists.
    with pytest.raises(
        ConfigError, match=r"2 problems(.|\n)*model api_base http://127\.0\.0\.1:\d+/v1 is unreachable"
    ):
        run(cfg, tmp_path / "run")
    assert time.monotonic() - t0 < 15
    assert not (tmp_path / "run").exists()


def test_unknown_model_string_is_refused(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    data = write_dataset(tmp_path / "d.csv", make_rows(3))
    with ScriptedServer(lambda b: Reply()) as server:
        cfg = make_config(*overrides(server.api_base, data), "model.name=nosuchprovider/some-model")
        with pytest.raises(ModelCallError, match="LiteLLM cannot route this model string"):
            run(cfg, tmp_path / "run")
        assert server.chat_requests() == []


def test_api_base_without_v1_is_explained(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    data = write_dataset(tmp_path / "d.csv", make_rows(3))
    with ScriptedServer(lambda b: Reply()) as server:
        base = server.api_base.removesuffix("/v1") + "/api"
        with pytest.raises(ConfigError, match=r"want the base to end in /v1"):
            run(make_config(*overrides(base, data)), tmp_path / "run")


def test_request_budget_stops_cleanly_keeping_partial_results(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(6)
    data = write_dataset(tmp_path / "d.csv", rows)
    with ScriptedServer(responder({r["query"]: r["id"] for r in rows}, rule_for(rows))) as server:
        cfg = make_config(*overrides(server.api_base, data), "max_requests=20", "concurrency=1")
        with pytest.raises(RunIncomplete, match="max_requests=20 reached") as err:
            run(cfg, tmp_path / "run")
        assert len(server.chat_requests()) == 20
    res = err.value.results
    # Each row was one request; judgments start as soon as their sample lands (pipelined).
    assert len(res.generations) + len(res.judgments) == 20 and res.judgments
    assert res.metrics["partial"] is True and res.metrics["stop_reason"] == "max_requests=20 reached"
    judged = Counter((j["id"], j["sample_index"]) for j in res.judgments)
    scored = {qid for (qid, _), n in judged.items() if n == 2}
    assert res.metrics["n_queries"] == len(scored)  # only fully judged samples count


def test_cost_budget_stops_the_run(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    rows = make_rows(6)
    data = write_dataset(tmp_path / "d.csv", rows)
    inner = responder({r["query"]: r["id"] for r in rows}, rule_for(rows))

    def priced(body: dict[str, Any]) -> Reply:
        reply = inner(body)
        reply.usage = {"prompt_tokens": 100_000, "completion_tokens": 100_000, "total_tokens": 200_000}
        return reply

    with ScriptedServer(priced) as server:
        # gpt-4o is priced in LiteLLM's local cost map: 100k+100k tokens cost $1.25 per call.
        cfg = make_config(
            *overrides(server.api_base, data),
            "model.name=openai/gpt-4o",
            "model.api_key_env=BSA_TEST_KEY",
            "max_cost_usd=3",
            "concurrency=1",
            # The scripted judge has no price in LiteLLM's map: say it is free, as a local one would be.
            "judge.input_cost_per_mtok=0",
            "judge.output_cost_per_mtok=0",
        )
        os.environ["BSA_TEST_KEY"] = "sk-test"
        try:
            with pytest.raises(RunIncomplete, match=r"max_cost_usd=3\.0 reached \(spent 3\.7500\)"):
                run(cfg, tmp_path / "run")
        finally:
            del os.environ["BSA_TEST_KEY"]
        assert len(server.chat_requests("gpt-4o")) == 3


SENTINEL = "sk-SENTINEL-7f3e9b21c4d8a6"


def _walk_bytes(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and SENTINEL.encode() in p.read_bytes()]


def test_a_key_never_reaches_run_dir_logs_cache_or_errors(tmp_path: Path) -> None:
    rows = make_rows(3)
    data = write_dataset(tmp_path / "d.csv", rows)
    inner = responder({r["query"]: r["id"] for r in rows}, rule_for(rows))
    env = {**os.environ, "BSA_CACHE_DIR": str(tmp_path / "cache"), "MY_KEY": SENTINEL}
    with ScriptedServer(inner) as server:
        base = [sys.executable, "-m", "bsa", *overrides(server.api_base, data), "model.api_key_env=MY_KEY"]
        ok = subprocess.run(
            [*base, f"hydra.run.dir={tmp_path / 'ok'}"], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert ok.returncode == 0, ok.stderr[-2000:]
    # A provider that echoes the key in its error: the message is redacted everywhere.
    with ScriptedServer(lambda b: Reply(status=401, error=f"invalid key {SENTINEL}")) as bad:
        base = [sys.executable, "-m", "bsa", *overrides(bad.api_base, data), "model.api_key_env=MY_KEY"]
        failed = subprocess.run(
            [*base, f"hydra.run.dir={tmp_path / 'bad'}"], cwd=REPO, env=env, capture_output=True, text=True
        )
    assert failed.returncode == 3 and "AuthenticationError" in failed.stdout
    assert "invalid key ***" in " ".join(failed.stdout.split())
    for out in (ok, failed):
        assert SENTINEL not in out.stdout + out.stderr
    assert _walk_bytes(tmp_path / "ok") == [] and _walk_bytes(tmp_path / "bad") == []
    assert _walk_bytes(tmp_path / "cache") == []


@pytest.mark.parametrize("override", ["model.api_key=sk-abc", "+judge.extra_body.api_key=sk-abc", "+token=x"])
def test_a_key_on_the_command_line_is_refused(tmp_path: Path, override: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bsa", override, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "looks like a secret given on the command line" in out.stderr
    assert "api_key_env" in out.stderr
    assert not (tmp_path / "run").exists()  # refused before Hydra wrote .hydra/overrides.yaml


def _lines(path: Path) -> int:
    try:
        return len(path.read_bytes().splitlines())
    except FileNotFoundError:
        return 0


class Slow:
    def __init__(self, inner: Callable[[dict[str, Any]], Reply], delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s

    def __call__(self, body: dict[str, Any]) -> Reply:
        time.sleep(self.delay_s)
        return self.inner(body)


def _bsa_command(api_base: str, data: Path) -> list[str]:
    return [sys.executable, "-m", "bsa", *overrides(api_base, data), "concurrency=4", "progress=false"]


def _compare_runs(a: Path, b: Path) -> None:
    def rows(p: Path) -> list[dict[str, Any]]:
        return [json.loads(x) for x in p.read_text().splitlines()]

    ga, gb = rows(a / "generations.jsonl"), rows(b / "generations.jsonl")
    keys = [(g["id"], g["sample_index"]) for g in gb]
    assert len(keys) == len(set(keys)), "duplicate rows after resume"
    assert [{k: v for k, v in g.items() if k != "latency_s"} for g in ga] == [
        {k: v for k, v in g.items() if k != "latency_s"} for g in gb
    ]
    # a row's seconds waiting on a call are timing, not a result: the rest must match byte for byte
    ja, jb = rows(a / "judgments.jsonl"), rows(b / "judgments.jsonl")
    assert [{k: v for k, v in j.items() if k != "latency_s"} for j in ja] == [
        {k: v for k, v in j.items() if k != "latency_s"} for j in jb
    ]
    for name in ("metrics.json", "bsa_results.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("kill_at", [("generations.jsonl", 15), ("judgments.jsonl", 30)])
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path, kill_at: tuple[str, int]) -> None:
    rows = make_rows(18)
    data = write_dataset(tmp_path / "d.csv", rows)
    inner = responder({r["query"]: r["id"] for r in rows}, rule_for(rows))
    env = {**os.environ, "BSA_CACHE_DIR": str(tmp_path / "cache-ref"), "PYTHONUNBUFFERED": "1"}
    with ScriptedServer(Slow(inner, 0.02)) as server:
        cmd = _bsa_command(server.api_base, data)
        ref = subprocess.run(
            [*cmd, f"hydra.run.dir={tmp_path / 'ref'}"], cwd=REPO, env=env, capture_output=True
        )
        assert ref.returncode == 0, ref.stderr[-2000:]
        env["BSA_CACHE_DIR"] = str(tmp_path / "cache")
        run_dir = tmp_path / "killed"
        proc = subprocess.Popen([*cmd, f"hydra.run.dir={run_dir}"], cwd=REPO, env=env)
        file, at = kill_at
        deadline = time.monotonic() + 120
        while _lines(run_dir / file) < at and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert not (run_dir / "metrics.json").exists()
        calls_before = len(server.requests)
        resumed = subprocess.run([*cmd, f"resume={run_dir}"], cwd=REPO, env=env, capture_output=True)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        total_calls = len(server.requests) - calls_before
    _compare_runs(tmp_path / "ref", run_dir)
    # Finished calls were not repeated: the resumed run made at most what was left (+ calls in flight).
    assert total_calls <= 18 * 2 * 3 - at + 4


def test_first_ctrl_c_finishes_calls_in_flight_and_writes_partial_metrics(tmp_path: Path) -> None:
    rows = make_rows(18)
    data = write_dataset(tmp_path / "d.csv", rows)
    inner = responder({r["query"]: r["id"] for r in rows}, rule_for(rows))
    env = {**os.environ, "BSA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    run_dir = tmp_path / "run"
    slow = Slow(inner, 0.05)
    with ScriptedServer(slow) as server:
        cmd = _bsa_command(server.api_base, data)
        proc = subprocess.Popen(
            [*cmd, f"hydra.run.dir={run_dir}"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while _lines(run_dir / "generations.jsonl") < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 3, out.decode()[-2000:]
        m = json.loads((run_dir / "metrics.json").read_text())
        assert m["partial"] is True and m["stop_reason"].startswith("interrupted")
        gens = (run_dir / "generations.jsonl").read_text().splitlines()
        assert all(json.loads(line)["answer"] for line in gens)  # every kept row is whole
        # A second Ctrl-C stops at once (judgments began before the first stop: they are pipelined).
        judged = _lines(run_dir / "judgments.jsonl")
        # Calls in flight must outlast the 50 ms between the two Ctrl-Cs, or the first one ends the
        # run gracefully (exit 3) before the second arrives.
        slow.delay_s = 1.0
        proc = subprocess.Popen([*cmd, f"resume={run_dir}"], cwd=REPO, env=env, stdout=subprocess.PIPE)
        time.sleep(0.1)
        while _lines(run_dir / "judgments.jsonl") < judged + 4 and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        proc.communicate(timeout=60)
        assert proc.returncode == 130 and time.monotonic() - t0 < 10
        # And the run still finishes on resume.
        done = subprocess.run([*cmd, f"resume={run_dir}"], cwd=REPO, env=env, capture_output=True)
        assert done.returncode == 0, done.stderr[-2000:]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["partial"] is False and m["n_queries"] == 18


def test_openai_prefix_against_a_keyless_local_server_works(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    rows = make_rows(3)
    data = write_dataset(tmp_path / "d.csv", rows)
    with ScriptedServer(responder({r["query"]: r["id"] for r in rows}, rule_for(rows))) as server:
        cfg = make_config(*overrides(server.api_base, data), "model.name=openai/target", "sampling.k=1")
        res = run(cfg, tmp_path / "run")
    assert res.metrics["n_queries"] == 3 and res.stats.retries == 0


def test_openai_without_any_key_is_refused_before_calls(
    tmp_path: Path, make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    data = write_dataset(tmp_path / "d.csv", make_rows(3))
    with ScriptedServer(lambda b: Reply()) as server:
        cfg = make_config(
            *overrides(server.api_base, data), "judge.name=openai/gpt-4o", "judge.api_base=null"
        )
        with pytest.raises(ModelCallError, match="OpenAI needs a key; export OPENAI_API_KEY"):
            run(cfg, tmp_path / "run")
        assert server.chat_requests() == []


# Fail fast on what cannot succeed (issue 10): a host that does not resolve, a port nobody listens on,
# a key the server rejects. Each is reported within seconds, by one message naming the endpoint and
# the fix, not after hundreds of retried requests.


def test_an_unresolvable_provider_host_fails_in_preflight(
    tmp_path: Path, make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hosted provider (no api_base) whose host does not resolve: before, preflight skipped it and
    every call was retried 8 times (model=deepseek_r1 offline: 89 s, 245 requests, 225 WARNING lines)."""
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    # LiteLLM's deepseek base, moved to a name that never resolves (RFC 6761): no network is touched.
    monkeypatch.setenv("DEEPSEEK_API_BASE", "http://no-such-host.invalid")
    data = write_dataset(tmp_path / "d.csv", make_rows(3))
    with ScriptedServer(lambda b: Reply()) as judge_server:
        model_overrides = [o for o in overrides(judge_server.api_base, data) if not o.startswith("model")]
        cfg = make_config(
            *model_overrides,
            "model=deepseek_r1",
            # DeepSeek's own API (the card's host is Bedrock, whose URL LiteLLM builds per call).
            "model.name=deepseek/deepseek-v4-flash",
            "model.api_key_env=DEEPSEEK_API_KEY",
            "max_attempts=2",  # bounds the old behaviour's run time; preflight makes no call at all
            "max_consecutive_failures=3",
        )
        t0 = time.monotonic()
        with pytest.raises(EndpointUnreachable) as err:
            run(cfg, tmp_path / "run")
        assert time.monotonic() - t0 < 10
        assert judge_server.chat_requests() == []
    msg = str(err.value)
    assert msg.startswith(
        "model deepseek/deepseek-v4-flash at http://no-such-host.invalid: cannot resolve host"
    )
    assert "check the network and DNS (or your HTTPS proxy), or set model.api_base" in msg
    assert not (tmp_path / "run").exists()  # refused with the other prerequisites: no run dir


class GoneAfterPreflight:
    """A server that answers preflight's one GET and then stops listening: every chat call that
    follows is refused, as when a server dies, or the port belongs to something else, after the check."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.api_base = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        self._thread = threading.Thread(target=self._answer_once, daemon=True)

    def _answer_once(self) -> None:
        conn, _ = self._sock.accept()
        with conn:
            conn.recv(65536)
            self._sock.close()  # before answering: no later request can reach a listener
            body = b'{"object": "list", "data": []}'
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            conn.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)

    def __enter__(self) -> GoneAfterPreflight:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


def test_a_server_refusing_every_connection_stops_the_run_in_seconds(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """Default retries and failure limit. Before: 87 s in the generate stage, 229 requests, 209 WARNING
    lines, the bar at 30/30, then "20 calls in a row failed after all retries"."""
    data = write_dataset(tmp_path / "d.csv", make_rows(15))
    with GoneAfterPreflight() as model_server, ScriptedServer(lambda b: Reply()) as judge_server:
        cfg = make_config(*overrides(judge_server.api_base, data), f"model.api_base={model_server.api_base}")
        t0 = time.monotonic()
        with pytest.raises(RunIncomplete) as err:
            run(cfg, tmp_path / "run")
        assert time.monotonic() - t0 < 10
        assert judge_server.chat_requests() == []
    res = err.value.results
    assert res.stop_reason is not None
    assert f"model hosted_vllm/target at {model_server.api_base}: connection refused on" in res.stop_reason
    assert f"is the server running, and is model.api_base={model_server.api_base} right?" in res.stop_reason
    # Stopped within the first window of calls (2 x concurrency), not after 20 calls x 8 attempts.
    assert res.stats.requests <= 2 * cfg.concurrency + UNREACHABLE_AFTER
    assert res.failures and {f["type"] for f in res.failures} == {"EndpointUnreachable"}
    assert res.generations == [] and res.metrics["missing_samples"] == 30


def _requests(ep: Endpoint, n: int) -> list[Request]:
    return [Request(ep, [{"role": "user", "content": f"question {i}"}], {}) for i in range(n)]


async def _complete_all(client: Client, reqs: list[Request]) -> list[Any]:
    return await asyncio.gather(*(client.complete(r) for r in reqs), return_exceptions=True)


def test_the_client_declares_an_unresolvable_api_base_down_after_a_few_tries() -> None:
    """The run-time guard behind preflight (a DNS answer that changes, a URL preflight cannot know):
    16 concurrent calls end in under a few seconds. Before: each call retried 8 times with backoff."""
    import_litellm()  # its import takes seconds; the bound below is on the calls
    ep = Endpoint("hosted_vllm/m", "http://no-such-host.invalid/v1")
    client = Client(None, concurrency=8, max_attempts=8)
    t0 = time.monotonic()
    outcomes = asyncio.run(_complete_all(client, _requests(ep, 16)))
    assert time.monotonic() - t0 < 5
    assert all(isinstance(o, EndpointUnreachable) for o in outcomes), outcomes
    assert client.stats.requests <= 16 + UNREACHABLE_AFTER
    assert "model hosted_vllm/m at http://no-such-host.invalid/v1: cannot resolve host on" in str(outcomes[0])
    assert "check the host name in model.api_base=http://no-such-host.invalid/v1" in str(outcomes[0])
    assert client.stats.retries_by == {
        "model hosted_vllm/m": {"InternalServerError: cannot resolve host": client.stats.retries}
    }


def test_a_server_that_answered_once_is_retried_not_declared_down(tmp_path: Path) -> None:
    """Refused connections after a first answer are a restart or an outage: retried as transient."""
    import_litellm()
    with ScriptedServer(lambda b: Reply(message={"content": "ok"})) as server:
        ep = Endpoint("hosted_vllm/m", server.api_base)
        client = Client(None, concurrency=2, max_attempts=2, max_wait_s=0.1)
        assert asyncio.run(_complete_all(client, _requests(ep, 1)))[0].message["content"] == "ok"
    outcomes = asyncio.run(_complete_all(client, _requests(ep, 2 * UNREACHABLE_AFTER)[1:]))
    assert all(isinstance(o, TransientFailure) for o in outcomes), outcomes
    assert client.stats.requests == 1 + 2 * (2 * UNREACHABLE_AFTER - 1)


# LiteLLM turns hosted_vllm's 403 into its generic APIError, which was retried as a 5xx would be.
@pytest.mark.parametrize(("status", "error"), [(401, "AuthenticationError"), (403, "APIError")])
def test_a_rejected_key_stops_the_run_at_the_first_answers(
    tmp_path: Path, make_config: Callable[..., Config], status: int, error: str
) -> None:
    """A 401 was already fatal before issue 10. A 403 was retried 8 times per call until 20 calls had
    failed: 205 retries and a "still failing ... check that it is up" that hid the key problem."""
    data = write_dataset(tmp_path / "d.csv", make_rows(15))
    with ScriptedServer(lambda b: Reply(status=status, error="invalid api key")) as server:
        cfg = make_config(*overrides(server.api_base, data))
        t0 = time.monotonic()
        with pytest.raises(RunIncomplete) as err:
            run(cfg, tmp_path / "run")
        assert time.monotonic() - t0 < 10
        calls = len(server.chat_requests())
    res = err.value.results
    assert calls <= 2 * cfg.concurrency and res.stats.retries == 0
    assert res.stop_reason is not None and res.stop_reason.startswith(
        f"fatal error: model hosted_vllm/target: {error} (HTTP {status})"
    )
    assert "this endpoint needs a key: set model.api_key_env" in res.stop_reason


def test_the_price_litellm_already_computed_is_used_not_computed_again() -> None:
    from types import SimpleNamespace

    from bsa.llm import _to_completion

    class NoPricing:
        calls = 0

        @classmethod
        def completion_cost(cls, **kw: Any) -> float:
            cls.calls += 1
            return 0.5

    message = SimpleNamespace(content="hi", reasoning_content=None, thinking_blocks=None)
    choice = SimpleNamespace(message=message, finish_reason="stop")

    def resp(hidden: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(choices=[choice], usage=None, model="m", _hidden_params=hidden)

    assert _to_completion(resp({"response_cost": 0.25}), 0.1, NoPricing).cost_usd == 0.25
    assert _to_completion(resp({"response_cost": None}), 0.1, NoPricing).cost_usd is None  # unpriced
    assert NoPricing.calls == 0
    assert _to_completion(resp({}), 0.1, NoPricing).cost_usd == 0.5  # not priced by LiteLLM: ask it
    assert NoPricing.calls == 1
