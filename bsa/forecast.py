"""How long and how much a run will take: the wall time of its calls at a concurrency, and a pilot
run's measured tokens, dollars and seconds per call scaled to a larger selection, with intervals.

A pure core: rows and counts in, figures out; `bsa estimate RUN_DIR` (``bsa.pilot``) reads the run dir and
composes the target's config.

- **Wall time.** A role with ``calls`` calls that take ``call_s`` seconds in all, ``concurrency`` in
  flight and at most ``rpm`` a minute, needs ``max(call_s / concurrency, calls / rpm · 60)``. The
  judge starts on a sample as soon as it is generated, so a run lasts as long as its slower role plus
  one call of the other (the first generation before any judging, or the last judgment after the
  last generation). Limits that adapt down on errors, rate limits of the provider and server
  start-up come on top: the figure is the time the calls need, not a promise.
- **Scaling a pilot.** Each pilot query contributes its samples' sums (generation calls, tokens,
  seconds, dollars; the judgments' likewise, re-asks included). A target scenario of ``n`` queries at
  ``k`` samples gets ``n · k`` times the pilot's per-sample ratio in that scenario (a ratio estimator:
  sums over the scenario's queries, divided by its samples). The interval resamples the pilot's
  queries within each scenario (the bootstrap the metrics use: a query's samples and judgments move
  together), so it says how far a pilot of this size can be off, not how a provider's latency may
  drift. A scenario the pilot lacks is scaled from all the pilot's queries, and said.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bsa.contract import ID, SAMPLE_INDEX

# What a pilot query sums, per role: calls, prompt and completion tokens, seconds waiting, dollars.
FIGURES = ("calls", "prompt_tokens", "completion_tokens", "seconds", "usd")
ROLES = ("model", "judge")
DEFAULT_N_BOOT = 2000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class RoleLoad:
    """One role's calls for the wall-time model."""

    calls: float
    call_s: float  # the seconds of all calls, summed
    concurrency: int
    rpm: int | None = None

    @property
    def latency_s(self) -> float:
        return self.call_s / self.calls if self.calls else 0.0


def role_time(load: RoleLoad) -> float:
    """Seconds the role's calls need at its concurrency and rpm."""
    if load.calls <= 0:
        return 0.0
    t = load.call_s / max(1, load.concurrency)
    if load.rpm:
        t = max(t, load.calls / load.rpm * 60.0)
    return t


def wall_time(model: RoleLoad, judge: RoleLoad) -> float:
    """The run's wall time: the slower role, plus one call of the other (generation and judging are
    pipelined)."""
    if model.calls <= 0 and judge.calls <= 0:
        return 0.0
    return max(role_time(model) + judge.latency_s, role_time(judge) + model.latency_s)


def concurrency_within(load: RoleLoad, seconds: float, tail_s: float) -> int | None:
    """The smallest concurrency at which the role's calls end within ``seconds`` when ``tail_s`` (the
    other role's one call) comes on top; None where no concurrency can: the rpm cap, or the tail
    alone, takes longer."""
    budget = seconds - tail_s
    if load.calls <= 0:
        return 1
    if budget <= 0 or (load.rpm and load.calls / load.rpm * 60.0 > budget):
        return None
    return max(1, math.ceil(load.call_s / budget - 1e-9))


def hours(seconds: float) -> str:
    """``1 h 05 min``, ``12 min``, ``40 s``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


# --- a pilot's figures per query ---------------------------------------------------------------------


@dataclass
class PilotQuery:
    """One pilot query: its scenario, samples and, per role, the sums of ``FIGURES`` (usd None where
    some call of the role was unpriced)."""

    id: str
    scenario: str
    samples: int
    sums: dict[str, dict[str, float | None]]


def _usage(row: Mapping[str, Any], name: str) -> float:
    usage = row.get("usage") or {}
    v = usage.get(name) if isinstance(usage, Mapping) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def _add(sums: dict[str, float | None], row: Mapping[str, Any], calls: float) -> None:
    for name, value in (
        ("calls", calls),
        ("prompt_tokens", _usage(row, "prompt_tokens")),
        ("completion_tokens", _usage(row, "completion_tokens")),
        ("seconds", float(row.get("latency_s") or 0.0)),
    ):
        sums[name] = (sums[name] or 0.0) + value
    cost = row.get("cost_usd")
    if calls and cost is None:
        sums["usd"] = None  # an unpriced call: the role's dollars are unknown, not $0
    elif sums["usd"] is not None and isinstance(cost, (int, float)):
        sums["usd"] = sums["usd"] + float(cost)


def pilot_queries(
    generations: Iterable[Mapping[str, Any]],
    judgments: Iterable[Mapping[str, Any]],
    batch_samples: bool = False,
) -> list[PilotQuery]:
    """Per pilot query, what its generations and judgments took. A generation row is one call (a
    sample the provider refused included: it was asked); a judgment counts its attempts (re-asks; a
    rule that decided without the judge counts none). With ``batch_samples`` (the pilot asked a
    query's samples in one request, n > 1), rows of a query that carry the same latency are one
    request: its call and its seconds count once (its tokens are on its first row already)."""
    out: dict[str, PilotQuery] = {}

    def of(row: Mapping[str, Any]) -> PilotQuery:
        qid = str(row.get(ID))
        if qid not in out:
            out[qid] = PilotQuery(
                qid, str(row.get("scenario")), 0, {r: dict.fromkeys(FIGURES, 0.0) for r in ROLES}
            )
        return out[qid]

    seen: set[tuple[Any, Any]] = set()
    requests: set[tuple[Any, Any]] = set()  # (id, latency_s) of the n > 1 requests counted
    for g in generations:
        key = (g.get(ID), g.get(SAMPLE_INDEX))
        if key in seen:
            continue
        seen.add(key)
        q = of(g)
        q.samples += 1
        request = (g.get(ID), g.get("latency_s"))
        if batch_samples and request in requests:
            _add(q.sums["model"], {**g, "latency_s": 0.0}, 0.0)
            continue
        requests.add(request)
        _add(q.sums["model"], g, 1.0)
    for j in judgments:
        if (j.get(ID), j.get(SAMPLE_INDEX)) not in seen:
            continue  # a judgment whose generation the pilot lacks says nothing per sample
        _add(of(j).sums["judge"], j, float(j.get("attempts") or 0))
    return [q for q in out.values() if q.samples]


# --- scaling ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """An estimate with its interval (None where the pilot cannot size it, e.g. unpriced dollars)."""

    value: float | None
    low: float | None = None
    high: float | None = None


@dataclass
class Scaled:
    """A pilot's figures scaled to a target selection: per role and figure, and the wall time."""

    samples: int
    per_role: dict[str, dict[str, Figure]]
    wall_s: Figure
    loads: dict[str, RoleLoad]
    level: float
    notes: list[str] = field(default_factory=list)
    within: dict[str, int | None] | None = None  # per role, the concurrency that ends within --within


def _ratio_totals(
    pilot: Sequence[PilotQuery], target: Mapping[str, int], k: int, weights: np.ndarray
) -> dict[tuple[str, str], np.ndarray]:
    """Per (role, figure): the target's total for each weight vector (rows: replicates; columns: the
    pilot's queries), scenario by scenario; NaN where a priced figure is unknown."""
    scen = np.array([q.scenario for q in pilot])
    samples = np.array([q.samples for q in pilot], dtype=float)
    out: dict[tuple[str, str], np.ndarray] = {}
    for role in ROLES:
        for name in FIGURES:
            values = np.array(
                [np.nan if q.sums[role][name] is None else q.sums[role][name] for q in pilot], dtype=float
            )
            total = np.zeros(weights.shape[0])
            for s, n in target.items():
                mask = scen == s
                if not mask.any():
                    mask = np.ones_like(scen, dtype=bool)  # said in a note by the caller
                w = weights[:, mask]
                ratio = (w @ values[mask]) / np.maximum(w @ samples[mask], 1e-12)
                total = total + ratio * n * k
            out[(role, name)] = total
    return out


def _weights(pilot: Sequence[PilotQuery], n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap weights: pilot queries drawn with replacement within their scenario."""
    rng = np.random.default_rng(seed)
    w = np.zeros((n_boot, len(pilot)))
    by: dict[str, list[int]] = {}
    for i, q in enumerate(pilot):
        by.setdefault(q.scenario, []).append(i)
    for idx in by.values():
        w[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=n_boot)
    return w


def scale(
    pilot: Sequence[PilotQuery],
    target: Mapping[str, int],
    k: int,
    concurrency: Mapping[str, int],
    rpm: Mapping[str, int | None],
    *,
    within_s: float | None = None,
    overhead_s: float = 0.0,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> Scaled:
    """``target``: queries per scenario; ``k`` the target's samples per query; ``overhead_s`` what a
    run takes beyond its calls (start-up, the last rows and files), added to the wall time and taken
    off ``within_s``. See the module doc."""
    if not pilot:
        raise ValueError("the pilot has no generation rows to scale from")
    notes = []
    missing = sorted(s for s in target if s not in {q.scenario for q in pilot})
    if missing:
        notes.append(f"the pilot has no query of {', '.join(missing)}: scaled from all its queries")
    point = _ratio_totals(pilot, target, k, np.ones((1, len(pilot))))
    reps = _ratio_totals(pilot, target, k, _weights(pilot, n_boot, seed))
    tail = (1.0 - level) / 2 * 100

    def figure(key: tuple[str, str]) -> Figure:
        v = float(point[key][0])
        if math.isnan(v):
            return Figure(None)
        r = reps[key][~np.isnan(reps[key])]
        return Figure(v, float(np.percentile(r, tail)), float(np.percentile(r, 100 - tail)))

    per_role = {role: {name: figure((role, name)) for name in FIGURES} for role in ROLES}

    def loads(i: int | None) -> dict[str, RoleLoad]:
        def take(role: str, name: str) -> float:
            return float(point[(role, name)][0] if i is None else reps[(role, name)][i])

        return {
            role: RoleLoad(take(role, "calls"), take(role, "seconds"), concurrency[role], rpm.get(role))
            for role in ROLES
        }

    at_point = loads(None)
    walls = overhead_s + np.array(
        [wall_time(*(lo[r] for r in ROLES)) for lo in (loads(i) for i in range(n_boot))]
    )
    wall = Figure(
        overhead_s + wall_time(at_point["model"], at_point["judge"]),
        float(np.percentile(walls, tail)),
        float(np.percentile(walls, 100 - tail)),
    )
    within = None
    if within_s is not None:
        # Sized on the interval's high end of call-seconds: "finishes within" should hold for a pilot
        # that was luckily fast, too.
        high = {
            role: RoleLoad(
                at_point[role].calls,
                per_role[role]["seconds"].high or 0.0,
                at_point[role].concurrency,
                at_point[role].rpm,
            )
            for role in ROLES
        }
        budget = within_s - overhead_s
        within = {
            "model": concurrency_within(high["model"], budget, high["judge"].latency_s),
            "judge": concurrency_within(high["judge"], budget, high["model"].latency_s),
        }
    return Scaled(sum(target.values()) * k, per_role, wall, at_point, level, notes, within)


def pilot_overhead(
    pilot: Sequence[PilotQuery], wall_s: float, concurrency: Mapping[str, int], rpm: Mapping[str, int | None]
) -> float:
    """What the pilot took beyond its calls: its wall time less the wall time its calls needed at its
    limits (never below 0: a pilot that took answers from the cache waited less than its calls)."""
    loads = {
        role: RoleLoad(
            sum(q.sums[role]["calls"] or 0.0 for q in pilot),
            sum(q.sums[role]["seconds"] or 0.0 for q in pilot),
            concurrency[role],
            rpm.get(role),
        )
        for role in ROLES
    }
    return max(0.0, wall_s - wall_time(loads["model"], loads["judge"]))


def parse_duration(text: str) -> float:
    """``4h``, ``90m``, ``1h30m``, ``45s``, ``2d`` or a number of seconds -> seconds."""
    t = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = re.findall(r"(\d+(?:\.\d+)?)([dhms])", t)
    if not parts or "".join(a + b for a, b in parts) != t:
        raise ValueError(f"{text!r}: a duration such as 4h, 90m, 1h30m, 45s or 2d")
    unit = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
    return sum(float(a) * unit[b] for a, b in parts)
