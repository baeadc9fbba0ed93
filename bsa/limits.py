"""How many calls an endpoint may have in flight, and how many it may start per minute.

Pure asyncio, no I/O. ``Limiter`` is a semaphore whose size can change while calls wait on it:

- Adaptive (AIMD, as TCP): a rate-limit signal (a 429, or any answer carrying Retry-After) halves the
  limit; ``limit`` successes in a row raise it by one, back up to the configured maximum. One overload
  makes every call then in flight fail together, so a signal counts only when the call was launched
  after the last cut (its *epoch*): a burst of 429s halves the limit once, not down to 1.
- Fixed (``adaptive=False``): the limit stays at the maximum.
- An optional requests-per-minute cap (``aiolimiter.AsyncLimiter``), taken once a slot is held, so a
  call waiting for the rate never holds more than its own slot.

Every change is logged (logger ``bsa.limits``: a cut as a warning, a step back up at INFO, shown with
``-v``) and kept in ``history`` (seconds since the
limiter was made, old, new, reason) for run.json.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("bsa.limits")


def rate_limiter(rpm: int | None) -> Any:
    """An ``aiolimiter.AsyncLimiter`` for ``rpm`` requests per minute; None for no cap. The bucket holds
    at most a tenth of a minute's requests (at least 1), so a cold start cannot spend a whole minute's
    allowance in one burst."""
    if rpm is None:
        return None
    if rpm < 1:
        raise ValueError(f"rpm={rpm}: must be at least 1 request per minute (or null for no cap)")
    from aiolimiter import AsyncLimiter

    burst = max(1, rpm // 10)
    return AsyncLimiter(burst, 60.0 * burst / rpm)


class Limiter:
    """Calls in flight to one endpoint: at most ``limit`` (``max_limit`` when not adaptive)."""

    def __init__(
        self,
        label: str,
        max_limit: int,
        *,
        adaptive: bool = True,
        rpm: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_limit < 1:
            raise ValueError(f"{label}: a limit of {max_limit} calls in flight; must be at least 1")
        self.label = label
        self.max_limit = max_limit
        self.limit = max_limit
        self.adaptive = adaptive
        self.rpm = rpm
        self._rate = rate_limiter(rpm)
        self._clock = clock
        self._t0 = clock()
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._epoch = 0  # bumped at each cut: signals from calls launched before it are the same overload
        self._streak = 0  # successes in a row since the last change
        self.history: list[dict[str, Any]] = []

    # -- slots ----------------------------------------------------------------------------------
    async def acquire(self) -> int:
        """Wait for a slot (and the rpm cap); returns the epoch to hand back with the call's outcome."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
        else:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut  # the releaser counted this slot as ours before waking us
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self.release()  # woken and cancelled at once: pass the slot on
                else:
                    self._waiters.remove(fut)
                raise
        if self._rate is not None:
            try:
                await self._rate.acquire()
            except BaseException:
                self.release()
                raise
        return self._epoch

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    # -- outcomes -------------------------------------------------------------------------------
    def succeeded(self) -> None:
        """A call returned: after ``limit`` of them in a row the limit climbs by one."""
        if not self.adaptive or self.limit >= self.max_limit:
            return
        self._streak += 1
        if self._streak >= self.limit:
            self._change(self.limit + 1, f"{self._streak} successes in a row")

    def overloaded(self, epoch: int, why: str) -> None:
        """The endpoint said slow down (429, Retry-After) to a call launched at ``epoch``: halve the
        limit, once per overload."""
        if not self.adaptive:
            return
        self._streak = 0
        if epoch != self._epoch:
            return  # launched before the last cut: part of the overload already counted
        self._epoch += 1
        if self.limit > 1:
            self._change(max(1, self.limit // 2), why)

    def _change(self, new: int, reason: str) -> None:
        old, self.limit, self._streak = self.limit, new, 0
        self.history.append(
            {"t": round(self._clock() - self._t0, 3), "old": old, "new": new, "reason": reason}
        )
        # A cut is news (the provider pushed back: once per overload); each step back up is routine.
        level = logging.WARNING if new < old else logging.INFO
        log.log(level, "%s: calls in flight %d → %d (%s)", self.label, old, new, reason)
        self._wake()
