"""The early no-reasoning guard: a card that declares a reasoning model (``model.reasoning``) whose
first samples mostly carry no trace is misconfigured (thinking not enabled on this host, or no
reasoning parser on the server), and a whole run of such samples would measure nothing of what BSA is
for. Pure: rows in, a message out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bsa.results import refused

GUARD_SAMPLES = 50  # the samples looked at: enough to tell "mostly", few enough to stop early


@dataclass
class ReasoningGuard:
    model: str
    expected: int  # samples the run will generate: a smaller run is judged on all of them
    stop: Callable[[str], None]
    seen: int = 0
    without: int = 0

    def __call__(self, row: dict[str, Any]) -> None:
        window = min(GUARD_SAMPLES, self.expected)
        if self.seen >= window or refused(row):  # a refusal says nothing of the model's reasoning
            return
        self.seen += 1
        self.without += not (row.get("reasoning") or "").strip()
        if self.seen == window and 2 * self.without > window:
            self.stop(message(self.model, self.without, window))


def message(model: str, without: int, seen: int) -> str:
    return (
        f"{without} of the first {seen} samples of {model} carry no reasoning trace, but its card declares "
        "a reasoning model (model.reasoning=true), so Think@k would measure nothing. Likely causes: "
        "thinking is not enabled for this host (model.reasoning_effort, model.thinking_budget or "
        "model.extra_body), or the server returns the trace without tags and without a reasoning parser "
        "(vLLM: --reasoning-parser, model.serve.reasoning_parser). Look at a row of generations.jsonl; "
        "set model.reasoning=false to run anyway"
    )
