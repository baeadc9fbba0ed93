"""``bsa export RUN --format inspect``: a scripted run (reasoning, both judgments, an unparseable
verdict, a provider refusal) written as an inspect-ai eval log and read back with inspect_ai's own
reader: one sample per (query, sample index), the run's verdicts as its scores, the run's reasoning
as reasoning content, metrics.json as its results."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import MINI_QUERY_IDS, MINI_ROWS, responder, write_dataset
from helpers import scripted_overrides as overrides
from inspect_ai.log import list_eval_logs, read_eval_log  # the dev extra has it: `make test` runs these
from inspect_ai.model import ContentReasoning, ContentText
from scripted_server import Reply, ScriptedServer
from test_refusals import AZURE_FILTER

from bsa import export
from bsa.config import Config
from bsa.contract import METRICS
from bsa.run import run

K = 2
# Per (kind, query): the verdict of each sample; None: the judge's reply holds no verdict (unscored).
SCRIPT: dict[tuple[str, str], list[str | None]] = {
    ("safety", "q1"): ["Safe", None],
    ("think", "q1"): ["True", "False"],
    ("safety", "q2"): ["Safe", "Unsafe"],
    ("think", "q2"): ["Fully Covered", "Partially Covered"],
    ("safety", "q3"): ["Safe", "Safe"],
    ("think", "q3"): ["Over Sensitive", "Precise Coverage"],
}
REFUSED = ("q3", 1)  # the model's provider refuses this sample (a content filter, HTTP 400)


def _make_run(tmp_path: Path, make_config: Callable[..., Config], *extra: str) -> Path:
    data = write_dataset(tmp_path / "mini.csv", MINI_ROWS)
    inner = responder(MINI_QUERY_IDS, lambda kind, qid, i: SCRIPT[(kind, qid)][i])

    def respond(body: dict[str, Any]) -> Reply:
        asked = (MINI_QUERY_IDS.get(body["messages"][-1]["content"]), int(body.get("seed", 0)))
        if body["model"] == "target" and asked == REFUSED:
            return Reply(status=400, error_body=AZURE_FILTER)
        return inner(body)

    with ScriptedServer(respond) as server:
        run(
            make_config(*overrides(server.api_base, data, "judge.max_reasks=0", *extra, k=K)),
            tmp_path / "run",
        )
    return tmp_path / "run"


@pytest.fixture
def run_dir(tmp_path: Path, make_config: Callable[..., Config]) -> Path:
    return _make_run(tmp_path, make_config)


def _rows(run_dir: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


@pytest.mark.parametrize("suffix", [".eval", ".json"])
def test_an_exported_run_reads_back_with_inspects_reader(run_dir: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"run{suffix}"
    assert export.main([str(run_dir), "--format", "inspect", "--out", str(out)]) == 0
    log = read_eval_log(str(out))

    gens = {(g["id"], g["sample_index"]): g for g in _rows(run_dir, "generations.jsonl")}
    judged = {(j["id"], j["sample_index"], j["kind"]): j for j in _rows(run_dir, "judgments.jsonl")}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert log.status == "success" and log.error is None
    assert log.eval.task == "bsa" and log.eval.model == "hosted_vllm/target" and log.eval.config.epochs == K
    assert log.eval.dataset.samples == 3 and log.eval.dataset.sample_ids == ["q1", "q2", "q3"]
    assert log.samples is not None and len(log.samples) == 3 * K
    assert {(s.id, s.epoch) for s in log.samples} == {(qid, i + 1) for qid, i in gens}

    queries = {r["id"]: r for r in MINI_ROWS}
    for s in log.samples:
        key = (str(s.id), s.epoch - 1)
        g = gens[key]
        assert s.input[0].text == queries[key[0]]["query"] and s.target == queries[key[0]]["risk_summary"]
        for kind in ("safety", "think"):
            row = judged[(*key, kind)]
            assert s.scores is not None
            score = s.scores[kind]
            assert score.value == (row["verdict"] if row["verdict"] is not None else "Unscored"), (key, kind)
            assert score.metadata is not None and score.metadata["verdict"] == row["verdict"]
            if row["verdict"] is None:  # said, not guessed
                assert row["unscored_reason"] and row["unscored_reason"] in (score.explanation or "")
            else:
                assert score.explanation == row["explanation"] == "scripted"
        content = s.output.message.content
        if key == REFUSED:
            assert g["reasoning"] is None and g["answer"] is None
            assert content == "" and s.output.stop_reason == "content_filter"
            assert "content management policy" in (s.output.error or "")
            assert s.metadata["flags"] == ["provider_refused"]
            continue
        assert isinstance(content, list)
        reasoning = [c.reasoning for c in content if isinstance(c, ContentReasoning)]
        text = [c.text for c in content if isinstance(c, ContentText)]
        assert reasoning == [g["reasoning"]] == [f"R|{key[0]}|{key[1]}"]
        assert text == [g["answer"]] and s.output.completion == g["answer"]

    assert log.results is not None
    exported = {
        m.metadata["key"]: m.value
        for score in log.results.scores
        for m in score.metrics.values()
        if m.metadata is not None
    }
    expected = {key: export.metric_value(metrics, key) for _, key in METRICS}
    assert exported == {k: v for k, v in expected.items() if v is not None}
    assert exported["safe_at_1"] == metrics["safe_at_1"] and exported["f_score"] == metrics["f_score"]
    assert exported["Risk Omission/think_at_1"] == metrics["scenarios"]["Risk Omission"]["think_at_1"]
    by_name = {score.name: score for score in log.results.scores}
    # Safety: q1's second sample has no verdict and q3's second was refused; think: only the refusal.
    assert (by_name["safety"].scored_samples, by_name["safety"].unscored_samples) == (4, 2)
    assert (by_name["think"].scored_samples, by_name["think"].unscored_samples) == (5, 1)
    assert log.results.metadata == metrics


def test_a_refusal_scored_by_the_policy_says_so(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    run_dir = _make_run(tmp_path, make_config, "scoring.provider_refusal=fail")
    out = tmp_path / "run.eval"
    assert export.main([str(run_dir), "--out", str(out)]) == 0
    log = read_eval_log(str(out))
    assert log.samples is not None
    refused = next(s for s in log.samples if (s.id, s.epoch - 1) == REFUSED)
    assert refused.scores is not None
    safety, think = refused.scores["safety"], refused.scores["think"]
    # As the metrics counted it: Unsafe and the think miss, and why, while the judge gave no verdict.
    assert (safety.value, think.value) == ("Unsafe", "Not Covered")
    assert safety.metadata is not None and safety.metadata["verdict"] is None
    assert "scoring.provider_refusal=fail" in (safety.explanation or "")


def test_a_killed_run_is_an_error_log_with_recomputed_results(run_dir: Path, tmp_path: Path) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    info.update(status="stopped", stop_reason="budget.requests=10 reached")
    (run_dir / "run.json").write_text(json.dumps(info))
    recorded = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").unlink()
    out = tmp_path / "killed.json"
    assert export.main([str(run_dir), "--out", str(out)]) == 0
    log = read_eval_log(str(out))
    assert log.status == "error" and log.error is not None
    assert log.error.message == "budget.requests=10 reached"
    assert log.results is not None
    assert {s.metadata["source"] for s in log.results.scores if s.metadata} == {"recomputed from the rows"}
    safe_at_1 = log.results.scores[0].metrics["Safe@1"].value
    assert safe_at_1 == pytest.approx(recorded["safe_at_1"])  # the same rows, the same numbers


def test_the_verb_writes_into_a_folder_that_inspect_lists(run_dir: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"  # not there yet: made
    done = subprocess.run(
        [sys.executable, "-m", "bsa", "export", str(run_dir), "--format", "inspect", "--out", str(logs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.parent == logs and path.suffix == ".eval"
    listed = list_eval_logs(str(logs))
    assert [Path(i.name.removeprefix("file://")) for i in listed] == [path]
    assert listed[0].task == "bsa"


def test_without_inspect_ai_it_says_how_to_install_it(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "inspect_ai.log", None)  # import inspect_ai.log raises ImportError
    out = tmp_path / "run.eval"
    assert export.main([str(run_dir), "--out", str(out)]) == 2
    said = " ".join(capsys.readouterr().out.split())
    assert "needs inspect-ai: pip install 'bsa-eval[inspect]'" in said
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["{tmp}", "--out", "{tmp}/x.eval"], "not a run dir (no run.json)"),
        (["{run}", "--out", "{tmp}/x.txt"], "an inspect log is a .eval or .json file"),
    ],
)
def test_bad_input_is_exit_2_with_a_message(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [a.format(tmp=empty, run=run_dir) for a in args]
    assert export.main(argv) == 2
    assert said in " ".join(capsys.readouterr().out.split())
    assert not list(empty.glob("x.*"))


def test_bsa_export_help_has_its_options_and_an_example() -> None:
    from click.testing import CliRunner

    from bsa import cli

    out = CliRunner().invoke(cli.cli, ["export", "--help"], prog_name="bsa")
    assert out.exit_code == 0 and out.output.startswith("usage: bsa export")
    assert "--format {inspect}" in out.output and "--out" in out.output
    assert "  bsa export " in out.output.split("\nExample")[1]
