"""HTML for the report's tables and blocks (``bsa.report.blocks``): the macros of
``bsa/templates/report/blocks.html``, the same markup report.html and compare.html use. A leaf: it
imports nothing of the report's sections. Every string is escaped (Jinja2 autoescape): model output
is untrusted."""

from __future__ import annotations

from collections.abc import Sequence

from bsa import pages
from bsa.report.blocks import Block, Table

MACROS = "report/blocks.html"


def table_html(t: Table, caption: str = "") -> str:
    return str(pages.macro(MACROS, "table")(t, caption))


def blocks_html(blocks: Sequence[Block]) -> str:
    """A section's blocks as HTML; "" for none."""
    return str(pages.macro(MACROS, "blocks")(list(blocks)))
