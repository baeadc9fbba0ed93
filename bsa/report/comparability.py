"""Which runs compare with which: comparison groups, named in words, and comparability with the paper.

The judge is part of the measurement: Think@1 is whatever the judge, reading its prompt, calls risk
identification. So two runs' numbers stand side by side only when the same judge model, with the same
prompts, scored answers to the same queries. A run's comparability key is (query set, judge model,
judge prompt set's sha256); runs sharing it form a comparison group. The published leaderboard was
judged by GPT-4o with the published prompts (OpenStellarTeam/BSA at a pinned commit) over the 2,000
benchmark queries, with k = 5: a run compares with it only under the first three, and with care
(said why) when it ran a subset, another k, or stopped early.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bsa.prompts import PUBLISHED_COMMIT, PUBLISHED_SHA256
from bsa.report.runs import JudgePrompts, QuerySet, Run

# The benchmark's queries per scenario (sorted by name, as QuerySet.by_scenario is).
BENCHMARK_SCENARIOS = (("Cognitive Shortcut", 1200), ("Over Sensitivity", 200), ("Risk Omission", 600))
BENCHMARK_QUERIES = sum(n for _, n in BENCHMARK_SCENARIOS)
PAPER_JUDGE = "gpt-4o"  # the model string's last segment, after any provider prefix
PAPER_K = 5  # upstream evaluate.py's k: the published @k columns

COMPARABLE, WITH_CARE, NOT_COMPARABLE = "comparable", "with care", "not comparable"

# Said where the report sets runs beside the published leaderboard.
PAPER_RULE = (
    f"A run compares with the published leaderboard when GPT-4o judged it with the published judge prompts "
    f"(OpenStellarTeam/BSA at commit {PUBLISHED_COMMIT[:12]}) on the {BENCHMARK_QUERIES:,} benchmark "
    f"queries; a subset of them, a k other than {PAPER_K} or a stopped run compares with care."
)

Key = tuple[str, str, str]  # (query set, judge, judge prompts)
ASPECTS = ("the queries", "the judge", "the judge prompts")  # what each part of a Key is, in words


def key(run: Run) -> Key:
    # The protocol is part of the judge: the same model reads and counts differently under each.
    return (run.query_set, f"{run.judge_id} ({run.judge_protocol} protocol)", run.judge_prompts.key)


def is_full_benchmark(qs: QuerySet) -> bool:
    """All 2,000 benchmark queries: the published per-scenario counts, no filter, not the demo."""
    if qs.demo or qs.selection:
        return False
    if qs.by_scenario:
        return qs.by_scenario == BENCHMARK_SCENARIOS
    return qs.n_queries == BENCHMARK_QUERIES  # run.json from before the per-scenario counts


def describe_queries(qs: QuerySet) -> str:
    """'2,000 benchmark queries', '30 queries from dataset.csv (limit=30, seed 0)', '9 demo queries'."""
    if is_full_benchmark(qs):
        return f"{BENCHMARK_QUERIES:,} benchmark queries"
    if qs.n_queries is None:
        count = "unrecorded queries"
    else:
        count = f"{qs.n_queries:,} {'demo ' if qs.demo else ''}quer{'y' if qs.n_queries == 1 else 'ies'}"
    source = f" from {qs.file}" if qs.file and not qs.demo else ""
    return count + source + (f" ({qs.selection})" if qs.selection else "")


def describe_prompts(p: JudgePrompts) -> str:
    if p.name is None:
        return "unknown prompt set (not recorded in run.json)"
    return f"{p.name} prompts" + (f" (sha {p.sha256[:8]})" if p.sha256 else "")


def describe_judging(run: Run) -> str:
    """'judge openai/gpt-4o · published prompts (sha 1a2b3c4d)'."""
    return f"judge {run.judge_id} · {describe_prompts(run.judge_prompts)}"


@dataclass
class Group:
    """Runs sharing one comparability key: their numbers, pairs and correlation compare."""

    number: int
    key: Key
    runs: list[Run]
    queries: str  # the key's parts in words
    judge: str
    prompts: str

    @property
    def name(self) -> str:
        return f"Group {self.number}"

    @property
    def title(self) -> str:
        return f"{self.name}: {self.queries} · judge {self.judge} · {self.prompts}"


def differences(a: Group, b: Group) -> list[str]:
    """What two groups differ in: some of 'the queries', 'the judge', 'the judge prompts'."""
    return [aspect for aspect, x, y in zip(ASPECTS, a.key, b.key, strict=True) if x != y]


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def difference_text(group: Group, earlier: list[Group], most: int = 3) -> str:
    """'differs from group 1 in the judge and the judge prompts; from group 2 in the queries', against
    the first ``most`` groups before it (each title says the rest)."""
    parts = [f"{g.name.lower()} in {_and(differences(group, g))}" for g in earlier[:most]]
    return "differs from " + "; from ".join(parts) if parts else ""


def assign_groups(runs: list[Run]) -> list[Group]:
    """Group runs by comparability key, number the groups (by how many runs they hold, the first
    seen first among equals: group 1 is the one most runs share) and set each run's ``group``."""
    by_key: dict[Key, list[Run]] = {}
    for r in runs:
        by_key.setdefault(key(r), []).append(r)
    ordered = sorted(by_key.items(), key=lambda kv: -len(kv[1]))  # stable: first seen among equals
    groups = []
    for n, (k, members) in enumerate(ordered, 1):
        first = members[0]
        groups.append(
            Group(
                n,
                k,
                members,
                describe_queries(first.query_info),
                first.judge_id,
                describe_prompts(first.judge_prompts),
            )
        )
        for r in members:
            r.group = n
    # Two query sets can read alike (two 12-query files): their hashes then tell them apart.
    sets_named: dict[str, set[str]] = {}
    for g in groups:
        sets_named.setdefault(g.queries, set()).add(g.key[0])
    for g in groups:
        if len(sets_named[g.queries]) > 1:
            g.queries += f" [query set {g.key[0][:8]}]"
    return groups


@dataclass(frozen=True)
class PaperMatch:
    """Whether a run's numbers compare with the published leaderboard, and why (not)."""

    level: str  # COMPARABLE | WITH_CARE | NOT_COMPARABLE
    reasons: tuple[str, ...] = ()  # why not, or what to take care of

    @property
    def comparable(self) -> bool:
        return self.level != NOT_COMPARABLE

    @property
    def text(self) -> str:
        """'comparable with the paper', or the level with its reasons."""
        return self._say(" with the paper")

    @property
    def short(self) -> str:
        """``text`` where the paper is already named: 'not comparable: judged by …'."""
        return self._say("")

    def _say(self, what: str) -> str:
        if self.level == COMPARABLE:
            return f"comparable{what}"
        if self.level == WITH_CARE:
            return f"comparable{what}, but compare with care: {'; '.join(self.reasons)}"
        return f"not comparable{what}: {'; '.join(self.reasons)}"


def _is_paper_judge(model: str) -> bool:
    """GPT-4o, by its alias or a dated snapshot (openai/gpt-4o-2024-08-06)."""
    name = model.rstrip("/").rsplit("/", 1)[-1].casefold()
    return (
        name == PAPER_JUDGE or re.fullmatch(re.escape(PAPER_JUDGE) + r"-\d{4}-\d{2}-\d{2}", name) is not None
    )


def _published_files_differ(p: JudgePrompts) -> bool:
    """Published prompts from other bytes than the pinned commit's, where run.json can tell."""
    if p.commit_recorded and p.commit != PUBLISHED_COMMIT:
        return True
    return any(PUBLISHED_SHA256.get(name, sha) != sha for name, sha in p.files)


def setup_match(run: Run) -> PaperMatch:
    """The group-level conditions: the judge, its prompts and the queries (what the key holds)."""
    no: list[str] = []
    care: list[str] = []
    if run.judge_members:
        no.append(f"judged by an ensemble ({', '.join(run.judge_members)}), not GPT-4o alone")
    elif not _is_paper_judge(run.judge):
        no.append(f"judged by {run.judge}, not GPT-4o")
    elif run.judge_protocol != "paper":
        care.append(
            f"judge.protocol={run.judge_protocol}: fenced inputs, re-asks and lenient parsing, unreadable "
            "verdicts left out (judge.protocol=paper reads and counts as upstream)"
        )
    p = run.judge_prompts
    if p.name is None:
        no.append("judge prompt set not recorded (a run dir from before run.json named it)")
    elif p.name != "published":
        no.append(f"judge prompts '{p.name}', not the published ones")
    elif _published_files_differ(p):
        no.append(f"published prompt files that differ from those at commit {PUBLISHED_COMMIT[:12]}")
    qs = run.query_info
    if qs.demo:
        no.append("demo queries, not the benchmark")
    elif not is_full_benchmark(qs):
        if qs.n_queries is not None and qs.n_queries < BENCHMARK_QUERIES:
            care.append(f"a subset ({qs.n_queries:,} of the {BENCHMARK_QUERIES:,} queries)")
        else:
            no.append(f"not the {BENCHMARK_QUERIES:,} benchmark queries ({describe_queries(qs)})")
    if no:
        return PaperMatch(NOT_COMPARABLE, tuple(no + care))
    return PaperMatch(WITH_CARE, tuple(care)) if care else PaperMatch(COMPARABLE)


def paper_match(run: Run) -> PaperMatch:
    """``setup_match`` plus what only this run has: another k, or a stop before every query was judged."""
    setup = setup_match(run)
    if not setup.comparable:
        return setup
    substituted = (run.metrics or {}).get("not_comparable")
    if substituted:
        return PaperMatch(NOT_COMPARABLE, (str(substituted),))
    care = list(setup.reasons)
    if run.k != PAPER_K:
        care.append(f"k={run.k}: the paper's @k columns use k={PAPER_K}, so compare the @1 columns")
    judged = (run.metrics or {}).get("n_queries", 0)
    if not run.complete or (run.query_info.n_queries is not None and judged < run.query_info.n_queries):
        care.append(f"{run.status} run: {judged:,} queries judged")
    return PaperMatch(WITH_CARE, tuple(care)) if care else setup
