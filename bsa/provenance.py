"""A run's identity by content: what determines its results, hashed, and how two identities differ.

Two runs with equal identities asked the same model the same questions with the same prompts and
judge: their rows are interchangeable, so a resume may continue one with the other. Query text is
normalised (``data.queries_sha256``), so a BOM, CRLF or column order does not change it; an api_base
does not either (a managed server gets a new port each start). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bsa import data, generate, judge
from bsa.config import Config
from bsa.data import Query
from bsa.prompts import PromptSet
from bsa.server import identity as served_identity


def _sha(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def identity(cfg: Config, queries: list[Query], prompt_set: PromptSet, system: str | None) -> dict[str, str]:
    """What determines the run's rows and metrics, each as a short comparable string."""
    model = cfg.model
    members = judge.members(cfg.judge)
    return {
        "queries": f"{len(queries)} queries, sha256 {data.queries_sha256(queries)[:16]}",
        "k": str(cfg.sampling.k),
        "model": model.name
        + (
            f" served from {served_identity(model.serve, model.hf_model)}"
            if model.serve.backend != "none"
            else ""
        ),
        "system prompt": f"sha256 {_sha(system)}" if system else "none",
        "sampling": _canonical(generate.request_params(model, cfg.sampling, 0)),
        "judge": ", ".join(m.name for m in members),
        "judge prompts": f"{prompt_set.name}, sha256 {prompt_set.sha256[:16]}",
        "judge protocol": str(cfg.judge.protocol),
        "judge parameters": _canonical(_judge_parameters(cfg, members, prompt_set)),
        "alpha": repr(cfg.alpha),
    }


def _judge_parameters(cfg: Config, members: list[Any], prompt_set: PromptSet) -> dict[str, Any]:
    """What shapes the judge's requests and their reading, beyond its name and prompts: under
    protocol=paper the bsa protocol's knobs (cut length, re-asks, the empty-trace rule) do not apply."""
    requests = [judge.request_params(m, "safety", "", prompt_set.name) for m in members]
    if cfg.judge.protocol == judge.PAPER:
        return {"requests": requests, "context_tokens": cfg.judge.context_tokens}
    return {
        "requests": requests,
        "max_input_chars": cfg.judge.max_input_chars,
        "max_reasks": cfg.judge.max_reasks,
        "empty_reasoning": cfg.judge.empty_reasoning,
    }


# Parts an older run dir's identity lacks, whose value it had nonetheless: every run before
# judge.protocol existed judged under the bsa protocol.
BEFORE_RECORDED = {"judge protocol": "bsa"}


def differences(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """``"key: old → new"`` for each part that changed (parts an older run dir lacks are not compared,
    unless their value then is known: ``BEFORE_RECORDED``)."""
    old = {**BEFORE_RECORDED, **old}
    out = []
    for key in new:
        if key in old and old[key] != new[key]:
            # judge=gpt4o now defaults to protocol=paper; its older run dirs were judged under bsa
            hint = f" (add judge.protocol={old[key]} to continue it)" if key == "judge protocol" else ""
            out.append(f"{key}: {old[key]} → {new[key]}{hint}")
    return out
