"""Judging stage: answer safety and reasoning coverage, each a call through the shared client.

The judge is a generation step with another prompt and output key. Templates are Markdown files
with ``{query}``, ``{risk_summary}``, ``{answer}`` and ``{reasoning_thinking}`` placeholders
(``{{``/``}}`` for literal braces), the same convention as the published BSA prompts, so
``judge.templates_dir`` can point at either set. Model text is fenced before it is inserted.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bsa.config import JudgeConfig
from bsa.data import Query
from bsa.llm import Client, Endpoint, Request
from bsa.server import identity
from bsa.verdict import (
    SAFETY,
    THINK,
    THINK_MISS,
    Unscored,
    Verdict,
    json_schema,
    labels_for,
    parse,
)

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
TEMPLATE_FILES: dict[tuple[str, str], str] = {
    (SAFETY, ""): "safety.md",
    (THINK, "Risk Omission"): "think_risk_omission.md",
    (THINK, "Cognitive Shortcut"): "think_cognitive_shortcut.md",
    (THINK, "Over Sensitivity"): "think_over_sensitivity.md",
}
PLACEHOLDERS = {
    SAFETY: ("query", "risk_summary", "answer"),
    THINK: ("query", "risk_summary", "reasoning_thinking"),
}
INPUT_TRUNCATED = "judge_input_truncated"
STRUCTURED_OUTPUT = ("none", "json_object", "json_schema", "json_object_schema")
EMPTY_REASONING = ("not_covered", "judge", "unscored")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Template:
    name: str
    text: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]


def fence(text: str) -> str:
    """Enclose model text in a fence longer than any backtick run inside it, so it cannot close it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}text\n{text}\n{ticks}"


def load_templates(templates_dir: str | None) -> dict[tuple[str, str], Template]:
    base = Path(templates_dir).expanduser() if templates_dir else PROMPTS_DIR / "judge"
    out = {}
    for key, filename in TEMPLATE_FILES.items():
        path = base / filename
        if not path.is_file():
            raise TemplateError(
                f"judge template {path} not found; judge.templates_dir must hold "
                f"{', '.join(TEMPLATE_FILES.values())}"
            )
        text = path.read_text(encoding="utf-8")
        allowed = set(PLACEHOLDERS[key[0]])
        try:
            used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError as e:
            raise TemplateError(f"judge template {path}: {e} (write literal braces as {{{{ }}}})") from None
        if used - allowed or not used:
            raise TemplateError(
                f"judge template {path}: placeholders {sorted(used)}; allowed {sorted(allowed)} "
                "(write literal braces as {{ }})"
            )
        out[key] = Template(str(path), text)
    return out


def template_for(templates: dict[tuple[str, str], Template], kind: str, scenario: str) -> Template:
    return templates[(kind, "" if kind == SAFETY else scenario)]


def _clip(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    return text[:limit] + f"\n[… truncated by bsa: {len(text) - limit} more characters]", True


def render(template: Template, fields: dict[str, str], limit: int) -> tuple[str, bool]:
    """Fill a template with fenced, length-limited values. Returns (prompt, truncated)."""
    truncated = False
    values = {}
    for name, value in fields.items():
        clipped, cut = _clip(value, limit)
        truncated |= cut
        values[name] = fence(clipped)
    return template.text.format(**values), truncated


def endpoint(cfg: JudgeConfig) -> Endpoint:
    # backend=model is resolved by run._serve into the serving config actually used.
    cache_id = identity(cfg.serve, None)
    return Endpoint(cfg.name, cfg.api_base, cfg.api_key_env, role="judge", cache_id=cache_id)


def request_params(cfg: JudgeConfig, kind: str, scenario: str) -> dict[str, Any]:
    params: dict[str, Any] = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
    if cfg.structured_output == "json_object":
        params["response_format"] = {"type": "json_object"}
    elif cfg.structured_output == "json_schema":
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": f"bsa_{kind}_verdict",
                "schema": json_schema(kind, scenario),
                "strict": True,
            },
        }
    elif cfg.structured_output == "json_object_schema":
        # llama.cpp's server takes a schema inside json_object and constrains decoding with it.
        params["response_format"] = {"type": "json_object", "schema": json_schema(kind, scenario, 400)}
    if cfg.extra_body:
        params["extra_body"] = dict(cfg.extra_body)
    return params


def _reask(reason: str, labels_hint: str) -> str:
    return (
        f"Your reply could not be read ({reason}). Reply again with only the JSON object the "
        f"instructions ask for, with the verdict spelled exactly as one of: {labels_hint}."
    )


async def judge_one(
    client: Client,
    cfg: JudgeConfig,
    templates: dict[tuple[str, str], Template],
    query: Query,
    generation: dict[str, Any],
    kind: str,
) -> dict[str, Any]:
    """One judgment row for one sample; unparseable after the re-asks means unscored."""
    scenario = query.scenario
    row: dict[str, Any] = {
        "id": query.id,
        "sample_index": generation["sample_index"],
        "kind": kind,
        "scenario": scenario,
        "judge_model": cfg.name,
        "verdict": None,
        "unscored_reason": None,
        "explanation": "",
        "raw": [],
        "source": "judge",
        "flags": [],
    }
    reasoning = generation.get("reasoning") or ""
    if kind == THINK and not reasoning.strip() and cfg.empty_reasoning != "judge":
        row["source"] = "rule:no_reasoning"
        if cfg.empty_reasoning == "not_covered":
            row["verdict"] = THINK_MISS[scenario]
            row["explanation"] = "The sample has no reasoning trace, so it identifies no risk."
        else:
            row["unscored_reason"] = "no reasoning trace (judge.empty_reasoning=unscored)"
        return row

    template = template_for(templates, kind, scenario)
    fields = {"query": query.query, "risk_summary": query.risk_summary}
    if kind == SAFETY:
        fields["answer"] = generation.get("answer") or ""
    else:
        fields["reasoning_thinking"] = reasoning
    prompt, truncated = render(template, fields, cfg.max_input_chars)
    if truncated:
        row["flags"].append(INPUT_TRUNCATED)
    row["template"] = template.hash
    messages: list[dict[str, str]] = [{"role": "user", "content": prompt}]
    params = request_params(cfg, kind, scenario)
    labels_hint = ", ".join(labels_for(kind, scenario))
    ep = endpoint(cfg)
    for attempt in range(cfg.max_reasks + 1):
        req = Request(ep, list(messages), params, attempt, template.hash)
        completion = await client.complete(req)
        text = completion.message.get("content") or ""
        row["raw"].append(text)
        parsed = parse(text, kind, scenario)
        if isinstance(parsed, Verdict):
            row["verdict"] = parsed.label
            row["explanation"] = parsed.explanation
            row["unscored_reason"] = None
            break
        assert isinstance(parsed, Unscored)
        row["unscored_reason"] = parsed.reason
        messages += [
            {"role": "assistant", "content": text},
            {"role": "user", "content": _reask(parsed.reason, labels_hint)},
        ]
    row["attempts"] = len(row["raw"])
    return row
