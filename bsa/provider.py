"""The provider seam: what every model call is, whoever carries it.

A request in (``Request``: an endpoint, messages, parameters), a completion out (``Completion``), and
each failure classified: transient (worth a retry), fatal (a key, a bad request), quota (spent),
refused (the provider's refusal of this one request: an outcome of its sample). ``Provider`` is the
protocol a backend implements; ``bsa.llm.Client`` keeps what is the same for every backend (the cache,
limits, budgets, the retry policy) and reaches a backend only through it. Backends live in
``bsa/providers/``: LiteLLM (any hosted or OpenAI-compatible API), bsa's own client for
OpenAI-compatible servers (``direct``, chosen by ``transport_for``) and a Python function.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, Protocol

from bsa.contract import SAMPLE_INDEX

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


class ModelSubstituted(ModelCallError):
    """The provider answered with another model than the one asked for (a retired id re-routed to a
    successor, an alias moved): results would stand beside the leaderboard's row for the wrong model."""


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
    # Who carries the call: "litellm" (any provider LiteLLM routes), "direct" (an OpenAI-compatible
    # server over aiohttp; the transport's choice) or "python" (``callable``, a Python function
    # "package.module:function"); see bsa/providers/.
    provider: str = "litellm"
    callable: str | None = None

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
        if self.callable:  # a Python function: its import path names it, as a URL names a server
            return self.cache_id or f"python:{self.callable}"
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
        provider=_provider_of(cfg),
        callable=getattr(cfg, "callable", None),
    )


TRANSPORTS = ("auto", "direct", "litellm")
# Model strings the direct transport sends to an OpenAI-compatible server (prefix stripped, as LiteLLM).
DIRECT_PREFIXES = ("hosted_vllm/", "openai/")


def transport_for(
    transport: str, name: str, api_base: str | None, managed: bool, deployments: bool, thinking: bool = False
) -> str:
    """Who carries an LLM endpoint's calls, "direct" or "litellm". ``auto``: direct for a server bsa
    starts (``managed``), a ``hosted_vllm/`` name, and an ``openai/`` name at an api_base (the
    openai_compatible cards); LiteLLM for every other provider, for several deployments (its Router)
    and for a thinking budget (which LiteLLM maps per provider)."""
    if transport != "auto":
        return transport
    if deployments or thinking or not name.startswith(DIRECT_PREFIXES):
        return "litellm"
    return "direct" if managed or name.startswith("hosted_vllm/") or api_base else "litellm"


def _provider_of(cfg: Any) -> str:
    """``cfg.provider``, with ``cfg.transport`` choosing between LiteLLM and the direct transport."""
    provider = str(getattr(cfg, "provider", "litellm") or "litellm")
    if provider != "litellm":
        return provider
    serve = getattr(getattr(cfg, "serve", None), "backend", "none")
    return transport_for(
        str(getattr(cfg, "transport", "auto") or "auto"),
        str(cfg.name),
        cfg.api_base,
        str(serve) != "none",
        bool(cfg.deployments),
        bool(getattr(cfg, "thinking_budget", None)),
    )


def _price(cfg: Any) -> tuple[float, float] | None:
    given = (getattr(cfg, "input_cost_per_mtok", None), getattr(cfg, "output_cost_per_mtok", None))
    if given[0] is None and given[1] is None:
        return None
    return (float(given[0] or 0.0), float(given[1] or 0.0))


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
    # Which draw of an otherwise identical request this is: a judge at temperature > 0 asked about
    # two samples with the same text must answer twice, not share one verdict. 0 is left out of
    # the key, so every key from before draws existed (temperature 0 above all) is unchanged.
    draw: int = 0

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
            SAMPLE_INDEX: self.sample_index,
            "template": self.template_hash,
        }
        if self.draw:
            payload["draw"] = self.draw
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


def endpoint_label(ep: Endpoint) -> str:
    return f"{ep.role} {ep.model}"


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


def _redact(text: str, secret: str | None) -> str:
    """Providers may echo the key in an error; it must never reach logs or files."""
    # A key too short to be a real one (a placeholder like "x") would blank every such letter.
    return text.replace(secret, "***") if secret and len(secret) >= 8 else text


def _short(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while (nxt := exc.__cause__ or exc.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        exc = nxt
    return exc


@dataclass(frozen=True)
class Prices:
    input: float | None
    output: float | None
    batch: bool = False  # batch prices were found and used


Call = Callable[..., Awaitable[Any]]  # the backend's call: (**kwargs, messages=…) -> its raw response


class Provider(Protocol):
    """A backend: how a call is made, how its reply reads, and how its errors are classified."""

    name: str

    def transient_types(self) -> tuple[type[BaseException], ...]:
        """Errors worth a retry (rate limits, 5xx, timeouts, dropped connections)."""
        ...

    def fatal_types(self) -> tuple[type[BaseException], ...]:
        """Errors no retry can fix (a key, a bad request, an unknown model)."""
        ...

    def client_error(self, exc: BaseException) -> bool:
        """A transient-typed error that is really the request's fault (an HTTP 4xx)."""
        ...

    def refusal(self, exc: BaseException) -> Refusal | None:
        """The refusal of this one request ``exc`` stands for (content filter, context length)."""
        ...

    def out_of_quota(self, exc: BaseException) -> bool: ...

    def retry_after_s(self, exc: BaseException) -> float | None: ...

    def connect_failure(self, exc: BaseException) -> str | None:
        """How the call failed to reach the server ("connection refused"…), or None if it did."""
        ...

    def base(self, ep: Endpoint) -> str | None:
        """The URL the endpoint's calls go to, where there is one (for messages)."""
        ...

    def prepare(self, ep: Endpoint, api_key: str | None, timeout_s: float) -> tuple[dict[str, Any], Call]:
        """What every call to ``ep`` shares (keyword arguments) and the call itself, built once."""
        ...

    def completions(self, resp: Any, latency: float) -> list[Completion]:
        """The reply's answers, one per choice; MalformedReply when it holds none."""
        ...

    def supports_n(self, ep: Endpoint) -> bool:
        """Whether one request may ask for several samples."""
        ...

    def context_window(self, ep: Endpoint) -> int | None:
        """The model's input context in tokens, where known."""
        ...

    def count_tokens(self, ep: Endpoint, messages: list[dict[str, Any]]) -> int:
        """The prompt tokens of ``messages`` for the endpoint's model."""
        ...

    def preflight(self, ep: Endpoint, timeout_s: float) -> None:
        """Refuse in seconds, before any call, what cannot work (ModelCallError saying why)."""
        ...


PROVIDERS = {
    "litellm": "bsa.providers.litellm_api",
    "python": "bsa.providers.python_callable",
    "direct": "bsa.providers.openai_direct",  # OpenAI-compatible servers over aiohttp (model.transport)
}


def provider_for(ep: Endpoint) -> Provider:
    """The backend named by ``ep.provider`` (its module imported on first use: LiteLLM costs seconds)."""
    module = PROVIDERS.get(ep.provider)
    if module is None:
        raise ModelCallError(
            f"{endpoint_label(ep)}: provider {ep.provider!r} is not one of {', '.join(PROVIDERS)}"
        )
    provider: Provider = importlib.import_module(module).PROVIDER
    return provider
