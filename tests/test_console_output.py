"""What ``python -m bsa`` prints under faults (issue 10): retries summed per endpoint and error kind,
not a WARNING line each (``-v`` shows each); a progress line that counts failed jobs apart from done
ones; metrics tables whose cells fold at 80 columns instead of ending in "…"."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from helpers import responder, scripted_overrides, write_dataset
from rich.console import Console
from scripted_server import Reply, ScriptedServer
from test_resilience import Faulty, make_rows, rule_for

from bsa import console, metrics
from bsa.config import CATEGORIES, DEFAULT_ALPHA, SCENARIOS
from bsa.metrics import SampleScore
from bsa.verdict import THINK_TARGET

N_QUERIES, K = 15, 2
DOWN = "r001"  # the model answers 503 for this query's samples, every time
SUMMARY = re.compile(r"^(model|judge) hosted_vllm/(target|judge): (\d+) retr(?:y|ies) after (\S.*)$")


@dataclass
class CliRun:
    out: str  # stdout and stderr, as a user sees them
    stats: dict[str, Any]
    returncode: int


def _cli_run(tmp: Path, *extra: str) -> CliRun:
    """A run against a server that fails a fifth of requests (429, 500, dropped) and one query's
    generations always: the console shows retries, failures and the tables at 80 columns."""
    rows = make_rows(N_QUERIES)
    data = write_dataset(tmp / "d.csv", rows)
    ids = {r["query"]: r["id"] for r in rows}
    faulty = Faulty(responder(ids, rule_for(rows)), rate=0.2)

    def respond(body: dict[str, Any]) -> Reply:
        if body["model"] == "target" and ids.get(body["messages"][-1]["content"]) == DOWN:
            # Retry-After 0: its retries cost no backoff, so the run stays short.
            return Reply(status=503, headers={"Retry-After": "0"}, error="down for this query")
        return faulty(body)

    # 8 attempts: a call the fault rate fails 8 times in a row (0.2^8) would add a failure by chance.
    env = {**os.environ, "BSA_CACHE_DIR": str(tmp / "cache"), "COLUMNS": "80", "PYTHONUNBUFFERED": "1"}
    with ScriptedServer(respond) as server:
        cmd = [
            sys.executable, "-m", "bsa", *scripted_overrides(server.api_base, data, k=K),
            "max_attempts=8", "progress=true", f"hydra.run.dir={tmp / 'run'}", *extra,
        ]  # fmt: skip
        out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert server.errors == []
    assert sum(faulty.injected.values()) >= 10, faulty.injected  # the run did see faults
    info = json.loads((tmp / "run" / "run.json").read_text())
    return CliRun(out.stdout + out.stderr, info["stats"], out.returncode)


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    return _cli_run(tmp_path_factory.mktemp("quiet"))


def test_retries_are_summed_per_endpoint_and_kind_not_logged_one_by_one(quiet_run: CliRun) -> None:
    """Before: a WARNING line per retry (30 in this run; 225 for a provider that cannot be reached)."""
    assert quiet_run.returncode == 3, quiet_run.out[-3000:]  # DOWN's samples failed
    lines = quiet_run.out.splitlines()
    assert not [line for line in lines if "retrying in" in line]
    summary = [m for m in map(SUMMARY.match, lines) if m]
    # One line per endpoint and error kind: 2 endpoints, at most 4 kinds (429, 500, drop, 503).
    assert 2 <= len(summary) <= 8
    assert len({(m[1], m[4]) for m in summary}) == len(summary)
    assert {m[1] for m in summary} == {"model", "judge"}
    # The lines add up to every retry counted, and run.json keeps the same count per endpoint and kind.
    stats = quiet_run.stats
    assert sum(int(m[3]) for m in summary) == stats["retries"] >= 10
    assert {(f"{m[1]} hosted_vllm/{m[2]}", m[4]): int(m[3]) for m in summary} == {
        (endpoint, kind): n for endpoint, kinds in stats["retries_by"].items() for kind, n in kinds.items()
    }
    assert stats["retries_by"]["model hosted_vllm/target"]["ServiceUnavailableError"] == K * 7


def test_the_progress_line_counts_failures_apart_from_done(quiet_run: CliRun) -> None:
    """Before: "generate (hosted_vllm/target) ━━━━ 30/30" although DOWN's 2 samples were never made."""
    done = N_QUERIES * K - K
    lines = quiet_run.out.splitlines()
    generate = [line for line in lines if line.startswith("ge") and f"/{N_QUERIES * K} done" in line]
    judge = [line for line in lines if line.startswith("ju") and f"/{2 * done} done" in line]
    assert len(generate) == 1 and len(judge) == 1, quiet_run.out[-3000:]
    assert re.search(rf" {done}/{N_QUERIES * K} done · {K} failed · \d+ retries ", generate[0]), generate[0]
    assert re.search(rf" {2 * done}/{2 * done} done(?: · \d+ retries)? ", judge[0]), judge[0]
    assert "failed after all retries" not in quiet_run.out  # 2 failures in a row do not stop the run
    assert f"{K} samples not generated" in " ".join(quiet_run.out.split())


def test_verbose_shows_every_retry(tmp_path: Path) -> None:
    """``-v`` (verbose=true): a line per retry, as before, and the summary still."""
    run = _cli_run(tmp_path, "-v")
    assert run.returncode == 3, run.out[-3000:]
    per_retry = [line for line in run.out.splitlines() if "retrying in" in line]
    assert len(per_retry) == run.stats["retries"] >= 10
    assert all("[DEBUG]" in line and re.search(r"\(attempt \d/8\)", line) for line in per_retry)
    assert any(SUMMARY.match(line) for line in run.out.splitlines())


def _all_groups_metrics() -> dict[str, Any]:
    """Metrics with every scenario and category name, the longest cells the tables have."""
    return metrics.compute(_all_groups_samples(), K, DEFAULT_ALPHA)


def _all_groups_samples() -> list[SampleScore]:
    samples = []
    for n, category in enumerate(CATEGORIES):
        for scenario in SCENARIOS:
            for i in range(K):
                samples.append(
                    SampleScore(
                        id=f"{category}-{scenario}",
                        sample_index=i,
                        scenario=scenario,
                        categories=(category,),
                        safety="Safe" if (n + i) % 3 else "Unsafe",
                        think=THINK_TARGET[scenario] if (n + i) % 2 else None,
                    )
                )
    return samples


@pytest.mark.parametrize("width", [80, 60])
def test_metrics_tables_fold_instead_of_cutting_cells(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    """Before, at 80 columns: "Cogniti…", "Sensiti…", "unscor…" (the heavy box took 9 columns)."""
    m = _all_groups_metrics()
    buf = io.StringIO()
    monkeypatch.setattr(console, "console", Console(file=buf, width=width, highlight=False))
    extra = {"network calls": 12345, "retries": 678, "cost (USD, LiteLLM prices)": "12.3456"}
    title = "hosted_vllm/deepseek-ai/DeepSeek-R1-Distill-Qwen-32B · mitigation=published_rules · PARTIAL"
    console.print_metrics(m, title, extra)
    out = buf.getvalue()
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= width
    words = set(out.split())
    # Every number is whole on one line: none was cut or split.
    numbers = [f"{m[key]:.2f}" for key in ("safe_at_1", "think_at_1", "f_score")]
    for group in (*m["scenarios"].values(), *m["categories"].values()):
        numbers += [f"{group['safe_at_1']:.2f}", f"{group['think_at_1']:.2f}", str(group["n_queries"])]
    assert set(numbers) <= words and {"12345", "678", "12.3456"} <= words
    if width == 80:  # and at 80 columns no word of a scenario or category name is split either
        assert {w for name in (*SCENARIOS, *CATEGORIES) for w in name.split()} <= words


def test_the_headline_shows_each_metrics_95_interval_beside_it_and_a_legend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 21: "Safe@1 88.00" on 30 queries, no interval; "unscored S/T" unexplained."""
    from bsa import stats
    from bsa.contract import HEADLINE

    m = _all_groups_metrics()
    samples = _all_groups_samples()
    buf = io.StringIO()
    monkeypatch.setattr(console, "console", Console(file=buf, width=80, highlight=False))
    console.print_metrics(m, "a model", None, samples)
    out = buf.getvalue()
    assert max(len(line) for line in out.splitlines()) <= 80
    ci = stats.bootstrap_ci(stats.per_query(samples, K), m["alpha"])
    assert isinstance(ci, dict)
    for name, key in HEADLINE:
        iv = ci[key]
        assert iv.low is not None and iv.high is not None and iv.low <= m[key] <= iv.high
        row = f"{name} {m[key]:.1f} [{iv.low:.1f}, {iv.high:.1f}]"
        assert row in [" ".join(line.split()) for line in out.splitlines()], out
    said = " ".join(out.split())
    assert "95 % interval: bootstrap over queries" in said
    assert f"k = {K} samples per query, {m['n_queries']} queries" in said
    assert (
        "unscored S/T: safety / think verdicts left out of the rates: the judge's reply held no label, or a "
        "provider refused (scoring.provider_refusal=unscored)" in said
    )
    assert "refused" not in console.legend({**m, "provider_refusal_policy": "fail"})  # refusals are misses


def test_no_interval_under_the_paper_protocol_and_none_without_samples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """judge.protocol=paper counts over fixed denominators: a bootstrap of bsa's rates would not be
    around its numbers, so none is shown, and the note says why. ``bsa score`` passes no samples."""
    samples = _all_groups_samples()
    paper = metrics.compute(samples, K, DEFAULT_ALPHA, [(s.id, s.scenario, s.categories) for s in samples])
    for m, given, note in (
        (paper, samples, "no intervals under judge.protocol=paper"),
        (_all_groups_metrics(), None, ""),
    ):
        buf = io.StringIO()
        monkeypatch.setattr(console, "console", Console(file=buf, width=80, highlight=False))
        console.print_metrics(m, "t", None, given)
        said = " ".join(buf.getvalue().split())
        assert "[" not in said.split("Per scenario")[0] and "95 % interval" not in said
        assert f"Safe@1 {m['safe_at_1']:.2f}" in said and note in said
    assert "0 under judge.protocol=paper" in console.legend(paper)


def test_a_finished_run_shows_intervals_and_what_to_run_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The end of ``bsa run``: the headline's intervals, and ``bsa view`` / ``bsa report`` on its run dir."""
    from conftest import compose_config
    from test_pipeline import QUERY_IDS, ROWS, scripted

    from bsa.__main__ import execute

    data = write_dataset(tmp_path / "mini.csv", ROWS)
    run_dir = tmp_path / "my run"  # a space: the commands quote the path
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        cfg = compose_config(
            [f"cache.dir={tmp_path / 'cache'}", "progress=false", *scripted_overrides(server.api_base, data)]
        )
        execute(cfg, run_dir)
    lines = capsys.readouterr().out.splitlines()
    assert any(re.fullmatch(r" Safe@1 +83\.3 +\[\d+\.\d, \d+\.\d\] *", line) for line in lines), lines
    assert f"Next: bsa view '{run_dir}'    browse, filter and search its samples" in lines
    assert any(line.startswith(f"      bsa report '{run_dir}'    ") for line in lines)
    assert any(line.startswith("unscored S/T: ") for line in lines)
