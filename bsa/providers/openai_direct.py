"""OpenAI-compatible chat completions over aiohttp (bsa.provider.Provider): ``model.transport=direct``,
and ``auto``'s choice for ``hosted_vllm/…`` names, ``openai/…`` names with an api_base (the
``openai_compatible`` cards) and the servers bsa starts.

One aiohttp session per endpoint and event loop, JSON in and out: the reply's dict is read straight
into the ``Completion`` bsa keeps, with no response objects, price lookups or exception mapping per
call: 0.23 ms of CPU a request through the client, against 2.3 ms through LiteLLM (6,000 requests
to a loopback server, 200 ms latency, 64 in flight). What bsa relies on from LiteLLM
for these servers is reproduced as LiteLLM 1.106 does it, so a run gives the same rows through either
transport: the ``hosted_vllm/`` or ``openai/`` prefix stripped from the model sent, ``extra_body``
merged into the body, reasoning read from ``reasoning_content``, ``reasoning`` or a leading
``<think>…</think>``, ``n`` > 1 with the request's usage on its first choice, and a 400's message
worded as LiteLLM words it (it is recorded with a refusal). Retries, limits and the cache stay with
the client (bsa/llm.py): a call here sends one request and classifies its failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from bsa.provider import Call, Completion, Endpoint, MalformedReply, Prices, Provider, Refusal, _withheld
from bsa.providers import litellm_api

# The model-string prefixes LiteLLM sends to an OpenAI-compatible server with the prefix stripped.
PREFIXES = ("hosted_vllm/", "openai/")
_OPENAI_BASE = "https://api.openai.com/v1"


class DirectError(Exception):
    """A request that failed; ``status_code`` is the HTTP status where there was one. The subclasses
    bear LiteLLM's names for the same failures, so error messages and the retry summary (which name
    the type) read the same through either transport."""

    def __init__(self, message: str, status: int | None = None, body: str = "", headers: Any = None):
        super().__init__(message)
        self.status_code = status
        self.body = body  # the error reply's text, for the refusal and quota checks
        self.headers = headers or {}


class DirectTransient(DirectError):
    """Worth a retry, unless its status is a 4xx other than 408, 409 and 429 (``client_error``)."""


class RateLimitError(DirectTransient):
    """429."""


class Timeout(DirectTransient):
    """408, or no reply within the request timeout."""


class InternalServerError(DirectTransient):
    """500 and any 5xx not named below; a connection refused, dropped or cut mid-reply."""


class ServiceUnavailableError(DirectTransient):
    """503."""


class BadGatewayError(DirectTransient):
    """502."""


class APIError(DirectTransient):
    """Any other status (LiteLLM's generic error: a 403 from an OpenAI-compatible server is one)."""


class DirectFatal(DirectError):
    """No retry can fix it."""


class BadRequestError(DirectFatal):
    """400, 413, 422: this request (a refusal of its content or size) or a parameter every one carries."""


class ContextWindowExceededError(BadRequestError):
    """A 400 that says the prompt does not fit the model's context."""


class UnsupportedParamsError(BadRequestError):
    """A parameter this transport does not translate for an OpenAI-compatible server."""


class AuthenticationError(DirectFatal):
    """401."""


class NotFoundError(DirectFatal):
    """404."""


_BY_STATUS: dict[int, type[DirectError]] = {
    401: AuthenticationError,
    404: NotFoundError,
    408: Timeout,
    429: RateLimitError,
    500: InternalServerError,
    502: BadGatewayError,
    503: ServiceUnavailableError,
}


def strip_prefix(model: str) -> str:
    """The model id the server is sent, as LiteLLM sends it (``hosted_vllm/org/m`` -> ``org/m``)."""
    for prefix in PREFIXES:
        if model.startswith(prefix):
            return model[len(prefix) :]
    return model


def base_url(ep: Endpoint) -> str:
    """Where ``ep``'s calls go: its api_base, else OpenAI's (moved by OPENAI_BASE_URL/OPENAI_API_BASE,
    as LiteLLM moves it)."""
    if ep.api_base:
        return ep.api_base
    return next(
        (os.environ[v] for v in ("OPENAI_BASE_URL", "OPENAI_API_BASE") if os.environ.get(v)), _OPENAI_BASE
    )


# LiteLLM's own test for a context-window error (exception_mapping_utils.is_error_str_context_window_
# exceeded), reproduced so a refusal's recorded message is the one the LiteLLM path records.
_CONTEXT_MARKS = (
    "exceed context limit",
    "this model's maximum context length is",
    "string too long. expected a string with maximum length",
    "model's maximum context limit",
    "is longer than the model's context length",
    "input tokens exceed the configured limit",
    "`inputs` tokens + `max_new_tokens` must be",
    "exceeds the available context size",
    "exceeds the maximum number of tokens allowed",
)
_CONTEXT_PAIRS = (("current length is", "while limit is"), ("maximum input length is", "tokens"))


def _context_window(text: str) -> bool:
    low = text.lower()
    if "string_above_max_length" in low or ("invalid 'user'" in low and "string too long" in low):
        return False
    return any(m in low for m in _CONTEXT_MARKS) or any(a in low and b in low for a, b in _CONTEXT_PAIRS)


def _said(raw: str, openai_sdk: bool) -> str:
    """The error text LiteLLM quotes: the body as sent (hosted_vllm/), or its message (openai/, through
    the openai SDK: ``error.message``, else a top-level ``message``)."""
    if not openai_sdk:
        return raw
    try:
        body = json.loads(raw)
    except ValueError:
        return raw
    err = body.get("error", body) if isinstance(body, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    return message if isinstance(message, str) else raw


def status_error(status: int, raw: str, headers: Any, exc_name: str, openai_sdk: bool) -> DirectError:
    """The error an HTTP ``status`` reply stands for, worded as LiteLLM words it (``exc_name``: its
    provider label, ``Hosted_vllmException`` or ``OpenAIException``). A 400's words are recorded with
    its refusal, so they must be LiteLLM's to the letter."""
    said = _said(raw, openai_sdk)
    if status in (400, 413, 422):
        if _context_window(raw):
            message = (
                "litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindowExceededError: "
                f"{exc_name} - {said}"
            )
            return ContextWindowExceededError(message, status, raw, headers)
        return BadRequestError(f"litellm.BadRequestError: {exc_name} - {said}", status, raw, headers)
    kind = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIError)
    return kind(f"{kind.__name__}: {exc_name} - {said}", status, raw, headers)


async def _closing(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Held open for the session's event loop: ``asyncio.run`` finalizes a loop's async generators
    before closing it, so the session is closed on the loop it was opened on, whoever ran that loop
    (a run's ``asyncio.run``, the API's worker thread, a test), with no close hook to call."""
    try:
        yield
    finally:
        await session.close()


class DirectCall:
    """The call every request to one endpoint makes: its URL, headers and model id built once."""

    def __init__(self, ep: Endpoint, api_key: str | None, timeout_s: float, price: Prices | None) -> None:
        self.url = base_url(ep).rstrip("/") + "/chat/completions"
        self.model = strip_prefix(ep.model)
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.price = price
        self.openai_sdk = ep.model.startswith("openai/")  # LiteLLM words these errors via the openai SDK
        self.exc_name = "OpenAIException" if self.openai_sdk else "Hosted_vllmException"
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: AsyncGenerator[None, None] | None = None

    async def _open(self) -> aiohttp.ClientSession:
        # No connection cap of aiohttp's own (limit=0): the client's limits decide what is in flight.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        session = aiohttp.ClientSession(connector=connector, timeout=self.timeout, headers=self.headers)
        closer = _closing(session)
        await closer.__anext__()
        self._session, self._loop, self._closer = session, asyncio.get_running_loop(), closer
        return session

    async def __call__(
        self, messages: list[dict[str, Any]], api_base: str | None = None, **params: Any
    ) -> Any:
        session = self._session
        if session is None or self._loop is not asyncio.get_running_loop():
            session = await self._open()
        body = {"model": self.model, "messages": messages, **params}
        extra = body.pop("extra_body", None)
        if extra:
            body.update(extra)
        if "thinking" in body:
            raise UnsupportedParamsError(
                "thinking={...} (model.thinking_budget) is Anthropic's and Gemini's; an OpenAI-compatible "
                "server takes model.reasoning_effort, or set model.transport=litellm to have LiteLLM map it"
            )
        try:
            async with session.post(self.url, data=json.dumps(body).encode()) as resp:
                raw = await resp.read()
                status = resp.status
                headers = resp.headers
        except asyncio.TimeoutError as e:
            raise Timeout(f"Timeout: {self.exc_name} - no reply within {self.timeout.total:g} s", 408) from e
        except aiohttp.ClientError as e:  # refused, dropped mid-reply, a broken payload, a reset
            # InternalServerError, as LiteLLM has it; the cause chain keeps the socket error.
            raise InternalServerError(f"InternalServerError: {self.exc_name} - {e}") from e
        if status != 200:
            raise status_error(
                status, raw.decode("utf-8", "replace"), headers, self.exc_name, self.openai_sdk
            )
        try:
            data = json.loads(raw)
        except ValueError:
            raise MalformedReply(f"HTTP 200 with a body that is not JSON: {raw[:200]!r}") from None
        if not isinstance(data, dict):
            raise MalformedReply(f"HTTP 200 with JSON that is not an object: {raw[:200]!r}")
        return data, self.price


def _think(content: str) -> tuple[str | None, str]:
    found = _THINK.match(content)
    return (found.group(1), found.group(2)) if found else (None, content)


# LiteLLM's reading of a reasoning trace inline in the content (common_utils.parse_content_for_reasoning).
_THINK = re.compile(
    r"<(?:think|thinking|budget:thinking)>(.*?)</(?:think|thinking|budget:thinking)>(.*)", re.DOTALL
)


def _message(raw: dict[str, Any]) -> dict[str, Any]:
    """The fields bsa keeps from a reply's message, read as LiteLLM reads them."""
    content = raw.get("content")
    if "reasoning_content" in raw:
        reasoning_content = raw["reasoning_content"]
    elif "reasoning" in raw:
        reasoning_content = raw["reasoning"]
    elif isinstance(content, str) and content:
        reasoning_content, content = _think(content)
    else:
        reasoning_content = None
    return {
        "content": content,
        "reasoning_content": reasoning_content,
        "reasoning": raw.get("reasoning"),
        "thinking_blocks": raw.get("thinking_blocks"),
    }


def _usage(u: Any) -> dict[str, int]:
    if not isinstance(u, dict):
        return {"prompt_tokens": 0, "completion_tokens": 0}  # LiteLLM's empty Usage
    usage = {
        "prompt_tokens": int(u.get("prompt_tokens") or 0),
        "completion_tokens": int(u.get("completion_tokens") or 0),
    }
    details = u.get("completion_tokens_details")
    rt = details.get("reasoning_tokens") if isinstance(details, dict) else None
    if rt:
        usage["reasoning_tokens"] = int(rt)
    return usage


def completions(data: dict[str, Any], price: Prices | None, latency: float) -> list[Completion]:
    """The reply's choices as Completions. With n > 1 the request's usage and price are on choice 0
    and the others carry none (their price 0.0 where priced), each saying how many samples its request
    held (``request_samples``), as bsa.providers.litellm_api._to_completion does."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedReply("HTTP 200 with an empty choices list")
    usage = _usage(data.get("usage"))
    cost: float | None = None
    if price is not None:
        cost = usage["prompt_tokens"] * (price.input or 0.0) + usage["completion_tokens"] * (
            price.output or 0.0
        )
    model = str(data.get("model") or "")
    n = len(choices)
    latency = round(latency, 4)
    out = []
    for j, choice in enumerate(choices):
        raw = choice.get("message") or {}
        message = _message(raw)
        finish = choice.get("finish_reason") or choice.get("finish_details") or "stop"
        if finish == "stop" and raw.get("tool_calls"):
            finish = "tool_calls"
        mine = usage if n == 1 else {**(usage if j == 0 else {}), "request_samples": n}
        out.append(
            Completion(
                message=message,
                finish_reason=finish,
                usage=mine,
                latency_s=latency,
                model=model,
                cost_usd=cost if j == 0 or cost is None else 0.0,
                refusal=_withheld(message, finish),
            )
        )
    return out


def retry_after_s(exc: BaseException) -> float | None:
    headers = getattr(exc, "headers", None)
    value = headers.get("Retry-After") if headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def connect_failure(exc: BaseException) -> str | None:
    """What kept the call from reaching the server, read from the cause chain as for LiteLLM's."""
    seen: set[int] = set()
    e: BaseException | None = exc
    found = None
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, socket.gaierror) or type(e).__name__ == "ClientConnectorDNSError":
            return "cannot resolve host"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, aiohttp.ClientConnectorError):
            os_error = getattr(e, "os_error", None)
            if isinstance(os_error, ConnectionRefusedError):
                return "connection refused"
            if isinstance(os_error, socket.gaierror):
                return "cannot resolve host"
            found = "cannot connect"
        e = e.__cause__ or e.__context__
    return found


class DirectProvider:
    """bsa.provider.Provider for OpenAI-compatible chat completions over aiohttp."""

    name = "direct"

    def transient_types(self) -> tuple[type[BaseException], ...]:
        return (DirectTransient,)

    def fatal_types(self) -> tuple[type[BaseException], ...]:
        return (DirectFatal,)

    def client_error(self, exc: BaseException) -> bool:
        return litellm_api._client_error(exc)  # a 4xx but 408, 409, 429: the request's fault

    def refusal(self, exc: BaseException) -> Refusal | None:
        return litellm_api.refusal_of(exc)

    def out_of_quota(self, exc: BaseException) -> bool:
        return litellm_api.out_of_quota(exc)

    def retry_after_s(self, exc: BaseException) -> float | None:
        return retry_after_s(exc)

    def connect_failure(self, exc: BaseException) -> str | None:
        return connect_failure(exc)

    def base(self, ep: Endpoint) -> str | None:
        return base_url(ep)

    def prepare(self, ep: Endpoint, api_key: str | None, timeout_s: float) -> tuple[dict[str, Any], Call]:
        if not api_key and ep.model.startswith("openai/") and ep.api_base:
            api_key = "no-key"  # as LiteLLM sends; a server without auth ignores it
        # Priced once here (LiteLLM's map; None for a local server's model), never per reply.
        price = None if ep.price is not None else litellm_api.prices(ep.model, False)
        # api_base: the client watches a server bsa started by it (Client.watch).
        return {"api_base": ep.api_base}, DirectCall(ep, api_key, timeout_s, price)

    def completions(self, resp: Any, latency: float) -> list[Completion]:
        data, price = resp
        return completions(data, price, latency)

    def supports_n(self, ep: Endpoint) -> bool:
        return True  # the OpenAI API has n; a server without it answers 400 and the client asks singly

    def context_window(self, ep: Endpoint) -> int | None:
        return litellm_api.PROVIDER.context_window(ep)

    def count_tokens(self, ep: Endpoint, messages: list[dict[str, Any]]) -> int:
        return litellm_api.PROVIDER.count_tokens(ep, messages)

    def preflight(self, ep: Endpoint, timeout_s: float) -> None:
        litellm_api.preflight(ep, timeout_s)


PROVIDER: Provider = DirectProvider()  # mypy checks it against the protocol
