"""Loopback servers that speak two providers' own wire formats, for LiteLLM's ``anthropic/`` and
``gemini/`` routes pointed at them with ``api_base``.

- ``AnthropicServer``: the Messages API. LiteLLM posts to ``{api_base}/v1/messages`` (it appends
  ``/v1/messages`` unless the base already ends in it), key in ``x-api-key``, ``anthropic-version``
  header. Replies are a message with content blocks (``thinking`` with a ``signature``, then
  ``text``), ``stop_reason`` and ``usage``; errors in Anthropic's shape
  ``{"type": "error", "error": {"type": "invalid_request_error", "message": ...}}``.
- ``GeminiServer``: the Gemini API. LiteLLM posts to ``{api_base}/models/{model}:generateContent``
  (api_base = ``http://127.0.0.1:PORT/v1beta`` gives Google's path), key in ``x-goog-api-key``.
  Replies carry ``candidates[].content.parts`` (thought summaries are parts with ``"thought": true``),
  ``finishReason`` and ``usageMetadata`` (``thoughtsTokenCount``); a prompt blocked by safety is
  ``promptFeedback.blockReason`` with no candidates, a blocked answer a candidate with
  ``finishReason: SAFETY`` and no content; errors in Google's ``{"error": {code, message, status}}``.

GETs answer as the providers do: Anthropic lists models at ``/v1/models`` for an ``x-api-key`` (401
without one, 404 elsewhere, e.g. ``/models``); Gemini lists them at ``/v1beta/models`` for an
``x-goog-api-key`` (or ``?key=``), answers 401 to a Bearer token that is not an OAuth token and 403 to
no credential.

Every request is recorded (method, path, headers, parsed body); a responder ``(Call) -> WireReply``
decides each reply, and the helpers below build the providers' shapes. A responder that raises
answers 400 (never retried), with the traceback kept in ``errors``: a test bug fails at once.
"""

from __future__ import annotations

import json
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # without the query string
    target: str  # the request target as sent (path and query string): a key must not be in it
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON (None for a GET)


@dataclass
class WireReply:
    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[Call], WireReply]


class WireServer:
    """A ThreadingHTTPServer on 127.0.0.1: POSTs go to the responder, GETs to ``get``."""

    def __init__(self, responder: Responder, get: Responder | None = None) -> None:
        self.responder = responder
        self.get = get or (lambda call: WireReply({"error": "not found"}, 404))
        self.calls: list[Call] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, method: str, body: Any) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                call = Call(method, self.path.split("?")[0], self.path, headers, body)
                with server._lock:
                    server.calls.append(call)
                try:
                    reply = (server.responder if method == "POST" else server.get)(call)
                except Exception:
                    with server._lock:
                        server.errors.append(traceback.format_exc())
                    reply = WireReply({"error": "the test's responder raised; see server.errors"}, 400)
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer("GET", None)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer("POST", json.loads(raw or b"{}"))

        class Server(ThreadingHTTPServer):
            request_queue_size = 256

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> WireServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def posts(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == "POST"]


# -- Anthropic Messages API -------------------------------------------------------------------------


class AnthropicServer(WireServer):
    """``api_base`` is the origin: LiteLLM appends ``/v1/messages``. A GET of an unknown path answers
    Anthropic's 404 ``not_found_error``, as api.anthropic.com does."""

    def __init__(self, responder: Responder, models: tuple[str, ...] = ()) -> None:
        super().__init__(_only("/v1/messages", responder, anthropic_error), self._get)
        self.api_base = self.origin
        self.models = models  # what GET /v1/models lists

    def _get(self, call: Call) -> WireReply:
        if call.path != "/v1/models":
            return anthropic_error(404, "not_found_error", f"Not found: {call.path}")
        if not call.headers.get("x-api-key"):
            return anthropic_error(401, "authentication_error", "x-api-key header is required")
        models = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-05-22T00:00:00Z"}
            for m in self.models
        ]
        return WireReply({"data": models, "has_more": False, "first_id": None, "last_id": None})


def anthropic_message(
    model: str,
    text: str,
    thinking: str | None = None,
    stop_reason: str = "end_turn",
    input_tokens: int = 25,
    output_tokens: int = 120,
) -> WireReply:
    """A Messages API reply: a thinking block (with its signature) when ``thinking``, then the text."""
    content: list[dict[str, Any]] = []
    if thinking is not None:
        content.append(
            {"type": "thinking", "thinking": thinking, "signature": "EqQBCkYIARgCKkDsig" + "A" * 24}
        )
    if text:
        content.append({"type": "text", "text": text})
    return WireReply(
        {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "standard",
            },
        },
        headers={"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy"},
    )


def anthropic_error(status: int, kind: str, message: str) -> WireReply:
    return WireReply(
        {"type": "error", "error": {"type": kind, "message": message}},
        status,
        {"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy"},
    )


# -- Gemini API (Google AI Studio) --------------------------------------------------------------------


class GeminiServer(WireServer):
    """``api_base`` ends in ``/v1beta``: LiteLLM appends ``/models/{model}:generateContent``. A GET of
    the model list without a key answers 403, as Google does."""

    def __init__(self, responder: Responder, models: tuple[str, ...] = ()) -> None:
        super().__init__(_only("/v1beta/models/", responder, gemini_error), self._get)
        self.api_base = self.origin + "/v1beta"
        self.models = models  # what GET /v1beta/models lists

    def _get(self, call: Call) -> WireReply:
        if call.path != "/v1beta/models":
            return gemini_error(404, "NOT_FOUND", f"{call.path} not found")
        if call.headers.get("x-goog-api-key") or "key=" in call.target:
            listed = [
                {"name": f"models/{m}", "displayName": m, "supportedGenerationMethods": ["generateContent"]}
                for m in self.models
            ]
            return WireReply({"models": listed})
        if call.headers.get("authorization"):  # a Bearer token that is an API key, not an OAuth token
            return gemini_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                "cookie or other valid authentication credential.",
            )
        return gemini_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers")


def gemini_model(call: Call) -> str:
    """The model named in the path ``/v1beta/models/{model}:generateContent``."""
    return call.path.rsplit("/", 1)[-1].split(":", 1)[0]


def _usage(prompt: int, answer: int, thoughts: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": answer,
        "totalTokenCount": prompt + answer + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if thoughts:
        out["thoughtsTokenCount"] = thoughts
    return out


def gemini_response(
    model: str,
    text: str,
    thought: str | None = None,
    finish_reason: str = "STOP",
    prompt_tokens: int = 12,
    answer_tokens: int = 40,
    thoughts_tokens: int = 90,
) -> WireReply:
    """A generateContent reply: a thought-summary part when ``thought``, then the answer part."""
    parts: list[dict[str, Any]] = []
    if thought is not None:
        parts.append({"text": thought, "thought": True})
    if text:
        parts.append({"text": text})
    return WireReply(
        {
            "candidates": [
                {"content": {"parts": parts, "role": "model"}, "finishReason": finish_reason, "index": 0}
            ],
            "usageMetadata": _usage(prompt_tokens, answer_tokens, thoughts_tokens if thought else 0),
            "modelVersion": model,
            "responseId": "mKdnaLeEF4fNz7IP5pHl-Qc",
        }
    )


_RATINGS = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
]


def gemini_prompt_blocked(model: str, reason: str = "SAFETY", prompt_tokens: int = 12) -> WireReply:
    """The prompt itself was blocked: promptFeedback.blockReason, no candidates (HTTP 200)."""
    return WireReply(
        {
            "promptFeedback": {"blockReason": reason, "safetyRatings": _RATINGS},
            "usageMetadata": _usage(prompt_tokens, 0, 0),
            "modelVersion": model,
            "responseId": "blocked-prompt",
        }
    )


def gemini_answer_blocked(model: str, reason: str = "SAFETY", prompt_tokens: int = 12) -> WireReply:
    """The answer was blocked: a candidate with finishReason SAFETY, its safety ratings, no content."""
    return WireReply(
        {
            "candidates": [{"finishReason": reason, "index": 0, "safetyRatings": _RATINGS}],
            "usageMetadata": _usage(prompt_tokens, 0, 0),
            "modelVersion": model,
            "responseId": "blocked-answer",
        }
    )


def gemini_error(status: int, kind: str, message: str) -> WireReply:
    return WireReply({"error": {"code": status, "message": message, "status": kind}}, status)


def _only(prefix: str, responder: Responder, error: Callable[[int, str, str], WireReply]) -> Responder:
    """POSTs under ``prefix`` go to the responder; any other path is the provider's 404, so a URL
    LiteLLM builds wrong fails the test loudly instead of being answered."""

    def route(call: Call) -> WireReply:
        if call.path.startswith(prefix):
            return responder(call)
        return error(
            404, "not_found_error" if error is anthropic_error else "NOT_FOUND", f"no route {call.path}"
        )

    return route
