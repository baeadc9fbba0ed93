"""When a run stops launching calls: the one place that holds its budgets and its failure policy.

A budget (``max_requests``: network requests, retries and batch lines included; ``max_cost_usd``:
dollars spent), a fatal error, a run of consecutive failures of one role, a full disk, the reasoning
guard or Ctrl-C stops the run: no new call is launched, calls in flight may finish. The first reason
given wins. The client consults the policy before each network request (``launch``) and after each
priced answer (``spent``); the scheduler reports each job's outcome (``succeeded``, ``failed``) and
asks whether to launch more (``stopping``) or to give up on calls in flight (``over_grace``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bsa.provider import ModelCallError, TransientFailure

Row = dict[str, Any]


@dataclass
class StopPolicy:
    max_requests: int | None = None  # budget: network requests for this run
    max_cost_usd: float | None = None  # budget: USD spent, per the answers' prices
    max_consecutive_failures: int = 20  # calls in a row of one role that exhausted their retries
    grace_s: float = 120.0  # after an announced stop, how long calls in flight may finish
    reason: str | None = None  # why the run stops; None while it runs
    failures: list[Row] = field(default_factory=list)
    # Failures in a row per role: a model that answers must not hide a judge that is down.
    consecutive: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False  # a second Ctrl-C or SIGTERM: stop at once
    stopped_at: float | None = None  # when an announced stop began (the grace period's start)

    @property
    def stopping(self) -> bool:
        return self.reason is not None or self.interrupted

    def stop(self, reason: str, announce: bool = True) -> None:
        """Launch no new call from now on (the first reason wins). Announced: said on the console, and
        the grace period of calls in flight starts. A budget reached inside the client is not announced
        (as before this policy had a place of its own: the run's summary names it)."""
        if self.reason is not None:
            return
        self.reason = reason
        if not announce:
            return
        self.stopped_at = time.monotonic()
        from rich.markup import escape  # a provider's error text is not markup

        from bsa import console

        end = "" if reason.endswith((".", "?", "!")) else "."
        console.console.print(f"[yellow]Stopping: {escape(reason)}{end} Calls in flight may finish.[/]")

    # -- budgets: what the client asks -----------------------------------------------------------------
    def requests_left(self, requests: int) -> int | None:
        """Network requests the budget still allows after ``requests``; None: no request budget."""
        return None if self.max_requests is None else self.max_requests - requests

    def launch(self, requests: int) -> str | None:
        """Why no further network request may go after ``requests`` (reaching ``max_requests`` stops
        the run), else None."""
        if self.reason is None:
            left = self.requests_left(requests)
            if left is not None and left <= 0:
                self.stop(f"max_requests={self.max_requests} reached", announce=False)
        return self.reason

    def spent(self, cost_usd: float) -> None:
        """The run's spending so far: reaching ``max_cost_usd`` stops it."""
        if self.max_cost_usd is not None and cost_usd >= self.max_cost_usd:
            self.stop(f"max_cost_usd={self.max_cost_usd} reached (spent {cost_usd:.4f})", announce=False)

    # -- failures: what the scheduler reports ------------------------------------------------------------
    def succeeded(self, role: str) -> None:
        self.consecutive[role] = 0

    def failed(self, role: str, key: Row, exc: ModelCallError) -> None:
        self.failures.append({**key, "error": str(exc), "type": type(exc).__name__})
        if not isinstance(exc, TransientFailure):
            self.stop(f"fatal error: {exc}")
            return
        n = self.consecutive[role] = self.consecutive.get(role, 0) + 1
        if n >= self.max_consecutive_failures:
            self.stop(f"{n} calls in a row failed after all retries (last: {exc})")

    def over_grace(self) -> bool:
        return self.stopped_at is not None and time.monotonic() - self.stopped_at > self.grace_s
