"""What a run will cost before it calls anything (``dry_run=true``): calls, tokens and dollars per role.

``estimate(requests_by_role, planned_unknown, judge_batch, observed) -> Estimate``

- ``requests_by_role`` maps a *line* to the requests already built for it. A line is a role
  (``"model"``, ``"judge"``) or a role and a kind (``"judge:safety"``, ``"judge:think"``); the part
  before ``:`` is the role. Pass every request the run would send, cached or not, together with
  ``is_cached`` (the Client's ``cached(req)``): cached ones are counted and cost nothing. Or pass only
  the uncached ones and say how many were cached with ``cached_counts`` (line -> count).
- ``planned_unknown`` (line -> calls): calls whose request cannot be built yet, e.g. the judgments
  of samples not generated yet. Each is estimated as the mean known request of the same line (prompt
  tokens, model, price); where the line has no known request, as ``prototypes[line]`` (a request
  built with an empty answer / reasoning) plus the model's estimated output per call (the judge
  reads it). They are flagged as estimated. Without either, their tokens and dollars are unknown.
- Prompt tokens: LiteLLM's ``token_counter`` for the request's model (Hugging Face tokenizer
  downloads off, so it never goes to the network: a model with no tiktoken encoding is counted with
  tiktoken's default). It costs about 0.15 ms for a query and 1.6 ms for a 7,500-character judge
  prompt (measured here), ~50 s for 30,000 judge requests: so up to ``SAMPLE`` requests per line and
  model are counted exactly, and the rest are estimated from their characters at the tokens per
  character of that sample (``prompt_basis`` says "counted" or "sampled").
- Completion tokens: the observed mean where ``observed[line]`` (else ``observed[role]``) gives
  ``(completions, their completion tokens)`` with completions > 0 (cached rows), else the request's
  ``params["max_tokens"]`` as an upper bound, else unknown (``completion_basis``: "observed",
  "max_tokens (upper bound)", "unknown").
- Dollars: LiteLLM's price map (``litellm.get_model_info``: ``input_cost_per_token`` /
  ``output_cost_per_token``; for the judge with ``judge_batch``, ``*_batches`` where the map has
  them, else the online price and a note). A model with no price (a local server, ``hosted_vllm/``)
  is "unpriced" (``usd`` None); a line whose completion tokens are unknown has a lower bound only
  (``usd_lower_bound``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bsa.forecast import RoleLoad, hours, wall_time
from bsa.llm import Request, import_litellm
from bsa.provider import Prices as Prices  # re-exported: callers price with cost.Prices
from bsa.providers.litellm_api import prices as prices  # LiteLLM's price map, re-exported
from bsa.providers.litellm_api import token_counter

SAMPLE = 200  # requests per line and model counted exactly with token_counter; the rest by characters
ROLES = ("model", "judge")


@dataclass
class Line:
    """One line of the estimate: a role, or a role and a kind of call."""

    key: str
    role: str
    models: list[str]
    calls: int = 0  # cached + to call + estimated
    cached: int = 0
    to_call: int = 0  # known requests that are not cached
    estimated_calls: int = 0  # planned calls whose request is not known yet (included in to call)
    prompt_tokens: int | None = 0  # for the calls to make (known and estimated); None = unknown
    completion_tokens: int | None = 0  # idem
    prompt_basis: str = "counted"  # counted | sampled | none
    completion_basis: str = "max_tokens (upper bound)"  # observed | max_tokens (upper bound) | unknown
    usd: float | None = 0.0  # None: some model of the line is unpriced
    usd_lower_bound: bool = False  # completion tokens unknown for some calls: prompt price only
    unpriced: list[str] = field(default_factory=list)  # the line's models with no price
    batch_prices: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def calls_to_make(self) -> int:
        return self.to_call + self.estimated_calls


@dataclass
class Estimate:
    lines: list[Line]
    judge_batch: bool = False
    # The wall time's inputs per role (calls to make, assumed seconds per call, limits): ``wall``.
    loads: dict[str, RoleLoad] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # what a real run would stop on (keys unset)

    def __repr__(self) -> str:
        """One line a notebook can read (the dataclass's own repr dumps every Line's fields)."""

        def n(v: float | None) -> str:
            return "?" if v is None else f"{v:,.0f}"

        parts = []
        for role, lines in self.by_role().items():
            calls = sum(ln.calls_to_make for ln in lines)
            cached = sum(ln.cached for ln in lines)
            prompt = [ln.prompt_tokens for ln in lines]
            compl = [ln.completion_tokens for ln in lines]
            usd = [ln.usd for ln in lines if ln.usd is not None]
            bound = any(ln.completion_basis != "observed" for ln in lines)
            parts.append(
                f"{role}: {calls:,} calls to make ({cached:,} cached), "
                f"{n(None if None in prompt else sum(p or 0 for p in prompt))} prompt tokens, "
                f"{n(None if None in compl else sum(c or 0 for c in compl))} completion tokens"
                + (" (upper bound)" if bound else "")
                + (f", ${sum(usd):,.2f}" if usd else ", unpriced")
            )
        total, wall = self.total_usd(), self.wall_s()
        if total is not None:
            parts.append(f"total ${total:,.2f}")
        if wall is not None:
            parts.append(f"wall ≈ {hours(wall)}")
        if self.missing:
            parts.append(f"{len(self.missing)} prerequisite(s) missing: see .missing")
        return "Estimate(" + "; ".join(parts) + ")"

    def wall_s(self) -> float | None:
        """Seconds the calls to make need at the configured limits (bsa.forecast.wall_time)."""
        if not self.loads:
            return None
        zero = RoleLoad(0, 0.0, 1)
        return wall_time(self.loads.get("model", zero), self.loads.get("judge", zero))

    def by_role(self) -> dict[str, list[Line]]:
        out: dict[str, list[Line]] = {}
        for line in self.lines:
            out.setdefault(line.role, []).append(line)
        return out

    def total_usd(self) -> float | None:
        """Dollars over every priced line; None when nothing is priced."""
        priced = [line.usd for line in self.lines if line.usd is not None]
        return sum(priced) if priced else None

    def to_json(self) -> dict[str, Any]:
        return {
            "judge_batch": self.judge_batch,
            "total_usd": self.total_usd(),
            "wall_s": self.wall_s(),
            "loads": {role: asdict(load) for role, load in self.loads.items()},
            "missing": self.missing,
            "lines": [{**asdict(line), "calls_to_make": line.calls_to_make} for line in self.lines],
        }


def role_of(key: str) -> str:
    return key.split(":", 1)[0]


def _text(messages: list[dict[str, Any]]) -> int:
    """Characters of the messages' text (content given as parts is measured as its JSON)."""
    n = 0
    for m in messages:
        c = m.get("content")
        n += len(c) if isinstance(c, str) else len(json.dumps(c, ensure_ascii=False)) if c else 0
    return n


def prompt_tokens(
    requests: list[Request], count: Callable[[str, list[dict[str, Any]]], int]
) -> tuple[list[float], bool]:
    """Estimated prompt tokens of each request, and whether all were counted exactly. Per model, up to
    SAMPLE requests spread evenly over the list are counted; the others get their characters times the
    sample's tokens per character."""
    out: list[float] = [0.0] * len(requests)
    exact = True
    by_model: dict[str, list[int]] = {}
    for i, r in enumerate(requests):
        by_model.setdefault(r.endpoint.model, []).append(i)
    for model, idx in by_model.items():
        if len(idx) <= SAMPLE:
            for i in idx:
                out[i] = count(model, requests[i].messages)
            continue
        exact = False
        step = len(idx) / SAMPLE
        sampled = {idx[int(j * step)] for j in range(SAMPLE)}
        tokens = chars = 0
        for i in sampled:
            out[i] = count(model, requests[i].messages)
            tokens += int(out[i])
            chars += _text(requests[i].messages)
        per_char = tokens / chars if chars else 0.25
        for i in idx:
            if i not in sampled:
                out[i] = _text(requests[i].messages) * per_char
    return out, exact


def _mean_completion(key: str, observed: Mapping[str, tuple[int, int]] | None) -> float | None:
    if not observed:
        return None
    for k in (key, role_of(key)):
        got = observed.get(k)
        if got and got[0] > 0:
            return got[1] / got[0]
    return None


class _Tally:
    """Sums one line's tokens and dollars, request by request (or a mean request times n)."""

    def __init__(self, role: str, judge_batch: bool, price_of: Callable[[str, str], Prices | None]) -> None:
        self.role, self.price_of = role, price_of
        self.batch_wanted = judge_batch and role == "judge"
        self.prompt = self.completion = self.usd = 0.0
        self.completion_unknown = self.batch_used = self.batch_missing = False
        self.unpriced: set[str] = set()

    def add(self, model: str, prompt: float, completion: float | None, times: float = 1.0) -> None:
        self.prompt += prompt * times
        if completion is None:
            self.completion_unknown = True
        else:
            self.completion += completion * times
        pr = self.price_of(model, self.role)
        if pr is None:
            self.unpriced.add(model)
            return
        self.batch_used |= pr.batch
        self.batch_missing |= self.batch_wanted and not pr.batch
        self.usd += times * (prompt * (pr.input or 0.0) + (completion or 0.0) * (pr.output or 0.0))


def estimate(
    requests_by_role: Mapping[str, list[Request]],
    planned_unknown: Mapping[str, int],
    judge_batch: bool,
    observed: Mapping[str, tuple[int, int]] | None = None,
    *,
    is_cached: Callable[[Request], bool] | None = None,
    cached_counts: Mapping[str, int] | None = None,
    prototypes: Mapping[str, Request] | None = None,
) -> Estimate:
    """Calls, cached calls, tokens and dollars per line; see the module docstring for each argument."""
    litellm = import_litellm()
    count = token_counter(litellm, lambda messages: max(1, _text(messages) // 4))  # 4 chars a token
    keys = list(dict.fromkeys([*requests_by_role, *planned_unknown]))
    keys.sort(key=lambda k: (ROLES.index(role_of(k)) if role_of(k) in ROLES else len(ROLES), k))
    price_cache: dict[tuple[str, bool], Prices | None] = {}

    def price_of(model: str, role: str) -> Prices | None:
        batch = judge_batch and role == "judge"
        if (model, batch) not in price_cache:
            price_cache[(model, batch)] = prices(model, batch, litellm)
        return price_cache[(model, batch)]

    # The model role's output per call: what a judge prompt built from a prototype adds.
    model_output: float | None = None
    lines: list[Line] = []
    for key in keys:
        role = role_of(key)
        known = list(requests_by_role.get(key, []))
        flags = [bool(is_cached(r)) for r in known] if is_cached else [False] * len(known)
        todo = [r for r, hit in zip(known, flags, strict=True) if not hit]
        line = Line(key, role, sorted({r.endpoint.model for r in known}))
        line.cached = sum(flags) + int((cached_counts or {}).get(key, 0))
        line.to_call = len(todo)
        line.estimated_calls = int(planned_unknown.get(key, 0))
        line.calls = line.cached + line.to_call + line.estimated_calls

        mean_out = _mean_completion(key, observed)
        line.completion_basis = "observed" if mean_out is not None else "max_tokens (upper bound)"

        def completion_of(r: Request, mean_out: float | None = mean_out) -> float | None:
            if mean_out is not None:
                return mean_out
            mt = r.params.get("max_tokens")
            return float(mt) if mt is not None else None

        # Known requests: count the ones to call; the mean of all known stands for the unknown ones.
        basis = todo or known
        toks, exact = prompt_tokens(basis, count) if basis else ([], True)
        line.prompt_basis = "counted" if exact else "sampled"
        tally = _Tally(role, judge_batch, price_of)
        for r, p in zip(todo, toks[: len(todo)], strict=True):
            tally.add(r.endpoint.model, p, completion_of(r))
        if line.estimated_calls:
            n = line.estimated_calls
            if known:
                # The mean known request, per model in the proportions the known ones have.
                for r, p in zip(basis, toks, strict=True):
                    tally.add(r.endpoint.model, p, completion_of(r), n / len(basis))
                line.notes.append(f"{n} calls estimated from the mean of {len(basis)} known requests")
            elif prototypes and key in prototypes:
                proto = prototypes[key]
                extra = (model_output or 0.0) if role != "model" else 0.0
                tally.add(
                    proto.endpoint.model,
                    count(proto.endpoint.model, proto.messages) + extra,
                    completion_of(proto),
                    n,
                )
                line.models = sorted({*line.models, proto.endpoint.model})
                line.notes.append(
                    f"{n} calls estimated from a prototype request"
                    + (" plus the model's estimated output" if extra else "")
                )
            else:
                line.prompt_tokens = line.completion_tokens = None
                line.usd = None
                line.notes.append(f"{n} calls not built yet and no request to estimate them from")
        if line.prompt_tokens is not None:
            line.prompt_tokens = round(tally.prompt)
            unknown = tally.completion_unknown
            line.completion_tokens = None if unknown and not tally.completion else round(tally.completion)
            if unknown:
                line.completion_basis = "unknown"
                line.usd_lower_bound = True
            line.usd = None if tally.unpriced and not tally.usd else tally.usd
        unpriced = tally.unpriced
        if not line.calls_to_make and line.models:
            unpriced.update(m for m in line.models if price_of(m, role) is None)
            if len(unpriced) == len(line.models):
                line.usd = None  # nothing to pay, but say the model has no price rather than $0
        line.unpriced = sorted(unpriced)
        if unpriced and tally.usd:
            line.notes.append(f"unpriced: {', '.join(sorted(unpriced))} (counted as $0)")
        line.batch_prices = tally.batch_used
        if tally.batch_missing:
            line.notes.append("no batch price in LiteLLM's map for some model: online price used")
        if role == "model" and line.calls_to_make:
            total_out = line.completion_tokens
            model_output = (total_out / line.calls_to_make) if total_out is not None else None
        lines.append(line)
    return Estimate(lines, judge_batch)


def unpriced(endpoints: list[Any]) -> list[str]:
    """The models among ``endpoints`` (``bsa.llm.Endpoint``) that neither LiteLLM's price map nor the
    config prices: their calls would count $0 against ``max_cost_usd``."""
    litellm = import_litellm()
    out = []
    for ep in endpoints:
        if ep.price is not None:
            continue
        for name in [d.name or ep.model for d in ep.deployments] or [ep.model]:
            if prices(name, False, litellm) is None and name not in out:
                out.append(f"{ep.role} {name}")
    return out
