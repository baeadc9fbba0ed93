"""Failure cases: samples whose reasoning missed the scenario's target, SSA signature first."""

from __future__ import annotations

from dataclasses import dataclass

from bsa.contract import SAMPLE_INDEX, THINK_TARGET, join
from bsa.report.runs import Row, Run


@dataclass(frozen=True)
class Case:
    id: str
    sample_index: int
    scenario: str
    categories: tuple[str, ...]
    query: str
    risk_summary: str
    reasoning: str
    answer: str
    think: str
    think_explanation: str
    safety: str
    safety_explanation: str


def _explanation(j: Row | None) -> str:
    if j is None:
        return "(not judged)"
    return j.get("explanation") or j.get("unscored_reason") or ""


def failure_cases(
    run: Run, scenario: str | None = None, category: str | None = None, limit: int = 3
) -> list[Case]:
    """Samples whose reasoning the judge found to miss the scenario's target, one per query. The SSA
    signature comes first: a safe answer over reasoning that missed the risk."""
    ranked: list[tuple[int, int, Case]] = []
    seen: set[str] = set()
    for n, sample in enumerate(join(run.generations, run.judgments)):
        g, think = sample.generation, sample.think
        q = run.queries.get(g["id"])
        if g["id"] in seen or q is None or think is None or think.get("verdict") is None:
            continue
        if think["verdict"] == THINK_TARGET[g["scenario"]]:
            continue
        if (scenario and g["scenario"] != scenario) or (category and category not in q.categories):
            continue
        safety = sample.safety
        safe_verdict = (safety or {}).get("verdict") or "unscored"
        seen.add(g["id"])
        case = Case(
            g["id"],
            int(g.get(SAMPLE_INDEX) or 0),
            g["scenario"],
            q.categories,
            q.query,
            q.risk_summary,
            g.get("reasoning") or "",
            g.get("answer") or "",
            think["verdict"],
            _explanation(think),
            safe_verdict,
            _explanation(safety),
        )
        ranked.append((0 if safe_verdict == "Safe" else 1, n, case))
    return [c for _, _, c in sorted(ranked, key=lambda t: t[:2])[:limit]]
