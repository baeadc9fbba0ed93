"""LiteLLM as a provider (bsa.provider.Provider): every hosted API and OpenAI-compatible server LiteLLM
routes. All that is LiteLLM's lives here: its import (lazy, offline-safe), its response objects, its
exception types and what their bodies say, its Router for several servers, its model strings.

LiteLLM's own retries are off (``num_retries=0``, ``max_retries=0``): the client retries, with
Retry-After and the unreachable check. See ENGINEERING.md for the pitfalls measured here.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable
from typing import Any

from bsa.provider import (
    Call,
    Completion,
    Endpoint,
    EndpointUnreachable,
    MalformedReply,
    ModelCallError,
    Prices,
    Refusal,
    _short,
    _unreachable_message,
    _withheld,
)

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


# A dated snapshot of the id asked for (gpt-4o -> gpt-4o-2024-08-06, claude-x -> claude-x-20250219): the
# same model. Anything else is another model.
_SNAPSHOT = re.compile(r"[-@](\d{4}-?\d{2}-?\d{2}|\d{3,4}|v\d+(:\d+)?|latest|preview(-\d+-\d+)?)$")


def model_id(model: str) -> str:
    """The provider's own id in a LiteLLM model string (``together_ai/deepseek-ai/DeepSeek-R1`` ->
    ``deepseek-ai/DeepSeek-R1``), lower-cased: what a reply's ``model`` is compared with."""
    provider, _, rest = model.partition("/")
    known = provider in _providers()
    return (rest if known and rest else model).lower()


@functools.cache  # LiteLLM's provider list is fixed once imported: built once, not per comparison
def _providers() -> frozenset[str]:
    litellm = import_litellm()
    return frozenset(str(p.value if hasattr(p, "value") else p) for p in litellm.provider_list)


# Asked for every fresh answer and for every row of a finished run: the pairs are few, the calls many.
@functools.lru_cache(maxsize=4096)
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
        if hidden.get("litellm_model_name") in _ZERO_PRICED:
            cost = None  # priced at $0 by register_unpriced only to spare LiteLLM's lookups: unpriced
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


def router(ep: Endpoint, label: str, timeout_s: float) -> Any:
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
        params: dict[str, Any] = {"model": model, "timeout": timeout_s, "max_retries": 0}
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
    prices = import_litellm().model_cost
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


# Unpriced models registered in LiteLLM's price map at $0 (register_unpriced): still unpriced to bsa.
_ZERO_PRICED: set[str] = set()


def register_unpriced(ep: Endpoint, litellm: Any) -> None:
    """Price ``ep``'s model at $0 in LiteLLM's map where it has no price and none is configured: LiteLLM
    otherwise searches its map for it on every response and fails (about 0.35 ms of CPU a request, as
    measured in issue 22). bsa still reads such a model as unpriced (cost None, ``prices`` None)."""
    if ep.price is not None or ep.model in _ZERO_PRICED or prices(ep.model, False, litellm) is not None:
        return
    try:
        provider = litellm.get_llm_provider(ep.model, api_base=ep.api_base)[1]
    except Exception:  # an unroutable model string: preflight says so in its own words
        return
    zero = {
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
        "litellm_provider": provider,
        "mode": "chat",
    }
    litellm.register_model({ep.model: zero})
    _ZERO_PRICED.add(ep.model)


def prices(model: str, batch: bool, litellm: Any | None = None) -> Prices | None:
    """USD per input and output token from LiteLLM's price map (batch prices when ``batch`` and the
    map has them); None when the model has no price."""
    if model in _ZERO_PRICED:
        return None
    litellm = litellm or import_litellm()
    try:
        info = litellm.get_model_info(model)
    except Exception:  # not in the map (hosted_vllm/, a local server's name)
        return None
    inp, outp = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if inp is None and outp is None:
        return None
    if batch:
        bi, bo = info.get("input_cost_per_token_batches"), info.get("output_cost_per_token_batches")
        if bi is not None or bo is not None:
            return Prices(bi if bi is not None else inp, bo if bo is not None else outp, batch=True)
    return Prices(inp, outp)


def token_counter(
    litellm: Any, fallback: Callable[[list[dict[str, Any]]], int]
) -> Callable[[str, list[dict[str, Any]]], int]:
    """A prompt-token counter for dry-run estimates: LiteLLM's (offline: no tokenizer download), else
    ``fallback`` for a message shape it rejects."""

    def count(model: str, messages: list[dict[str, Any]]) -> int:
        before = getattr(litellm, "disable_hf_tokenizer_download", None)
        litellm.disable_hf_tokenizer_download = True  # no tokenizer download: offline, seconds saved
        try:
            return int(litellm.token_counter(model=model, messages=messages))
        except Exception:  # a message shape the counter rejects: the documented 4 chars per token
            return fallback(messages)
        finally:
            litellm.disable_hf_tokenizer_download = before

    return count


class LiteLLMProvider:
    """bsa.provider.Provider for LiteLLM."""

    name = "litellm"

    def __init__(self) -> None:
        self._unpriced: set[str] = set()  # models LiteLLM has no price for: not asked again

    def transient_types(self) -> tuple[type[BaseException], ...]:
        litellm = import_litellm()
        transient = _transient_types(litellm)
        try:  # the Router's "every deployment is cooling down": wait and try again
            from litellm.types.router import RouterRateLimitError

            transient += (RouterRateLimitError,)
        except ImportError:
            pass
        return transient

    def fatal_types(self) -> tuple[type[BaseException], ...]:
        return _fatal_types(import_litellm())

    def client_error(self, exc: BaseException) -> bool:
        return _client_error(exc)

    def refusal(self, exc: BaseException) -> Refusal | None:
        return refusal_of(exc)

    def out_of_quota(self, exc: BaseException) -> bool:
        return out_of_quota(exc)

    def retry_after_s(self, exc: BaseException) -> float | None:
        return retry_after_s(exc)

    def connect_failure(self, exc: BaseException) -> str | None:
        return connect_failure(exc)

    def base(self, ep: Endpoint) -> str | None:
        if ep.deployments:
            return ", ".join(d.api_base or ep.api_base or "?" for d in ep.deployments)
        return provider_base(ep, import_litellm())

    def prepare(self, ep: Endpoint, api_key: str | None, timeout_s: float) -> tuple[dict[str, Any], Call]:
        litellm = import_litellm()
        kwargs: dict[str, Any] = {"timeout": timeout_s, "num_retries": 0}
        if ep.deployments:
            kwargs["model"] = f"{ep.role} {ep.model}"  # the Router's model group
            return kwargs, router(ep, kwargs["model"], timeout_s).acompletion
        kwargs.update(model=ep.model, max_retries=0)
        register_unpriced(ep, litellm)
        if ep.api_base:
            kwargs["api_base"] = ep.api_base
        if api_key:
            kwargs["api_key"] = api_key
        elif ep.model.startswith("openai/") and ep.api_base:
            # LiteLLM's openai/ refuses to send without a key (as an InternalServerError that would
            # be retried); a self-hosted OpenAI-compatible server without auth ignores this placeholder.
            kwargs["api_key"] = "no-key"
        return kwargs, litellm.acompletion

    def completions(self, resp: Any, latency: float) -> list[Completion]:
        choices = getattr(resp, "choices", None)
        if not choices:
            raise MalformedReply("HTTP 200 with an empty choices list")
        litellm = import_litellm()
        return [_to_completion(resp, latency, litellm, self._unpriced, j) for j in range(len(choices))]

    def supports_n(self, ep: Endpoint) -> bool:
        litellm = import_litellm()
        try:
            _, provider, _, _ = litellm.get_llm_provider(ep.model, api_base=ep.api_base)
            params = litellm.get_supported_openai_params(
                model=ep.model.split("/", 1)[-1], custom_llm_provider=provider
            )
        except Exception:  # an unknown provider: ask one sample per request, which every provider takes
            return False
        return "n" in (params or [])

    def context_window(self, ep: Endpoint) -> int | None:
        try:
            info = import_litellm().get_model_info(model=ep.model)
        except Exception:  # a model LiteLLM does not know (a local server): no window known
            return None
        return int(info.get("max_input_tokens") or 0) or None

    def count_tokens(self, ep: Endpoint, messages: list[dict[str, Any]]) -> int:
        return int(import_litellm().token_counter(model=ep.model, messages=messages))

    def preflight(self, ep: Endpoint, timeout_s: float) -> None:
        preflight(ep, timeout_s)


PROVIDER = LiteLLMProvider()
