"""Model calls as data: the one shape shared by generation and judging.

A call stage owns keys (a sample for generation; a sample and a kind for a judgment). For a key it
builds the first ``Request`` (or none, when a rule decides), and it reads each reply into the key's
row, returning the next request (a re-ask) or None when the row is finished. Because requests are
values, the same ones can be looked up in the cache for a plan, sent online, put in a batch file, or
merged into one ``n=k`` call, and the cache holds one entry per request whichever way it went.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from bsa.llm import Client, Completion, Request

Row = dict[str, Any]
K_contra = TypeVar("K_contra", contravariant=True)


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
