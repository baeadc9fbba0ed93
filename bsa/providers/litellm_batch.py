"""Batch judging: send requests through a provider's batch API and keep the answers in the cache.

``prefetch`` runs once generation is done, before the online judging stage: it sends the uncached
requests as JSONL batch files (OpenAI's files + batches API, through LiteLLM), waits for them, and
stores each answer with ``Client.store`` under the request's cache key. The online stage then finds
them in the cache; a line a batch failed, expired or left out stays uncached and is called online.

Never pay twice: each batch's id and keys are written to ``state_path`` (atomically) as soon as the
batch exists, before any poll. A restart with the same state file polls those batches again rather
than submitting their keys anew; Ctrl-C (cancellation) or the client's stop switch leave the file.

Prices: a batch answer is priced by LiteLLM's batch calculator (the model's ``*_batches`` rates, or
half the online rates); an unpriced model's cost is unknown (None), as online. Latency is 0: a batch
line has no latency of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bsa.llm import Client, Completion, Endpoint, ModelCallError, Request
from bsa.provider import _redact, _short
from bsa.providers.litellm_api import _to_completion, import_litellm
from bsa.results import atomic_write

log = logging.getLogger("bsa.batch")

URL = "/v1/chat/completions"
MAX_FILE_BYTES = 200 * 1000 * 1000  # OpenAI's limit on one batch input file
TERMINAL = ("completed", "failed", "expired", "cancelled")
POLL_ERRORS = 5  # consecutive failed polls of one batch before giving up (the state file is kept)
STATE_VERSION = 1

# Providers LiteLLM 1.106 routes a batch for, but bsa does not, and why.
_NOT_ROUTED = {
    "anthropic": "LiteLLM 1.106 can retrieve Anthropic message batches but not create them",
    "vertex_ai": (
        "LiteLLM 1.106 creates Vertex AI batches only through a GCS bucket, with Vertex's own output "
        "format; bsa does not route them"
    ),
    "bedrock": "Bedrock batches need an S3 bucket and an IAM role; bsa does not route them",
}


class BatchError(ModelCallError):
    """A submitted batch can no longer be followed (polls or downloads keep failing); the state file
    is kept, so a rerun resumes it instead of paying for it again."""


@dataclass
class BatchReport:
    submitted: int = 0  # requests sent in new batches by this call
    resumed: int = 0  # requests in batches from the state file that this call waited for
    succeeded: int = 0  # answers stored in the cache
    failed: int = 0  # lines a finished batch did not answer (failed, expired, missing): go online
    cached: int = 0  # requests already answered before this call
    online: int = 0  # requests no batch was sent for (no batch API, submission refused, budget)
    batch_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one line per endpoint or batch worth telling
    stopped: str | None = None  # the client's stop reason, when polling stopped early
    wall_s: float = 0.0


@dataclass
class _Batch:
    id: str
    endpoint: Endpoint
    provider: str
    keys: list[str]
    input_file_id: str = ""
    status: str = "validating"
    collected: bool = False
    succeeded: int = 0
    failed: int = 0
    poll_errors: int = 0

    def to_json(self) -> dict[str, Any]:
        ep = self.endpoint
        return {
            "id": self.id,
            "provider": self.provider,
            "endpoint": {
                "model": ep.model,
                "api_base": ep.api_base,
                "api_key_env": ep.api_key_env,
                "role": ep.role,
                "cache_id": ep.cache_id,
            },
            "input_file_id": self.input_file_id,
            "status": self.status,
            "collected": self.collected,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "keys": self.keys,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> _Batch:
        return cls(
            id=d["id"],
            endpoint=Endpoint(**d["endpoint"]),
            provider=d["provider"],
            keys=list(d["keys"]),
            input_file_id=d.get("input_file_id", ""),
            status=d.get("status", "validating"),
            collected=bool(d.get("collected")),
            succeeded=int(d.get("succeeded", 0)),
            failed=int(d.get("failed", 0)),
        )


# ---- which endpoints go through a batch ------------------------------------------------------------


def batch_route(ep: Endpoint, litellm: Any | None = None) -> tuple[str, str] | str:
    """(LiteLLM batch provider, model name for the request body) for an endpoint bsa can batch, else
    the reason it cannot, in a few words."""
    if ep.cache_id:
        return "a server bsa starts itself (llama.cpp, vllm serve) has no batch API"
    litellm = litellm or import_litellm()
    try:
        name, provider, _, _ = litellm.get_llm_provider(ep.model, api_base=ep.api_base)
    except Exception:
        return f"LiteLLM cannot route the model string {ep.model!r}"
    if provider == "openai":
        return "openai", name
    if provider == "azure":
        return "azure", name  # the deployment name
    if provider in ("hosted_vllm", "litellm_proxy"):
        if not ep.api_base:
            return f"{provider}/ needs an api_base to send a batch to"
        return "openai", name  # an OpenAI-compatible server that serves /v1/files and /v1/batches
    return _NOT_ROUTED.get(provider, f"LiteLLM 1.106 has no batch API for provider {provider!r}")


def supports_batch(ep: Endpoint) -> bool | str:
    """True when ``ep``'s requests can go through a batch; else the reason, for the plan."""
    route = batch_route(ep)
    return True if isinstance(route, tuple) else route


# ---- batch files ---------------------------------------------------------------------------------


_MAX_COMPLETION_TOKENS = ("o1", "o3", "o4", "gpt-5")  # OpenAI models that refuse max_tokens


def request_line(req: Request, model_name: str, provider: str = "openai") -> dict[str, Any]:
    """One line of a batch input file: the chat-completions body online LiteLLM would send."""
    params = dict(req.params)
    extra = params.pop("extra_body", None) or {}
    if provider in ("openai", "azure") and model_name.startswith(_MAX_COMPLETION_TOKENS):
        if "max_tokens" in params:  # LiteLLM renames it online for these models; so must we
            params["max_completion_tokens"] = params.pop("max_tokens")
    body = {"model": model_name, "messages": req.messages, **params, **extra}
    return {"custom_id": req.cache_key(), "method": "POST", "url": URL, "body": body}


def chunk(lines: list[bytes], max_requests: int, max_bytes: int = MAX_FILE_BYTES) -> list[list[bytes]]:
    """Split encoded lines into files of at most ``max_requests`` lines and ``max_bytes`` bytes."""
    if max_requests < 1:
        raise ValueError(f"judge.batch_max_requests={max_requests}: must be at least 1")
    chunks: list[list[bytes]] = []
    size = 0
    for line in lines:
        if len(line) > max_bytes:
            raise ValueError(f"one batch line is {len(line)} bytes, over the {max_bytes}-byte file limit")
        if not chunks or len(chunks[-1]) >= max_requests or size + len(line) > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line)
    return chunks


# ---- state file ----------------------------------------------------------------------------------


def load_state(path: Path) -> list[_Batch]:
    if not path.is_file():
        return []
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return [_Batch.from_json(b) for b in d.get("batches", [])]
    except (ValueError, KeyError, TypeError) as e:
        raise BatchError(
            f"batch state file {path} cannot be read ({_short(e, 120)}); it lists batches already paid "
            "for: mend it, or delete it to submit them again"
        ) from None


def save_state(path: Path, batches: list[_Batch]) -> None:
    d = {"version": STATE_VERSION, "batches": [b.to_json() for b in batches]}
    atomic_write(path, json.dumps(d, indent=1) + "\n")


# ---- LiteLLM calls -------------------------------------------------------------------------------


def _auth(ep: Endpoint, provider: str, client: Client) -> dict[str, Any]:
    kw: dict[str, Any] = {"custom_llm_provider": provider, "timeout": client.timeout_s}
    if ep.api_base:
        kw["api_base"] = ep.api_base
    key = ep.api_key()
    if key:
        kw["api_key"] = key
    elif ep.api_base and provider == "openai":
        kw["api_key"] = "no-key"  # the openai SDK refuses to send without one; a keyless server ignores it
    return kw


async def _submit(
    litellm: Any, client: Client, ep: Endpoint, provider: str, lines: list[bytes], keys: list[str]
) -> _Batch:
    kw = _auth(ep, provider, client)
    # No SDK retries on the POSTs: a retried create whose first answer was lost is a second batch.
    f = await litellm.acreate_file(
        file=("bsa-judge-batch.jsonl", b"".join(lines)), purpose="batch", max_retries=0, **kw
    )
    created = await litellm.acreate_batch(
        completion_window="24h",
        endpoint=URL,
        input_file_id=f.id,
        metadata={"source": "bsa"},
        max_retries=0,
        **kw,
    )
    return _Batch(
        id=created.id, endpoint=ep, provider=provider, keys=keys, input_file_id=f.id, status=created.status
    )


async def _content(litellm: Any, client: Client, b: _Batch, file_id: str) -> list[dict[str, Any]]:
    got = await litellm.afile_content(file_id=file_id, **_auth(b.endpoint, b.provider, client))
    raw = got.content if hasattr(got, "content") else bytes(got)
    rows = []
    for text in raw.decode("utf-8").splitlines():
        if text.strip():
            try:
                rows.append(json.loads(text))
            except ValueError:
                log.warning("batch %s: an output line is not JSON; its request goes online", b.id)
    return rows


def _batch_cost(litellm: Any, usage: Any, ep: Endpoint, provider: str) -> float | None:
    """LiteLLM's batch price (the model's *_batches rates, else half the online ones); None unpriced."""
    if usage is None:
        return None
    try:
        litellm.get_model_info(model=ep.model)
        from litellm.cost_calculator import batch_cost_calculator

        prompt, completion = batch_cost_calculator(usage, ep.model)
        return float(prompt + completion)
    except Exception:
        return None


def to_completion(litellm: Any, body: dict[str, Any], ep: Endpoint, provider: str) -> Completion:
    """A batch output line's chat-completion body as the Completion an online call would have made
    (LiteLLM's own conversion: reasoning_content, a leading <think> split off, usage)."""
    from litellm.utils import convert_to_model_response_object

    resp = convert_to_model_response_object(
        response_object=body, model_response_object=litellm.ModelResponse(), hidden_params={}
    )
    resp._hidden_params["response_cost"] = _batch_cost(litellm, getattr(resp, "usage", None), ep, provider)
    return _to_completion(resp, 0.0, litellm)


# ---- the entry point -----------------------------------------------------------------------------


async def prefetch(
    client: Client,
    requests: list[Request],
    state_path: Path,
    *,
    poll_s: float,
    max_requests: int,
    on_progress: Callable[[str], None] | None = None,
    max_bytes: int = MAX_FILE_BYTES,
) -> BatchReport:
    """Answer ``requests`` through batches into ``client``'s cache; what is left goes online."""
    t0 = time.perf_counter()
    report = BatchReport()
    say = on_progress or (lambda line: None)

    def note(line: str) -> None:
        report.notes.append(line)
        say(line)

    by_key: dict[str, Request] = {}
    for req in requests:
        by_key.setdefault(req.cache_key(), req)
    if getattr(client, "_cache", None) is None:
        note("batch judging needs the cache (cache.enabled=true): judging online")
        report.online = len(by_key)
        report.wall_s = round(time.perf_counter() - t0, 3)
        return report
    pending = {k: r for k, r in by_key.items() if not client.cached(r)}
    report.cached = len(by_key) - len(pending)

    state = load_state(state_path)
    open_batches: list[_Batch] = []
    for b in state:
        waiting = [k for k in b.keys if k in pending]
        for k in b.keys:  # a key a batch already holds is never submitted again (its failures go online)
            pending.pop(k, None)
        if not b.collected and waiting:
            open_batches.append(b)
            report.resumed += len(waiting)
            report.batch_ids.append(b.id)
            say(f"batch {b.id}: resumed ({len(waiting)} requests still to collect)")

    litellm = import_litellm() if (pending or open_batches) else None
    groups: dict[Endpoint, list[Request]] = {}
    for req in pending.values():
        groups.setdefault(req.endpoint, []).append(req)
    for ep, reqs in groups.items():
        label = f"{ep.role} {ep.model}"
        route = batch_route(ep, litellm)
        if isinstance(route, str):
            note(f"{label}: no batch ({route}); its {len(reqs)} requests are judged online")
            report.online += len(reqs)
            continue
        provider, model_name = route
        lines = [
            json.dumps(request_line(r, model_name, provider), ensure_ascii=False).encode() + b"\n"
            for r in reqs
        ]
        keys = [r.cache_key() for r in reqs]
        sent = 0
        for part in chunk(lines, max_requests, max_bytes):
            part_keys = keys[sent : sent + len(part)]
            why = _refusal(client, len(part))
            if why is None:
                try:
                    b = await _submit(litellm, client, ep, provider, part, part_keys)
                except Exception as e:  # no batch API there, a bad key, ...: the online stage says
                    why = _redact(f"{type(e).__name__}: {_short(e, 200)}", _key_or_none(ep))
            if why is not None:
                rest = len(reqs) - sent
                note(f"{label}: batch not submitted ({why}); its {rest} requests are judged online")
                report.online += rest
                break
            client.stats.requests += len(part)  # batch lines are model calls, for max_requests too
            state.append(b)
            save_state(state_path, state)  # before any poll: a restart resumes, never pays twice
            open_batches.append(b)
            report.batch_ids.append(b.id)
            report.submitted += len(part)
            sent += len(part)
            say(f"batch {b.id}: submitted {len(part)} requests ({label})")

    try:
        await _follow(litellm, client, open_batches, state, state_path, by_key, poll_s, report, note, say)
    finally:
        report.wall_s = round(time.perf_counter() - t0, 3)
    return report


def _refusal(client: Client, n: int) -> str | None:
    """Why no batch of ``n`` requests may be sent now (the client is stopping, or the request budget
    would be crossed), else None."""
    if client.stop_reason is not None:
        return f"stopping: {client.stop_reason}"
    room = client.policy.requests_left(client.stats.requests)
    if room is not None and n > room:
        return f"max_requests={client.policy.max_requests} leaves room for {room}"
    return None


def _key_or_none(ep: Endpoint) -> str | None:
    try:
        return ep.api_key()
    except ModelCallError:
        return None


async def _follow(
    litellm: Any,
    client: Client,
    open_batches: list[_Batch],
    state: list[_Batch],
    state_path: Path,
    by_key: dict[str, Request],
    poll_s: float,
    report: BatchReport,
    note: Callable[[str], None],
    say: Callable[[str], None],
) -> None:
    """Poll the open batches every ``poll_s`` until each has ended and its answers are stored."""
    while open_batches:
        if client.stop_reason is not None:
            report.stopped = client.stop_reason
            left = len(open_batches)
            note(f"stopping ({client.stop_reason}): {left} batches left running; rerun to collect them")
            return
        polled = await asyncio.gather(
            *(
                litellm.aretrieve_batch(batch_id=b.id, **_auth(b.endpoint, b.provider, client))
                for b in open_batches
            ),
            return_exceptions=True,
        )
        for b, got in zip(list(open_batches), polled, strict=True):
            if isinstance(got, BaseException):
                if not isinstance(got, Exception):
                    raise got  # cancellation, Ctrl-C: the state file stays for a restart
                b.poll_errors += 1
                if b.poll_errors >= POLL_ERRORS:
                    raise BatchError(
                        f"batch {b.id}: {b.poll_errors} polls in a row failed ({type(got).__name__}: "
                        f"{_short(got, 160)}); it is kept in {state_path}, rerun to resume it"
                    ) from None
                continue
            b.poll_errors = 0
            b.status = str(got.status)
            counts = got.request_counts
            done = getattr(counts, "completed", 0) or 0
            failed = getattr(counts, "failed", 0) or 0
            total = getattr(counts, "total", 0) or len(b.keys)
            tail = f", {failed} failed" if failed else ""
            if b.status not in TERMINAL:
                say(f"batch {b.id}: {done}/{total} done{tail} ({b.status})")  # progress, not a note
                continue
            await _collect(litellm, client, b, got, by_key, report, note)
            b.collected = True
            save_state(state_path, state)
            open_batches.remove(b)
        if open_batches:
            await _sleep(client, poll_s)


async def _sleep(client: Client, seconds: float) -> None:
    """Sleep ``seconds``, waking early when the client is told to stop."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0 and client.stop_reason is None:
        await asyncio.sleep(min(left, 1.0))


async def _collect(
    litellm: Any,
    client: Client,
    b: _Batch,
    got: Any,
    by_key: dict[str, Request],
    report: BatchReport,
    note: Callable[[str], None],
) -> None:
    """Store every answer of a finished batch; count the lines it did not answer."""
    answered: set[str] = set()
    first_error = ""
    for attr, ok in (("output_file_id", True), ("error_file_id", False)):
        file_id = getattr(got, attr, None)
        if not file_id:
            continue
        rows = await _retrying(lambda fid=file_id: _content(litellm, client, b, fid), b, client)
        for row in rows:
            key = row.get("custom_id")
            resp = row.get("response") or {}
            body = resp.get("body") if isinstance(resp, dict) else None
            if ok and resp.get("status_code") == 200 and isinstance(body, dict) and body.get("choices"):
                req = by_key.get(key) if isinstance(key, str) else None
                if req is None or key in answered:
                    continue  # a key this run does not ask for (or twice): nothing to store it under
                try:
                    completion = to_completion(litellm, body, b.endpoint, b.provider)
                except Exception as e:
                    first_error = first_error or f"unreadable answer ({_short(e, 120)})"
                    continue
                await client.store(req, completion)
                answered.add(key)
            elif not first_error:
                err = row.get("error") or (body or {}).get("error") or {}
                first_error = str(err.get("message") if isinstance(err, dict) else err)[:160]
    errors = getattr(got, "errors", None)
    if not first_error and errors is not None and getattr(errors, "data", None):
        first_error = str(getattr(errors.data[0], "message", errors.data[0]))[:160]
    relevant = [k for k in b.keys if k in by_key]
    b.succeeded = len(answered)
    b.failed = len([k for k in relevant if k not in answered])
    report.succeeded += b.succeeded
    report.failed += b.failed
    line = f"batch {b.id}: {b.status}, {b.succeeded} answers stored"
    if b.failed:
        line += f", {b.failed} lines failed and go online"
        line += f" (first: {first_error})" if first_error else ""
    note(line)


async def _retrying(fetch: Callable[[], Any], b: _Batch, client: Client) -> list[dict[str, Any]]:
    """A download, tried a few times: the batch is paid for, its answers are worth a wait."""
    for attempt in range(1, POLL_ERRORS + 1):
        try:
            return await fetch()
        except Exception as e:
            if attempt == POLL_ERRORS:
                raise BatchError(
                    f"batch {b.id}: its results could not be downloaded ({type(e).__name__}: "
                    f"{_short(e, 160)}); it is kept in the state file, rerun to collect it"
                ) from None
            await asyncio.sleep(min(2.0**attempt, client.max_wait_s))
    return []
