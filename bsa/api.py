"""The Python API, for notebooks and scripts: ``evaluate(overrides) -> Results``, ``aevaluate``,
``load_run(dir) -> Results``.

``evaluate`` composes the config the CLI would compose from the same overrides (``bsa.compose``,
the one compose path of the CLI, the API and the tools), picks the run dir the CLI would pick
(``hydra.run.dir=…``, ``resume=…``, ``output_dir=…``, else ``outputs/<date>/<time>_<model>_<mitigation>``
under the current directory), and calls ``bsa.run.run`` with the same ``.hydra/`` files. It works in a
plain script and where an event loop is already running in this thread (Jupyter): ``bsa.run.run`` runs its own
loop (``asyncio.run``), so there the evaluation runs in a worker thread and ``evaluate`` waits for
it; an interrupt (Ctrl-C, a notebook's stop button) while it waits stops the run in the worker as a
second Ctrl-C stops the CLI (finished rows and partial metrics are written), then raises
``KeyboardInterrupt``. ``aevaluate`` is the same evaluation for code that awaits; cancelling the
awaiting task stops the run in its worker thread the same way (no call after it; the partial files are
written while the cancelled task waits for the worker to end), then raises ``CancelledError``.

A run that stops early or has failed calls returns ``Results`` with ``complete`` false (and a
``RuntimeWarning`` saying why; ``raise_incomplete=True`` raises ``bsa.run.RunIncomplete`` instead);
a bad config, dataset or key raises as in the CLI (``ConfigError``, ``DatasetError``, …).

``Results.samples`` is the run's ``samples.parquet`` as a DataFrame (one row per sample, columns
``bsa.results.SAMPLE_COLUMNS``), ``Results.metrics`` the metrics as a DataFrame (one row per group:
overall, each scenario, each primary category), ``Results.metrics_dict`` metrics.json itself. This
``Results`` is not ``bsa.run.Results`` (the typed rows and call stats that ``bsa.run.run`` returns to
tests); ``Results.from_run`` builds one from the other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import io
import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from bsa import results as run_files

# The one compose path (bsa.compose), re-exported: bsa.api.compose, bsa.api.Composed.
from bsa.compose import Composed as Composed
from bsa.compose import compose as compose
from bsa.compose import override_list
from bsa.contract import F_SCORE, RATES, RUN_JSON, SAFE_AT_1, THINK_AT_1

if TYPE_CHECKING:
    import pandas as pd

    from bsa import cost
    from bsa import run as run_module

T = TypeVar("T")

# One row per group; the names are metrics.json's keys (safe_at_1 = Safe@1, f_score = F-score, …).
METRIC_COLUMNS: tuple[str, ...] = (
    *RATES,
    F_SCORE,
    "n_queries",
    "n_samples",
    "unscored_safety",
    "unscored_think",
    "flagged",
)


def metrics_frame(m: dict[str, Any]) -> pd.DataFrame:
    """metrics.json as a DataFrame: columns ``level`` (overall, scenario, category), ``group`` (all,
    the scenario's or category's name) and ``METRIC_COLUMNS``; F-score per group with the run's α."""
    import pandas as pd

    from bsa.metrics import f_score

    alpha = m.get("alpha")

    def row(level: str, group: str, g: dict[str, Any]) -> dict[str, Any]:
        out = {"level": level, "group": group, **{key: g.get(key) for key in METRIC_COLUMNS}}
        if out[F_SCORE] is None and alpha is not None:
            out[F_SCORE] = f_score(g.get(THINK_AT_1), g.get(SAFE_AT_1), float(alpha))
        return out

    rows = [row("overall", "all", m)] if m else []
    rows += [row("scenario", name, g) for name, g in (m.get("scenarios") or {}).items()]
    rows += [row("category", name, g) for name, g in (m.get("categories") or {}).items()]
    frame = pd.DataFrame(rows, columns=["level", "group", *METRIC_COLUMNS])
    return frame.astype(dict.fromkeys((*RATES, F_SCORE), "float64"))


def samples_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``bsa.results.sample_rows`` as a DataFrame, converted exactly as ``pd.read_parquet`` converts
    samples.parquet (through Parquet itself), so a run's samples compare equal however obtained."""
    import pandas as pd
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(run_files.samples_table(rows), buf)
    buf.seek(0)
    return pd.read_parquet(buf)


@dataclass(frozen=True, repr=False, eq=False)
class Results:
    """A run's results for analysis: ``samples`` and ``metrics`` DataFrames, metrics.json, status."""

    run_dir: Path
    samples: pd.DataFrame  # one row per sample: bsa.results.SAMPLE_COLUMNS
    metrics: pd.DataFrame  # one row per group (overall, each scenario, each category): metrics_frame
    metrics_dict: dict[str, Any]  # metrics.json
    complete: bool  # every sample generated and judged, no call failed, not stopped
    stop_reason: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # run.json

    @classmethod
    def from_run(cls, res: run_module.Results) -> Results:
        """From what ``bsa.run.run`` returned (or ``RunIncomplete.results``)."""
        rows = run_files.sample_rows(res.queries, res.generations, res.judgments)
        return cls(
            run_dir=res.run_dir,
            samples=samples_frame(rows),
            metrics=metrics_frame(res.metrics),
            metrics_dict=res.metrics,
            complete=res.complete,
            stop_reason=res.stop_reason,
            info=run_files.read_json_object(res.run_dir / RUN_JSON),
        )

    def __repr__(self) -> str:
        f = self.metrics_dict.get(F_SCORE)
        score = f"{f:.2f}" if isinstance(f, (int, float)) else "n/a"
        state = "complete" if self.complete else f"incomplete ({self.stop_reason or 'see run.json'})"
        return f"Results({str(self.run_dir)!r}, {len(self.samples)} samples, F-score {score}, {state})"

    def _repr_html_(self) -> str:  # Jupyter: the metrics table under a one-line summary
        from html import escape

        return f"<p>{escape(repr(self))}</p>" + self.metrics.to_html(index=False, na_rep="–")


def load_run(run_dir: str | Path) -> Results:
    """A run dir's results from its files: samples.parquet and metrics.json where they are current;
    otherwise (a run that is still going, was killed, or predates samples.parquet) joined and scored
    again from the JSONL files, as ``python -m bsa.report`` reads them."""
    import pandas as pd

    from bsa import rundir

    path = Path(run_dir)
    files = rundir.read(path, rows=False)  # the rows only where samples.parquet is stale (below)
    if not files.is_run:
        raise FileNotFoundError(f"{path}: not a run dir (no run.json); give a dir written by bsa")
    info = files.info or {}
    metrics = files.metrics
    if run_files.samples_current(path) and metrics:
        samples = pd.read_parquet(path / run_files.SAMPLES)
        complete = info.get("status") == "complete"
    else:
        from bsa.report.loading import load_run as read_run

        run = read_run(path)
        known = list(run.queries.values()) if run.categories_known else []
        gens = run_files.sort_rows(run.generations, known) if known else run.generations
        samples = samples_frame(run_files.sample_rows(known, gens, run.judgments))
        metrics = run.metrics or metrics
        complete = False  # the final files are not those of a finished run
    return Results(
        run_dir=path,
        samples=samples,
        metrics=metrics_frame(metrics),
        metrics_dict=metrics,
        complete=complete,
        stop_reason=info.get("stop_reason"),
        info=info,
    )


def _evaluate(overrides: list[str], run_dir: str | Path | None, raise_incomplete: bool) -> Results:
    from bsa.config import ConfigError
    from bsa.run import RunIncomplete, run

    c = compose(overrides, run_dir)
    if c.cfg.dry_run:
        raise ConfigError("dry_run=true: use bsa.api.estimate(overrides) for what a run would do and cost")
    if c.cfg.verbose:  # as the CLI: each retry logged (a handler only where the app has none)
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("bsa").setLevel(logging.DEBUG)
    try:
        res = run(c.cfg, c.run_dir, hydra_files=c.hydra_files)
    except RunIncomplete as e:
        if raise_incomplete:
            raise
        warnings.warn(f"bsa: the run is incomplete: {e}", RuntimeWarning, stacklevel=2)
        res = e.results
    if c.cfg.labels:  # as the CLI: the judge measured on human labels, beside the run
        from bsa.__main__ import _score_labels

        _score_labels(res.run_dir, Path(c.cfg.labels))
    return Results.from_run(res)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Worker(Generic[T]):
    """``fn()`` in a thread of its own, which ``interrupt`` stops as Ctrl-C stops the CLI's run."""

    def __init__(self, fn: Callable[[], T], name: str) -> None:
        self._ident: int | None = None
        self._started = threading.Event()

        def target() -> T:
            self._ident = threading.get_ident()
            self._started.set()
            return fn()

        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.future = self._pool.submit(target)
        self._pool.shutdown(wait=False)  # the thread ends with fn; nothing else is submitted

    def interrupt(self) -> None:
        """A KeyboardInterrupt in the worker (the run writes what it has and stops), unless it is done."""
        if self.future.cancel():  # not started yet: it never will
            return
        self._started.wait()
        if self._ident is not None and not self.future.done():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._ident), ctypes.py_object(KeyboardInterrupt)
            )


def _in_worker(fn: Callable[[], T]) -> T:
    """``fn()`` in a worker thread, waited for. An interrupt while waiting is raised in the worker too
    (the run writes what it has and stops), then here."""
    worker = _Worker(fn, "bsa-evaluate")
    try:
        return worker.future.result()
    except KeyboardInterrupt:
        worker.interrupt()
        concurrent.futures.wait([worker.future])  # the partial files; a second interrupt stops waiting
        raise


def evaluate(
    overrides: Sequence[str] = (), *, run_dir: str | Path | None = None, raise_incomplete: bool = False
) -> Results:
    """Evaluate as ``python -m bsa <overrides>`` would, and return the results.

    ``run_dir``: where to write (default: as the CLI, ``hydra.run.dir=…`` or ``resume=…`` among the
    overrides, else ``outputs/<date>/<time>_<model>_<mitigation>``). ``raise_incomplete``: raise
    ``bsa.run.RunIncomplete`` for a run that stopped early or had failed calls, instead of returning
    its partial results with ``complete`` false.
    """
    args = override_list(overrides)
    if _loop_running():  # Jupyter: bsa.run.run starts its own event loop, which needs a thread of its own
        return _in_worker(lambda: _evaluate(args, run_dir, raise_incomplete))
    return _evaluate(args, run_dir, raise_incomplete)


async def aevaluate(
    overrides: Sequence[str] = (), *, run_dir: str | Path | None = None, raise_incomplete: bool = False
) -> Results:
    """``evaluate`` for code that awaits: the run goes on in a worker thread while the loop runs.
    Cancelled, it stops the run (as Ctrl-C would), waits for the worker to end, and re-raises."""
    args = override_list(overrides)
    worker = _Worker(lambda: _evaluate(args, run_dir, raise_incomplete), "bsa-aevaluate")
    done = asyncio.wrap_future(worker.future)
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        worker.interrupt()
        # The worker's own end (KeyboardInterrupt, or its result had it just finished) is not this
        # task's: the cancellation is what the caller asked for and gets.
        await asyncio.wait([done])
        if not done.cancelled():
            done.exception()  # retrieved: no "exception was never retrieved" at exit
        raise


def estimate(overrides: Sequence[str] = (), *, run_dir: str | Path | None = None) -> cost.Estimate:
    """What ``evaluate`` would do and cost (``dry_run=true``): no server started, no call made."""
    from bsa.run import dry_run

    c = compose(overrides, run_dir)
    return dry_run(c.cfg, c.run_dir)
