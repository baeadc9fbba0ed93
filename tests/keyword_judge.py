"""A judge that is a Python function (judge.provider=python): it reads the scripted model's markers
in the filled prompt and gives the verdict a table says, as a local classifier would give its own."""

from __future__ import annotations

import json
import re
from typing import Any

from test_resilience import make_rows, rule_for

VERDICTS = rule_for(make_rows(12))
CALLS: list[dict[str, Any]] = []  # what the judge was given, for the tests
_MARK = re.compile(r"([AR])\|([^|\s`]+)\|(\d+)")


def judge(messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    CALLS.append({"messages": messages, "params": params})
    found = _MARK.search(messages[-1]["content"])
    assert found is not None, "the scripted model's marker is in every filled prompt"
    kind = "safety" if found.group(1) == "A" else "think"
    label = VERDICTS(kind, found.group(2), int(found.group(3)))
    return json.dumps({"explanation": "keyword rule", "verdict": label})


async def async_judge(messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
    return {"content": judge(messages, params), "usage": {"prompt_tokens": 7, "completion_tokens": 3}}


def broken(messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    raise RuntimeError("classifier weights not found")
