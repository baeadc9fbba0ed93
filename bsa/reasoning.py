"""Split a model message into (reasoning, answer, flags). Pure: no I/O, no LiteLLM.

Providers return reasoning in different shapes: a ``reasoning_content`` field (LiteLLM fills it for
openai/, hosted_vllm/, deepseek, openrouter, together, xai, and joins Anthropic thinking blocks and
Gemini thoughts into it), a ``reasoning`` field (fireworks, groq), raw ``thinking_blocks``, or the
trace inline in the content as ``<think>...</think>``. LiteLLM only splits the inline form when the
content *starts* with ``<think>``, so leading whitespace and closing-tag-only output (templates that
open ``<think>`` themselves, as Qwen3 and R1 do) arrive here unsplit.

Where a field carries the trace, the content is the whole answer and is never split again; inline,
the first ``</think>`` ends the trace. Either way a think tag left in the answer is flagged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Flags a sample can carry; any flag makes it "flagged" in the metrics.
NO_REASONING = "no_reasoning"  # no trace at all: Think cannot be credited
REASONING_CUT_OFF = "reasoning_cut_off"  # the trace never finished (length stop or <think> unclosed)
ANSWER_TRUNCATED = "answer_truncated"  # finish_reason length after the trace ended
EMPTY_ANSWER = "empty_answer"
# The answer holds a literal think tag that was left in it: with reasoning in its own field the
# content is never split; inline, only the first </think> ends the trace.
THINK_TAG_IN_ANSWER = "think_tag_in_answer"
# finish_reason content_filter after some answer text: the provider's safety filter cut the answer
# short (with no answer text at all, bsa.llm records the sample as the provider's refusal instead).
ANSWER_FILTERED = "answer_filtered"

_OPEN = re.compile(r"<think(?:ing)?>", re.IGNORECASE)
_CLOSE = re.compile(r"</think(?:ing)?>", re.IGNORECASE)


@dataclass(frozen=True)
class Extraction:
    reasoning: str
    answer: str
    flags: tuple[str, ...]

    @property
    def has_reasoning(self) -> bool:
        return bool(self.reasoning.strip())


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):  # content parts
        return "".join(_text(p.get("text") if isinstance(p, Mapping) else p) for p in value)
    return str(value)


def _thinking_blocks(blocks: Any) -> str:
    if not isinstance(blocks, list):
        return ""
    parts = []
    for block in blocks:
        if isinstance(block, Mapping):
            parts.append(_text(block.get("thinking") or block.get("text")))
        else:
            parts.append(_text(getattr(block, "thinking", None) or getattr(block, "text", None)))
    return "\n".join(p for p in parts if p)


def split_inline(content: str) -> tuple[str, str, bool]:
    """Split inline think tags. Returns (reasoning, answer, unclosed)."""
    close = _CLOSE.search(content)
    open_ = _OPEN.search(content)
    if open_ and (close is None or open_.start() < close.start()):
        if content[: open_.start()].strip():
            # Prose before the tag: the trace is what sits inside the tags, the rest is the answer.
            before = content[: open_.start()]
        else:
            before = ""
        if close is None:
            return content[open_.end() :].strip(), before.strip(), True
        reasoning = content[open_.end() : close.start()]
        answer = before + content[close.end() :]
        return reasoning.strip(), answer.strip(), False
    if close is not None:
        # The chat template opened <think> in the prompt; only the closing tag is generated.
        return content[: close.start()].strip(), content[close.end() :].strip(), False
    return "", content.strip(), False


def extract(message: Mapping[str, Any], finish_reason: str | None = None) -> Extraction:
    """Return the reasoning trace and final answer of one completion message."""
    # Whitespace-only in one field must not hide a real trace in the next.
    structured = (
        _text(message.get("reasoning_content")).strip()
        or _text(message.get("reasoning")).strip()
        or _thinking_blocks(message.get("thinking_blocks")).strip()
    )
    content = _text(message.get("content"))
    if structured:
        # The provider has already separated the trace, so the content is all answer: splitting it
        # again at a literal </think> would hand part of the answer to the reasoning judge and leave
        # the safety judge a fragment.
        reasoning, answer, unclosed = structured, content.strip(), False
    else:
        reasoning, answer, unclosed = split_inline(content)

    flags: list[str] = []
    if not reasoning:
        flags.append(NO_REASONING)
    truncated = finish_reason == "length"
    if unclosed or (truncated and reasoning and not answer):
        flags.append(REASONING_CUT_OFF)
    elif truncated:
        flags.append(ANSWER_TRUNCATED)
    if finish_reason == "content_filter":
        flags.append(ANSWER_FILTERED)
    if not answer:
        flags.append(EMPTY_ANSWER)
    if _OPEN.search(answer) or _CLOSE.search(answer):
        flags.append(THINK_TAG_IN_ANSWER)
    return Extraction(reasoning=reasoning, answer=answer, flags=tuple(flags))
