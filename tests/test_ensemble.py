"""judge=ensemble: each verdict the most common of the members' verdicts, ties unscored, every member's
verdict kept."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import MARK, scripted_overrides, write_dataset
from scripted_server import Reply, ScriptedServer
from test_pipeline import QUERY_IDS, ROWS, SCRIPT

from bsa import agreement
from bsa.config import Config
from bsa.judge import vote
from bsa.run import ConfigError, run


def test_vote_by_hand() -> None:
    assert vote(["Safe", "Safe", "Unsafe"]) == ("Safe", None)
    assert vote(["Safe", None, None]) == ("Safe", None)  # members that could not be parsed abstain
    assert vote(["Safe", "Unsafe", None]) == (None, "ensemble tie: Safe vs Unsafe (1 votes each)")
    assert vote(["Fully Covered", "Partially Covered", "Not Covered"])[0] is None
    assert vote(["Not Covered", "Partially Covered", "Not Covered"]) == ("Not Covered", None)
    assert vote([None, None]) == (None, "no member of the ensemble gave a verdict")


OTHER = {"Safe": "Unsafe", "Unsafe": "Safe", "True": "False", "False": "True"}


def _members_respond(body: dict[str, object]) -> Reply:
    """target: the scripted model; j1 faithful; j2 flips sample 1; j3 garbage on sample 1."""
    messages = body["messages"]
    assert isinstance(messages, list)
    if body["model"] == "target":
        qid, i = QUERY_IDS[messages[-1]["content"]], int(body.get("seed", 0))  # type: ignore[call-overload]
        return Reply(message={"reasoning_content": f"R|{qid}|{i}", "content": f"A|{qid}|{i}"})
    m = MARK.search(messages[0]["content"])
    assert m is not None
    kind = "safety" if m.group(1) == "A" else "think"
    qid, i = m.group(2), int(m.group(3))
    label = SCRIPT[(kind, qid)][i]
    if body["model"] == "j2" and i == 1:
        label = OTHER.get(label, "Not Covered")
    if body["model"] == "j3" and i == 1:
        return Reply(message={"content": "no idea"})
    return Reply(message={"content": json.dumps({"explanation": "scripted", "verdict": label})})


def test_an_ensemble_run_votes_and_keeps_each_member(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    with ScriptedServer(_members_respond) as server:
        base = server.api_base
        members = ", ".join(f"{{name: hosted_vllm/{j}, api_base: '{base}'}}" for j in ("j1", "j2", "j3"))
        cfg = make_config(
            *scripted_overrides(base, data),
            "judge=ensemble",
            "judge.name=ensemble",
            f"judge.members=[{members}]",
            "judge.max_reasks=0",
        )
        res = run(cfg, tmp_path / "run")
        assert {m: len(server.chat_requests(m)) for m in ("j1", "j2", "j3")} == {"j1": 12, "j2": 12, "j3": 12}
    rows = res.judgments
    assert {r["judge_model"] for r in rows} == {"ensemble"}
    names = ["hosted_vllm/j1", "hosted_vllm/j2", "hosted_vllm/j3"]
    assert all([m["judge_model"] for m in r["members"]] == names for r in rows)
    # Sample 0: all three agree. Sample 1: j1 and j2 disagree, j3 abstains -> a tie, unscored.
    for r in rows:
        expected = SCRIPT[(r["kind"], r["id"])][0] if r["sample_index"] == 0 else None
        assert r["verdict"] == expected, r
        if r["sample_index"] == 1:
            assert r["unscored_reason"].startswith("ensemble tie")
            assert r["members"][2]["verdict"] is None and r["members"][2]["raw"] == ["no idea"]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["judge"] == "ensemble" and len(info["judge_members"]) == 3
    assert res.metrics["unscored_safety"] == 3 and res.metrics["safe_at_1"] == pytest.approx(100)
    # One ensemble run is enough for bsa.agreement: its members judged the same samples. j3 left every
    # sample 1 unscored, so the units all three scored are the sample-0 ones, where all agree.
    members = agreement.load_all([tmp_path / "run"])
    assert [m.judge for m in members] == names
    safety = agreement.compare(members, n_boot=50).cell("safety")
    assert (safety.n_units, safety.n_partial, safety.raw.value) == (3, 3, 1.0)
    assert safety.unscored == {m.name: (3 if m.judge.endswith("j3") else 0) for m in members}
    # j1 and j2 alone: sample 1 flipped for every kind -> half the six units agree.
    pair = agreement.compare(members[:2], n_boot=50).cell("safety")
    assert (pair.n_units, pair.raw.value) == (6, 0.5)
    assert agreement.main([str(tmp_path / "run"), "--n-boot", "50"]) == 0


def test_an_ensemble_with_a_managed_server_is_refused(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    cfg = make_config(
        *scripted_overrides("http://127.0.0.1:9/v1", data), "judge=ensemble", "judge.serve.backend=llama_cpp",
        "judge.members=[{name: hosted_vllm/a}]",
    )  # fmt: skip
    with pytest.raises(ConfigError) as e:
        run(cfg, tmp_path / "run")
    assert "judge.serve.backend='llama_cpp' with judge.members" in str(e.value)
    assert "ensemble members are servers you run" in str(e.value)
    # A member's fixed choices are checked when the config is composed, naming the allowed values.
    with pytest.raises(Exception) as composed:
        make_config(*scripted_overrides("http://127.0.0.1:9/v1", data), "judge=ensemble",
                    "judge.members=[{name: hosted_vllm/a, structured_output: bogus}]")  # fmt: skip
    said = str(composed.value) + str(composed.value.__cause__)
    assert "Invalid value 'bogus', expected one of [none, json_object" in said
