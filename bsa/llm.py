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
- Backends: the client reaches one only through ``bsa.provider.Provider`` (LiteLLM, a Python function;
  bsa/providers/): a request in, completions out, errors classified.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bsa.cache import LEASE_S, AnswerCache, Source
from bsa.limits import Limiter
from bsa.policy import StopPolicy
from bsa.provider import (
    CacheFull,
    Completion,
    Deployment,
    Endpoint,
    EndpointUnreachable,
    MalformedReply,
    ModelCallError,
    ModelSubstituted,
    OutOfQuota,
    Provider,
    ProviderRefused,
    Refusal,
    Request,
    ServerDied,
    Stopped,
    TransientFailure,
    _full,
    _redact,
    _root_cause,
    _short,
    _unreachable_message,
    endpoint_for,
    endpoint_label,
    provider_for,
)
from bsa.providers.litellm_api import (
    _to_completion,
    import_litellm,
    model_id,
    provider_base,
    refusal_of,
    same_model,
)

# Names other modules import from here (the client's public face; the types live in bsa.provider).
__all__ = [
    "CacheFull",
    "Client",
    "Completion",
    "Deployment",
    "Endpoint",
    "EndpointUnreachable",
    "ModelCallError",
    "ModelSubstituted",
    "OutOfQuota",
    "Refusal",
    "Request",
    "ServerDied",
    "Stats",
    "Stopped",
    "TransientFailure",
    "_redact",
    "_short",
    "_to_completion",
    "endpoint_for",
    "endpoint_label",
    "import_litellm",
    "model_id",
    "preflight",
    "provider_base",
    "refusal_of",
    "retry_summary_lines",
    "same_model",
]

log = logging.getLogger("bsa.llm")

# An endpoint that never answered and refused this many requests (with none in flight that could still
# answer) refuses the request itself, not the queries: a fatal error, as any 400 that every call gets.
REFUSED_ALL_AFTER = 5
# How long a refusal waits for its endpoint's first answer before it is recorded anyway (a run of a
# few queries that are all refused); most waits end at once with the first answer.
REFUSAL_HOLD_S = 60.0
# Failed connections to an endpoint that has never answered before it is declared down: enough to
# ride out one flaky DNS answer, few enough to stop within the first window of calls.
UNREACHABLE_AFTER = 5


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

    def count_retry(self, endpoint: str, error: BaseException, kind: str) -> None:
        """``kind``: what the retries are summed by (``error_kind``)."""
        self.retries += 1
        name = type(error).__name__
        self.by_error[name] = self.by_error.get(name, 0) + 1
        kinds = self.retries_by.setdefault(endpoint, {})
        kinds[kind] = kinds.get(kind, 0) + 1


def error_kind(exc: BaseException, how: str | None = None) -> str:
    """The exception type, plus how the connection failed when it did (``how``, the provider's
    reading): the unit retries are summed by."""
    return f"{type(exc).__name__}: {how}" if how else type(exc).__name__


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


@dataclass
class _Plan:
    """What every call to one endpoint shares, built once: nothing of it is rebuilt per call."""

    ep: Endpoint
    label: str
    provider: Provider
    kwargs: dict[str, Any]  # what every call shares (the provider's: model, timeout, api_base, key…)
    call: Any  # the provider's call (litellm.acompletion, a Router's, a Python function's wrapper)
    limiter: Limiter  # this endpoint's calls in flight (adaptive) and rpm
    role: Limiter  # the role's calls in flight over all its endpoints (fixed)
    api_key: str | None  # redacted from every message
    transient: tuple[type[BaseException], ...] = ()  # the provider's retryable errors, MalformedReply
    fatal: tuple[type[BaseException], ...] = ()
    before_sleep: Any = None
    retry_if: Any = None  # tenacity: retry this endpoint's transient errors only
    wait: Any = None  # tenacity: Retry-After where the provider sends one, else backoff
    refused_unproven: int = 0  # refusals while the endpoint had never answered


class Client:
    def __init__(
        self,
        cache_dir: str | None,
        concurrency: int | dict[str, int] = 8,
        timeout_s: float = 600.0,
        max_attempts: int = 6,
        max_wait_s: float = 60.0,
        policy: StopPolicy | None = None,
        lease_s: float = LEASE_S,
        adaptive: bool = True,
    ) -> None:
        """``concurrency``: calls in flight, one number for every role or one per role. It is each role's
        limit over all its endpoints and each endpoint's maximum; ``adaptive`` lets an endpoint's limit
        drop on 429s and climb back (False: fixed). Rates: ``Endpoint.rpm``, ``Deployment.rpm``.
        ``policy``: the run's budgets and stop switch, consulted before each request and after each
        priced answer (default: no budget)."""
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
        self.policy = policy if policy is not None else StopPolicy()
        self.stats = Stats()
        self._ready = False  # _setup has run (on the first call: tenacity is imported then)
        self._plans: dict[Endpoint, _Plan] = {}
        self._roles: dict[str, Limiter] = {}
        self._endpoint_limiters: dict[str, Limiter] = {}
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

    @property
    def stop_reason(self) -> str | None:
        """Why the run stops launching calls (its policy's reason); None while it runs."""
        return self.policy.reason

    def stop(self, reason: str) -> None:
        """Launch no new network call from now on; calls in flight finish (not announced)."""
        self.policy.stop(reason, announce=False)

    def _launch(self, ep: Endpoint) -> None:
        """Gate before each network request: stopping, or a budget that the request would cross."""
        why = self.policy.launch(self.stats.requests)
        if why is not None:
            raise Stopped(why)
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
        if not self._ready:
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
        if not self._ready:
            self._setup()
        if self.stop_reason is not None:
            raise Stopped(self.stop_reason)
        first = reqs[0]
        asked = dataclasses.replace(first, params={**first.params, "n": len(reqs)})
        try:
            completions = await self._send(asked)
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
        choices = [self._checked(first.endpoint, c) for c in completions[: len(reqs)]]
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
            self.policy.spent(st.cost_usd)

    # -- once per client / per endpoint ------------------------------------------------------------
    def _setup(self) -> None:
        """What every call of this client shares: its backoff and its bound on attempts."""
        from tenacity import stop_after_attempt, wait_random_exponential

        self._backoff = wait_random_exponential(multiplier=0.5, max=self.max_wait_s)
        self._stop_after = stop_after_attempt(self.max_attempts)
        self._ready = True

    # A fatal error type can also be a subclass of a transient one in some versions: fatal wins.
    def _is_transient(self, plan: _Plan, exc: BaseException) -> bool:
        return (
            isinstance(exc, plan.transient)
            and not isinstance(exc, plan.fatal)
            and not plan.provider.client_error(exc)
        )

    def _wait(self, plan: _Plan, state: Any) -> float:
        exc = state.outcome.exception() if state.outcome else None
        ra = plan.provider.retry_after_s(exc) if exc else None
        return min(ra, self.max_wait_s) if ra is not None else float(self._backoff(state))

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
        provider = provider_for(ep)
        kwargs, call = provider.prepare(ep, api_key, self.timeout_s)
        from tenacity import retry_if_exception

        plan = _Plan(ep, label, provider, kwargs, call, limiter, self._role_limiter(ep.role), api_key)
        plan.transient = (*provider.transient_types(), MalformedReply)
        plan.fatal = provider.fatal_types()
        plan.before_sleep = partial(self._before_sleep, plan)
        plan.retry_if = retry_if_exception(partial(self._is_transient, plan))
        plan.wait = partial(self._wait, plan)
        self._plans[ep] = plan
        return plan

    # -- calls ----------------------------------------------------------------------------------------
    def _before_sleep(self, plan: _Plan, state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is None:
            return
        self.stats.count_retry(plan.label, exc, error_kind(exc, plan.provider.connect_failure(exc)))
        # One line per retry floods the console under any fault rate: DEBUG (verbose=true) only;
        # the stage's progress line counts them and its end sums them per endpoint and kind.
        log.debug(
            "%s: %s (attempt %d/%d), retrying in %.1fs: %s",
            plan.label,
            error_kind(exc, plan.provider.connect_failure(exc)),
            state.attempt_number,
            self.max_attempts,
            state.next_action.sleep if state.next_action else 0.0,
            _redact(_short(exc, 200), plan.api_key),
        )

    def _check_reachable(self, plan: _Plan, exc: BaseException) -> None:
        """Declare the endpoint down after UNREACHABLE_AFTER failed connections and no answer ever: a
        wrong host or port fails the same way on every try of every call."""
        how = plan.provider.connect_failure(exc)
        label = plan.label
        if how is None or self.stats.answered_by.get(label):
            return
        n = self.stats.unreachable_by[label] = self.stats.unreachable_by.get(label, 0) + 1
        if n >= UNREACHABLE_AFTER:
            ep = plan.ep
            base = plan.provider.base(ep)
            message = _unreachable_message(
                ep, base, f"{how} on {n} tries, never an answer", _short(_root_cause(exc), 160)
            )
            raise EndpointUnreachable(_redact(message, plan.api_key)) from None

    async def _attempt(self, plan: _Plan, req: Request) -> list[Completion]:
        """One network request under the endpoint's and the role's limits: its answers, one per choice."""
        epoch = await plan.limiter.acquire()
        try:
            await plan.role.acquire()
            try:
                self._launch(plan.ep)
                t0 = time.perf_counter()
                try:
                    # The endpoint's settings win over a same-named request parameter, as they always have.
                    resp = await plan.call(**{**req.params, **plan.kwargs, "messages": req.messages})
                    completions = plan.provider.completions(resp, time.perf_counter() - t0)
                except plan.transient as e:
                    provider = plan.provider
                    if provider.out_of_quota(e):
                        raise OutOfQuota(_redact(self._quota_message(plan.ep, e), plan.api_key)) from None
                    if provider.retry_after_s(e) is not None or getattr(e, "status_code", None) == 429:
                        kind = error_kind(e, provider.connect_failure(e))
                        plan.limiter.overloaded(epoch, f"{kind} from the server")
                    self._server_died(plan)
                    self._check_reachable(plan, e)
                    raise
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
        return completions

    async def _retrying(self, plan: _Plan, req: Request, first: BaseException) -> list[Completion]:
        """The first attempt failed transiently: tenacity takes over, counting it as attempt 1."""
        from tenacity import AsyncRetrying

        pending = [first]
        async for attempt in AsyncRetrying(
            retry=plan.retry_if,
            stop=self._stop_after,
            wait=plan.wait,
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
            completions = await self._send(req)
        except ProviderRefused as e:
            return Completion.refused(e.refusal, time.perf_counter() - t0, "")
        return self._checked(req.endpoint, completions[0])

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

    async def _send(self, req: Request) -> list[Completion]:
        """The provider's answers to ``req``, retried on transient errors; what cannot succeed is a
        ModelCallError that says why."""
        plan = self._plan(req.endpoint)
        ep = plan.ep
        try:
            try:
                # Most calls succeed at once: no retry machinery is built for them.
                return await self._attempt(plan, req)
            except plan.transient as first:
                if not self._is_transient(plan, first) or self.max_attempts <= 1:
                    raise
                return await self._retrying(plan, req, first)
        except (EndpointUnreachable, OutOfQuota, ServerDied):
            self.stats.failures += 1
            raise
        except plan.fatal as e:
            raise await self._fatal_or_refused(plan, e) from None
        except plan.transient as e:
            if plan.provider.client_error(e):
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
        refusal = plan.provider.refusal(e)
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
    """Fail in seconds, before any call: a missing key, and what the endpoint's provider finds wrong
    (LiteLLM: a model string it cannot route, an api_base nobody answers on, a host that does not
    resolve; a Python function: one that cannot be imported)."""
    if ep.deployments:
        _preflight_deployments(ep, timeout_s)
        return
    ep.api_key()
    provider_for(ep).preflight(ep, timeout_s)


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
