"""The answer cache that every run, sweep point and process pointing at one directory shares.

- First write wins: an entry, once stored, never changes. A caller whose answer lost the race gets the
  stored one, so every run dir that used a key agrees with the cache and with each other.
- One call per key at a time. Within a process, coroutines asking the same key share one future.
  Across processes, the caller that atomically adds the key's lease (a diskcache entry with an
  expiry) calls; the others poll, without blocking the event loop, until the answer appears. A holder
  renews its lease while it calls and releases it on success, failure and cancellation; a holder
  that dies (SIGKILL) is taken over at once when its pid is gone on this host, else at expiry.
- Leases are only taken after a miss, so a hit costs one read, as before.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("bsa.cache")

LEASE_S = 30.0  # a holder renews every third of this; a hung or remote dead holder blocks this long
LEASE_PREFIX = "lease:"  # answer keys are sha256 hex digests, so a lease key never collides with one
_POLL_S = 0.02  # first wait for an answer another caller is fetching; doubles up to _POLL_MAX_S
_POLL_MAX_S = 0.5

Value = dict[str, Any]


class Source(enum.Enum):
    CALLED = "called"  # this caller called, and its answer is the stored one
    ADOPTED = "adopted"  # this caller called, but an answer was stored first: the stored one is used
    WAITED = "waited"  # another caller (coroutine or process) was fetching it: no call made here


@dataclass(frozen=True)
class Fetched:
    value: Value
    source: Source


def lease_key(key: str) -> str:
    return LEASE_PREFIX + key


def _retrieve(fut: asyncio.Future[Value]) -> None:
    # Mark a failed shared future's exception as seen: its owner re-raises it, so asyncio's
    # "exception was never retrieved" warning would be noise when no other coroutine waited.
    if not fut.cancelled():
        fut.exception()


def _pid_gone(pid: int) -> bool:
    if os.name != "posix":
        return False  # os.kill(pid, 0) terminates the process on Windows: wait for expiry instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, under another user
    return False


class AnswerCache:
    def __init__(self, directory: str, lease_s: float = LEASE_S) -> None:
        import diskcache

        if not lease_s > 0:
            raise ValueError(f"lease_s={lease_s}: must be a positive number of seconds (default {LEASE_S})")
        # Never evict: diskcache's default (1 GiB, least-recently-stored) silently drops answers.
        # cull_limit=0: no sweep for expired rows on every write (a lease is released on every path
        # but a crash, and an expired one reads as absent), a measured tenth of a write's CPU.
        self._store = diskcache.Cache(directory, eviction_policy="none", size_limit=2**50, cull_limit=0)
        self._timeout = diskcache.Timeout
        self.lease_s = lease_s
        # The token tells this cache's leases from those of another Client in the same process.
        self._holder = {"pid": os.getpid(), "host": socket.gethostname(), "token": uuid.uuid4().hex}
        self._pending: dict[str, asyncio.Future[Value]] = {}

    def get(self, key: str) -> Value | None:
        return self._store.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._store

    def close(self) -> None:
        self._store.close()

    async def fetch(self, key: str, call: Callable[[], Awaitable[Value]]) -> Fetched:
        """The stored answer for a key the caller just missed: someone else's, or ``call()``'s."""
        while (pending := self._pending.get(key)) is not None:
            try:
                return Fetched(await asyncio.shield(pending), Source.WAITED)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if pending.cancelled() and not (task and task.cancelling()):
                    continue  # the coroutine we waited on was cancelled, not us: take over
                raise
        fut: asyncio.Future[Value] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_retrieve)
        self._pending[key] = fut
        try:
            got = await self._fetch_leased(key, call)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as e:
            fut.set_exception(e)  # same-key waiters fail as the owner did (Stopped, a bad request)
            raise
        finally:
            del self._pending[key]
        fut.set_result(got.value)
        return got

    async def _fetch_leased(self, key: str, call: Callable[[], Awaitable[Value]]) -> Fetched:
        lease = lease_key(key)
        delay = _POLL_S
        while not self._take(lease):
            await asyncio.sleep(delay)
            delay = min(2 * delay, _POLL_MAX_S)
            value = self._store.get(key)
            if value is not None:
                return Fetched(value, Source.WAITED)
        renewing = asyncio.create_task(self._renew(lease))
        settled = False
        try:
            value = self._store.get(key)  # stored between the caller's miss and our lease
            if value is not None:
                return Fetched(value, Source.WAITED)
            mine = await call()
            with self._store.transact():  # one write transaction: store, read back, release
                added = self._store.add(key, mine)
                stored = mine if added else self._store.get(key)
                self._release(lease)
                settled = True
            if stored is None:  # unreachable without eviction; never lose the answer we paid for
                stored, added = mine, True
            return Fetched(stored, Source.CALLED if added else Source.ADOPTED)
        finally:
            renewing.cancel()
            if not settled:
                self._release(lease)  # failed, stopped or cancelled: the next caller takes over now

    def _take(self, lease: str) -> bool:
        """Add the lease; or take it from a holder whose process is gone from this host."""
        if self._store.add(lease, self._holder, expire=self.lease_s):
            return True
        holder = self._store.get(lease)
        if holder is None:  # released or expired since the add
            return bool(self._store.add(lease, self._holder, expire=self.lease_s))
        if holder.get("host") != self._holder["host"] or not _pid_gone(int(holder.get("pid", 0))):
            return False
        with self._store.transact():  # compare and swap: one of the waiters takes it over
            if self._store.get(lease) != holder:
                return False
            self._store.set(lease, self._holder, expire=self.lease_s)
        log.warning(
            "cache: took over %s… from pid %s, which is no longer running",
            lease[len(LEASE_PREFIX) : len(LEASE_PREFIX) + 12],
            holder.get("pid"),
        )
        return True

    def _release(self, lease: str) -> None:
        # Only our own lease: ours may have expired during a stall and been taken by another caller.
        with self._store.transact():
            if self._store.get(lease) == self._holder:
                self._store.delete(lease)

    async def _renew(self, lease: str) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                with self._store.transact():
                    if self._store.get(lease) == self._holder:
                        self._store.touch(lease, expire=self.lease_s)
            except self._timeout:
                continue  # the database is busy; the lease still has two thirds of its time
