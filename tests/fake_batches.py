"""An in-memory OpenAI files + batches API, served as extra routes of a ``ScriptedServer``.

Uploads are parsed from the multipart body the openai SDK sends; a batch goes validating →
in_progress → completed after ``polls_to_complete`` retrievals, and its output lines are the replies
of the same scripted responder that answers online chat completions, so a verdict is the same
whichever way a request went. ``fail(body)`` makes a line fail (it goes to the error file instead);
``expire=True`` ends batches as ``expired`` with the lines answered so far (none).

    fake = FakeBatches(respond)
    with ScriptedServer(respond, routes=fake.routes()) as server: ...
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from scripted_server import Reply

Handler = Callable[[dict[str, Any]], tuple[int, Any]]


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart/form-data body: name -> (filename, bytes)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        fields[str(name)] = (part.get_filename(), payload)
    return fields


def chat_body(reply: Reply, request: dict[str, Any], n: int) -> dict[str, Any]:
    """The chat-completion object the scripted server would have answered ``request`` with."""
    return {
        "id": f"chatcmpl-batch-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "scripted"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, **reply.message},
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": reply.usage or {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
    }


class FakeBatches:
    def __init__(
        self,
        responder: Callable[[dict[str, Any]], Reply],
        polls_to_complete: int = 2,
        fail: Callable[[dict[str, Any]], bool] | None = None,
        expire: bool = False,
    ) -> None:
        self.responder = responder
        self.polls_to_complete = polls_to_complete
        self.fail = fail or (lambda body: False)
        self.expire = expire
        self.files: dict[str, dict[str, Any]] = {}  # id -> file object + "_content"
        self.batches: dict[str, dict[str, Any]] = {}  # id -> batch object + "_lines", "_polls"
        self.uploads = 0
        self.created = 0
        self.polls = 0
        self.downloads = 0
        self.answered: list[dict[str, Any]] = []  # request bodies the batches answered
        self.errors: list[str] = []  # requests the fake refused (a test bug or a client bug)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("POST", "/v1/files"): self._upload,
            ("GET", "/v1/files"): self._get_file,
            ("POST", "/v1/batches"): self._post_batch,
            ("GET", "/v1/batches"): self._get_batch,
        }

    # ---- files -------------------------------------------------------------------------------
    def _new_file(self, name: str, purpose: str, content: bytes) -> dict[str, Any]:
        fid = f"file-{next(self._ids)}"
        obj = {
            "id": fid,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[fid] = {**obj, "_content": content}
        return obj

    def _refuse(self, status: int, message: str) -> tuple[int, Any]:
        self.errors.append(message)
        return status, {"error": {"message": message, "type": "invalid_request_error"}}

    def _upload(self, req: dict[str, Any]) -> tuple[int, Any]:
        body = req["body"]
        ctype = req["headers"].get("Content-Type") or req["headers"].get("content-type") or ""
        if not isinstance(body, bytes) or "multipart/form-data" not in ctype:
            return self._refuse(400, f"expected a multipart upload, got {ctype!r}")
        fields = parse_multipart(body, ctype)
        if "file" not in fields or "purpose" not in fields:
            return self._refuse(400, f"upload without file or purpose: fields {sorted(fields)}")
        purpose = fields["purpose"][1].decode()
        if purpose != "batch":
            return self._refuse(400, f"purpose {purpose!r}, expected 'batch'")
        name, content = fields["file"]
        with self._lock:
            self.uploads += 1
            return 200, self._new_file(name or "upload.jsonl", purpose, content)

    def _get_file(self, req: dict[str, Any]) -> tuple[int, Any]:
        parts = req["path"].split("/")  # ['', 'v1', 'files', id, ('content')]
        f = self.files.get(parts[3]) if len(parts) > 3 else None
        if f is None:
            return 404, {"error": {"message": f"no file {req['path']}"}}
        if len(parts) > 4 and parts[4] == "content":
            with self._lock:
                self.downloads += 1
            return 200, f["_content"]
        return 200, {k: v for k, v in f.items() if not k.startswith("_")}

    # ---- batches -----------------------------------------------------------------------------
    def _post_batch(self, req: dict[str, Any]) -> tuple[int, Any]:
        parts = req["path"].split("/")
        if len(parts) > 4 and parts[4] == "cancel":
            b = self.batches.get(parts[3])
            if b is None:
                return 404, {"error": {"message": f"no batch {parts[3]}"}}
            b["status"] = "cancelled"
            return 200, self._public(b)
        body = req["body"]
        if not isinstance(body, dict):
            return self._refuse(400, "batch creation without a JSON body")
        f = self.files.get(body.get("input_file_id", ""))
        if f is None:
            return self._refuse(400, f"no input file {body.get('input_file_id')!r}")
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return self._refuse(
                400, f"endpoint/window {body.get('endpoint')}/{body.get('completion_window')}"
            )
        lines = [json.loads(x) for x in f["_content"].decode().splitlines() if x.strip()]
        ids = [x.get("custom_id") for x in lines]
        if len(set(ids)) != len(ids):
            return self._refuse(400, "duplicate custom_id in the batch file")
        for x in lines:
            if (
                x.get("method") != "POST"
                or x.get("url") != "/v1/chat/completions"
                or "model" not in x["body"]
            ):
                return self._refuse(400, f"bad batch line {x}")
        models = {x["body"]["model"] for x in lines}
        if len(models) > 1:
            return self._refuse(400, f"one model per batch file, got {sorted(models)}")
        with self._lock:
            self.created += 1
            bid = f"batch_{next(self._ids)}"
            now = int(time.time())
            self.batches[bid] = {
                "id": bid,
                "object": "batch",
                "endpoint": body["endpoint"],
                "input_file_id": f["id"],
                "completion_window": "24h",
                "status": "validating",
                "created_at": now,
                "expires_at": now + 86400,
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "metadata": body.get("metadata"),
                "_lines": lines,
                "_polls": 0,
            }
            return 200, self._public(self.batches[bid])

    def _get_batch(self, req: dict[str, Any]) -> tuple[int, Any]:
        parts = req["path"].split("/")
        b = self.batches.get(parts[3]) if len(parts) > 3 else None
        if b is None:
            return 404, {"error": {"message": f"no batch {req['path']}"}}
        with self._lock:
            self.polls += 1
            if b["status"] in ("completed", "expired", "cancelled", "failed"):
                return 200, self._public(b)
            b["_polls"] += 1
            total = b["request_counts"]["total"]
            if b["_polls"] >= self.polls_to_complete:
                self._finish(b)
            else:
                b["status"] = "in_progress"
                b["in_progress_at"] = int(time.time())
                share = total * b["_polls"] // max(1, self.polls_to_complete)
                b["request_counts"] = {"total": total, "completed": share, "failed": 0}
            return 200, self._public(b)

    def _finish(self, b: dict[str, Any]) -> None:
        out, err = [], []
        if not self.expire:
            for i, line in enumerate(b["_lines"]):
                body, cid = line["body"], line["custom_id"]
                reply = (
                    Reply(status=500, error="scripted batch failure")
                    if self.fail(body)
                    else self.responder(body)
                )
                if reply.status != 200:
                    err.append(
                        {
                            "id": f"batch_req_{i}",
                            "custom_id": cid,
                            "response": {
                                "status_code": reply.status,
                                "body": {"error": {"message": reply.error}},
                            },
                            "error": {"code": "server_error", "message": reply.error or "failed"},
                        }
                    )
                    continue
                self.answered.append(body)
                out.append(
                    {
                        "id": f"batch_req_{i}",
                        "custom_id": cid,
                        "response": {
                            "status_code": 200,
                            "request_id": f"req_{i}",
                            "body": chat_body(reply, body, i),
                        },
                        "error": None,
                    }
                )
        else:  # nothing answered within the window: every line is reported in the error file
            err = [
                {
                    "id": f"batch_req_{i}",
                    "custom_id": line["custom_id"],
                    "response": None,
                    "error": {"code": "batch_expired", "message": "expired before it was processed"},
                }
                for i, line in enumerate(b["_lines"])
            ]

        def jsonl(rows: list[dict[str, Any]]) -> bytes:
            return "".join(json.dumps(r) + "\n" for r in rows).encode()

        b["status"] = "expired" if self.expire else "completed"
        b["completed_at"] = int(time.time())
        b["request_counts"] = {"total": len(b["_lines"]), "completed": len(out), "failed": len(err)}
        if out:
            b["output_file_id"] = self._new_file(f"{b['id']}_output.jsonl", "batch_output", jsonl(out))["id"]
        if err:
            b["error_file_id"] = self._new_file(f"{b['id']}_error.jsonl", "batch_output", jsonl(err))["id"]

    @staticmethod
    def _public(b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if not k.startswith("_")}
