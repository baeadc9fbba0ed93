"""Markdown for the report's tables and blocks (``bsa.report.blocks``). A leaf: it imports nothing of
the report's sections (``outputs`` composes report.md from them)."""

from __future__ import annotations

import html
from collections.abc import Sequence

from bsa.report.blocks import Block, Code, Fold, Heading, Inline, Items, Muted, Para, Table


def md(s: str) -> str:
    """Run-derived text in Markdown: many renderers pass HTML through, and model names are untrusted."""
    return html.escape(s, quote=False)


def _md_cell(s: str) -> str:
    return md(s).replace("|", "\\|").replace("\n", " ")


def table_md(t: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in t.headers) + " |", "|" + "---|" * len(t.headers)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def spans_md(parts: Sequence[Inline]) -> str:
    """A paragraph's or item's parts: text escaped, a command in backticks (shown as typed)."""
    out = []
    for p in parts:
        if isinstance(p, Code):
            out.append(f"`{p.text}`")
        else:
            out.append(md(p.text if isinstance(p, Muted) else p))
    return "".join(out)


def blocks_md(blocks: Sequence[Block]) -> list[str]:
    """A section's blocks as Markdown lines, each block followed by a blank line; [] for none."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out += [f"{'#' * b.level} {md(b.text)}", ""]
        elif isinstance(b, Para):
            out += [spans_md(b.parts), ""]
        elif isinstance(b, Items):
            out += [*(f"- {spans_md(item)}" for item in b.items), ""]
        elif isinstance(b, Table):
            out += [table_md(b), ""]
        elif isinstance(b, Fold):
            out += [f"{md(b.summary)}:", "", *blocks_md(b.blocks)]
        else:
            raise TypeError(f"not a report block: {b!r}")
    return out
