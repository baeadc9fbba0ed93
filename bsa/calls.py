"""Model calls as data: the one shape shared by generation and judging.

A call stage owns keys (a sample for generation; a sample and a kind for a judgment). For a key it
builds the first ``Request`` (or none, when a rule decides), and it reads each reply into the key's
row, returning the next request (a re-ask) or None when the row is finished. Because requests are
values, the same ones can be looked up in the cache for a plan, sent online, put in a batch file, or
merged into one ``n=k`` call, and the cache holds one entry per request whichever way it went.

What the pipeline sees of a stage is a ``Stage``: a key in, its finished row out (``run``), the same
on the cache alone (``replay``), and the key's first requests (``first_requests``: for a plan, a
cost estimate or a batch file). One call stage is a ``Stage`` through ``Single``; a judge ensemble
(bsa/judge.py) is one by driving its members' call stages at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from bsa.llm import Client, Completion, Request

Row = dict[str, Any]
K_contra = TypeVar("K_contra", contravariant=True)
K = TypeVar("K")


class CallStage(Protocol[K_contra]):
    role: str  # model | judge: whose limits and window its calls use

    def start(self, key: K_contra) -> tuple[Row, Request | None]:
        """The key's row so far and its first request; None when no call is needed."""
        ...

    def read(self, row: Row, req: Request, completion: Completion) -> Request | None:
        """Take the reply to ``req`` into ``row``; return the next request, or None when done."""
        ...


async def drive(client: Client, stage: CallStage[K_contra], key: K_contra) -> Row:
    """One key through the client, attempt after attempt, to its finished row."""
    row, req = stage.start(key)
    while req is not None:
        req = stage.read(row, req, await client.complete(req))
    return row


@dataclass(frozen=True)
class Replayed:
    """A key driven on the cache alone: its row, finished when ``missing`` is None."""

    row: Row
    first: Request | None  # the key's first request; None when a rule decided without a call
    missing: Request | None  # the first request the cache lacks; None when the row is finished
    answers: int  # cached answers read into the row

    @property
    def finished(self) -> bool:
        return self.missing is None


def replay(client: Client, stage: CallStage[K_contra], key: K_contra) -> Replayed:
    """``drive`` without a call: as far as the cache holds the answers (a plan's look at a key, and
    the whole row when every attempt is cached, so that it lands without a job)."""
    row, first = stage.start(key)
    req, answers = first, 0
    while req is not None:
        hit = client.lookup(req)
        if hit is None:
            return Replayed(row, first, req, answers)
        answers += 1
        req = stage.read(row, req, hit)
    return Replayed(row, first, None, answers)


@dataclass(frozen=True)
class Cached:
    """A key of a ``Stage`` as far as the cache holds it, without a call."""

    row: Row | None  # the finished row when every attempt it needs is cached (or a rule decided)
    firsts: tuple[Request, ...]  # its first requests (one per member; none when a rule decides)
    first_cached: int  # of which the cache holds the answer
    answers: int  # cached answers read into the row


class Stage(Protocol[K_contra]):
    """What the pipeline drives, whichever the role: generation and judging alike."""

    role: str  # model | judge: whose limits and window its calls use
    width: int  # first requests a key needs at most (an ensemble's members; else 1)

    async def run(self, client: Client, key: K_contra) -> Row:
        """The key's finished row, through the client."""
        ...

    def replay(self, client: Client, key: K_contra) -> Cached:
        """The key as far as the cache holds it, without a call."""
        ...

    def first_requests(self, key: K_contra) -> list[Request]:
        """The key's first requests, without a call or a cache look-up."""
        ...


def cached(replays: list[Replayed], row: Row | None) -> Cached:
    """What call stages replayed for one key (``row``: theirs combined, when all are finished)."""
    firsts = tuple(r.first for r in replays if r.first is not None)
    first_cached = sum(r.first is not None and r.missing is not r.first for r in replays)
    return Cached(row, firsts, first_cached, sum(r.answers for r in replays))


class Single(Generic[K]):
    """One call stage as a ``Stage``: its key driven attempt after attempt (``drive``)."""

    width = 1

    def __init__(self, stage: CallStage[K]) -> None:
        self.stage, self.role = stage, stage.role

    async def run(self, client: Client, key: K) -> Row:
        return await drive(client, self.stage, key)

    def replay(self, client: Client, key: K) -> Cached:
        got = replay(client, self.stage, key)
        return cached([got], got.row if got.finished else None)

    def first_requests(self, key: K) -> list[Request]:
        req = self.stage.start(key)[1]
        return [] if req is None else [req]
