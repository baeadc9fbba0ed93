"""An OpenAI-compatible HTTP server on 127.0.0.1 whose replies a test scripts.

A responder gets the parsed request body and returns a ``Reply``: message fields (content,
reasoning_content, reasoning, ...), finish_reason, or an HTTP error status with headers, or
``drop=True`` to close the connection mid-response. Every request is recorded.

A request with ``n`` > 1 is answered with n choices: the responder is asked once per choice j, with
the body's ``seed`` (when it has one) raised by j, as if each choice had been a request of its own;
the first non-200 reply answers the whole request. ``reject_n=True`` refuses any n > 1 with a 400,
as providers without n do. ``routes`` maps (method, path) to a handler ``(body) -> (status, json)``
for endpoints other than chat completions (a test's files or batches API).
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    message: dict[str, Any] = field(default_factory=dict)
    finish_reason: str = "stop"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""
    drop: bool = False
    usage: dict[str, Any] | None = None
    error_body: dict[str, Any] | None = None  # an error reply's JSON as a provider sends it
    no_choices: bool = False  # HTTP 200 with an empty choices list
    model: str | None = None  # the model the reply names (default: the one asked for)


Responder = Callable[[dict[str, Any]], Reply]


class ScriptedServer:
    def __init__(
        self,
        responder: Responder,
        reject_n: bool = False,
        routes: dict[tuple[str, str], Callable[[Any], tuple[int, Any]]] | None = None,
        models: list[dict[str, Any]] | None = None,
        key: str | None = None,
    ) -> None:
        self.responder = responder
        self.reject_n = reject_n
        # GET /v1/models: these entries ({"id": …, "shutdown_date": …}); none by default, which tells
        # a client nothing (it goes on). ``key``: the Bearer key it wants there (None: any or none).
        self.models: list[dict[str, Any]] = list(models or [])
        self.key = key
        self.routes = routes or {}
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []  # responder exceptions: a test bug, reported, never a hang
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            # A reply's headers and body are two writes: with Nagle's algorithm on, the body waits
            # ~40 ms for the client's delayed ACK, as no real server makes it wait.
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str, body: Any) -> bool:
                path = self.path.split("?")[0].rstrip("/")
                for (m, prefix), handler in server.routes.items():
                    if m == method and (path == prefix or path.startswith(prefix + "/")):
                        status, out = handler({"path": path, "body": body, "headers": dict(self.headers)})
                        if isinstance(out, bytes):
                            self.send_response(status)
                            self.send_header("Content-Type", "application/octet-stream")
                            self.send_header("Content-Length", str(len(out)))
                            self.end_headers()
                            self.wfile.write(out)
                        else:
                            self._send(status, out, {})
                        return True
                return False

            def do_GET(self) -> None:
                if self._route("GET", None):
                    return
                if self.path.rstrip("/") == "/v1/models":
                    given = self.headers.get("Authorization", "")
                    if server.key is not None and given != f"Bearer {server.key}":
                        self._send(401, {"error": {"message": "Incorrect API key provided."}}, {})
                        return
                    listed = [{"object": "model", **m} for m in server.models]
                    self._send(200, {"object": "list", "data": listed}, {})
                else:
                    self._send(404, {"error": {"message": "not found"}}, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if server.routes and not self.path.rstrip("/").endswith("/chat/completions"):
                    is_json = (self.headers.get("Content-Type") or "").startswith("application/json")
                    if self._route("POST", json.loads(raw or b"{}") if is_json else raw):
                        return
                body = json.loads(raw or b"{}")
                with server._lock:
                    server.requests.append(body)
                n = int(body.get("n") or 1)
                if n > 1 and server.reject_n:
                    self._send(400, {"error": {"message": "n > 1 is not supported", "type": "scripted"}}, {})
                    return
                replies = []
                for j in range(n):
                    one = body if j == 0 or "seed" not in body else {**body, "seed": body["seed"] + j}
                    try:
                        replies.append(server.responder(one))
                    except Exception:
                        with server._lock:
                            server.errors.append(traceback.format_exc())
                        # 400 is not retried by the client, so a broken script fails the test at once.
                        broken = Reply(status=400, error="scripted responder raised; see server.errors")
                        replies.append(broken)
                    if replies[-1].status != 200 or replies[-1].drop:
                        break
                reply = replies[-1]
                if reply.drop:
                    # Promise a body, send half of it, then close: a connection dropped mid-response.
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(b'{"id": "x", "choi')
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if reply.status != 200:
                    error = {
                        "error": {"message": reply.error or f"scripted {reply.status}", "type": "scripted"}
                    }
                    self._send(reply.status, reply.error_body or error, reply.headers)
                    return
                usage = reply.usage or {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
                choices = [
                    {
                        "index": j,
                        "message": {"role": "assistant", "content": None, **r.message},
                        "finish_reason": r.finish_reason,
                    }
                    for j, r in enumerate(replies)
                    if not r.no_choices
                ]
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(server.requests)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": reply.model or body.get("model", "scripted"),
                        "choices": choices,
                        "usage": usage,
                    },
                    reply.headers,
                )

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default backlog (5) resets connections under load

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.api_base = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def chat_requests(self, model: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if model is None or r.get("model") == model]
