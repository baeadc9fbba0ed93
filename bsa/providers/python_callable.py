"""A Python function as a provider (bsa.provider.Provider): ``judge.provider=python
judge.callable=package.module:function`` (or ``model.…``) — a judge that is not an LLM API, such as a
local safety classifier, a rule set, or a model already loaded in this process.

The function is called as ``function(messages, params)``: the request's chat messages (the judge's
prompt, filled as for any judge) and its parameters (temperature, max_tokens, …). It returns the reply:
a string (the answer's text), or a mapping with ``content`` and optionally ``reasoning_content``,
``finish_reason``, ``usage`` ({prompt_tokens, completion_tokens}) and ``model``. It may be async.
Its answers are cached, counted and judged like any other; an exception it raises stops the run
(nothing is retried: a function fails the same way twice).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from bsa.provider import Call, Completion, Endpoint, ModelCallError, Refusal, endpoint_label


class CallableFailed(Exception):
    """The function raised, or returned something that is not a reply."""


def load(ep: Endpoint) -> Callable[..., Any]:
    """The function ``ep.callable`` names ("package.module:function"); ModelCallError saying why not."""
    spec = ep.callable
    where = f"{endpoint_label(ep)}: {ep.role}.callable"
    if not spec or ":" not in spec:
        raise ModelCallError(
            f"{where}={spec!r}: name the function as package.module:function (with {ep.role}.provider=python)"
        )
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ModelCallError(
            f"{where}={spec!r}: cannot import {module_name} ({e}); is it on PYTHONPATH?"
        ) from None
    fn: Callable[..., Any] | None = getattr(module, attr, None)
    if not callable(fn):
        raise ModelCallError(f"{where}={spec!r}: {module_name} has no function {attr!r}")
    return fn


def _completion(out: Any, latency: float, spec: str) -> Completion:
    if isinstance(out, str):
        return Completion({"content": out}, "stop", {}, round(latency, 4), "")
    if isinstance(out, Mapping) and isinstance(out.get("content", ""), (str, type(None))):
        message = {k: out.get(k) for k in ("content", "reasoning_content") if k in out}
        usage = {k: int(v) for k, v in dict(out.get("usage") or {}).items() if isinstance(v, (int, float))}
        finish = str(out.get("finish_reason") or "stop")
        return Completion(message, finish, usage, round(latency, 4), str(out.get("model") or ""))
    raise CallableFailed(
        f"{spec} returned {type(out).__name__}; return the reply's text, or a mapping with 'content'"
    )


class PythonProvider:
    """bsa.provider.Provider for a Python function."""

    name = "python"

    def transient_types(self) -> tuple[type[BaseException], ...]:
        return ()

    def fatal_types(self) -> tuple[type[BaseException], ...]:
        return (CallableFailed,)

    def client_error(self, exc: BaseException) -> bool:
        return False

    def refusal(self, exc: BaseException) -> Refusal | None:
        return None

    def out_of_quota(self, exc: BaseException) -> bool:
        return False

    def retry_after_s(self, exc: BaseException) -> float | None:
        return None

    def connect_failure(self, exc: BaseException) -> str | None:
        return None

    def base(self, ep: Endpoint) -> str | None:
        return None

    def prepare(self, ep: Endpoint, api_key: str | None, timeout_s: float) -> tuple[dict[str, Any], Call]:
        fn, spec = load(ep), str(ep.callable)

        async def call(messages: list[dict[str, Any]], **params: Any) -> Any:
            try:
                out = fn(messages, params)
                if inspect.isawaitable(out):
                    out = await out
            except Exception as e:
                raise CallableFailed(f"{spec} raised {type(e).__name__}: {e}") from e
            return (out, spec)

        return {}, call

    def completions(self, resp: Any, latency: float) -> list[Completion]:
        out, spec = resp
        return [_completion(out, latency, spec)]

    def supports_n(self, ep: Endpoint) -> bool:
        return False

    def context_window(self, ep: Endpoint) -> int | None:
        return None  # a function takes what it is given

    def count_tokens(self, ep: Endpoint, messages: list[dict[str, Any]]) -> int:
        return sum(len(str(m.get("content") or "")) for m in messages) // 4  # 4 characters a token

    def preflight(self, ep: Endpoint, timeout_s: float) -> None:
        load(ep)


PROVIDER = PythonProvider()
