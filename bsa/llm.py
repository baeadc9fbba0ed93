"""The one client every model call goes through: cache, retries, concurrency limit.

- Cache: our own diskcache store (never evicts), keyed on exactly what changes the output: model
  string, api_base, messages, every request parameter incl. extra body, a template hash and the
  sample index. Retries, timeouts and concurrency are not in the key. LiteLLM's own cache is not
  used (see ENGINEERING.md: its hits raise in this version, its key ignores api_base/extra_body).
  Processes sharing a cache dir call once per key and agree on its answer (bsa/cache.py).
- Retries: tenacity, bounded, exponential jitter, Retry-After honoured, on transient errors only
  (429, 5xx, timeouts, connection errors). LiteLLM's and the openai SDK's own retries are off.
- LiteLLM is imported lazily: it costs seconds at import and must not fetch a cost map.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from bsa.cache import LEASE_S, AnswerCache, Source

log = logging.getLogger("bsa.llm")

_CACHE_VERSION = 1  # bump when the stored completion format changes


class ModelCallError(RuntimeError):
    """A call that cannot succeed (bad key, bad request); the message says why. Stops the run."""


class TransientFailure(ModelCallError):
    """Transient errors (429, 5xx, timeouts, dropped connections) outlasted every retry."""


class Stopped(Exception):
    """No new call is launched: the run is stopping (Ctrl-C, budget, failing provider)."""


class EndpointUnreachable(ModelCallError):
    """An endpoint that never answered refused or failed every connection (DNS, refused, TLS):
    retrying each call 8 times over hundreds of calls cannot help. Stops the run."""


# Failed connections to an endpoint that has never answered before it is declared down: enough to
# ride out one flaky DNS answer, few enough to stop within the first window of calls.
UNREACHABLE_AFTER = 5


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
class Endpoint:
    model: str  # LiteLLM model string
    api_base: str | None = None
    api_key_env: str | None = None
    role: str = "model"  # model | judge: named in errors
    # Stands for api_base in the cache key when the server is one we start: its port changes each run.
    cache_id: str | None = None

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ModelCallError(
                f"{self.role} {self.model}: the environment variable {self.api_key_env} is not set; "
                f"export {self.api_key_env}=<your key> (keys are read from the environment only)"
            )
        return key


@dataclass(frozen=True)
class Request:
    endpoint: Endpoint
    messages: list[dict[str, str]]
    params: dict[str, Any]  # temperature, top_p, max_tokens, response_format, extra_body, ...
    sample_index: int = 0
    template_hash: str = ""

    def cache_key(self) -> str:
        payload = {
            "v": _CACHE_VERSION,
            "model": self.endpoint.model,
            "api_base": self.endpoint.cache_id or self.endpoint.api_base,
            "messages": self.messages,
            "params": self.params,
            "sample_index": self.sample_index,
            "template": self.template_hash,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class Completion:
    message: dict[str, Any]  # content, reasoning_content, reasoning, thinking_blocks
    finish_reason: str | None
    usage: dict[str, int]
    latency_s: float
    model: str
    cost_usd: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "latency_s": self.latency_s,
            "model": self.model,
            "cost_usd": self.cost_usd,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Completion:
        return cls(
            message=d["message"],
            finish_reason=d.get("finish_reason"),
            usage=d.get("usage") or {},
            latency_s=d.get("latency_s", 0.0),
            model=d.get("model", ""),
            cost_usd=d.get("cost_usd"),
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


def _to_completion(resp: Any, latency: float, litellm: Any) -> Completion:
    choice = resp.choices[0]
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
    # LiteLLM prices each response once already (None when unpriced, e.g. a local server): pricing it
    # again costs CPU on every request and raises for every unpriced one. Only where that price is
    # missing altogether is it computed here.
    hidden = getattr(resp, "_hidden_params", None) or {}
    cost: float | None
    if "response_cost" in hidden:
        cost = float(hidden["response_cost"]) if hidden["response_cost"] is not None else None
    else:
        try:
            cost = float(litellm.completion_cost(completion_response=resp))
        except Exception:  # unpriced models raise; cost is then unknown, not zero
            cost = None
    return Completion(
        message=_plain(message),
        finish_reason=getattr(choice, "finish_reason", None),
        usage=usage,
        latency_s=round(latency, 4),
        model=str(getattr(resp, "model", "") or ""),
        cost_usd=cost,
    )


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
    ) -> None:
        self._cache = AnswerCache(cache_dir, lease_s) if cache_dir else None
        # One limit per role (model, judge), so a slow model server does not hold the judge's slots.
        limits = concurrency if isinstance(concurrency, dict) else {}
        default = concurrency if isinstance(concurrency, int) else max(limits.values(), default=8)
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._limits = limits
        self._default_limit = default
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.max_wait_s = max_wait_s
        self.max_requests = max_requests
        self.max_cost_usd = max_cost_usd
        self.stats = Stats()
        self.stop_reason: str | None = None
        self._litellm: Any = None

    def _sem(self, role: str) -> asyncio.Semaphore:
        if role not in self._sems:
            self._sems[role] = asyncio.Semaphore(self._limits.get(role, self._default_limit))
        return self._sems[role]

    def limit(self, role: str) -> int:
        """Calls in flight at once for ``role``."""
        return self._limits.get(role, self._default_limit)

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
        self._account(completion)
        if self._cache is None:
            return completion

        async def given() -> dict[str, Any]:
            return completion.to_json()

        got = await self._cache.fetch(req.cache_key(), given)
        return Completion.from_json(got.value)

    async def complete(self, req: Request) -> Completion:
        key = req.cache_key()
        hit = self.lookup(req, key)
        if hit is not None:
            self.stats.cache_hits += 1
            return hit
        if self._litellm is None:
            self._litellm = import_litellm()
        if self.stop_reason is not None:
            raise Stopped(self.stop_reason)
        if self._cache is None:
            completion = await self._call_with_retries(req)
            self._account(completion)
            return completion

        async def call() -> dict[str, Any]:
            c = await self._call_with_retries(req)
            self._account(c)  # paid for even when another process's answer is stored first
            return c.to_json()

        got = await self._cache.fetch(key, call)
        if got.source is Source.WAITED:
            self.stats.waited += 1
        elif got.source is Source.ADOPTED:
            self.stats.adopted += 1
        return Completion.from_json(got.value)

    def _account(self, c: Completion) -> None:
        self.stats.calls += 1
        self.stats.prompt_tokens += c.usage.get("prompt_tokens", 0)
        self.stats.completion_tokens += c.usage.get("completion_tokens", 0)
        self.stats.reasoning_tokens += c.usage.get("reasoning_tokens", 0)
        if c.cost_usd:
            self.stats.cost_usd += c.cost_usd
            if self.max_cost_usd is not None and self.stats.cost_usd >= self.max_cost_usd:
                self.stop(f"max_cost_usd={self.max_cost_usd} reached (spent {self.stats.cost_usd:.4f})")

    async def _call_with_retries(self, req: Request) -> Completion:
        from tenacity import (
            AsyncRetrying,
            RetryCallState,
            retry_if_exception,
            stop_after_attempt,
            wait_random_exponential,
        )

        litellm = self._litellm
        transient = _transient_types(litellm)
        fatal = _fatal_types(litellm)
        backoff = wait_random_exponential(multiplier=0.5, max=self.max_wait_s)
        ep = req.endpoint

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            ra = retry_after_s(exc) if exc else None
            return min(ra, self.max_wait_s) if ra is not None else backoff(state)

        label = endpoint_label(ep)
        api_key = ep.api_key()

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is None:
                return
            self.stats.count_retry(label, exc)
            # One line per retry floods the console under any fault rate: DEBUG (verbose=true) only;
            # the stage's progress line counts them and its end sums them per endpoint and kind.
            log.debug(
                "%s: %s (attempt %d/%d), retrying in %.1fs: %s",
                label,
                error_kind(exc),
                state.attempt_number,
                self.max_attempts,
                state.next_action.sleep if state.next_action else 0.0,
                _redact(_short(exc, 200), api_key),
            )

        def check_reachable(exc: BaseException) -> None:
            """Declare the endpoint down after UNREACHABLE_AFTER failed connections and no answer
            ever: a wrong host or port fails the same way on every try of every call."""
            how = connect_failure(exc)
            if how is None or self.stats.answered_by.get(label):
                return
            n = self.stats.unreachable_by[label] = self.stats.unreachable_by.get(label, 0) + 1
            if n >= UNREACHABLE_AFTER:
                message = _unreachable_message(
                    ep,
                    provider_base(ep, litellm),
                    f"{how} on {n} tries, never an answer",
                    _short(_root_cause(exc), 160),
                )
                raise EndpointUnreachable(_redact(message, api_key)) from None

        kwargs: dict[str, Any] = dict(req.params)
        kwargs.update(
            model=ep.model,
            messages=req.messages,
            timeout=self.timeout_s,
            num_retries=0,
            max_retries=0,
        )
        if ep.api_base:
            kwargs["api_base"] = ep.api_base
        if api_key:
            kwargs["api_key"] = api_key
        elif ep.model.startswith("openai/") and ep.api_base:
            # LiteLLM's openai/ refuses to send without a key (as an InternalServerError that would be
            # retried); a self-hosted OpenAI-compatible server without auth ignores this placeholder.
            kwargs["api_key"] = "no-key"

        # A fatal error type can also be a subclass of a transient one in some versions: fatal wins.
        def is_transient(exc: BaseException) -> bool:
            return isinstance(exc, transient) and not isinstance(exc, fatal) and not _client_error(exc)

        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(is_transient),
                stop=stop_after_attempt(self.max_attempts),
                wait=wait,
                before_sleep=before_sleep,
                reraise=True,
            ):
                with attempt:
                    async with self._sem(ep.role):
                        self._launch(ep)
                        t0 = time.perf_counter()
                        try:
                            resp = await litellm.acompletion(**kwargs)
                        except transient as e:
                            check_reachable(e)
                            raise
                        latency = time.perf_counter() - t0
                        self.stats.answered_by[label] = self.stats.answered_by.get(label, 0) + 1
            return _to_completion(resp, latency, litellm)
        except EndpointUnreachable:
            self.stats.failures += 1
            raise
        except fatal as e:
            self.stats.failures += 1
            raise ModelCallError(_redact(self._explain(ep, e), api_key)) from None
        except transient as e:
            self.stats.failures += 1
            if _client_error(e):
                raise ModelCallError(_redact(self._explain(ep, e), api_key)) from None
            raise TransientFailure(
                _redact(
                    f"{ep.role} {ep.model}: still failing after {self.max_attempts} attempts "
                    f"({type(e).__name__}: {_short(e)}); check that {ep.api_base or 'the provider'} is up",
                    api_key,
                )
            ) from None

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
        litellm.get_llm_provider(ep.model, api_base=ep.api_base)
    except Exception as e:  # LiteLLM raises its BadRequestError with a long provider list
        raise ModelCallError(
            f"{ep.role} {ep.model!r}: LiteLLM cannot route this model string ({_short(e, 160)}); "
            "write provider/model, e.g. openai/gpt-4o, deepseek/deepseek-reasoner, hosted_vllm/<name>"
        ) from None
    if not ep.api_base:
        _check_provider_host(ep, litellm, timeout_s)
        return
    url = ep.api_base.rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return
    except urllib.error.HTTPError as e:
        if e.code == 404 and not ep.api_base.rstrip("/").endswith("/v1"):
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
