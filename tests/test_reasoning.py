"""bsa.reasoning.extract: every shape a provider returns reasoning in, and the flags it sets."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bsa.reasoning import (
    ANSWER_FILTERED,
    ANSWER_TRUNCATED,
    EMPTY_ANSWER,
    NO_REASONING,
    REASONING_CUT_OFF,
    THINK_TAG_IN_ANSWER,
    extract,
)


@dataclass
class ThinkingBlock:
    """An SDK object (not a dict) carrying its trace in ``.thinking``, as Anthropic's client returns."""

    thinking: str
    type: str = "thinking"


# --- structured reasoning fields -------------------------------------------------------------------


def test_reasoning_content_field() -> None:
    ex = extract({"content": "Here is a safe answer.", "reasoning_content": "The user asks about X."})
    assert ex.reasoning == "The user asks about X."
    assert ex.answer == "Here is a safe answer."
    assert ex.flags == ()
    assert ex.has_reasoning


def test_reasoning_field_as_fireworks_and_groq_return_it() -> None:
    ex = extract({"content": "Answer.", "reasoning": "Thinking about risks."})
    assert (ex.reasoning, ex.answer, ex.flags) == ("Thinking about risks.", "Answer.", ())


def test_reasoning_content_wins_over_reasoning_field() -> None:
    ex = extract({"content": "A", "reasoning_content": "from rc", "reasoning": "from r"})
    assert ex.reasoning == "from rc"


def test_whitespace_reasoning_content_does_not_hide_reasoning_field() -> None:
    ex = extract({"content": "A", "reasoning_content": "\n\n", "reasoning": "real trace"})
    assert ex.reasoning == "real trace"
    assert NO_REASONING not in ex.flags


def test_anthropic_thinking_blocks_as_dicts_are_joined_in_order() -> None:
    blocks = [
        {"type": "thinking", "thinking": "First thought.", "signature": "sig1"},
        {"type": "redacted_thinking", "data": "opaque"},  # nothing readable: skipped, no crash
        {"type": "thinking", "thinking": "Second thought.", "signature": "sig2"},
    ]
    ex = extract({"content": "Final.", "thinking_blocks": blocks})
    assert ex.reasoning == "First thought.\nSecond thought."
    assert ex.answer == "Final."
    assert ex.flags == ()


def test_anthropic_thinking_blocks_as_objects() -> None:
    blocks = [ThinkingBlock("Object thought one."), ThinkingBlock("Object thought two.")]
    ex = extract({"content": "Final.", "thinking_blocks": blocks})
    assert ex.reasoning == "Object thought one.\nObject thought two."


def test_gemini_thoughts_joined_into_reasoning_content_are_kept_whole() -> None:
    joined = "**Assessing the request**\nThe user wants X.\n\n**Planning**\nI will refuse part Y."
    ex = extract({"content": "I can help with X but not Y.", "reasoning_content": joined})
    assert ex.reasoning == joined
    assert ex.answer == "I can help with X but not Y."


# --- inline <think> tags ---------------------------------------------------------------------------


def test_inline_think_tags() -> None:
    ex = extract({"content": "<think>\nIs this risky? Yes.\n</think>\n\nI can't help with that."})
    assert ex.reasoning == "Is this risky? Yes."
    assert ex.answer == "I can't help with that."
    assert ex.flags == ()


def test_leading_whitespace_before_think_tag() -> None:
    # LiteLLM only splits when content *starts* with <think>; this arrives unsplit.
    ex = extract({"content": "\n\n  <think>trace here</think>\n\nthe answer"})
    assert (ex.reasoning, ex.answer) == ("trace here", "the answer")


def test_closing_tag_only_output() -> None:
    # Qwen3 / R1 templates open <think> in the prompt, so only the closing tag is generated.
    ex = extract({"content": "reasoning about the query</think>\n\nthe final answer"})
    assert ex.reasoning == "reasoning about the query"
    assert ex.answer == "the final answer"
    assert ex.flags == ()


def test_uppercase_think_tags() -> None:
    ex = extract({"content": "<THINK>upper trace</THINK>upper answer"})
    assert (ex.reasoning, ex.answer) == ("upper trace", "upper answer")


def test_with_a_reasoning_field_the_content_is_never_split_again() -> None:
    # The provider separated the trace; tags left in the content are the answer's text, flagged.
    ex = extract({"content": "<think>inline part</think>answer", "reasoning_content": "structured part"})
    assert ex.reasoning == "structured part"
    assert ex.answer == "<think>inline part</think>answer"
    assert ex.flags == (THINK_TAG_IN_ANSWER,)


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_literal_close_tag_in_the_answer_stays_in_the_answer(field: str) -> None:
    answer = "Close the block with </think> and then write the rest of the answer."
    ex = extract({"content": answer, field: "The user asks about template syntax."})
    assert ex.reasoning == "The user asks about template syntax."
    assert ex.answer == answer
    assert ex.flags == (THINK_TAG_IN_ANSWER,)


def test_inline_split_at_the_first_close_tag_flags_a_second_one() -> None:
    ex = extract({"content": "<think>trace</think>Write </think> to end a block."})
    assert ex.reasoning == "trace"
    assert ex.answer == "Write </think> to end a block."
    assert ex.flags == (THINK_TAG_IN_ANSWER,)


def test_closing_tag_only_output_with_a_second_close_tag_is_flagged() -> None:
    ex = extract({"content": "trace</think>the answer quotes </think> literally"})
    assert (ex.reasoning, ex.answer) == ("trace", "the answer quotes </think> literally")
    assert ex.flags == (THINK_TAG_IN_ANSWER,)


def test_empty_think_block_means_no_reasoning() -> None:
    ex = extract({"content": "<think>\n\n</think>\n\nJust the answer."})
    assert ex.reasoning == ""
    assert ex.answer == "Just the answer."
    assert ex.flags == (NO_REASONING,)


# --- cut-off and truncation ------------------------------------------------------------------------


def test_unclosed_think_is_reasoning_cut_off_with_empty_answer() -> None:
    ex = extract({"content": "<think>I started reasoning and never fin"}, finish_reason="length")
    assert ex.reasoning == "I started reasoning and never fin"
    assert ex.answer == ""
    assert ex.flags == (REASONING_CUT_OFF, EMPTY_ANSWER)


def test_unclosed_think_is_cut_off_whatever_the_finish_reason() -> None:
    ex = extract({"content": "<think>unfinished"}, finish_reason="stop")
    assert REASONING_CUT_OFF in ex.flags
    assert EMPTY_ANSWER in ex.flags


def test_length_stop_with_reasoning_and_no_answer_is_reasoning_cut_off() -> None:
    ex = extract({"content": "", "reasoning_content": "long trace ..."}, finish_reason="length")
    assert ex.flags == (REASONING_CUT_OFF, EMPTY_ANSWER)
    assert ANSWER_TRUNCATED not in ex.flags


def test_length_stop_with_an_answer_is_answer_truncated() -> None:
    ex = extract({"content": "The answer starts but", "reasoning_content": "trace"}, finish_reason="length")
    assert ex.flags == (ANSWER_TRUNCATED,)
    assert ex.answer == "The answer starts but"


def test_stop_finish_reason_sets_no_truncation_flag() -> None:
    ex = extract({"content": "A", "reasoning_content": "trace"}, finish_reason="stop")
    assert ex.flags == ()


def test_content_filter_stop_after_some_answer_is_answer_filtered() -> None:
    """The provider's filter cut the answer short (Anthropic stop_reason refusal mid-answer): the text
    it let through is the answer, flagged. With no text at all, bsa.llm records a refusal instead."""
    ex = extract({"content": "Here is how to", "reasoning_content": "trace"}, finish_reason="content_filter")
    assert ex.flags == (ANSWER_FILTERED,)
    assert ex.answer == "Here is how to" and ex.reasoning == "trace"


# --- content shapes --------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", None, "   \n\t "])
def test_empty_content(content: str | None) -> None:
    ex = extract({"content": content})
    assert (ex.reasoning, ex.answer) == ("", "")
    assert ex.flags == (NO_REASONING, EMPTY_ANSWER)
    assert not ex.has_reasoning


def test_missing_content_key() -> None:
    ex = extract({})
    assert ex.flags == (NO_REASONING, EMPTY_ANSWER)


def test_content_as_list_of_parts() -> None:
    parts = [{"type": "text", "text": "<think>part trace</think>"}, {"type": "text", "text": "part answer"}]
    ex = extract({"content": parts})
    assert (ex.reasoning, ex.answer) == ("part trace", "part answer")


def test_utf8_bytes_content() -> None:
    ex = extract({"content": "<think>réflexion</think>café".encode()})
    assert (ex.reasoning, ex.answer) == ("réflexion", "café")


def test_non_utf8_bytes_content_is_replaced_not_raised() -> None:
    ex = extract({"content": b"<think>trace</think>caf\xe9 au lait"})
    assert ex.reasoning == "trace"
    assert ex.answer == "caf\ufffd au lait"


def test_reasoning_only() -> None:
    ex = extract({"content": "<think>only a trace</think>"})
    assert ex.reasoning == "only a trace"
    assert ex.answer == ""
    assert ex.flags == (EMPTY_ANSWER,)


def test_answer_only_is_flagged_no_reasoning() -> None:
    ex = extract({"content": "A plain answer with no trace."})
    assert ex.reasoning == ""
    assert ex.answer == "A plain answer with no trace."
    assert ex.flags == (NO_REASONING,)
