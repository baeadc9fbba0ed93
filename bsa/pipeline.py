"""The run's work over its run dir: k samples per query, each judged for safety and thinking.

Generation jobs are queued for the samples the run dir lacks, judgment jobs for the samples it has
but has not judged; each generation that lands queues its own two judgments at once (pipelined), so
both servers work together. What a job returns is appended to the run dir as it lands.

Both roles take one path: each stage is a ``calls.Stage``; a key's row is looked up on the cache
(``replay``) by the plan, lands from there without a job, or is a job that ``run``s the key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bsa.calls import Cached, Stage
from bsa.contract import ID, KIND, SAMPLE_INDEX
from bsa.data import Query
from bsa.generate import GenerationStage
from bsa.llm import Client, Request
from bsa.rundir import RunState
from bsa.scheduler import Scheduler
from bsa.verdict import SAFETY, THINK

if TYPE_CHECKING:
    from bsa.providers.litellm_batch import BatchReport

Row = dict[str, Any]
KINDS = (SAFETY, THINK)
Sample = tuple[Query, int]  # a generation's key
Judgment = tuple[Query, Row, str]  # a judgment's key: the sample's query, its generation row, the kind


@dataclass(frozen=True)
class BatchSettings:
    """judge.batch: where the batch ids are kept (the run dir) and how batches are polled."""

    state_path: Path
    poll_s: float
    max_requests: int
    on_progress: Callable[[str], None] | None = None


class Pipeline:
    def __init__(
        self,
        client: Client,
        state: RunState,
        queries: list[Query],
        k: int,
        generation: Stage[Sample] | None,  # None: judge the run dir's generations only (a re-judge)
        judging: Stage[Judgment],
        samples: GenerationStage | None = None,  # sampling.batch_samples: a query's samples in one request
    ) -> None:
        self.client, self.state, self.queries, self.k = client, state, queries, k
        self.generation, self.judging = generation, judging
        self.samples = samples
        self._pipelined = True  # a landed generation queues its judgments
        # Rows the plan found in the cache, by role and key (query id, sample index[, kind]): they land
        # when scheduled, without a job (a warm re-run builds each request once). (row, answers read)
        self._cached: dict[str, dict[tuple[Any, ...], tuple[Row, int]]] = {"model": {}, "judge": {}}

    @property
    def batch_samples(self) -> bool:
        return self.samples is not None

    def missing(self, q: Query) -> list[int]:
        if self.generation is None:
            return []
        return [i for i in range(self.k) if (q.id, i) not in self.state.gens]

    def _walk(self) -> Iterator[tuple[Query, int, Cached | None, Row | None]]:
        """Each sample of the run: (query, index, its generation on the cache when the run dir lacks
        it, its row (the run dir's, or the cache's; None when still to generate))."""
        for q in self.queries:
            for i in range(self.k):
                g = self.state.gens.get((q.id, i))
                if g is not None:
                    yield q, i, None, g
                elif self.generation is not None:
                    got = self.generation.replay(self.client, (q, i))
                    yield q, i, got, got.row

    def _keep(self, role: str, slot: tuple[Any, ...], got: Cached) -> tuple[str, Cached]:
        """A key the plan looked up: a finished row is kept to land, without a job, when scheduled."""
        if got.row is not None:
            self._cached[role][slot] = (got.row, got.answers)
        return role, got

    def _first_judge_requests(self, q: Query, i: int, g: Row) -> Iterator[tuple[str, list[Request]]]:
        """(kind, first requests of its members) for each judgment of the sample still to make."""
        for kind in KINDS:
            if (q.id, i, kind) not in self.state.judged:
                yield kind, self.judging.first_requests((q, g, kind))

    def plan(self) -> dict[str, int]:
        """What is left to call and how much of it the cache already holds (first judge attempts;
        samples not generated yet cannot be looked up and count as to call)."""
        todo, cached = {"model": 0, "judge": 0}, {"model": 0, "judge": 0}
        per_sample = len(KINDS) * self.judging.width
        for q, i, gen, g in self._walk():
            looked = [] if gen is None else [self._keep("model", (q.id, i), gen)]
            if g is None:
                todo["judge"] += per_sample
            else:
                looked += [
                    self._keep("judge", (q.id, i, kind), self.judging.replay(self.client, (q, g, kind)))
                    for kind in KINDS
                    if (q.id, i, kind) not in self.state.judged
                ]
            for role, got in looked:
                todo[role] += len(got.firsts)
                cached[role] += got.first_cached
        return {
            "queries": len(self.queries),
            "k": self.k,
            "generations_done": len(self.state.gens),
            "judgments_done": len(self.state.judged),
            "generation_calls": todo["model"],
            "generation_cached": cached["model"],
            "judge_calls": todo["judge"],
            "judge_cached": cached["judge"],
        }

    def estimate_inputs(self) -> dict[str, Any]:
        """What ``bsa.cost.estimate`` needs for a dry run: every request the run would send that can
        be built now (cached or not), per line; the judge calls of samples not generated yet, which
        cannot (counted per line, with a prototype request built on a placeholder sample); and the
        completion tokens of generations already made."""
        requests: dict[str, list[Any]] = {"model": [], "judge:safety": [], "judge:think": []}
        unknown = {"judge:safety": 0, "judge:think": 0}
        completions = [0, 0]
        for q, i, gen, g in self._walk():
            if gen is not None:
                requests["model"] += gen.firsts
            if g is None:
                for line in unknown:
                    unknown[line] += self.judging.width
                continue
            completions[0] += 1
            usage = g.get("usage") or {}  # a cached generation's row holds its answer's usage
            completions[1] += int(usage.get("completion_tokens", 0))
            for kind, reqs in self._first_judge_requests(q, i, g):
                requests[f"judge:{kind}"] += reqs
        prototypes: dict[str, Any] = {}
        if self.queries:
            q = self.queries[0]
            placeholder = {SAMPLE_INDEX: 0, "reasoning": "…", "answer": "…"}
            for kind in KINDS:
                reqs = self.judging.first_requests((q, placeholder, kind))
                if reqs:
                    prototypes[f"judge:{kind}"] = reqs[0]
        observed = {"model": (completions[0], completions[1])} if completions[0] else None
        return {
            "requests_by_role": requests,
            "planned_unknown": unknown,
            "prototypes": prototypes,
            "observed": observed,
        }

    def expected(self) -> tuple[int, int]:
        """(generation jobs, judgment jobs) this run will see if nothing fails."""
        gens = sum(len(self.missing(q)) for q in self.queries)
        judgments = 2 * (len(self.state.gens) + gens) - len(self.state.judged)
        # What the plan found in the cache lands without a job.
        return gens - len(self._cached["model"]), judgments - len(self._cached["judge"])

    async def execute(self, scheduler: Scheduler, batch: BatchSettings | None = None) -> BatchReport | None:
        """Run the work. Online: one pass, each judgment queued as its sample lands. With ``batch``
        (judge.batch): generation first, then every first judge request through the provider's batch
        API into the cache, then the judging pass, whose first attempts the cache answers (re-asks and
        lines the batch failed go online)."""
        if batch is None:
            self.schedule(scheduler)
            await scheduler.run()
            return None
        judge_lane = scheduler.lanes["judge"]
        expected, judge_lane.expected = judge_lane.expected, 0
        self.schedule(scheduler, judgments=False)
        await scheduler.run()
        if scheduler.policy.stopping:
            return None
        from bsa.providers.litellm_batch import prefetch

        requests = [  # judgments the plan found whole in the cache need no batch line
            req
            for q, g, kind in self.pending_judgments()
            if (q.id, g[SAMPLE_INDEX], kind) not in self._cached["judge"]
            for req in self.judging.first_requests((q, g, kind))
        ]
        report = await prefetch(
            self.client,
            requests,
            batch.state_path,
            poll_s=batch.poll_s,
            max_requests=batch.max_requests,
            on_progress=batch.on_progress,
        )
        if report.stopped:  # its batches are still running: judging online now would pay twice
            return report
        judge_lane.expected = expected
        self.schedule(scheduler, generations=False)
        await scheduler.run()
        return report

    def pending_judgments(self) -> list[tuple[Query, Row, str]]:
        return [
            (self.state.by_id[g["id"]], g, kind)
            for g in self.state.gens.values()
            for kind in KINDS
            if (g["id"], g[SAMPLE_INDEX], kind) not in self.state.judged
        ]

    def schedule(self, scheduler: Scheduler, generations: bool = True, judgments: bool = True) -> None:
        """Queue the jobs: generations in query order, then the judgments of samples already
        generated; each new generation queues its own judgments when it lands (unless
        ``judgments=False``: batch judging collects them after generation)."""
        self._pipelined = judgments
        if not generations:
            for q, g, kind in self.pending_judgments():
                self._queue_judgment(scheduler, q, g, kind)
            return
        # The judgments of samples the run dir already holds (before cached generations land below,
        # which queue their own).
        if judgments:
            for q, g, kind in self.pending_judgments():
                self._queue_judgment(scheduler, q, g, kind)
        for q in self.queries:
            landed = self._generated(scheduler, q)
            missing = [i for i in self.missing(q) if not self._land("model", (q.id, i), landed)]
            if self.batch_samples and len(missing) > 1:
                for run in _contiguous(missing):
                    self._queue_samples(scheduler, q, run)
            else:
                for i in missing:
                    self._queue_generation(scheduler, q, i)

    def _land(self, role: str, slot: tuple[Any, ...], landed: Callable[[Row], None]) -> bool:
        """Land the row the plan found in the cache for this key, without a job; False when none."""
        cached = self._cached[role].pop(slot, None)
        if cached is None:
            return False
        row, answers = cached
        self.client.stats.cache_hits += answers
        landed(row)
        return True

    def _submit(
        self,
        scheduler: Scheduler,
        stage: Stage[Any],
        key: Any,
        label: Row,
        landed: Callable[[Row], None],
        on_fail: Callable[[], None] | None = None,
    ) -> None:
        """One key of a stage as a job of its role's lane: ``landed`` gets its finished row."""
        client = self.client
        scheduler.submit(stage.role, label, lambda: stage.run(client, key), landed, on_fail=on_fail)

    def _generated(self, scheduler: Scheduler, q: Query) -> Callable[[Row], None]:
        """Where a generation of ``q`` lands: the run dir, then its judgments are queued."""

        def landed(row: Row) -> None:
            self.state.keep_generation(row)
            self._queue_judgments(scheduler, q, row)

        return landed

    def _queue_generation(self, scheduler: Scheduler, q: Query, i: int) -> None:
        assert self.generation is not None
        label = {"stage": "generate", ID: q.id, SAMPLE_INDEX: i}
        lost = partial(self._judgments_lost, scheduler, 1)
        self._submit(scheduler, self.generation, (q, i), label, self._generated(scheduler, q), lost)

    def _queue_samples(self, scheduler: Scheduler, q: Query, indices: list[int]) -> None:
        """Several samples of one query in one request (n = their number): sampling.batch_samples."""
        stage = self.samples
        assert stage is not None
        client, one = self.client, self._generated(scheduler, q)

        def landed(rows: list[Row]) -> None:
            for row in rows:
                one(row)

        scheduler.submit(
            "model",
            {"stage": "generate", ID: q.id, SAMPLE_INDEX: indices[0], "samples": indices},
            lambda: stage.many(client, q, indices),
            landed,
            weight=len(indices),
            on_fail=lambda: self._judgments_lost(scheduler, len(indices)),
        )

    def _judgments_lost(self, scheduler: Scheduler, samples: int) -> None:
        """Samples that failed to generate will queue no judgment: the judge's bar stops counting them."""
        lane = scheduler.lanes["judge"]
        lane.expected = max(0, lane.expected - len(KINDS) * samples)

    def _queue_judgments(self, scheduler: Scheduler, q: Query, g: Row) -> None:
        if not self._pipelined:
            return
        for kind in KINDS:
            if (q.id, g[SAMPLE_INDEX], kind) not in self.state.judged:
                self._queue_judgment(scheduler, q, g, kind)

    def _queue_judgment(self, scheduler: Scheduler, q: Query, g: Row, kind: str) -> None:
        i, landed = g[SAMPLE_INDEX], self.state.keep_judgment
        if not self._land("judge", (q.id, i, kind), landed):
            label = {"stage": "judge", ID: q.id, SAMPLE_INDEX: i, KIND: kind}
            self._submit(scheduler, self.judging, (q, g, kind), label, landed)


def _contiguous(indices: list[int]) -> list[list[int]]:
    """[0, 1, 3, 4] -> [[0, 1], [3, 4]]: one n-request per run of consecutive sample indices, so that
    sample i of a request that starts at index s is sent seed + s and its choice i - s answers it."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs
