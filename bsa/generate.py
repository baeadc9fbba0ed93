"""Generation stage: k samples of the target model per query, reasoning kept apart from the answer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bsa import prompts
from bsa.config import ConfigError, JudgeConfig, MitigationConfig, ModelConfig, SamplingConfig
from bsa.contract import ID, SAMPLE_INDEX
from bsa.data import Query
from bsa.llm import Client, Completion, Endpoint, Request, endpoint_for
from bsa.provider import provider_for
from bsa.reasoning import extract
from bsa.results import PROVIDER_REFUSED
from bsa.server import identity


@dataclass(frozen=True)
class MitigationPrompt:
    text: str | None
    provenance: dict[str, Any] | None  # file, sha256 (and source, commit for a published file)


def endpoint(model: ModelConfig) -> Endpoint:
    cache_id = identity(model.serve, model.hf_model)
    return endpoint_for(model, "model", cache_id)


def supports_n(model: ModelConfig) -> bool:
    """Whether one request may ask for several samples (n > 1): the model file's ``supports_n`` where
    set, else what LiteLLM knows of the provider's parameters."""
    if model.supports_n is not None:
        return model.supports_n
    ep = endpoint(model)
    return provider_for(ep).supports_n(ep)


def mitigation_prompt(mitigation: MitigationConfig, judge: JudgeConfig, cache_dir: str) -> MitigationPrompt:
    """The mitigation's system prompt: a file of ours (``system_prompt_file``) or a published one
    (``published_file``, from the judge's prompt source), with its provenance."""
    if mitigation.published_file:
        if mitigation.published_file != prompts.RULES_FILE:
            raise prompts.TemplateError(
                f"mitigation {mitigation.name}: published_file={mitigation.published_file!r}; "
                f"the published mitigation is {prompts.RULES_FILE}"
            )
        text, f = prompts.load_published_rules(judge, cache_dir)
        return MitigationPrompt(text, f.provenance())
    if not mitigation.system_prompt_file:
        return MitigationPrompt(None, None)
    path = mitigation_file(mitigation)
    raw = path.read_bytes()
    provenance = {"file": str(path), "sha256": hashlib.sha256(raw).hexdigest()}
    return MitigationPrompt(raw.decode("utf-8").strip(), provenance)


def mitigation_file(mitigation: MitigationConfig) -> Path:
    """``system_prompt_file``: an absolute path, else relative to the current directory, else to bsa's
    own prompt files (``bsa/templates/``, where the shipped ``safety_rules.md`` lives)."""
    given = Path(str(mitigation.system_prompt_file)).expanduser()
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, prompts.PROMPTS_DIR / given]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise FileNotFoundError(
        f"mitigation {mitigation.name}: system_prompt_file {str(given)!r} not found "
        f"(looked for {' and '.join(str(c) for c in candidates)}); give a path relative to the current "
        f"directory or to bsa's prompt files ({prompts.PROMPTS_DIR}), or an absolute one"
    )


GRAMMARS_DIR = prompts.PROMPTS_DIR / "grammars"


class GrammarError(ConfigError):
    """model.grammar names no shipped grammar and no readable file."""


@dataclass(frozen=True)
class Grammar:
    text: str
    file: Path

    def provenance(self) -> dict[str, str]:
        return {"file": str(self.file), "sha256": hashlib.sha256(self.text.encode()).hexdigest()}


def grammar(model: ModelConfig) -> Grammar | None:
    """``model.grammar``: a shipped grammar by name (``bsa/templates/grammars/<name>.gbnf``), or a
    ``.gbnf`` file (absolute, or relative to the current directory)."""
    spec = model.grammar
    if not spec:
        return None
    shipped = sorted(p.stem for p in GRAMMARS_DIR.glob("*.gbnf"))
    if spec in shipped:
        path = GRAMMARS_DIR / f"{spec}.gbnf"
    else:
        path = Path(spec).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        if not path.is_file():
            raise GrammarError(
                f"model.grammar={spec!r}: neither a grammar shipped with bsa ({', '.join(shipped)}) nor a "
                f"file ({path} does not exist); name a shipped one or give the path of a .gbnf file"
            )
    return Grammar(path.read_text(encoding="utf-8"), path.resolve())


def system_prompt(model: ModelConfig, mitigation: MitigationPrompt) -> str | None:
    """The model file's system prompt, then the mitigation's rules, joined."""
    parts = []
    if model.system_prompt:
        parts.append(model.system_prompt.strip())
    if mitigation.text:
        parts.append(mitigation.text)
    return "\n\n".join(parts) or None


def messages(query: Query, system: str | None) -> list[dict[str, str]]:
    out = [{"role": "system", "content": system}] if system else []
    out.append({"role": "user", "content": query.query})
    return out


def request_params(model: ModelConfig, sampling: SamplingConfig, sample_index: int) -> dict[str, Any]:
    """Decoding parameters: the sampling preset's value where set, else the model file's."""
    params: dict[str, Any] = {}
    for name in ("temperature", "top_p", "top_k", "max_tokens"):
        value = getattr(sampling, name)
        if value is None:
            value = getattr(model, name)
        if value is not None:
            params[name] = value
    if model.reasoning_effort:
        params["reasoning_effort"] = model.reasoning_effort
    if model.thinking_budget:
        params["thinking"] = {"type": "enabled", "budget_tokens": model.thinking_budget}
    if sampling.seed is not None:
        params["seed"] = sampling.seed + sample_index
    extra = dict(model.extra_body)
    g = grammar(model)
    if g is not None:  # llama.cpp's server reads "grammar" from the request body (config.validate)
        extra["grammar"] = g.text
    if extra:
        params["extra_body"] = extra
    return params


def request(
    model: ModelConfig, sampling: SamplingConfig, system: str | None, query: Query, sample_index: int
) -> Request:
    return Request(
        endpoint(model),
        messages(query, system),
        request_params(model, sampling, sample_index),
        sample_index=sample_index,
    )


class GenerationStage:
    """The target model's call stage: the key is (query, sample index); one request, no re-ask.
    The endpoint and the decoding parameters per sample index are made once."""

    role = "model"

    def __init__(
        self, model: ModelConfig, sampling: SamplingConfig, mitigation: str, system: str | None
    ) -> None:
        self.model, self.sampling, self.mitigation, self.system = model, sampling, mitigation, system
        self.endpoint = endpoint(model)
        self._params: dict[int, dict[str, Any]] = {}

    def request(self, query: Query, sample_index: int) -> Request:
        params = self._params.get(sample_index)
        if params is None:
            params = self._params[sample_index] = request_params(self.model, self.sampling, sample_index)
        return Request(self.endpoint, messages(query, self.system), params, sample_index=sample_index)

    def start(self, key: tuple[Query, int]) -> tuple[dict[str, Any], Request | None]:
        query, i = key
        row = {
            ID: query.id,
            SAMPLE_INDEX: i,
            "scenario": query.scenario,
            "model": self.model.name,
            "mitigation": self.mitigation,
        }
        return row, self.request(query, i)

    def read(self, row: dict[str, Any], req: Request, completion: Completion) -> Request | None:
        row.update(_sample_fields(completion))
        return None

    async def many(self, client: Client, query: Query, indices: list[int]) -> list[dict[str, Any]]:
        """Consecutive samples of one query in one request with n = len(indices), where the provider
        accepts n; each answer is cached under its own sample's request, so a run gives the same rows
        whichever way its samples were asked for."""
        completions = await client.complete_many([self.request(query, i) for i in indices])
        return [self.row(query, i, c) for i, c in zip(indices, completions, strict=True)]

    def row(self, query: Query, sample_index: int, completion: Completion) -> dict[str, Any]:
        row, req = self.start((query, sample_index))
        assert req is not None
        self.read(row, req, completion)
        return row


def _sample_fields(c: Completion) -> dict[str, Any]:
    if c.refusal is not None:  # no answer to read: the sample's outcome is the provider's refusal
        return {
            "reasoning": None,
            "answer": None,
            "finish_reason": c.finish_reason,
            "flags": [PROVIDER_REFUSED],
            "refusal": c.refusal,
            "usage": c.usage,
            "latency_s": c.latency_s,
            "cost_usd": c.cost_usd,
        }
    ex = extract(c.message, c.finish_reason)
    return {
        "response_model": c.model,  # the model the provider says answered (a re-routed id shows here)
        "reasoning": ex.reasoning,
        "answer": ex.answer,
        "finish_reason": c.finish_reason,
        "flags": list(ex.flags),
        "usage": c.usage,
        "latency_s": c.latency_s,
        "cost_usd": c.cost_usd,
    }
