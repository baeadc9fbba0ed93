"""The one client every model call goes through: cache, retries, concurrency limit.

- Cache: our own diskcache store (never evicts), keyed on exactly what changes the output: model
  string, api_base, messages, every request parameter incl. extra body, a template hash and the
  sample index. Retries, timeouts and concurrency are not in the key. LiteLLM's own cache is not
  used (see ENGINEERING.md: its hits raise in this version, its key ignores api_base/extra_body).
  Processes sharing a cache dir call once per key and agree on its answer (bsa/cache.py).
- Retries: tenacity, bounded, exponential jitter, Retry-After honoured, on transient errors only
  (429, 5xx, timeouts, connection errors). LiteLLM's and the openai SDK's own retries are off.
- Limits: calls in flight per endpoint (adaptive: halved on 429/Retry-After, climbing back while
  calls succeed; bsa/limits.py), never more than the role's limit, and an optional rpm cap.
- Several servers for one model (``Endpoint.deployments``): one LiteLLM Router per endpoint spreads
  the calls and cools a failing server down; the cache key names the set of servers, never the one
  that answered.
- LiteLLM is imported lazily: it costs seconds at import and must not fetch a cost map.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any

from bsa.cache import LEASE_S, AnswerCache, Source
from bsa.limits import Limiter

log = logging.getLogger("bsa.llm")

_CACHE_VERSION = 1  # bump when the stored completion format changes


class ModelCallError(RuntimeError):
    """A call that cannot succeed (bad key, bad request); the message says why. Stops the run."""


class TransientFailure(ModelCallError):
    """Transient errors (429, 5xx, timeouts, dropped connections) outlasted every retry."""


class Stopped(Exception):
    """No new call is launched: the run is stopping (Ctrl-C, budget, failing provider)."""


class OutOfQuota(ModelCallError):
    """The provider says the account's quota is spent (OpenAI's insufficient_quota): every retry would
    get the same 429 until someone adds credit. Stops the run at once."""


class ServerDied(ModelCallError):
    """The server bsa started for an endpoint has exited: no retry can reach it. Stops the run."""


class CacheFull(ModelCallError):
    """The answer cache cannot be written (its disk is full): answers would be paid for and lost."""


def _full(e: BaseException) -> bool:
    """A write that failed for want of space: ENOSPC/EDQUOT, or SQLite's "database or disk is full"."""
    return getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in str(e)


class MalformedReply(Exception):
    """HTTP 200 with no usable answer (an empty ``choices`` list): retried as a transient error, then
    the call fails as one whose retries ran out."""


@dataclass(frozen=True)
class Refusal:
    """A provider's refusal of one request (HTTP 400: content filter, context length; HTTP 200 with
    finish_reason content_filter and no answer: a safety block): an outcome of its sample, cached like
    an answer, never retried."""

    status: int | None
    kind: str  # content_filter | context_length | bad_request (a 400 of no known kind, others answered)
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "kind": self.kind, "message": self.message}


class ProviderRefused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class EndpointUnreachable(ModelCallError):
    """An endpoint that never answered refused or failed every connection (DNS, refused, TLS):
    retrying each call 8 times over hundreds of calls cannot help. Stops the run."""


# An endpoint that never answered and refused this many requests (with none in flight that could still
# answer) refuses the request itself, not the queries: a fatal error, as any 400 that every call gets.
REFUSED_ALL_AFTER = 5
# How long a refusal waits for its endpoint's first answer before it is recorded anyway (a run of a
# few queries that are all refused); most waits end at once with the first answer.
REFUSAL_HOLD_S = 60.0
# Failed connections to an endpoint that has never answered before it is declared down: enough to
# ride out one flaky DNS answer, few enough to stop within the first window of calls.
UNREACHABLE_AFTER = 5
# Several deployments: a server whose calls fail (refused, 5xx, 429, timeout) this many times in a minute
# is left out for COOLDOWN_S while the others serve; LiteLLM's Router keeps the count.
DEPLOYMENT_ALLOWED_FAILS = 2
COOLDOWN_S = 10.0


def import_litellm() -> Any:
    """Import LiteLLM offline-safe and quiet; a no-op after the first call."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = False  # a parameter the provider rejects must fail loudly, not vanish
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return litellm


@dataclass(frozen=True)
class Deployment:
    """One server of several behind an endpoint. Fields as config.Deployment: a None inherits the
    endpoint's value (``name``: the model string on this server)."""

    api_base: str | None = None
    name: str | None = None
    api_key_env: str | None = None
    rpm: int | None = None  # requests per minute to this server; None = no cap of its own


def _env_key(env: str | None, who: str) -> str | None:
    if not env:
        return None
    key = os.environ.get(env)
    if not key:
        raise ModelCallError(
            f"{who}: the environment variable {env} is not set; "
            f"export {env}=<your key> (keys are read from the environment only)"
        )
    return key


@dataclass(frozen=True)
class Endpoint:
    model: str  # LiteLLM model string
    api_base: str | None = None
    api_key_env: str | None = None
    role: str = "model"  # model | judge: named in errors
    # Stands for api_base in the cache key when the server is one we start: its port changes each run.
    # With deployments it stands for the set of servers (default: a hash of their names and api_bases).
    cache_id: str | None = None
    rpm: int | None = None  # requests per minute to this endpoint (all its deployments); None = no cap
    # Several servers for this model: calls go through one LiteLLM Router. Any objects with the fields
    # of Deployment (config.Deployment included) are accepted and frozen into a tuple.
    deployments: tuple[Deployment, ...] = ()
    # A reply from another model than ``model`` is recorded and allowed (else the run stops).
    allow_substitution: bool = False
    # (input, output) USD per million tokens, where LiteLLM has no price for the model.
    price: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.deployments, tuple) or not all(
            isinstance(d, Deployment) for d in self.deployments
        ):
            frozen = tuple(_as_deployment(d) for d in self.deployments)
            object.__setattr__(self, "deployments", frozen)

    def api_key(self) -> str | None:
        return _env_key(self.api_key_env, f"{self.role} {self.model}")

    def deployment_key(self, d: Deployment) -> str | None:
        return _env_key(d.api_key_env or self.api_key_env, f"{self.role} {d.name or self.model}")

    @cached_property
    def cache_base(self) -> str | None:
        """What stands for the server in the cache key. One server: cache_id, else api_base. Several:
        cache_id, else a hash of the sorted (model string, api_base) pairs, so the key is the same
        whichever server answered and whatever their order; adding or removing a server changes it
        (another server may serve another build of the model), as a new api_base would."""
        if self.cache_id or not self.deployments:
            return self.cache_id or self.api_base
        pairs = sorted([d.name or self.model, d.api_base or self.api_base or ""] for d in self.deployments)
        digest = hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]
        return f"deployments:{digest}"


def endpoint_for(cfg: Any, role: str, cache_id: str | None) -> Endpoint:
    """The endpoint of a role's config (``ModelConfig`` or ``JudgeConfig``: name, api_base, api_key_env,
    rpm, deployments); ``cache_id`` stands for a server bsa starts itself (its port changes)."""
    return Endpoint(
        cfg.name,
        cfg.api_base,
        cfg.api_key_env,
        role=role,
        cache_id=cache_id,
        rpm=cfg.rpm,
        deployments=tuple(cfg.deployments),
        allow_substitution=bool(getattr(cfg, "allow_substitution", False)),
        price=_price(cfg),
    )


def _price(cfg: Any) -> tuple[float, float] | None:
    given = (getattr(cfg, "input_cost_per_mtok", None), getattr(cfg, "output_cost_per_mtok", None))
    if given[0] is None and given[1] is None:
        return None
    return (float(given[0] or 0.0), float(given[1] or 0.0))


# A dated snapshot of the id asked for (gpt-4o -> gpt-4o-2024-08-06, claude-x -> claude-x-20250219): the
# same model. Anything else is another model.
_SNAPSHOT = re.compile(r"[-@](\d{4}-?\d{2}-?\d{2}|\d{3,4}|v\d+(:\d+)?|latest|preview(-\d+-\d+)?)$")


def model_id(model: str) -> str:
    """The provider's own id in a LiteLLM model string (``together_ai/deepseek-ai/DeepSeek-R1`` ->
    ``deepseek-ai/DeepSeek-R1``), lower-cased: what a reply's ``model`` is compared with."""
    provider, _, rest = model.partition("/")
    known = provider in _providers()
    return (rest if known and rest else model).lower()


def _providers() -> frozenset[str]:
    litellm = import_litellm()
    return frozenset(str(p.value if hasattr(p, "value") else p) for p in litellm.provider_list)


def same_model(requested: str, answered: str) -> bool:
    """Whether a reply whose ``model`` says ``answered`` comes from the model ``requested`` (a LiteLLM
    model string). An empty ``answered`` (a server that names none) is taken as the same."""
    want = model_id(requested)
    got = answered.strip().lower().removeprefix("models/")  # Gemini names models models/<id>
    if not got or got == want:
        return True
    for a, b in ((want, got), (got, want)):
        if a.endswith("/" + b) or b.endswith("/" + a):  # an organisation or account path on one side
            return True
        if a.startswith(b) and _SNAPSHOT.fullmatch(a[len(b) :]):
            return True
    return False


class ModelSubstituted(ModelCallError):
    """The provider answered with another model than the one asked for (a retired id re-routed to a
    successor, an alias moved): results would stand beside the leaderboard's row for the wrong model."""


def _as_deployment(d: Any) -> Deployment:
    if isinstance(d, Deployment):
        return d
    get = d.get if isinstance(d, dict) else partial(getattr, d)
    return Deployment(get("api_base", None), get("name", None), get("api_key_env", None), get("rpm", None))


@dataclass(frozen=True)
class Request:
    endpoint: Endpoint
    messages: list[dict[str, str]]
    params: dict[str, Any]  # temperature, top_p, max_tokens, response_format, extra_body, ...
    sample_index: int = 0
    template_hash: str = ""

    def cache_key(self) -> str:
        # Computed once per request: the plan, the lookup and the store all ask for it.
        key: str | None = self.__dict__.get("_cache_key")
        if key is not None:
            return key
        payload = {
            "v": _CACHE_VERSION,
            "model": self.endpoint.model,
            "api_base": self.endpoint.cache_base,
            "messages": self.messages,
            "params": self.params,
            "sample_index": self.sample_index,
            "template": self.template_hash,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        key = hashlib.sha256(blob.encode("utf-8")).hexdigest()
        object.__setattr__(self, "_cache_key", key)  # frozen: the key never changes with it
        return key


@dataclass
class Completion:
    message: dict[str, Any]  # content, reasoning_content, reasoning, thinking_blocks
    finish_reason: str | None
    usage: dict[str, int]
    latency_s: float
    model: str
    cost_usd: float | None = None
    refusal: dict[str, Any] | None = None  # Refusal.to_json(): the provider refused this request

    def to_json(self) -> dict[str, Any]:
        out = {
            "message": self.message,
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "latency_s": self.latency_s,
            "model": self.model,
            "cost_usd": self.cost_usd,
        }
        if self.refusal is not None:  # absent otherwise: entries cached before refusals existed match
            out["refusal"] = self.refusal
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Completion:
        return cls(
            message=d["message"],
            finish_reason=d.get("finish_reason"),
            usage=d.get("usage") or {},
            latency_s=d.get("latency_s", 0.0),
            model=d.get("model", ""),
            cost_usd=d.get("cost_usd"),
            # A safety block cached before such blocks were refusals reads as one now.
            refusal=d.get("refusal") or _withheld(d["message"], d.get("finish_reason")),
        )

    @classmethod
    def refused(cls, refusal: Refusal, latency: float, model: str) -> Completion:
        return cls(
            {"content": None}, "provider_refused", {}, round(latency, 4), model, None, refusal.to_json()
        )


@dataclass
class Stats:
    requests: int = 0  # network calls launched (each retry included)
    calls: int = 0  # network calls that returned a completion
    cache_hits: int = 0
    waited: int = 0  # answers another coroutine or process was already fetching: no call made here
    adopted: int = 0  # calls whose answer lost the race to one stored first: the stored one is used
    retries: int = 0
    failures: int = 0
    refusals: int = 0  # requests the provider refused (content filter, context length): outcomes, not faults
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    by_error: dict[str, int] = field(default_factory=dict)  # retries by exception type
    # Retries by endpoint ("judge openai/gpt-4o") and error kind ("RateLimitError", "InternalServerError:
    # cannot resolve host"): the end-of-stage summary, in place of a log line per retry.
    retries_by: dict[str, dict[str, int]] = field(default_factory=dict)
    answered_by: dict[str, int] = field(default_factory=dict)  # network calls that returned, by endpoint
    # Failed connections (DNS, refused) to an endpoint that never answered: UNREACHABLE_AFTER of them
    # and it is declared down rather than retried call after call.
    unreachable_by: dict[str, int] = field(default_factory=dict)
    # Per role ("model", "judge"): calls, prompt_tokens, completion_tokens, reasoning_tokens, cost_usd.
    by_role: dict[str, dict[str, float]] = field(default_factory=dict)

    def count_retry(self, endpoint: str, error: BaseException) -> None:
        self.retries += 1
        name = type(error).__name__
        self.by_error[name] = self.by_error.get(name, 0) + 1
        kinds = self.retries_by.setdefault(endpoint, {})
        kind = error_kind(error)
        kinds[kind] = kinds.get(kind, 0) + 1


def _plain(value: Any) -> Any:
    """JSON-safe copy of a provider object (thinking blocks can be pydantic models)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump())
    return str(value)


def _to_completion(
    resp: Any, latency: float, litellm: Any, unpriced: set[str] | None = None, index: int = 0
) -> Completion:
    """The response's choice ``index`` as a Completion. With several choices (n > 1) the request's
    usage and price are on choice 0 and the others carry none, so sums over samples stay exact;
    each choice's usage says how many samples its request held (``request_samples``)."""
    choice = resp.choices[index]
    msg = choice.message
    psf = getattr(msg, "provider_specific_fields", None) or {}
    message = {
        "content": getattr(msg, "content", None),
        "reasoning_content": getattr(msg, "reasoning_content", None),
        "reasoning": getattr(msg, "reasoning", None) or psf.get("reasoning"),
        "thinking_blocks": _plain(getattr(msg, "thinking_blocks", None)),
    }
    usage: dict[str, int] = {}
    u = getattr(resp, "usage", None)
    if u is not None:
        usage["prompt_tokens"] = int(getattr(u, "prompt_tokens", 0) or 0)
        usage["completion_tokens"] = int(getattr(u, "completion_tokens", 0) or 0)
        details = getattr(u, "completion_tokens_details", None)
        rt = getattr(details, "reasoning_tokens", None) if details is not None else None
        if rt:
            usage["reasoning_tokens"] = int(rt)
    n_choices = len(resp.choices)
    if n_choices > 1:
        usage = {**(usage if index == 0 else {}), "request_samples": n_choices}
    # LiteLLM prices each response once already (None when unpriced, e.g. a local server): pricing it
    # again costs CPU on every request and raises for every unpriced one. Only where that price is
    # missing altogether is it computed here.
    hidden = getattr(resp, "_hidden_params", None) or {}
    cost: float | None
    model = str(getattr(resp, "model", "") or "")
    if "response_cost" in hidden:
        cost = float(hidden["response_cost"]) if hidden["response_cost"] is not None else None
    elif unpriced is not None and model in unpriced:
        cost = None  # asked once already: LiteLLM has no price for this model
    else:
        try:
            cost = float(litellm.completion_cost(completion_response=resp))
        except Exception:  # unpriced models raise; cost is then unknown, not zero
            cost = None
            if unpriced is not None:
                unpriced.add(model)
    if index > 0 and cost is not None:
        cost = 0.0
    finish_reason = getattr(choice, "finish_reason", None)
    return Completion(
        message=_plain(message),
        finish_reason=finish_reason,
        usage=usage,
        latency_s=round(latency, 4),
        model=model,
        cost_usd=cost,
        refusal=_withheld(message, finish_reason),
    )


def _withheld(message: dict[str, Any], finish_reason: str | None) -> dict[str, Any] | None:
    """The refusal an HTTP 200 stands for when the provider's safety filter withheld the answer:
    finish_reason content_filter and no answer text (LiteLLM's reading of Gemini's blocked prompt,
    promptFeedback.blockReason, and blocked answer, finishReason SAFETY/PROHIBITED_CONTENT/…; of
    Anthropic's stop_reason refusal; of an OpenAI/Azure filtered reply). The sample's outcome, as a
    400 content filter is: never an empty answer for the judge to guess about. An answer cut short
    by the filter keeps its text and is flagged (reasoning.ANSWER_FILTERED)."""
    content = message.get("content")
    answered = bool(content.strip()) if isinstance(content, str) else bool(content)
    if finish_reason != "content_filter" or answered:
        return None
    why = "HTTP 200 with finish_reason content_filter and no answer: the provider's safety filter withheld it"
    return Refusal(200, "content_filter", why).to_json()


def _client_error(exc: BaseException) -> bool:
    """An HTTP 4xx other than 408 (timeout), 409 (conflict) and 429 (rate limit): the key or the
    request is wrong and a retry repeats it. LiteLLM maps some of these to its generic APIError (a 403
    from hosted_vllm/), which is retried for the 5xx it also stands for."""
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and 400 <= status < 500 and status not in (408, 409, 429)


def _transient_types(litellm: Any) -> tuple[type[BaseException], ...]:
    names = (
        "RateLimitError",
        "APIConnectionError",
        "Timeout",
        "InternalServerError",
        "ServiceUnavailableError",
        "BadGatewayError",
        "APIError",
    )
    return tuple(getattr(litellm, n) for n in names if hasattr(litellm, n))


def _fatal_types(litellm: Any) -> tuple[type[BaseException], ...]:
    names = (
        "AuthenticationError",
        "PermissionDeniedError",
        "BadRequestError",
        "NotFoundError",
        "UnprocessableEntityError",
        "ContentPolicyViolationError",
        "ContextWindowExceededError",
    )
    return tuple(getattr(litellm, n) for n in names if hasattr(litellm, n))


# What a provider says when it refuses one request's content or size (Azure content_filter, Gemini and
# Anthropic safety blocks, DeepSeek "Content Exists Risk", Alibaba data_inspection_failed; OpenAI,
# vLLM and llama.cpp context-length errors). A 400 about a parameter names none of these.
_CONTENT_FILTER = re.compile(
    r"content[ _-]?(filter|management|policy|exists risk)|responsibleai|safety (system|filter|block)"
    r"|blocked|prohibited[ _]content|data_inspection_failed|inappropriate content|sensitive content",
    re.IGNORECASE,
)
_CONTEXT_LENGTH = re.compile(
    r"context[ _-]?(length|window|size)|maximum context|too many tokens|prompt is too long"
    r"|input is too long|exceeds? the (available )?context|n_ctx",
    re.IGNORECASE,
)


def refusal_of(exc: BaseException) -> Refusal | None:
    """The refusal ``exc`` stands for, when it is a 400-class answer about this request's content or
    size; None for any other error (a parameter every request carries, a key, a quota)."""
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    if not (isinstance(status, int) and status in (400, 413, 422)) and name not in (
        "ContentPolicyViolationError",
        "ContextWindowExceededError",
    ):
        return None
    text = f"{exc} {getattr(exc, 'body', '') or ''}"
    if name == "ContentPolicyViolationError" or _CONTENT_FILTER.search(text):
        kind = "content_filter"
    elif name == "ContextWindowExceededError" or _CONTEXT_LENGTH.search(text):
        kind = "context_length"
    else:
        kind = "bad_request"
    return Refusal(status if isinstance(status, int) else 400, kind, _short(exc, 500))


_QUOTA_MARKS = ("insufficient_quota", "exceeded your current quota")


def out_of_quota(exc: BaseException) -> bool:
    """A 429 that is not a rate limit but a spent quota (OpenAI: code insufficient_quota, "You exceeded
    your current quota"): waiting does not help."""
    if getattr(exc, "status_code", None) != 429 and type(exc).__name__ != "RateLimitError":
        return False
    text = f"{exc} {getattr(exc, 'code', '') or ''} {getattr(exc, 'body', '') or ''}".lower()
    return any(mark in text for mark in _QUOTA_MARKS)


def retry_after_s(exc: BaseException) -> float | None:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
    except AttributeError:
        return None
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def connect_failure(exc: BaseException) -> str | None:
    """What kept ``exc``'s call from reaching the server ("cannot resolve host", "connection refused",
    "cannot connect"), or None if it got there. LiteLLM reports these as InternalServerError or
    APIConnectionError by provider; the cause chain keeps the socket error."""
    import socket

    import httpx

    found = None
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, socket.gaierror):
            return "cannot resolve host"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout)):
            found = "cannot connect"  # keep looking: a DNS or refused cause is more precise
        e = e.__cause__ or e.__context__
    return found


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while (nxt := exc.__cause__ or exc.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        exc = nxt
    return exc


def error_kind(exc: BaseException) -> str:
    """The exception type, plus how the connection failed when it did: the unit retries are summed by."""
    how = connect_failure(exc)
    return f"{type(exc).__name__}: {how}" if how else type(exc).__name__


def endpoint_label(ep: Endpoint) -> str:
    return f"{ep.role} {ep.model}"


def retry_summary_lines(stats: Stats, since: dict[str, dict[str, int]] | None = None) -> list[str]:
    """One line per endpoint and error kind: the retries counted since ``since`` (a copy of an earlier
    ``stats.retries_by``; None: all of them)."""
    since = since or {}
    lines = []
    for endpoint, kinds in stats.retries_by.items():
        for kind, n in kinds.items():
            n -= since.get(endpoint, {}).get(kind, 0)
            if n > 0:
                lines.append(f"{endpoint}: {n} {'retry' if n == 1 else 'retries'} after {kind}")
    return lines


# Where LiteLLM sends a provider's calls when neither api_base nor get_llm_provider says, and the
# environment variables that move it (the first set wins, as in litellm/main.py).
_PROVIDER_BASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "openai": ("https://api.openai.com/v1", ("OPENAI_BASE_URL", "OPENAI_API_BASE")),
    "anthropic": ("https://api.anthropic.com", ("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL")),
    "gemini": ("https://generativelanguage.googleapis.com", ("GEMINI_API_BASE",)),
    "openrouter": ("https://openrouter.ai/api/v1", ("OPENROUTER_API_BASE",)),
}


def provider_base(ep: Endpoint, litellm: Any) -> str | None:
    """The URL ``ep``'s calls go to: its api_base, else the provider's default; None if unknown."""
    if ep.api_base:
        return ep.api_base
    try:
        _, provider, _, base = litellm.get_llm_provider(ep.model)
    except Exception:  # preflight reports an unroutable model string with its own message
        return None
    if base:
        return str(base)
    default, env_vars = _PROVIDER_BASES.get(provider, (None, ()))
    return next((os.environ[v] for v in env_vars if os.environ.get(v)), default)


def _unreachable_message(ep: Endpoint, base: str | None, how: str, cause: str) -> str:
    where = f" at {base}" if base else ""
    if ep.api_base and "resolve" in how:
        fix = f"check the host name in {ep.role}.api_base={ep.api_base}, and the network and DNS"
    elif ep.api_base:
        fix = f"is the server running, and is {ep.role}.api_base={ep.api_base} right?"
    else:
        fix = (
            "check the network and DNS (or your HTTPS proxy), or set "
            f"{ep.role}.api_base to the URL you reach it at"
        )
    return f"{endpoint_label(ep)}{where}: {how} ({cause}); {fix}"


@dataclass
class _Plan:
    """What every call to one endpoint shares, built once: nothing of it is rebuilt per call."""

    ep: Endpoint
    label: str
    kwargs: dict[str, Any]  # model, timeout, retries off, api_base and key where one server
    call: Any  # litellm.acompletion, or the endpoint's Router's acompletion
    limiter: Limiter  # this endpoint's calls in flight (adaptive) and rpm
    role: Limiter  # the role's calls in flight over all its endpoints (fixed)
    api_key: str | None  # redacted from every message
    before_sleep: Any = None
    refused_unproven: int = 0  # refusals while the endpoint had never answered


class Client:
    def __init__(
        self,
        cache_dir: str | None,
        concurrency: int | dict[str, int] = 8,
        timeout_s: float = 600.0,
        max_attempts: int = 6,
        max_wait_s: float = 60.0,
        max_requests: int | None = None,
        max_cost_usd: float | None = None,
        lease_s: float = LEASE_S,
        adaptive: bool = True,
    ) -> None:
        """``concurrency``: calls in flight, one number for every role or one per role. It is each role's
        limit over all its endpoints and each endpoint's maximum; ``adaptive`` lets an endpoint's limit
        drop on 429s and climb back (False: fixed). Rates: ``Endpoint.rpm``, ``Deployment.rpm``."""
        self._cache = AnswerCache(cache_dir, lease_s) if cache_dir else None
        self._cache_dir = cache_dir
        # One limit per role (model, judge), so a slow model server does not hold the judge's slots.
        limits = concurrency if isinstance(concurrency, dict) else {}
        default = concurrency if isinstance(concurrency, int) else max(limits.values(), default=8)
        self._limits = limits
        self._default_limit = default
        self.adaptive = adaptive
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.max_wait_s = max_wait_s
        self.max_requests = max_requests
        self.max_cost_usd = max_cost_usd
        self.stats = Stats()
        self.stop_reason: str | None = None
        self._litellm: Any = None
        self._plans: dict[Endpoint, _Plan] = {}
        self._roles: dict[str, Limiter] = {}
        self._endpoint_limiters: dict[str, Limiter] = {}
        self._unpriced: set[str] = set()  # models LiteLLM has no price for: not asked again
        self._no_n: set[Endpoint] = set()  # endpoints that refused n > 1: one request per sample
        self.refusal_hold_s = REFUSAL_HOLD_S
        # Servers bsa started, by api_base: (what to say when the process has exited, or None).
        self._watched: dict[str, Callable[[int], str | None]] = {}
        self._answered_at: dict[str, int] = {}  # answered requests by api_base, for that message

    def watch(self, api_base: str, exit_message: Callable[[int], str | None]) -> None:
        """Watch the process serving ``api_base``: once it has exited, a failed call to it stops the run
        with ``exit_message(requests answered)`` instead of being retried as a connection error."""
        self._watched[api_base] = exit_message

    def _server_died(self, plan: _Plan) -> None:
        check = self._watched.get(plan.kwargs.get("api_base") or "")
        message = check(self._answered_at.get(plan.kwargs.get("api_base") or "", 0)) if check else None
        if message is not None:
            raise ServerDied(message)

    def limit(self, role: str) -> int:
        """Calls in flight at once for ``role`` (at most: adaptive endpoint limits may hold fewer)."""
        return self._limits.get(role, self._default_limit)

    def limit_history(self) -> dict[str, list[dict[str, Any]]]:
        """Every change of an endpoint's limit, by endpoint label: [{t, old, new, reason}] (t: seconds
        since the endpoint's first call). For run.json."""
        return {label: list(lim.history) for label, lim in self._endpoint_limiters.items()}

    def current_limits(self) -> dict[str, int]:
        """Each endpoint's limit now, by label."""
        return {label: lim.limit for label, lim in self._endpoint_limiters.items()}

    def stop(self, reason: str) -> None:
        """Launch no new network call from now on; calls in flight finish."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def _launch(self, ep: Endpoint) -> None:
        """Gate before each network request: stopping, or a budget that the request would cross."""
        if self.stop_reason is not None:
            raise Stopped(self.stop_reason)
        if self.max_requests is not None and self.stats.requests >= self.max_requests:
            self.stop(f"max_requests={self.max_requests} reached")
            raise Stopped(self.stop_reason or "")
        self.stats.requests += 1

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lookup(self, req: Request, key: str | None = None) -> Completion | None:
        if self._cache is None:
            return None
        hit = self._cache.get(key or req.cache_key())
        return Completion.from_json(hit) if hit is not None else None

    def cached(self, req: Request) -> bool:
        """Whether the request's answer is in the cache (no value read)."""
        return self._cache is not None and req.cache_key() in self._cache

    async def store(self, req: Request, completion: Completion) -> Completion:
        """Keep an answer obtained outside ``complete`` (a batch result) under ``req``'s key and count
        it as a call, as an online call would be; first write wins, so the stored answer is returned."""
        self._account(completion, req.endpoint.role)
        return completion if self._cache is None else await self._put(req, completion)

    async def complete(self, req: Request) -> Completion:
        key = req.cache_key()
        hit = self.lookup(req, key)
        if hit is not None:
            self.stats.cache_hits += 1
            return hit
        if self._litellm is None:
            self._setup()
        if self.stop_reason is not None:
            raise Stopped(self.stop_reason)
        if self._cache is None:
            completion = await self._call_with_retries(req)
            self._account(completion, req.endpoint.role)
            return completion

        async def call() -> dict[str, Any]:
            c = await self._call_with_retries(req)
            self._account(c, req.endpoint.role)  # paid for even when another process's answer is stored first
            return c.to_json()

        try:
            got = await self._cache.fetch(key, call)
        except (OSError, sqlite3.OperationalError) as e:
            if not _full(e):
                raise
            raise CacheFull(
                f"cannot write the answer cache {self._cache_dir}: the disk is full ({e}); free space "
                "there (or set cache.dir to another disk), then run the same command again to resume"
            ) from None
        if got.source is Source.WAITED:
            self.stats.waited += 1
        elif got.source is Source.ADOPTED:
            self.stats.adopted += 1
        return Completion.from_json(got.value)

    async def complete_many(self, reqs: list[Request]) -> list[Completion]:
        """Answers to requests that differ only in their sample index (one prompt's samples, the first
        carrying the seed of the run it starts): the uncached ones are asked in ONE request with
        n = their number, and each choice is cached under its own sample's key, exactly as if it had
        been asked alone (first write wins). Switching between the two ways never changes a cached
        result. An endpoint that rejects n (an HTTP 4xx) is asked one sample per request from then on,
        as are the samples a short reply left out."""
        out: list[Completion | None] = []
        for req in reqs:
            hit = self.lookup(req)
            if hit is not None:
                self.stats.cache_hits += 1
            out.append(hit)
        missing = [j for j, c in enumerate(out) if c is None]
        if len(missing) > 1 and reqs[missing[0]].endpoint not in self._no_n:
            got = await self._complete_n([reqs[j] for j in missing])
            for j, c in zip(missing, got, strict=False):
                out[j] = c
        rest = [j for j, c in enumerate(out) if c is None]
        answers = await asyncio.gather(*(self.complete(reqs[j]) for j in rest))
        for j, c in zip(rest, answers, strict=True):
            out[j] = c
        return [c for c in out if c is not None]

    async def _complete_n(self, reqs: list[Request]) -> list[Completion]:
        """One request for ``reqs`` (n = len), its choices stored in order; [] when the endpoint
        refused n, fewer than asked when the reply was short."""
        if self._litellm is None:
            self._setup()
        if self.stop_reason is not None:
            raise Stopped(self.stop_reason)
        first = reqs[0]
        asked = dataclasses.replace(first, params={**first.params, "n": len(reqs)})
        try:
            resp, latency = await self._send(asked)
        except ProviderRefused:
            return []  # each sample asks alone and is refused (or not) on its own
        except ModelCallError as e:
            if not isinstance(e, (TransientFailure, EndpointUnreachable, OutOfQuota)) and " (HTTP 4" in str(
                e
            ):
                self._no_n.add(first.endpoint)
                log.info(
                    "%s refused n > 1 (%s): one request per sample from now on",
                    endpoint_label(first.endpoint),
                    e,
                )
                return []
            raise
        choices = [
            self._checked(first.endpoint, _to_completion(resp, latency, self._litellm, self._unpriced, j))
            for j in range(min(len(resp.choices), len(reqs)))
        ]
        if choices:  # the request's usage and price are on its first choice
            self._account(choices[0], first.endpoint.role)
        stored = []
        for req, c in zip(reqs, choices, strict=False):
            stored.append(c if self._cache is None else await self._put(req, c))
        return stored

    async def _put(self, req: Request, c: Completion) -> Completion:
        assert self._cache is not None

        async def given() -> dict[str, Any]:
            return c.to_json()

        got = await self._cache.fetch(req.cache_key(), given)
        return Completion.from_json(got.value)

    def _account(self, c: Completion, role: str = "model") -> None:
        st = self.stats
        st.calls += 1
        if c.refusal is not None and c.refusal.get("status") == 200:
            st.refusals += 1  # an answer that is a refusal (a safety block); a 400 is counted as raised
        prompt = c.usage.get("prompt_tokens", 0)
        completion = c.usage.get("completion_tokens", 0)
        reasoning = c.usage.get("reasoning_tokens", 0)
        st.prompt_tokens += prompt
        st.completion_tokens += completion
        st.reasoning_tokens += reasoning
        mine = st.by_role.get(role)
        if mine is None:
            mine = st.by_role[role] = dict.fromkeys(
                ("calls", "prompt_tokens", "completion_tokens", "reasoning_tokens"), 0
            ) | {"cost_usd": 0.0}
        mine["calls"] += 1
        mine["prompt_tokens"] += prompt
        mine["completion_tokens"] += completion
        mine["reasoning_tokens"] += reasoning
        if c.cost_usd:
            st.cost_usd += c.cost_usd
            mine["cost_usd"] += c.cost_usd
            if self.max_cost_usd is not None and st.cost_usd >= self.max_cost_usd:
                self.stop(f"max_cost_usd={self.max_cost_usd} reached (spent {st.cost_usd:.4f})")

    # -- once per client / per endpoint ------------------------------------------------------------
    def _setup(self) -> None:
        """Import LiteLLM and build what every call shares: exception tuples, retry strategies."""
        from tenacity import retry_if_exception, stop_after_attempt, wait_random_exponential

        litellm = import_litellm()
        transient = _transient_types(litellm)
        try:  # the Router's "every deployment is cooling down": wait and try again
            from litellm.types.router import RouterRateLimitError

            transient += (RouterRateLimitError,)
        except ImportError:
            pass
        self._transient = (*transient, MalformedReply)
        self._fatal = _fatal_types(litellm)
        backoff = wait_random_exponential(multiplier=0.5, max=self.max_wait_s)

        def wait(state: Any) -> float:
            exc = state.outcome.exception() if state.outcome else None
            ra = retry_after_s(exc) if exc else None
            return min(ra, self.max_wait_s) if ra is not None else backoff(state)

        self._wait = wait
        self._retry_if = retry_if_exception(self._is_transient)
        self._stop_after = stop_after_attempt(self.max_attempts)
        self._litellm = litellm

    # A fatal error type can also be a subclass of a transient one in some versions: fatal wins.
    def _is_transient(self, exc: BaseException) -> bool:
        return (
            isinstance(exc, self._transient) and not isinstance(exc, self._fatal) and not _client_error(exc)
        )

    def _role_limiter(self, role: str) -> Limiter:
        lim = self._roles.get(role)
        if lim is None:
            lim = self._roles[role] = Limiter(f"{role} (all endpoints)", self.limit(role), adaptive=False)
        return lim

    def _plan(self, ep: Endpoint) -> _Plan:
        plan = self._plans.get(ep)
        if plan is not None:
            return plan
        label = endpoint_label(ep)
        api_key = ep.api_key()
        limiter = self._endpoint_limiters.get(label)
        if limiter is None:
            rpm = ep.rpm
            if ep.deployments and all(d.rpm for d in ep.deployments):
                # Each server's rpm: their sum caps the endpoint, and the Router weights its picks by
                # them, so each server gets its share.
                total = sum(d.rpm or 0 for d in ep.deployments)
                rpm = min(rpm, total) if rpm else total
            limiter = Limiter(label, self.limit(ep.role), adaptive=self.adaptive, rpm=rpm)
            self._endpoint_limiters[label] = limiter
        kwargs: dict[str, Any] = {"timeout": self.timeout_s, "num_retries": 0}
        if ep.deployments:
            router = self._router(ep, label)
            kwargs["model"] = label  # the Router's model group
            call = router.acompletion
        else:
            kwargs.update(model=ep.model, max_retries=0)
            if ep.api_base:
                kwargs["api_base"] = ep.api_base
            if api_key:
                kwargs["api_key"] = api_key
            elif ep.model.startswith("openai/") and ep.api_base:
                # LiteLLM's openai/ refuses to send without a key (as an InternalServerError that would
                # be retried); a self-hosted OpenAI-compatible server without auth ignores this placeholder.
                kwargs["api_key"] = "no-key"
            call = self._litellm.acompletion
        plan = _Plan(ep, label, kwargs, call, limiter, self._role_limiter(ep.role), api_key)
        plan.before_sleep = partial(self._before_sleep, plan)
        self._plans[ep] = plan
        return plan

    def _router(self, ep: Endpoint, label: str) -> Any:
        """One LiteLLM Router for ``ep``'s deployments, all under one model group. Its own retries are
        off (ours retry, with Retry-After and the unreachable check); a server that fails
        DEPLOYMENT_ALLOWED_FAILS times in a minute — refused, 5xx, 429, timeout — is cooled down for
        COOLDOWN_S and the others take its calls. The explicit per-deployment policy is what makes a
        refused connection count: LiteLLM's default never cools down on an APIConnectionError."""
        from litellm import Router

        per_type = ("InternalServerError", "ServiceUnavailableError", "BadGatewayError", "Timeout")
        policy = {f"{t}AllowedFails": DEPLOYMENT_ALLOWED_FAILS for t in per_type}
        policy["RateLimitErrorAllowedFails"] = DEPLOYMENT_ALLOWED_FAILS
        model_list = []
        for i, d in enumerate(ep.deployments):
            model = d.name or ep.model
            params: dict[str, Any] = {"model": model, "timeout": self.timeout_s, "max_retries": 0}
            base = d.api_base or ep.api_base
            if base:
                params["api_base"] = base
            key = ep.deployment_key(d)
            if key:
                params["api_key"] = key
            elif model.startswith("openai/") and base:
                params["api_key"] = "no-key"
            if d.rpm:
                params["rpm"] = d.rpm  # simple-shuffle weights its picks by rpm
            info = {"id": f"{label} #{i} {base or ''}", "allowed_fails_policy": dict(policy)}
            model_list.append({"model_name": label, "litellm_params": params, "model_info": info})
        # The Router writes each deployment's backend model into LiteLLM's global price map, with no
        # price: an unpriced model (a local server) would then cost $0 instead of "unpriced", in this
        # run's costs and in every later lookup of the process. Only its per-deployment ids are kept.
        prices = self._litellm.model_cost
        before = set(prices)
        router = Router(
            model_list=model_list,
            routing_strategy="simple-shuffle",
            num_retries=0,
            retry_after=0,
            allowed_fails=DEPLOYMENT_ALLOWED_FAILS,
            cooldown_time=COOLDOWN_S,
            set_verbose=False,
        )
        ids = {entry["model_info"]["id"] for entry in model_list}
        for added in set(prices) - before - ids:
            del prices[added]
        return router

    # -- calls ----------------------------------------------------------------------------------------
    def _before_sleep(self, plan: _Plan, state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is None:
            return
        self.stats.count_retry(plan.label, exc)
        # One line per retry floods the console under any fault rate: DEBUG (verbose=true) only;
        # the stage's progress line counts them and its end sums them per endpoint and kind.
        log.debug(
            "%s: %s (attempt %d/%d), retrying in %.1fs: %s",
            plan.label,
            error_kind(exc),
            state.attempt_number,
            self.max_attempts,
            state.next_action.sleep if state.next_action else 0.0,
            _redact(_short(exc, 200), plan.api_key),
        )

    def _check_reachable(self, plan: _Plan, exc: BaseException) -> None:
        """Declare the endpoint down after UNREACHABLE_AFTER failed connections and no answer ever: a
        wrong host or port fails the same way on every try of every call."""
        how = connect_failure(exc)
        label = plan.label
        if how is None or self.stats.answered_by.get(label):
            return
        n = self.stats.unreachable_by[label] = self.stats.unreachable_by.get(label, 0) + 1
        if n >= UNREACHABLE_AFTER:
            ep = plan.ep
            base = provider_base(ep, self._litellm)
            if ep.deployments:
                base = ", ".join(d.api_base or ep.api_base or "?" for d in ep.deployments)
            message = _unreachable_message(
                ep, base, f"{how} on {n} tries, never an answer", _short(_root_cause(exc), 160)
            )
            raise EndpointUnreachable(_redact(message, plan.api_key)) from None

    async def _attempt(self, plan: _Plan, req: Request) -> tuple[Any, float]:
        """One network request under the endpoint's and the role's limits."""
        epoch = await plan.limiter.acquire()
        try:
            await plan.role.acquire()
            try:
                self._launch(plan.ep)
                t0 = time.perf_counter()
                try:
                    # The endpoint's settings win over a same-named request parameter, as they always have.
                    resp = await plan.call(**{**req.params, **plan.kwargs, "messages": req.messages})
                    if not getattr(resp, "choices", None):
                        raise MalformedReply(f"{plan.label}: HTTP 200 with an empty choices list")
                except self._transient as e:
                    if out_of_quota(e):
                        raise OutOfQuota(_redact(self._quota_message(plan.ep, e), plan.api_key)) from None
                    if retry_after_s(e) is not None or getattr(e, "status_code", None) == 429:
                        plan.limiter.overloaded(epoch, f"{error_kind(e)} from the server")
                    self._server_died(plan)
                    self._check_reachable(plan, e)
                    raise
                latency = time.perf_counter() - t0
            finally:
                plan.role.release()
        finally:
            plan.limiter.release()
        plan.limiter.succeeded()
        answered = self.stats.answered_by
        answered[plan.label] = answered.get(plan.label, 0) + 1
        if self._watched:
            base = plan.kwargs.get("api_base") or ""
            self._answered_at[base] = self._answered_at.get(base, 0) + 1
        return resp, latency

    async def _retrying(self, plan: _Plan, req: Request, first: BaseException) -> tuple[Any, float]:
        """The first attempt failed transiently: tenacity takes over, counting it as attempt 1."""
        from tenacity import AsyncRetrying

        pending = [first]
        async for attempt in AsyncRetrying(
            retry=self._retry_if,
            stop=self._stop_after,
            wait=self._wait,
            before_sleep=plan.before_sleep,
            reraise=True,
        ):
            with attempt:
                if pending:
                    raise pending.pop()
                return await self._attempt(plan, req)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def _call_with_retries(self, req: Request) -> Completion:
        t0 = time.perf_counter()
        try:
            resp, latency = await self._send(req)
        except ProviderRefused as e:
            return Completion.refused(e.refusal, time.perf_counter() - t0, "")
        return self._checked(req.endpoint, _to_completion(resp, latency, self._litellm, self._unpriced))

    def _checked(self, ep: Endpoint, c: Completion) -> Completion:
        """A fresh answer: from the model asked for (else ModelSubstituted, unless allowed), priced by
        the endpoint's configured price where it has one."""
        if not ep.allow_substitution and not same_model(ep.model, c.model):
            self.stats.failures += 1
            raise ModelSubstituted(
                f"{endpoint_label(ep)}: the provider answered as {c.model!r}, not the model asked for: it "
                "re-routed the id (a retired model served by its successor?), so the results would not be "
                f"that model's. Pick a card or host that serves it, or set {ep.role}.allow_substitution=true "
                "to go on, the run marked not comparable"
            )
        # A configured price wins: LiteLLM prices some unknown ids at $0.0 rather than "unpriced".
        if ep.price is not None:
            prompt, completion = c.usage.get("prompt_tokens", 0), c.usage.get("completion_tokens", 0)
            c.cost_usd = (prompt * ep.price[0] + completion * ep.price[1]) / 1e6
        return c

    async def _refused(self, plan: _Plan, refusal: Refusal, error: str) -> ProviderRefused:
        """A refusal of one request, once its endpoint is known to answer others. Before the endpoint's
        first answer it waits for one: a parameter that every request carries is refused the same way
        each time, and that is a fatal error of the run, not an outcome of its queries."""
        label = plan.label
        if not self.stats.answered_by.get(label):
            if refusal.kind == "bad_request":  # no sign it is about this query: fatal, as always
                raise ModelCallError(error)
            plan.refused_unproven += 1
            # The scheduler holds 2 x the role's limit of jobs: more held refusals than that never come.
            enough = min(REFUSED_ALL_AFTER, 2 * self.limit(plan.ep.role))
            waited = 0.0
            while not self.stats.answered_by.get(label) and waited < self.refusal_hold_s:
                if plan.refused_unproven >= enough and plan.limiter.in_flight == 0:
                    raise ModelCallError(
                        f"{error}; the first {plan.refused_unproven} requests to {label} were all refused "
                        "and none answered, so the request itself is at fault, not the queries (a "
                        "parameter, max_tokens above the server's context, the prompt template)"
                    )
                await asyncio.sleep(0.05)
                waited += 0.05
        self.stats.refusals += 1
        return ProviderRefused(refusal)

    async def _send(self, req: Request) -> tuple[Any, float]:
        """The provider's response to ``req`` and its latency, retried on transient errors; what
        cannot succeed is a ModelCallError that says why."""
        plan = self._plan(req.endpoint)
        ep = plan.ep
        try:
            try:
                # Most calls succeed at once: no retry machinery is built for them.
                resp, latency = await self._attempt(plan, req)
            except self._transient as first:
                if not self._is_transient(first) or self.max_attempts <= 1:
                    raise
                resp, latency = await self._retrying(plan, req, first)
            return resp, latency
        except (EndpointUnreachable, OutOfQuota, ServerDied):
            self.stats.failures += 1
            raise
        except self._fatal as e:
            raise await self._fatal_or_refused(plan, e) from None
        except self._transient as e:
            if _client_error(e):
                raise await self._fatal_or_refused(plan, e) from None
            self.stats.failures += 1
            where = ep.api_base or "the provider"
            if ep.deployments:
                where = "its servers (" + ", ".join(d.api_base or "?" for d in ep.deployments) + ")"
            raise TransientFailure(
                _redact(
                    f"{ep.role} {ep.model}: still failing after {self.max_attempts} attempts "
                    f"({type(e).__name__}: {_short(e)}); check that {where} is up",
                    plan.api_key,
                )
            ) from None

    async def _fatal_or_refused(self, plan: _Plan, e: BaseException) -> Exception:
        """A 4xx: this request's refusal (content filter, context length, or a 400 of a kind unknown
        from an endpoint that answers others) to record, or the fatal error it is."""
        error = _redact(self._explain(plan.ep, e), plan.api_key)
        refusal = refusal_of(e)
        if refusal is not None:
            refusal = dataclasses.replace(refusal, message=_redact(refusal.message, plan.api_key))
            try:
                return await self._refused(plan, refusal, error)
            except ModelCallError as fatal:
                e = fatal
                error = str(fatal)
        self.stats.failures += 1
        return ModelCallError(error)

    @staticmethod
    def _quota_message(ep: Endpoint, e: BaseException) -> str:
        key = f"the key in {ep.api_key_env}" if ep.api_key_env else "this key"
        return (
            f"{endpoint_label(ep)}: the account is out of quota ({_short(e, 200)}); retrying cannot help. "
            f"Add credit or raise the spending limit of {key} at the provider (OpenAI: "
            "https://platform.openai.com/settings/organization/billing), or use a key with quota"
        )

    @staticmethod
    def _explain(ep: Endpoint, e: BaseException) -> str:
        name = type(e).__name__
        hint = ""
        status = getattr(e, "status_code", None)
        if name in ("AuthenticationError", "PermissionDeniedError") or status in (401, 403):
            hint = (
                f"; check the key in {ep.api_key_env}"
                if ep.api_key_env
                else "; this endpoint needs a key: set "
                f"{ep.role}.api_key_env to the name of the env var that holds it"
            )
        elif name == "NotFoundError":
            hint = f"; check the model string {ep.model!r} and api_base {ep.api_base!r}"
        elif name in ("BadRequestError", "UnprocessableEntityError"):
            hint = "; the provider rejected the request (a sampling parameter it does not accept?)"
        if isinstance(status, int) and 400 <= status < 500:
            name += f" (HTTP {status})"  # LiteLLM's generic APIError says nothing of it
        return f"{ep.role} {ep.model}: {name}: {_short(e)}{hint}"


def preflight(ep: Endpoint, timeout_s: float = 5.0) -> None:
    """Fail in seconds, before any call: a missing key, a model string LiteLLM cannot route, an
    api_base nobody answers on (any HTTP answer, even 401, counts as reachable), a hosted provider's
    host that does not resolve or take a connection."""
    import urllib.error
    import urllib.request

    if ep.deployments:
        _preflight_deployments(ep, timeout_s)
        return
    ep.api_key()
    if (
        ep.model.startswith("openai/")
        and not ep.api_key_env
        and not ep.api_base
        and not os.environ.get("OPENAI_API_KEY")
    ):
        raise ModelCallError(
            f"{ep.role} {ep.model}: OpenAI needs a key; export OPENAI_API_KEY=… and set "
            f"{ep.role}.api_key_env=OPENAI_API_KEY (or point {ep.role}.api_base at your own server)"
        )
    litellm = import_litellm()
    try:
        provider = litellm.get_llm_provider(ep.model, api_base=ep.api_base)[1]
    except Exception as e:  # LiteLLM raises its BadRequestError with a long provider list
        raise ModelCallError(
            f"{ep.role} {ep.model!r}: LiteLLM cannot route this model string ({_short(e, 160)}); "
            "write provider/model, e.g. openai/gpt-4o, deepseek/deepseek-reasoner, hosted_vllm/<name>"
        ) from None
    if not ep.api_base:
        _check_provider_host(ep, litellm, timeout_s)
        return
    base = ep.api_base.rstrip("/")
    if provider == "anthropic" and base.endswith("/v1") and not os.environ.get(_ANTHROPIC_NO_SUFFIX):
        raise ModelCallError(
            f"{ep.role} api_base {ep.api_base}: LiteLLM appends /v1/messages to an anthropic/ api_base, "
            f"so calls would go to {base}/v1/messages; give the base without /v1 "
            f"({ep.role}.api_base={base.removesuffix('/v1')})"
        )
    url = base + "/models"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return
    except urllib.error.HTTPError as e:
        # Anthropic's and Gemini's paths are built by LiteLLM ({base}/v1/messages,
        # {base}/models/{model}:generateContent): no /v1 rule holds for them, and any answer is one.
        if e.code == 404 and provider not in _OWN_PATHS and not base.endswith("/v1"):
            raise ModelCallError(
                f"{ep.role} api_base {ep.api_base}: {url} answers 404; OpenAI-compatible servers "
                f"usually want the base to end in /v1 ({ep.role}.api_base={ep.api_base.rstrip('/')}/v1)"
            ) from None
        return  # reachable: auth or routing problems surface on the first call with their message
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ModelCallError(
            f"{ep.role} api_base {ep.api_base} is unreachable ({reason}); is the server running, "
            f"and is {ep.role}.api_base right?"
        ) from None


# Providers whose request path LiteLLM appends to api_base itself; LiteLLM's switch that stops it
# appending /v1/messages to an anthropic/ api_base.
_OWN_PATHS = ("anthropic", "gemini")
_ANTHROPIC_NO_SUFFIX = "LITELLM_ANTHROPIC_DISABLE_URL_SUFFIX"


def _preflight_deployments(ep: Endpoint, timeout_s: float) -> None:
    """An endpoint with several servers is reachable when one of them is; the dead ones are named in a
    warning (the Router cools them down and the others serve). A missing key fails at once."""
    servers = [
        Endpoint(d.name or ep.model, d.api_base or ep.api_base, d.api_key_env or ep.api_key_env, ep.role)
        for d in ep.deployments
    ]
    for server in servers:
        server.api_key()
    dead: list[str] = []
    for server in servers:
        try:
            preflight(server, timeout_s)
        except ModelCallError as e:
            dead.append(str(e))
    if len(dead) == len(servers):
        raise EndpointUnreachable(
            f"{endpoint_label(ep)}: none of its {len(servers)} deployments answers: " + "; ".join(dead)
        )
    if dead:
        log.warning(
            "%s: %d of %d deployments do not answer, the others will serve: %s",
            endpoint_label(ep),
            len(dead),
            len(servers),
            "; ".join(dead),
        )


def _check_provider_host(ep: Endpoint, litellm: Any, timeout_s: float) -> None:
    """A hosted provider (no api_base): its host must resolve and take a TCP connection. Nothing is
    sent, so no key is used and nothing is billed; without this an unresolvable host costs 8 retries
    per call until the run's failure limit (90 s and 245 requests for deepseek_r1 offline)."""
    import urllib.parse
    import urllib.request

    base = provider_base(ep, litellm)
    parts = urllib.parse.urlsplit(base or "")
    host = parts.hostname
    if not base or not host:
        return  # a URL LiteLLM builds per call (Vertex, Bedrock…): the first calls will tell
    target, port = host, parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        # Calls go through the proxy, which resolves the host itself: the proxy is what must answer.
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        target, port = p.hostname or proxy, p.port or 80
    why = _connect(target, port, timeout_s)
    if why is not None:
        how, cause = why
        raise EndpointUnreachable(_unreachable_message(ep, base, how, cause))


def _connect(host: str, port: int, timeout_s: float) -> tuple[str, str] | None:
    """None when a TCP connection to host:port opens within timeout_s, else (what failed, why).
    In a thread: name resolution has no timeout of its own and can hang on a broken resolver."""
    import socket
    import threading

    outcome: list[tuple[str, str] | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                outcome.append(None)
        except socket.gaierror as e:
            outcome.append((f"cannot resolve host {host}", str(e)))
        except OSError as e:
            outcome.append((f"cannot connect to {host}:{port}", str(e) or type(e).__name__))

    worker = threading.Thread(target=attempt, name="bsa-preflight", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not outcome:
        return (f"no connection to {host}:{port}", f"no answer within {timeout_s:g} s")
    return outcome[0]


def _redact(text: str, secret: str | None) -> str:
    """Providers may echo the key in an error; it must never reach logs or files."""
    # A key too short to be a real one (a placeholder like "x") would blank every such letter.
    return text.replace(secret, "***") if secret and len(secret) >= 8 else text


def _short(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "…"
