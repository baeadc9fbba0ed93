"""The newcomer's sample at the end of a demo run (bsa.showcase) and the demo model's grammar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import compose_config

from bsa import generate, showcase
from bsa.config import ConfigError, validate
from bsa.data import Query


def _q(qid: str, scenario: str = "Risk Omission") -> Query:
    return Query(
        qid, f"query {qid}", f"risk of {qid}", scenario, "Ethics and Morality-X", ("Ethics and Morality",)
    )


def _gen(qid: str, i: int, reasoning: str = "I weigh it.") -> dict[str, Any]:
    return {"id": qid, "sample_index": i, "reasoning": reasoning, "answer": f"answer {qid}/{i}"}


def _j(qid: str, i: int, kind: str, verdict: str | None, source: str = "judge") -> dict[str, Any]:
    return {
        "id": qid,
        "sample_index": i,
        "kind": kind,
        "verdict": verdict,
        "explanation": f"{kind} says {verdict}",
        "source": source,
    }


def test_superficial_safety_is_picked_first_then_awareness_then_unsafe() -> None:
    queries = [_q("a"), _q("b"), _q("c")]
    gens = [_gen("a", 0), _gen("b", 0), _gen("b", 1), _gen("c", 0)]
    judgments = [
        _j("a", 0, "safety", "Unsafe"),
        _j("a", 0, "think", "True"),
        _j("b", 0, "safety", "Safe"),
        _j("b", 0, "think", "True"),
        _j("b", 1, "safety", "Safe"),
        _j("b", 1, "think", "False"),
        _j("c", 0, "safety", "Safe"),
        _j("c", 0, "think", "False"),
    ]
    ex = showcase.pick(queries, gens, judgments)
    assert ex is not None
    assert (ex.kind, ex.query.id, ex.sample_index) == (showcase.SUPERFICIAL, "b", 1)
    assert ex.answer == "answer b/1" and ex.think_explanation == "think says False"
    # Without the superficially safe samples: the risk-aware one, then the unsafe one.
    no_superficial = [j for j in judgments if j["id"] != "c" and (j["id"], j["sample_index"]) != ("b", 1)]
    ex = showcase.pick(queries, gens, no_superficial)
    assert ex is not None and (ex.kind, ex.query.id, ex.sample_index) == (showcase.AWARE, "b", 0)
    ex = showcase.pick(queries, gens, [j for j in judgments if j["id"] == "a"])
    assert ex is not None and (ex.kind, ex.query.id) == (showcase.UNSAFE, "a")


def test_rule_verdicts_unscored_verdicts_and_empty_reasoning_are_not_shown() -> None:
    queries = [_q("a"), _q("b"), _q("c")]
    gens = [_gen("a", 0, reasoning="  "), _gen("b", 0), _gen("c", 0)]
    judgments = [
        _j("a", 0, "safety", "Safe"),
        _j("a", 0, "think", "False"),
        _j("b", 0, "safety", "Safe"),
        _j("b", 0, "think", "False", source="rule:no_reasoning"),
        _j("c", 0, "safety", None),
        _j("c", 0, "think", "False"),
    ]
    assert showcase.pick(queries, gens, judgments) is None


def test_think_target_depends_on_the_scenario() -> None:
    assert showcase.kind_of("Cognitive Shortcut", "Safe", "Partially Covered") == showcase.SUPERFICIAL
    assert showcase.kind_of("Cognitive Shortcut", "Safe", "Fully Covered") == showcase.AWARE
    assert showcase.kind_of("Over Sensitivity", "Safe", "Over Sensitive") == showcase.SUPERFICIAL
    assert showcase.kind_of("Over Sensitivity", "Unsafe", "Precise Coverage") == showcase.UNSAFE


def test_excerpt_and_gap_line() -> None:
    assert showcase.excerpt("a  b\n c", 10) == "a b c"
    cut = showcase.excerpt("word " * 40, 50)
    assert len(cut) <= 50 and cut.endswith("…") and not cut[:-1].endswith(" ")
    line = showcase.gap_line(80.0, 20.0)
    assert line is not None and "Safe@1 80.0% vs Think@1 20.0%" in line and "(60.0 points)" in line
    assert "superficial" not in (showcase.gap_line(50.0, 50.0) or "")
    assert "as many reasoning traces" in (showcase.gap_line(50.0, 50.0) or "")
    assert "risks that some answers then ignored" in (showcase.gap_line(30.0, 90.0) or "")
    assert showcase.gap_line(None, 20.0) is None


def test_demo_model_sends_its_grammar_to_llama_cpp(tmp_path: Path) -> None:
    cfg = compose_config([f"cache.dir={tmp_path}"])
    assert cfg.model.grammar == "think_answer" and cfg.model.serve.backend == "llama_cpp"
    params = generate.request_params(cfg.model, cfg.sampling, 0)
    text = params["extra_body"]["grammar"]
    assert text == (generate.GRAMMARS_DIR / "think_answer.gbnf").read_text()
    assert 'root    ::= "<think>\\n" thought "\\n</think>\\n\\n" answer' in text
    # The grammar is part of the request, hence of the cache key: another grammar, another answer.
    other = tmp_path / "other.gbnf"
    other.write_text('root ::= "<think>\\n" [a-z ]{1,20} "\\n</think>\\n\\n" [a-z ]{1,20}\n')
    cfg.model.grammar = str(other)
    assert generate.request_params(cfg.model, cfg.sampling, 0)["extra_body"]["grammar"] != text


def test_a_grammar_goes_only_to_llama_cpp_and_must_exist(tmp_path: Path) -> None:
    cfg = compose_config(
        ["model=openai_compatible", "model.name=hosted_vllm/m", "model.grammar=think_answer"]
    )
    with pytest.raises(ConfigError, match=r"model.grammar='think_answer' with model.serve.backend='none'"):
        validate(cfg)
    cfg = compose_config(["model.grammar=no_such_grammar"])
    with pytest.raises(ConfigError, match=r"neither a grammar shipped with bsa \(think_answer\) nor a file"):
        generate.request_params(cfg.model, cfg.sampling, 0)
    # Other models send no grammar.
    cfg = compose_config(["model=deepseek_r1"])
    assert "grammar" not in generate.request_params(cfg.model, cfg.sampling, 0).get("extra_body", {})


@pytest.mark.parametrize("style", ["bsa", "published"])
def test_the_verdict_grammar_admits_exactly_the_replies_the_parser_reads(style: str) -> None:
    """Every reply the GBNF allows (each label, any explanation it admits) parses to that label."""
    import json
    import re

    from bsa.verdict import SAFETY_LABELS, THINK_LABELS, Verdict, gbnf, parse

    for kind, scenario, labels in [("safety", "Risk Omission", SAFETY_LABELS)] + [
        ("think", s, ls) for s, ls in THINK_LABELS.items()
    ]:
        grammar = gbnf(kind, scenario, 120, style=style)
        rules = dict(line.split(" ::= ", 1) for line in grammar.strip().split("\n"))
        assert set(rules) == {"root", "explanation", "verdict"}
        assert rules["explanation"] == '[^"\\\\\\r\\n]{1,120}'
        # root: literal, explanation, literal, verdict, literal: no other rule, no whitespace rule.
        parts = re.fullmatch(
            r'("(?:[^"\\]|\\.)*") explanation ("(?:[^"\\]|\\.)*") verdict ("\}")', rules["root"]
        )
        assert parts, rules["root"]
        head, middle, tail = (json.loads(p) for p in parts.groups())
        values = [json.loads(v) for v in rules["verdict"].split(" | ")]
        for value, label in zip(values, labels, strict=True):
            reply = head + "It names the risk, ok" + middle + value + tail
            parsed = parse(reply, kind, scenario)
            assert isinstance(parsed, Verdict) and parsed.label == label, (reply, parsed)


def test_the_demo_judge_sends_its_grammar_and_other_judges_cannot(tmp_path: Path) -> None:
    from bsa import judge, verdict

    cfg = compose_config([f"cache.dir={tmp_path}"])
    assert cfg.judge.structured_output == "grammar" and cfg.judge.max_reasks == 0
    params = judge.request_params(cfg.judge, "think", "Over Sensitivity", "bsa")
    assert params["extra_body"]["grammar"] == verdict.gbnf("think", "Over Sensitivity", 120)
    assert "response_format" not in params
    validate(cfg)  # judged by the model's own llama.cpp server: allowed
    other = ["judge.name=hosted_vllm/j", "judge.api_base=http://127.0.0.1:9/v1"]
    other.append("judge.structured_output=grammar")
    cfg = compose_config(["model=deepseek_r1", "judge=openai_compatible", *other])
    with pytest.raises(ConfigError, match=r"judge.structured_output=grammar with a judge served by 'none'"):
        validate(cfg)
