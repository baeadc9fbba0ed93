"""The answer cache that every run, sweep point and process pointing at one directory shares.

- First write wins: an entry, once stored, never changes. A caller whose answer lost the race gets the
  stored one, so every run dir that used a key agrees with the cache and with each other.
- One call per key at a time. Within a process, coroutines asking the same key share one future.
  Across processes, the caller that atomically takes the key's lease (a row with an expiry in
  ``leases.db`` beside the answers) calls; the others poll, without blocking the event loop, until
  the answer appears. A holder renews its leases while it calls and releases each on success,
  failure and cancellation; a holder that dies (SIGKILL) is taken over at once when its pid is gone
  on this host, else at expiry.
- Leases are only taken after a miss, so a hit costs one read, as before. They live in a plain SQLite
  table of their own, one statement per take or release: a third of the CPU of a diskcache write,
  paid twice per call.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("bsa.cache")

LEASE_S = 30.0  # a holder renews every third of this; a hung or remote dead holder blocks this long
LEASES_DB = "leases.db"
_POLL_S = 0.02  # first wait for an answer another caller is fetching; doubles up to _POLL_MAX_S
_POLL_MAX_S = 0.5
_BUSY_S = 60.0  # how long a statement waits for another process's write to the lease table

Value = dict[str, Any]


class Source(enum.Enum):
    CALLED = "called"  # this caller called, and its answer is the stored one
    ADOPTED = "adopted"  # this caller called, but an answer was stored first: the stored one is used
    WAITED = "waited"  # another caller (coroutine or process) was fetching it: no call made here


@dataclass(frozen=True)
class Fetched:
    value: Value
    source: Source


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: a process on a host, and a token per cache object in it."""

    pid: int
    host: str
    token: str

    def __str__(self) -> str:
        return f"{self.host}\t{self.pid}\t{self.token}"

    @classmethod
    def parse(cls, text: str) -> Holder:
        host, pid, token = text.split("\t")
        return cls(int(pid), host, token)

    @classmethod
    def me(cls) -> Holder:
        return cls(os.getpid(), socket.gethostname(), uuid.uuid4().hex)


class Leases:
    """The lease table of a cache directory: key -> (holder, expiry), shared by every process."""

    def __init__(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level=None): each statement is its own atomic transaction.
        self._con = sqlite3.connect(
            str(Path(directory) / LEASES_DB), timeout=_BUSY_S, isolation_level=None, check_same_thread=False
        )
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS lease "
            "(key TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL)"
        )

    def close(self) -> None:
        self._con.close()

    def take(self, key: str, holder: Holder, lease_s: float) -> bool:
        """Take the key's lease if nobody holds it or its holder's lease expired (one statement)."""
        now = time.time()
        cur = self._con.execute(
            "INSERT INTO lease (key, holder, expires) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            "holder = excluded.holder, expires = excluded.expires WHERE lease.expires < ?",
            (key, str(holder), now + lease_s, now),
        )
        return cur.rowcount == 1

    def holder(self, key: str) -> Holder | None:
        """The key's holder while its lease runs; None when it is free or expired."""
        row = self._con.execute(
            "SELECT holder FROM lease WHERE key = ? AND expires >= ?", (key, time.time())
        ).fetchone()
        return Holder.parse(row[0]) if row else None

    def swap(self, key: str, old: Holder, new: Holder, lease_s: float) -> bool:
        """Compare and swap: ``new`` takes the lease only if ``old`` still holds it."""
        cur = self._con.execute(
            "UPDATE lease SET holder = ?, expires = ? WHERE key = ? AND holder = ?",
            (str(new), time.time() + lease_s, key, str(old)),
        )
        return cur.rowcount == 1

    def release(self, key: str, holder: Holder) -> None:
        # Only our own lease: ours may have expired during a stall and been taken by another caller.
        self._con.execute("DELETE FROM lease WHERE key = ? AND holder = ?", (key, str(holder)))

    def renew(self, holder: Holder, lease_s: float) -> int:
        """Extend every lease ``holder`` still holds (released ones are gone); how many."""
        cur = self._con.execute(
            "UPDATE lease SET expires = ? WHERE holder = ?", (time.time() + lease_s, str(holder))
        )
        return cur.rowcount

    def held(self) -> dict[str, Holder]:
        """Every running lease: key -> holder (what a cache directory is fetching right now)."""
        rows = self._con.execute("SELECT key, holder FROM lease WHERE expires >= ?", (time.time(),))
        return {key: Holder.parse(h) for key, h in rows}


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
        # cull_limit=0: no sweep for expired rows on every write (nothing here expires), a measured
        # tenth of a write's CPU.
        self._store = diskcache.Cache(directory, eviction_policy="none", size_limit=2**50, cull_limit=0)
        self._leases = Leases(directory)
        self.lease_s = lease_s
        # The token tells this cache's leases from those of another Client in the same process.
        self._holder = Holder.me()
        self._pending: dict[str, asyncio.Future[Value]] = {}
        self._holding = 0  # leases held now; one task renews them all while there are any
        self._renewer: asyncio.Task[None] | None = None

    def get(self, key: str) -> Value | None:
        return self._store.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._store

    def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        self._store.close()
        self._leases.close()

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
        delay = _POLL_S
        while not self._take(key):
            await asyncio.sleep(delay)
            delay = min(2 * delay, _POLL_MAX_S)
            value = self._store.get(key)
            if value is not None:
                return Fetched(value, Source.WAITED)
        self._hold()
        try:
            value = self._store.get(key)  # stored between the caller's miss and our lease
            if value is not None:
                return Fetched(value, Source.WAITED)
            mine = await call()
            added = self._store.add(key, mine)
            stored = mine if added else self._store.get(key)
            if stored is None:  # unreachable without eviction; never lose the answer we paid for
                stored, added = mine, True
            return Fetched(stored, Source.CALLED if added else Source.ADOPTED)
        finally:
            # Stored, failed, stopped or cancelled: released after the answer is in, so a waiter that
            # sees the lease gone finds the answer, or calls itself.
            self._holding -= 1
            self._leases.release(key, self._holder)

    def _take(self, key: str) -> bool:
        """Take the key's lease; or take it over from a holder whose process is gone from this host."""
        if self._leases.take(key, self._holder, self.lease_s):
            return True
        holder = self._leases.holder(key)
        if holder is None:  # released or expired since the take
            return self._leases.take(key, self._holder, self.lease_s)
        if holder.host != self._holder.host or not _pid_gone(holder.pid):
            return False
        if not self._leases.swap(key, holder, self._holder, self.lease_s):
            return False  # another waiter took it over first
        log.warning("cache: took over %s… from pid %s, which is no longer running", key[:12], holder.pid)
        return True

    def _hold(self) -> None:
        self._holding += 1
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        while self._holding:
            await asyncio.sleep(self.lease_s / 3)
            try:
                self._leases.renew(self._holder, self.lease_s)
            except sqlite3.OperationalError:
                continue  # the table is busy; the leases still have two thirds of their time
