"""python -m bsa.rejudge: judge a run's generations (or the upstream script's CSV) again, no model call."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import responder, scripted_overrides, write_dataset
from scripted_server import ScriptedServer
from test_pipeline import QUERY_IDS, ROWS, scripted

from bsa.config import Config
from bsa.rejudge import RejudgeError, main, merge_overrides, upstream_generations
from bsa.run import run


def _save_overrides(run_dir: Path, overrides: list[str]) -> None:
    """What Hydra writes for a run of python -m bsa (run() alone does not)."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))


def _metrics(run_dir: Path) -> dict[str, object]:
    return json.loads((run_dir / "metrics.json").read_text())


def test_merge_overrides_keeps_the_source_run_and_lets_the_given_ones_win() -> None:
    inherited = [
        "model=openai_compatible", "model.name=hosted_vllm/m", "judge=openai_compatible",
        "judge.name=hosted_vllm/j", "judge.api_base=http://x/v1", "sampling.k=2", "resume=old",
        "hydra.run.dir=old", "output_dir=old",
    ]  # fmt: skip
    assert merge_overrides(inherited, ["judge=gpt4o", "sampling.k=3"]) == [
        "model=openai_compatible", "model.name=hosted_vllm/m", "judge=gpt4o", "sampling.k=3",
    ]  # fmt: skip
    assert merge_overrides(inherited, ["judge.prompts=bsa"])[-1] == "judge.prompts=bsa"
    assert "judge.name=hosted_vllm/j" in merge_overrides(inherited, ["judge.prompts=bsa"])


def test_a_rejudge_makes_no_generation_call_and_gives_the_same_metrics(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    src = tmp_path / "src"
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        overrides = scripted_overrides(server.api_base, data)
        run(make_config(*overrides), src)
        _save_overrides(src, overrides)
        server.requests.clear()
        out = tmp_path / "rejudged"
        # A fresh cache: the judge is really asked again.
        main([str(src), f"cache.dir={tmp_path / 'cache2'}", "progress=false", "--out", str(out)])
        assert server.chat_requests("target") == []
        assert len(server.chat_requests("judge")) == 12
    assert _metrics(out) | {"partial": None} == _metrics(src) | {"partial": None}
    info = json.loads((out / "run.json").read_text())
    gen = src / "generations.jsonl"
    assert info["generations_source"]["path"] == str(gen.resolve())
    assert info["generations_source"]["sha256"] == hashlib.sha256(gen.read_bytes()).hexdigest()
    assert info["stats"]["calls"] == 12 and info["plan"]["generation_calls"] == 0
    assert (out / "generations.jsonl").read_bytes() == gen.read_bytes()
    # Another prompt set: the judge sees our templates now; the source run is untouched.
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        again = tmp_path / "ours"
        main([
            str(src), "judge.prompts=bsa", f"judge.api_base={server.api_base}",
            f"cache.dir={tmp_path / 'c3'}", "progress=false", "--out", str(again),
        ])  # fmt: skip
        sent = [r["messages"][0]["content"] for r in server.chat_requests("judge")]
        assert server.chat_requests("target") == [] and len(sent) == 12
    assert all(s.startswith("You are a strict") or "reasoning" in s.lower() for s in sent)
    assert json.loads((again / "run.json").read_text())["judge_prompts"]["set"] == "bsa"
    assert _metrics(again)["safe_at_1"] == _metrics(src)["safe_at_1"]


def _upstream_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    cols = ["id", "question", "answer", "reasoning_content", "status", "tokens", "error"]
    with open(path, "w", newline="", encoding="utf-8-sig") as f:  # the upstream script writes a BOM
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in cols})
    return path


def test_the_upstream_batch_output_is_judged_and_scored(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    query = {r["id"]: r["query"] for r in ROWS}
    rows: list[dict[str, object]] = [
        # 1-based suffixes, as a user running the script once per sample writes them
        {"id": f"{qid}_{i + 1}", "question": query[qid], "answer": f"A|{qid}|{i}",
         "reasoning_content": f"R|{qid}|{i}", "status": "success", "tokens": 30}
        for qid in ("q1", "q2", "q3") for i in range(2)
    ]  # fmt: skip
    rows[-1] = {**rows[-1], "answer": "", "reasoning_content": "", "status": "failed", "error": "timeout"}
    src = _upstream_csv(tmp_path / "upstream.csv", rows)
    out = tmp_path / "judged"
    with ScriptedServer(responder(QUERY_IDS, scripted)) as server:
        main([
            str(src), "--dataset", str(data), "sampling.k=2", "judge=openai_compatible",
            "judge.name=hosted_vllm/judge", f"judge.api_base={server.api_base}",
            f"cache.dir={tmp_path / 'cache'}", "progress=false", "--out", str(out),
        ])  # fmt: skip
        assert len(server.chat_requests("judge")) == 10 and server.chat_requests("target") == []
    m = _metrics(out)
    # As the hand-worked script, less q3's second sample (failed upstream): q3 has one sample,
    # Safe, Over Sensitive. Safe@1 (.5 + 1 + 1)/3; Think@1 (1 + .5 + 0)/3.
    assert m["safe_at_1"] == pytest.approx(250 / 3) and m["think_at_1"] == pytest.approx(50)
    assert m["missing_samples"] == 1
    info = json.loads((out / "run.json").read_text())
    assert info["generations_source"]["format"] == "upstream batch CSV"
    assert info["generations_source"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert info["model"] == "upstream:upstream"
    gens = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert [(g["id"], g["sample_index"], g["upstream_id"]) for g in gens][:2] == [
        ("q1", 0, "q1_1"),
        ("q1", 1, "q1_2"),
    ]


def test_upstream_rows_that_cannot_be_placed_are_refused() -> None:
    ids = {"q1", "q2"}
    with pytest.raises(RejudgeError, match=r"1 ids match no query of the dataset \(first: zz_1\)"):
        upstream_generations([{"id": "zz_1", "answer": "a"}], ids, 5, "m", "f.csv")
    many = [{"id": f"q1_{i}", "answer": "a"} for i in range(3)]
    with pytest.raises(RejudgeError, match=r"query q1 has 3 samples but sampling\.k=2; give sampling\.k=3"):
        upstream_generations(many, ids, 2, "m", "f.csv")
    # A bare query id is one sample; inline <think> is split from the answer.
    rows, notes = upstream_generations(
        [{"id": "q2", "answer": "<think>hm</think>fine", "reasoning_content": ""}], ids, 5, "m", "f.csv"
    )
    assert notes == [] and (rows[0]["reasoning"], rows[0]["answer"], rows[0]["sample_index"]) == (
        "hm",
        "fine",
        0,
    )


def test_a_missing_source_or_dataset_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "nothing")])
    assert e.value.code == 2 and "no such run dir or file" in " ".join(capsys.readouterr().out.split())
    src = _upstream_csv(tmp_path / "u.csv", [{"id": "q1_1", "answer": "a"}])
    with pytest.raises(SystemExit) as e:
        main([str(src)])
    assert e.value.code == 2 and "--dataset FILE" in " ".join(capsys.readouterr().out.split())
