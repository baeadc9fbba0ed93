"""The scheduler: a queue of jobs per role, each role with its own window of jobs in flight.

Jobs are enqueued as work becomes known, not listed up front: a finished generation enqueues its
sample's judgments, so the judge works while the model still generates. The window bounds what a
dead provider is sent (2 × the role's limit of calls in flight: the client's limits do the fine
control). Outcomes come back through one queue, so each costs O(1) whatever the window; the progress
display is redrawn from counters a few times a second, never per job.

The stop policy is the client's (``bsa.policy.StopPolicy``): the scheduler reports each job's outcome
to it, and once it says stop (a fatal error, a run of consecutive failures, a budget, Ctrl-C) launches
no new job and lets jobs in flight finish within the grace period; a second Ctrl-C (or SIGTERM) stops
at once.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import signal
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bsa import console
from bsa.llm import Client, ModelCallError, Stopped, retry_summary_lines

Row = dict[str, Any]
Job = Callable[[], Awaitable[Any]]
Sink = Callable[[Any], None]
TICK_S = 0.25  # progress redraws and the grace-period check: often enough to read, cheap at any rate


@dataclass
class _Job:
    key: Row  # what the job is for, as failures name it
    job: Job
    sink: Sink  # gets the result
    weight: int  # units on the progress bar (the samples of one n=k request)
    on_fail: Callable[[], None] | None  # called when it fails for good


@dataclass
class Lane:
    """One role's queue: jobs waiting, jobs in flight, and its counts for the progress line."""

    role: str
    title: str
    window: int
    expected: int = 0  # jobs this lane will see if nothing fails (the bar's total)
    waiting: deque[_Job] = field(default_factory=deque)
    in_flight: int = 0
    in_flight_weight: int = 0
    waiting_weight: int = 0
    done: int = 0
    failed: int = 0
    task: Any = None  # its rich progress task id


class Scheduler:
    def __init__(self, client: Client, show_progress: bool) -> None:
        self.client, self.policy = client, client.policy
        self.show_progress = show_progress
        self.lanes: dict[str, Lane] = {}
        self._outcomes: asyncio.Queue[tuple[Lane, _Job, asyncio.Task[Any]] | None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def lane(self, role: str, title: str, window: int, expected: int) -> None:
        self.lanes[role] = Lane(role, title, max(1, window), expected)

    def submit(
        self,
        role: str,
        key: Row,
        job: Job,
        sink: Sink,
        weight: int = 1,
        on_fail: Callable[[], None] | None = None,
    ) -> None:
        """Queue a job for ``role``; ``sink`` gets its result (a sink may submit more jobs). ``weight``:
        the units of work it stands for on the progress bar (the samples of one n=k request);
        ``on_fail``: called when it fails for good (the work it would have queued never comes)."""
        lane = self.lanes[role]
        lane.waiting.append(_Job(key, job, sink, weight, on_fail))
        lane.waiting_weight += weight

    def _launch(self) -> None:
        if self.policy.stopping:
            return
        assert self._outcomes is not None
        outcomes = self._outcomes
        for lane in self.lanes.values():
            while lane.in_flight < lane.window and lane.waiting:
                item = lane.waiting.popleft()
                lane.waiting_weight -= item.weight
                task = asyncio.ensure_future(item.job())
                lane.in_flight += 1
                lane.in_flight_weight += item.weight
                self._tasks.add(task)
                task.add_done_callback(lambda t, lane=lane, item=item: outcomes.put_nowait((lane, item, t)))

    def _settle(self, lane: Lane, item: _Job, task: asyncio.Task[Any]) -> None:
        weight = item.weight
        lane.in_flight -= 1
        lane.in_flight_weight -= weight
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            lane.done += weight
            self.policy.succeeded(lane.role)
            item.sink(task.result())
        elif isinstance(exc, Stopped):
            return
        elif isinstance(exc, ModelCallError):
            lane.failed += weight
            self.policy.failed(lane.role, item.key, exc)
            if item.on_fail is not None:
                item.on_fail()
        else:
            raise exc

    async def run(self) -> None:
        """Run until every queue is empty and nothing is in flight, or the run stops. Ctrl-C stops
        launching (a second one stops at once); SIGTERM stops at once."""
        installed = self._install_signals()
        try:
            await self._run()
        finally:
            loop = asyncio.get_running_loop()
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _install_signals(self) -> list[int]:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        policy = self.policy

        def on_interrupt() -> None:
            if policy.reason is None:
                policy.stop("interrupted (Ctrl-C again to stop at once)")
            else:
                policy.interrupted = True
                if main is not None:
                    main.cancel()

        def on_term() -> None:
            policy.interrupted = True
            if main is not None:
                main.cancel()

        installed = []
        for sig, handler in ((signal.SIGINT, on_interrupt), (signal.SIGTERM, on_term)):
            try:
                loop.add_signal_handler(sig, handler)
                installed.append(sig)
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
                pass
        return installed

    async def _run(self) -> None:
        from rich.markup import escape

        stats = self.client.stats
        retries_before = copy.deepcopy(stats.retries_by)
        progress = _progress(self.show_progress)
        self._outcomes = asyncio.Queue()
        outcomes = self._outcomes

        async def tick() -> None:
            while True:
                await asyncio.sleep(TICK_S)
                outcomes.put_nowait(None)

        ticker = asyncio.ensure_future(tick())
        try:
            with progress:
                for lane in self.lanes.values():
                    if lane.expected or lane.waiting:
                        lane.task = progress.add_task(lane.title, total=lane.expected, tally="")
                self._launch()
                while any(lane.in_flight for lane in self.lanes.values()):
                    item = await outcomes.get()
                    while True:
                        if item is not None:
                            self._settle(*item)
                        try:
                            item = outcomes.get_nowait()
                        except asyncio.QueueEmpty:
                            break
                    if self.policy.interrupted or self.policy.over_grace():
                        break
                    self._launch()
                    self._draw(progress, retries_before)
                self._draw(progress, retries_before)
        finally:
            ticker.cancel()
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(ticker, *self._tasks, return_exceptions=True)
            self._tasks.clear()
        for line in retry_summary_lines(stats, since=retries_before):
            console.console.print(f"[yellow]{escape(line)}[/]")

    def _draw(self, progress: Any, retries_before: dict[str, dict[str, int]]) -> None:
        if progress.disable:
            return
        stats = self.client.stats
        for lane in self.lanes.values():
            if lane.task is None:
                if not (lane.waiting or lane.in_flight):
                    continue
                lane.task = progress.add_task(lane.title, total=lane.expected, tally="")
            retries = sum(
                n - retries_before.get(label, {}).get(kind, 0)
                for label, kinds in stats.retries_by.items()
                if label.startswith(lane.role + " ")
                for kind, n in kinds.items()
            )
            parts = [f"[red]{lane.failed} failed[/]"] if lane.failed else []
            if retries:
                parts.append(f"{retries} retries")
            total = max(lane.expected, lane.done + lane.failed + lane.in_flight_weight + lane.waiting_weight)
            progress.update(
                lane.task, completed=lane.done, total=total, tally="".join(f" · {p}" for p in parts)
            )


_said_no_widgets = False  # the note below, once per process


def _live_display_works() -> bool:
    """False in Jupyter without ipywidgets: Rich draws its live display into an ipywidgets Output
    there, and without one warns 'install "ipywidgets"' at every refresh and draws nothing."""
    global _said_no_widgets
    if not console.console.is_jupyter:
        return True
    if importlib.util.find_spec("ipywidgets") is None:  # found, not imported: Rich imports it
        if not _said_no_widgets:
            _said_no_widgets = True
            console.console.print(
                "bsa: no progress bar in this notebook: it needs ipywidgets (pip install ipywidgets); "
                "the run goes on without one.",
                style="dim",
                markup=False,
            )
        return False
    return True


def _progress(show: bool) -> Any:
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column
    from rich.text import Text

    class Title(ProgressColumn):
        # The one column that gives way on a narrow terminal, cut with an ellipsis: the counts and
        # times beside it are what the line is for (the plan panel names the model in full).
        def render(self, task: Task) -> Text:
            return Text(task.description, style="bold", no_wrap=True, overflow="ellipsis")

    def whole() -> Column:
        return Column(no_wrap=True)

    return Progress(
        Title(),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} done{task.fields[tally]}", table_column=whole()),
        TimeElapsedColumn(table_column=whole()),
        TextColumn("ETA", table_column=whole()),
        TimeRemainingColumn(table_column=whole()),
        console=console.console,
        disable=not (show and _live_display_works()),
        refresh_per_second=4,
    )
