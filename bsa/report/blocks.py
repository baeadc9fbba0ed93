"""What the report's sections return: tables and a few kinds of text block, as plain data.

The renderers (``markdown``, ``html``, ``terminal``) turn these into text and import nothing of the
sections; a section (``agreement_section``, ``labels_section``, the pairs of ``outputs``) builds
blocks once and every output renders the same ones. A leaf: no import from bsa.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Union


@dataclass
class Table:
    id: str  # the HTML id ("" for none): tests and readers find a table by it
    headers: list[str]
    rows: list[list[str]]
    warn_rows: set[int] = field(default_factory=set)  # rows drawn as not comparable / incomplete
    wrap: frozenset[int] = frozenset({0})  # columns of text that may wrap; numbers never do
    kind: ClassVar[str] = "table"


# Inline parts of a paragraph or list item: text, or one of these.


@dataclass(frozen=True)
class Code:
    """A command to type: `code` in Markdown, <code> in HTML."""

    text: str
    kind: ClassVar[str] = "code"


@dataclass(frozen=True)
class Muted:
    """A side remark: plain in Markdown, grey in HTML."""

    text: str
    kind: ClassVar[str] = "muted"


Inline = Union[str, Code, Muted]  # noqa: UP007 - a runtime alias, kept readable on 3.10


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 3
    kind: ClassVar[str] = "heading"


@dataclass(frozen=True)
class Para:
    parts: tuple[Inline, ...]
    muted: bool = False  # the whole paragraph is a side remark (e.g. "not compared: …")
    kind: ClassVar[str] = "para"


@dataclass(frozen=True)
class Items:
    """A bulleted list of notes, one tuple of inline parts an item."""

    items: tuple[tuple[Inline, ...], ...]
    kind: ClassVar[str] = "items"


@dataclass(frozen=True)
class Fold:
    """Blocks a reader opens on demand (HTML: <details>); Markdown shows them under the summary."""

    summary: str
    blocks: tuple[Block, ...]
    kind: ClassVar[str] = "fold"


Block = Union[Heading, Para, Items, Table, Fold]  # noqa: UP007 - a runtime alias, kept readable on 3.10
