"""The published BSA prompt set and safety rules: parsed at run time from a local copy or downloaded
once at the pinned commit; clear errors for a changed file; the paper's setup as the default of any
real model; the published text reaching the judge; metrics equal to the scripted truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import REPO, SHARED_PROMPTS, compose_config, dataset_path
from helpers import MARK, responder, scripted_overrides, write_dataset
from scripted_server import Reply, ScriptedServer
from test_pipeline import QUERY_IDS, ROWS, SCRIPT, scripted

from bsa.config import Config, JudgeConfig
from bsa.data import read
from bsa.prompts import (
    PUBLISHED_COMMIT,
    RULES_FILE,
    SAFE_ANS_FILE,
    THINKING_FILE,
    TemplateError,
    fenced_blocks,
    load_judge_prompts,
    load_published_rules,
    parse_safe_ans,
    parse_thinking,
)
from bsa.run import run
from bsa.verdict import THINK_TARGET

pytestmark = pytest.mark.skipif(
    not SHARED_PROMPTS.is_dir(), reason=f"published prompts not found at {SHARED_PROMPTS}"
)
SCENARIOS = ("Risk Omission", "Cognitive Shortcut", "Over Sensitivity")


def _judge(**kw: object) -> JudgeConfig:
    return JudgeConfig(name="openai/gpt-4o", **kw)  # type: ignore[arg-type]


def _copy(tmp_path: Path, edit: Callable[[str, str], str] = lambda name, text: text) -> Path:
    """A Prompt/ folder with the three published files, each passed through ``edit``."""
    out = tmp_path / "Prompt"
    out.mkdir(exist_ok=True)
    for name in (SAFE_ANS_FILE, THINKING_FILE, RULES_FILE):
        text = (SHARED_PROMPTS / name).read_text(encoding="utf-8")
        (out / name).write_text(edit(name, text), encoding="utf-8")
    return out


def test_the_published_files_parse_into_four_templates_with_their_provenance(tmp_path: Path) -> None:
    ps = load_judge_prompts(_judge(prompts="published", prompts_dir=str(SHARED_PROMPTS)), str(tmp_path))
    assert ps.name == "published" and ps.commit == PUBLISHED_COMMIT
    assert sorted(ps.templates) == sorted([("safety", "")] + [("think", s) for s in SCENARIOS])
    safety = ps.template_for("safety", "Risk Omission").text
    assert "{answer}" in safety and "{reasoning_thinking}" not in safety
    assert "```" not in safety  # the fence lines themselves are not part of the prompt
    for s in SCENARIOS:
        think = ps.template_for("think", s).text
        assert "{reasoning_thinking}" in think and "{answer}" not in think
        assert "Following is the Prompt" not in think  # the intro line is not part of the prompt
    # Each scenario got its own prompt: the Risk Omission one answers a boolean Conclusion.
    assert "Evaluation Conclusion" in ps.template_for("think", "Risk Omission").text
    assert "Evaluation Conclusion" not in ps.template_for("think", "Cognitive Shortcut").text
    assert "Over Sensitive" in ps.template_for("think", "Over Sensitivity").text
    prov = ps.provenance()
    import hashlib

    for name in (SAFE_ANS_FILE, THINKING_FILE):
        assert prov["files"][name] == hashlib.sha256((SHARED_PROMPTS / name).read_bytes()).hexdigest()
    assert prov["commit"] == PUBLISHED_COMMIT and len(prov["sha256"]) == 64
    # Our own set differs, and says so.
    ours = load_judge_prompts(_judge(prompts="bsa"), str(tmp_path))
    assert ours.name == "bsa" and ours.sha256 != ps.sha256


def test_an_edited_copy_is_used_but_not_claimed_to_be_the_pinned_commit(tmp_path: Path) -> None:
    folder = _copy(tmp_path, lambda name, text: text.replace("Evaluate", "Assess", 1))
    ps = load_judge_prompts(_judge(prompts_dir=str(folder)), str(tmp_path))
    assert ps.commit is None
    assert ps.sha256 != load_judge_prompts(_judge(prompts_dir=str(SHARED_PROMPTS)), str(tmp_path)).sha256


@pytest.mark.parametrize(
    ("name", "old", "new", "expected"),
    [
        (
            THINKING_FILE,
            "Following is the Prompt for Cognitive Shortcut thinking judgement:",
            "Here is another prompt:",
            "not introduced by a line 'Following is the Prompt for <scenario> thinking judgement:'",
        ),
        (
            THINKING_FILE,
            "{reasoning_thinking}",
            "{thinking}",
            "placeholders ['query', 'risk_summary', 'thinking']",
        ),
        (
            THINKING_FILE,
            "Prompt for Risk Omission thinking",
            "Prompt for Risk Neglect thinking",
            "'Risk Neglect'",
        ),
        (SAFE_ANS_FILE, "{answer}", "{response}", "expected {answer}"),
        (
            SAFE_ANS_FILE,
            "**Your Task:**",
            "```\n**Your Task:**\n```",
            "expected exactly one ```-fenced prompt",
        ),
    ],
)
def test_a_changed_file_is_one_clear_error_naming_it(
    tmp_path: Path, name: str, old: str, new: str, expected: str
) -> None:
    folder = _copy(tmp_path, lambda n, text: text.replace(old, new) if n == name else text)
    with pytest.raises(TemplateError) as e:
        load_judge_prompts(_judge(prompts_dir=str(folder)), str(tmp_path))
    assert name in str(e.value) and expected in str(e.value)


def test_a_missing_file_and_a_wrong_rules_file_say_what_to_do(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TemplateError, match=r"Safe_Ans_Judge.md not found there; point it at the Prompt/"):
        load_judge_prompts(_judge(prompts_dir=str(empty)), str(tmp_path))
    folder = _copy(tmp_path, lambda n, text: "# Be nice\n" if n == RULES_FILE else text)
    with pytest.raises(TemplateError, match=r"Safe_Rules.md: expected the published safety rules"):
        load_published_rules(_judge(prompts_dir=str(folder)), str(tmp_path))
    with pytest.raises(TemplateError, match="choose one"):
        load_judge_prompts(_judge(prompts_dir=str(folder), templates_dir=str(folder)), str(tmp_path))


def test_fenced_blocks_and_parsers_on_hand_made_files() -> None:
    text = "intro\n```\nA {answer}\n```\nmiddle\n```markdown\nB\n```"
    assert fenced_blocks(text) == [(2, "A {answer}\n"), (6, "B\n")]
    assert parse_safe_ans("```\nJudge {{x}}: {answer}\n```", "f.md").text == "Judge {{x}}: {answer}\n"
    think = "".join(
        f"Following is the Prompt for {s} thinking judgement:\n```\n{s}: {{reasoning_thinking}}\n```\n\n"
        for s in SCENARIOS
    )
    parsed = parse_thinking(think, "t.md")
    assert {s: t.text for s, t in parsed.items()} == {s: f"{s}: {{reasoning_thinking}}\n" for s in SCENARIOS}
    with pytest.raises(TemplateError, match="no prompt for Over Sensitivity"):
        parse_thinking(think.split("Following is the Prompt for Over")[0], "t.md")


@pytest.fixture
def upstream_host(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A loopback stand-in for the raw-file host: serves <root>/<commit>/Prompt/<file>; logs paths."""
    root = tmp_path / "host"
    (root / PUBLISHED_COMMIT).mkdir(parents=True)
    _copy(root / PUBLISHED_COMMIT)
    seen: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            seen.append(self.path)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/{{commit}}/Prompt/", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_without_a_local_copy_the_files_are_downloaded_once_then_read_offline(
    tmp_path: Path, upstream_host: tuple[str, list[str]]
) -> None:
    url, seen = upstream_host
    cfg = _judge(prompts_dir=None, prompts_url=url)
    cache = str(tmp_path / "cache")
    first = load_judge_prompts(cfg, cache)
    assert first.commit == PUBLISHED_COMMIT and first.source == url.format(commit=PUBLISHED_COMMIT)
    assert sorted(p.rsplit("/", 1)[-1] for p in seen) == [SAFE_ANS_FILE, THINKING_FILE]
    rules, f = load_published_rules(cfg, cache)
    assert "Risk Facts" in rules and f.commit == PUBLISHED_COMMIT and len(seen) == 3
    # Offline afterwards: a host that no longer answers is not asked.
    offline = _judge(prompts_dir=None, prompts_url="http://127.0.0.1:9/{commit}/")
    assert load_judge_prompts(offline, cache).sha256 == first.sha256
    assert len(seen) == 3
    with pytest.raises(TemplateError, match=r"download failed .* point judge.prompts_dir at the Prompt/"):
        load_judge_prompts(offline, str(tmp_path / "other-cache"))


def _cfg_job(*args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    import yaml

    out = subprocess.run(
        [sys.executable, "-m", "bsa", *args, "--cfg", "job"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_the_headline_command_shows_the_papers_setup_and_the_demo_keeps_its_own() -> None:
    job = _cfg_job("model=deepseek_r1", "mitigation=rules")
    assert job["judge"]["name"] == "openai/gpt-4o-2024-08-06" and job["judge"]["prompts"] == "published"  # type: ignore[index]
    assert job["dataset"]["name"] == "bsa" and job["dataset"]["demo"] is False  # type: ignore[index]
    assert job["dataset"]["hf_id"] == "OpenStellarTeam/BeyongSafeAnswer_Benchmark"  # type: ignore[index]
    assert "BSA_DATASET" in str(job["dataset"]["path"])  # type: ignore[index]
    demo = _cfg_job()
    assert demo["judge"]["name"] == "hosted_vllm/smollm2" and demo["judge"]["prompts"] == "bsa"  # type: ignore[index]
    assert demo["dataset"]["name"] == "demo"  # type: ignore[index]
    # An explicit choice wins, either way round.
    mixed = _cfg_job("model=deepseek_r1", "judge=smollm2", "dataset=demo")
    assert mixed["judge"]["name"] == "hosted_vllm/smollm2" and mixed["dataset"]["name"] == "demo"  # type: ignore[index]
    mixed = _cfg_job("judge=gpt4o", "dataset=bsa")
    assert mixed["model"]["name"] == "hosted_vllm/smollm2"  # type: ignore[index]
    assert mixed["judge"]["name"] == "openai/gpt-4o-2024-08-06"  # type: ignore[index]


def test_data_a_user_points_at_is_never_demo(tmp_path: Path) -> None:
    cfg = compose_config(["dataset=demo", f"dataset.path={tmp_path / 'mine.csv'}"])
    assert not cfg.dataset.demo and cfg.dataset.name == "bsa"
    assert compose_config([]).dataset.demo


def _published_reply(kind: str, scenario: str, label: str) -> dict[str, object]:
    """A judge reply in the published prompts' JSON (their keys; Risk Omission a boolean)."""
    if kind == "safety":
        return {"Reasoning": "scripted", "Safety Assessment": label}
    if scenario == "Risk Omission":
        return {
            "Reasoning Quality Evaluation": "scripted",
            "Reasoning Quality Evaluation Conclusion": label == "True",
        }
    return {"Reasoning Quality Evaluation": "scripted", "Reasoning Quality Evaluation Result": label}


def test_published_prompts_reach_the_judge_and_metrics_equal_the_script(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    data = write_dataset(tmp_path / "mini.csv", ROWS)
    scenario = {r["id"]: r["dataset_name"] for r in ROWS}
    base = responder(QUERY_IDS, scripted)

    def respond(body: dict[str, object]) -> Reply:
        reply = base(body)
        if body["model"] != "judge":
            return reply
        text = body["messages"][-1]["content"]  # type: ignore[index]
        kind_mark, qid, i = MARK.search(text).groups()  # type: ignore[union-attr]
        kind = "safety" if kind_mark == "A" else "think"
        label = SCRIPT[(kind, qid)][int(i)]
        return Reply(message={"content": json.dumps(_published_reply(kind, scenario[qid], label))})

    with ScriptedServer(respond) as server:
        cfg = make_config(
            *scripted_overrides(server.api_base, data),
            "judge.prompts=published",
            "judge.structured_output=json_schema",
            "mitigation=published_rules",
        )
        res = run(cfg, tmp_path / "run")
        judge_calls = server.chat_requests("judge")
        target_calls = server.chat_requests("target")
    ps = load_judge_prompts(cfg.judge, cfg.cache.dir)
    # The published text, with the model's text fenced in place of each placeholder.
    safety_head = ps.template_for("safety", "").text.split("{")[0]
    sent = [c["messages"][0]["content"] for c in judge_calls]
    assert sum(s.startswith(safety_head) for s in sent) == 6
    for s in SCENARIOS:
        head = ps.template_for("think", s).text.split("{query}")[0].replace("{{", "{").replace("}}", "}")
        assert sum(x.startswith(head) for x in sent) == 2, s
    assert all("```text\nR|" in x or "```text\nA|" in x for x in sent)
    # Structured output asks for the published keys.
    schema = judge_calls[0]["response_format"]["json_schema"]["schema"]
    assert set(schema["required"]) in ({"Reasoning", "Safety Assessment"}, {
        "Reasoning Quality Evaluation", "Reasoning Quality Evaluation Result"}, {
        "Reasoning Quality Evaluation", "Reasoning Quality Evaluation Conclusion"})  # fmt: skip
    # The published safety rules are the model's system prompt.
    rules = (SHARED_PROMPTS / RULES_FILE).read_text(encoding="utf-8").strip()
    assert all(c["messages"][0] == {"role": "system", "content": rules} for c in target_calls)
    m = res.metrics
    assert m["safe_at_1"] == pytest.approx(250 / 3) and m["think_at_1"] == pytest.approx(200 / 3)
    assert m["unscored_safety"] == m["unscored_think"] == 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["judge_prompts"]["set"] == "published" and info["judge_prompts"]["commit"] == PUBLISHED_COMMIT
    assert (
        info["mitigation_prompt"]["file"] == RULES_FILE
        and info["mitigation_prompt"]["commit"] == PUBLISHED_COMMIT
    )
    assert info["plan"]["generation_calls"] == 6 and info["plan"]["judge_calls"] == 12
    rows = [json.loads(x) for x in (tmp_path / "run" / "judgments.jsonl").read_text().splitlines()]
    assert {r["prompt_set"] for r in rows} == {"published"}


DATA = dataset_path()


@pytest.mark.skipif(DATA is None, reason="BSA dataset not found")
def test_the_headline_command_runs_the_benchmark_with_published_prompts_on_loopback(tmp_path: Path) -> None:
    """python -m bsa model=deepseek_r1 mitigation=rules, pointed at a loopback server: the benchmark
    ($BSA_DATASET) judged with the published prompts; the panel says so before the first call."""
    assert DATA is not None
    queries = read(DATA)
    by_query = {q.query: q.id for q in queries}
    scenario = {q.id: q.scenario for q in queries}

    def verdicts(kind: str, qid: str, i: int) -> str:
        return "Safe" if kind == "safety" else THINK_TARGET[scenario[qid]]

    base = responder(by_query, verdicts, judge_model="gpt-4o-2024-08-06")

    def respond(body: dict[str, object]) -> Reply:
        """The default judge (gpt4o, judge.protocol=paper) reads only the published JSON, exactly."""
        reply = base(body)
        if body["model"] != "gpt-4o-2024-08-06":
            return reply
        kind_mark, qid, _ = MARK.search(body["messages"][-1]["content"]).groups()  # type: ignore[index, union-attr]
        kind = "safety" if kind_mark == "A" else "think"
        label = json.loads(reply.message["content"])["verdict"]
        return Reply(message={"content": json.dumps(_published_reply(kind, scenario[qid], label))})

    with ScriptedServer(respond) as server:
        cmd = [
            sys.executable, "-m", "bsa", "model=deepseek_r1", "mitigation=rules",
            # The card's host (Bedrock) speaks another protocol: R1 served OpenAI-style on loopback.
            "model.name=hosted_vllm/deepseek-ai/DeepSeek-R1",
            f"model.api_base={server.api_base}", f"judge.api_base={server.api_base}",
            "dataset.limit=12", "sampling.k=2", "sampling.seed=0", f"hydra.run.dir={tmp_path / 'run'}",
        ]  # fmt: skip
        env = {
            **os.environ,
            "BSA_DATASET": str(DATA),
            "BSA_CACHE_DIR": str(tmp_path / "cache"),
            "DEEPSEEK_API_KEY": "sk-test",
            "OPENAI_API_KEY": "sk-test",
            "COLUMNS": "160",
        }
        out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        judged = server.chat_requests("gpt-4o-2024-08-06")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    published_head = (SHARED_PROMPTS / SAFE_ANS_FILE).read_text(encoding="utf-8").splitlines()[1][:60]
    assert len(judged) == 48 and sum(published_head in j["messages"][0]["content"] for j in judged) == 24
    panel = out.stdout.split("Safe@1")[0]
    for needle in ("what will run", "deepseek-ai/DeepSeek-R1", "openai/gpt-4o-2024-08-06",
                   "published (sha256", str(DATA), "12 × 2 = 24 samples",
                   "24 to make, 0 of them cached"):  # fmt: skip
        assert needle in panel, needle
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["dataset"]["demo"] is False and info["dataset"]["n_queries"] == 12
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["safe_at_1"] == 100.0
