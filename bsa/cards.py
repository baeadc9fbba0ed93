"""``bsa models [--check]``: the model and judge cards, with what each says of its model (its host's
documentation, retired, successors) and, with ``--check``, what each provider says now (bsa.probe):
for every card whose key variable is set, its model list or a 1-token request."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from bsa.compose import CONF_DIR

CONF = Path(CONF_DIR)


@dataclass(frozen=True)
class Card:
    group: str  # model | judge
    name: str  # the file's stem: model=<name>
    model: str  # the LiteLLM model string
    api_base: str | None = None
    api_key_env: str | None = None
    docs: str | None = None
    retired: str | None = None
    successors: tuple[str, ...] = ()
    self_hosted: bool = False  # served by bsa (vLLM, llama.cpp) or a server the user runs
    members: tuple[str, ...] = field(default=())  # an ensemble's judges

    @property
    def status(self) -> str:
        if self.retired:
            after = f" → {', '.join(self.successors)}" if self.successors else ""
            return f"retired {self.retired}{after}"
        return "self-hosted" if self.self_hosted else "hosted"


def load_cards(conf: Path = CONF) -> list[Card]:
    """Every card of conf/model and conf/judge, read from its YAML (the fields a card sets)."""
    out = []
    for group in ("model", "judge"):
        for path in sorted((conf / group).glob("*.yaml")):
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            name = str(raw.get("name") or "")
            if not name or name.startswith("${"):
                continue  # a template card (openai_compatible) names no model of its own
            serve = raw.get("serve") or {}
            members = tuple(str(m.get("name")) for m in raw.get("members") or [] if isinstance(m, dict))
            out.append(
                Card(
                    group=group,
                    name=path.stem,
                    model=name,
                    api_base=raw.get("api_base"),
                    api_key_env=raw.get("api_key_env"),
                    docs=raw.get("docs"),
                    retired=str(raw["retired"]) if raw.get("retired") else None,
                    successors=tuple(str(s) for s in raw.get("successors") or ()),
                    self_hosted=bool(raw.get("hf_model"))
                    or serve.get("backend") not in (None, "none")
                    or name.startswith("hosted_vllm/"),
                    members=members,
                )
            )
    return out


def check(card: Card, today: date | None = None) -> str:
    """What the provider says of ``card`` now, in a few words."""
    from bsa.llm import Endpoint, ModelCallError, preflight
    from bsa.probe import ask

    if card.retired:
        return "not asked: retired"
    if card.self_hosted or card.members:
        return (
            "not asked: self-hosted"
            if card.self_hosted
            else "not asked: an ensemble (check its members' cards)"
        )
    if card.api_key_env and not os.environ.get(card.api_key_env):
        return f"not asked: {card.api_key_env} is not set"
    ep = Endpoint(card.model, card.api_base, card.api_key_env, role=card.group)
    try:
        preflight(ep)
        warnings = ask(ep, today=today)
    except ModelCallError as e:
        return f"REFUSED: {e}"
    return "; ".join(warnings) or "ok"


def main(argv: list[str] | None = None, prog: str = "bsa models") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The model and judge cards: their model ids, hosts' documentation and status.\n"
        "--check asks each provider whose key variable is set whether it serves the id now.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Example:\n  {prog} --check",
    )
    parser.add_argument(
        "--check", action="store_true", help="ask each provider (its model list, else 1 token)"
    )
    args = parser.parse_args(argv)
    from rich.table import Table

    from bsa.console import console

    cards = load_cards()
    table = Table(title="bsa cards (model=<card>, judge=<card>)", show_lines=False)
    for column in ("card", "model id", "status", "key variable", "documentation"):
        table.add_column(column, overflow="fold")
    if args.check:
        table.add_column("provider says", overflow="fold")
    refused = 0
    for card in cards:
        row = [
            f"{card.group}={card.name}",
            card.model + (f" ({', '.join(card.members)})" if card.members else ""),
            card.status,
            card.api_key_env or "—",
            card.docs or "—",
        ]
        if args.check:
            said = check(card)
            refused += said.startswith("REFUSED")
            row.append(said)
        table.add_row(*row)
    console.print(table)
    return 1 if refused else 0


if __name__ == "__main__":
    raise SystemExit(main())
