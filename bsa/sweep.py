"""Hydra glue for sweeps (``python -m bsa -m …``): every point runs, failed points are named at the
end, the sweep's report is written, and the managed servers a sweep kept running are stopped.

A point that fails (bad input, an incomplete run) does not end the sweep: ``bsa.__main__.execute``
records how it ended instead of exiting (``record``), the other points run, and ``SweepPoints``
(registered under ``hydra.callbacks`` in bsa/conf/config.yaml) writes the sweep's report and a
summary of the failed points when the multirun ends; ``python -m bsa`` then exits 1. Ctrl-C still
stops the whole sweep (exit 130). Each point's outcome is a file under
``<sweep dir>/.bsa_points/``, so points run by joblib, submitit or SLURM in other processes are
counted too; ``<sweep dir>/sweep.json`` lists them all at the end. A point that failed before its
run dir held a run.json (refused config, unreadable data) leaves ``failed.json`` there, saying why.

``bsa.server.acquire`` keeps a server up between the points of a multirun run by Hydra's basic
launcher, so points that serve the same model share one server. ``StopServers`` stops them when
the multirun ends; a single run has nothing kept, so it does nothing there. Interpreter exit stops
them too (atexit), which also covers a sweep stopped by Ctrl-C.

Sweep subdirectories are named ``<job num>_<the swept overrides>``, e.g.
``1_mitigation-rules__model-qwen3_8b``: ``SweepPoints`` leaves every override that is not swept over
several values (a path, a fixed k) out of Hydra's override_dirname when the multirun starts
(``name_by_swept_keys``), and the ``bsa_dirname`` resolver makes the rest one short, safe directory
name. A point's ``.hydra/`` keeps all its overrides.
"""

from __future__ import annotations

import hashlib
import json
import re
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bsa.contract import RUN_JSON

POINTS_DIR = ".bsa_points"  # under the sweep dir: <job num>.json per point (hidden: no run dir)
SUMMARY = "sweep.json"  # under the sweep dir, at the end: every point and how it ended
FAILED = "failed.json"  # in a point's run dir, where it failed before the run dir held a run.json
REPORT_DIR = "report"  # under the sweep dir

# How a point ended, by the exit code a single run would have had.
OUTCOMES = {0: "complete", 1: "error", 2: "bad input", 3: "incomplete", 130: "interrupted"}
RUNNING = "running"

# A directory name stays well under the 255 bytes filesystems allow.
DIRNAME_LIMIT = 200
# A sweep point's name (bsa/conf/config.yaml): short enough not to wrap a table or a panel.
POINT_LIMIT = 60
# Hydra's override_dirname separators in bsa/conf/config.yaml (no "=" or ",": resume=DIR stays unquoted).
_KV_SEP, _ITEM_SEP = "-", "__"
_DROPPED = re.compile(r"[\[\]{}()'\"]")  # brackets and quotes of list and dict values
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")  # slashes, spaces, colons, commas, …


def _safe(text: str) -> str:
    return _UNSAFE.sub("-", _DROPPED.sub("", text)).strip("-.")


def dirname(text: str, limit: int = DIRNAME_LIMIT) -> str:
    """``text`` (Hydra's override_dirname) as one safe directory name: letters, digits and ``._+-``
    only (a model string's ``/`` would nest directories). Over ``limit``, each key is shortened to its
    last part where that still tells the keys apart (``sampling.top_p`` to ``top_p``); if still over,
    cut to ``limit`` with a hash of the whole."""
    name = _safe(str(text))
    if len(name) > limit:
        items = [item.partition(_KV_SEP) for item in str(text).split(_ITEM_SEP)]
        short = [key.rsplit(".", 1)[-1] for key, _, _ in items]
        if len(set(short)) == len(short):
            name = _safe(_ITEM_SEP.join(k + sep + v for k, (_, sep, v) in zip(short, items, strict=True)))
    if len(name) > limit:
        digest = hashlib.sha256(str(text).encode()).hexdigest()[:8]
        name = f"{name[: limit - 9].rstrip('-.')}-{digest}"
    return name


# bsa/conf/config.yaml names sweep subdirs with ${bsa_dirname:…}. Hydra resolves them before any task
# code runs, in the process that runs the point (a joblib or submitit worker too): registered here,
# because every such process imports this module first, to rebuild the callbacks listed in the config.
OmegaConf.register_new_resolver("bsa_dirname", dirname, replace=True)


def in_sweep() -> bool:
    """Whether this is a point of a multirun (``python -m bsa -m …``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record(run_dir: Path, code: int, reason: str = "") -> None:
    """How this sweep point ended: ``code`` is the exit code a single run would have had (0
    complete, 2 bad input, 3 incomplete, 130 interrupted), ``reason`` why it failed."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    _write_point(_sweep_dir(hc), int(hc.job.num), list(hc.overrides.task), run_dir, code, reason)


def _sweep_dir(hc: Any) -> Path:
    # From the point's own output dir (absolute), not hydra.sweep.dir: its ${now:…} could be resolved
    # again in a worker process, later.
    up = len(Path(str(hc.sweep.subdir)).parts)
    return Path(str(hc.runtime.output_dir)).parents[up - 1]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_point(
    sweep_dir: Path, num: int, overrides: list[str], run_dir: Path, code: int | None, reason: str
) -> None:
    from bsa import results

    status = RUNNING if code is None else OUTCOMES.get(code, "error")
    point = {
        "num": num,
        "overrides": overrides,
        "run_dir": str(Path(run_dir).absolute()),
        "status": status,
        "exit_code": code,
        "reason": reason,
        "updated": _now(),
    }
    results.atomic_write(sweep_dir / POINTS_DIR / f"{num}.json", json.dumps(point, indent=2) + "\n")
    marker = Path(run_dir) / FAILED
    if code == 0:
        marker.unlink(missing_ok=True)  # from an earlier attempt at this point
    elif code is not None and not (Path(run_dir) / RUN_JSON).exists():
        # The run never got as far as its run dir (a refused config, unreadable data): say why there.
        # A run dir with a run.json says it itself (status, error), or holds another run, left as it was.
        results.atomic_write(marker, json.dumps(point, indent=2) + "\n")


def swept_keys(task: list[str], params: dict[str, Any] | None = None) -> tuple[set[str], set[str]]:
    """(swept, fixed): the override keys a multirun gives several values, and the others, from the
    command line's overrides and ``hydra.sweeper.params`` (an experiment's grid) as Hydra's basic
    sweeper combines them: a key on the command line replaces the same key of the params."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    final = {}
    for o in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in (params or {}).items()] + task):
        final[o.key_or_group] = o
    swept = {
        key
        for key, o in final.items()
        # A range or list of one value is one point's; an interval (another sweeper's) is many.
        if o.is_sweep_override() and (not o.is_discrete_sweep() or len(list(o.sweep_string_iterator())) > 1)
    }
    return swept, set(final) - swept


def name_by_swept_keys(config: DictConfig) -> None:
    """Name the points by their swept overrides only: the multirun's other override keys join
    ``hydra.job.config.override_dirname.exclude_keys``, through an override of ``hydra.overrides.hydra``
    (Hydra composes each point's config afresh from those, in whichever process runs it)."""
    from omegaconf import open_dict, read_write

    hc = config.hydra
    params = OmegaConf.select(config, "hydra.sweeper.params")
    grid = {str(k): v for k, v in params.items()} if isinstance(params, DictConfig) else {}
    task = OmegaConf.to_container(hc.overrides.task, resolve=False)  # "${now:…}" stays as given
    _, fixed = swept_keys([str(t) for t in task] if isinstance(task, list) else [], grid)
    excluded = list(hc.job.config.override_dirname.exclude_keys)
    more = sorted(fixed - set(excluded))
    if not more:
        return
    quoted = ",".join(json.dumps(k) for k in excluded + more)  # quoted: a key is never read as syntax
    with read_write(hc.overrides), open_dict(hc.overrides):
        hc.overrides.hydra.append(f"hydra.job.config.override_dirname.exclude_keys=[{quoted}]")


def read_points(sweep_dir: Path) -> list[dict[str, Any]]:
    """The points recorded under ``sweep_dir``, by job number; unreadable files are skipped."""
    points = []
    for f in (sweep_dir / POINTS_DIR).glob("*.json"):
        try:
            p = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(p, dict) and isinstance(p.get("num"), int):
            points.append(p)
    return sorted(points, key=lambda p: p["num"])


def failed(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in points if p.get("status") != "complete"]


def _swept(points: list[dict[str, Any]]) -> set[str]:
    """The override keys that tell points apart: a value that differs, or a key only some points have."""
    values: dict[str, set[str]] = {}
    for p in points:
        for o in p.get("overrides", []):
            key, _, value = o.partition("=")
            values.setdefault(key, set()).add(value)
    everywhere = set.intersection(*(_keys(p) for p in points)) if points else set()
    return {k for k, v in values.items() if len(v) > 1 or k not in everywhere}


def _keys(point: dict[str, Any]) -> set[str]:
    return {o.partition("=")[0] for o in point.get("overrides", [])}


def describe(point: dict[str, Any], swept: set[str]) -> str:
    """A point as the overrides that tell it apart: ``#1 sampling.k=0``."""
    overrides = point.get("overrides", [])
    shown = [o for o in overrides if o.partition("=")[0] in swept] or overrides
    return f"#{point['num']} " + (" ".join(shown) or "(no overrides)")


def summary_lines(sweep_dir: Path, points: list[dict[str, Any]]) -> list[str]:
    """The sweep's end in plain words: how many points completed, and each failed one, why, where."""
    bad = failed(points)
    lines = [f"Sweep {sweep_dir}: {len(points) - len(bad)} of {len(points)} points complete."]
    if not bad:
        return lines
    swept = _swept(points)
    lines.append(f"{len(bad)} failed:")
    for p in bad:
        status = p.get("status", "?")
        if status == RUNNING:
            why = "no outcome recorded: its process ended before the point finished"
        else:
            why = f"{status} (exit {p.get('exit_code')})" + (f": {p['reason']}" if p.get("reason") else "")
        lines.append(f"  {describe(p, swept)}: {why}".replace("\n", "\n    "))  # a reason's lines, indented
        lines.append(f"    run dir: {p.get('run_dir')}")
    lines.append(
        f"Every point and why it ended: {sweep_dir / SUMMARY}. Fix the failed points and run them again; "
        f"the same command with hydra.sweep.dir={sweep_dir} continues each point in its own run dir."
    )
    return lines


@dataclass
class _Current:
    """The sweep this process runs, for ``python -m bsa`` once Hydra returns (or is interrupted)."""

    dir: Path
    failed: int | None = None  # set when the multirun has ended


_current: _Current | None = None


def exit_code() -> int:
    """1 when the sweep this process ran had failed points; 0 otherwise (or for a single run)."""
    return 1 if _current is not None and _current.failed else 0


def interrupted() -> bool:
    """After Ctrl-C: say what a sweep in progress had finished; False when no sweep was running."""
    if _current is None or _current.failed is not None:
        return False
    from bsa.console import console

    points = read_points(_current.dir)
    done = sum(p.get("status") == "complete" for p in points)
    console.print(
        f"Sweep interrupted: {done} of the points started had completed. Run the same command with "
        f"hydra.sweep.dir={_current.dir} to continue: each point continues in its own run dir.",
        style="yellow",
        markup=False,
        soft_wrap=True,
    )
    return True


class SweepPoints(Callback):
    """Records each point's start and any exception it ended with; at the end of the multirun,
    writes sweep.json and the sweep's report, and names the failed points. No-op in a single run."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _current
        name_by_swept_keys(config)
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        for old in (sweep_dir / POINTS_DIR).glob("*.json"):  # an earlier sweep in this dir
            old.unlink(missing_ok=True)
        _current = _Current(sweep_dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _multirun(config):
            hc = config.hydra
            _write_point(
                _sweep_dir(hc),
                int(hc.job.num),
                list(hc.overrides.task),
                Path(str(hc.runtime.output_dir)),
                None,
                "",
            )

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        if not _multirun(config):
            return
        hc = config.hydra
        sweep_dir, num = _sweep_dir(hc), int(hc.job.num)
        mine = next((p for p in read_points(sweep_dir) if p["num"] == num), {})
        if job_return.status == JobStatus.FAILED:
            # An exception bsa did not turn into an outcome (a bug, a config Hydra could not convert):
            # shown and recorded here, and the point marked handled, so that Hydra runs the sweep to its
            # end (callbacks, summary, report) instead of re-raising it after the last point.
            reason = "failed"
            try:
                job_return.return_value  # noqa: B018  (raises the point's exception; Hydra names the point)
            except Exception as e:
                traceback.print_exception(type(e), e, e.__traceback__)
                reason = f"{type(e).__name__}: {e}"
            run_dir = Path(mine.get("run_dir") or str(hc.runtime.output_dir))
            _write_point(sweep_dir, num, list(hc.overrides.task), run_dir, 1, reason)
            job_return.status = JobStatus.COMPLETED
            job_return.return_value = None
        elif mine.get("status") == RUNNING:  # returned without saying how it ended: it completed
            _write_point(sweep_dir, num, mine["overrides"], Path(mine["run_dir"]), 0, "")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from bsa import results
        from bsa.console import console

        global _current
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        points = read_points(sweep_dir)
        bad = failed(points)
        _current = _Current(sweep_dir, len(bad))  # first: python -m bsa exits 1 whatever follows
        summary = {"sweep_dir": str(sweep_dir), "finished": _now(), "failed": len(bad), "points": points}
        results.atomic_write(sweep_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
        write_report(sweep_dir)
        style = "bold red" if bad else "green"
        for line in summary_lines(sweep_dir, points):
            console.print(line, style=style, markup=False, soft_wrap=True)


def write_report(sweep_dir: Path) -> None:
    """The report of the sweep's run dirs into ``<sweep dir>/report/``; a failure is printed, never
    raised: it does not fail the sweep."""
    from bsa.console import console

    try:
        from bsa.report.cli import main as report_main
        from bsa.report.runs import find_runs

        if not find_runs(sweep_dir):
            console.print("No point wrote a run dir: no sweep report.", style="yellow", soft_wrap=True)
            return
        code = report_main([str(sweep_dir), "--out", str(sweep_dir / REPORT_DIR)])
        if code != 0:
            console.print(
                f"The sweep report was not written (bsa.report exit {code}).", style="yellow", soft_wrap=True
            )
    except Exception as e:  # the report is a convenience; the points' results stand on their own
        console.print(
            f"The sweep report failed ({type(e).__name__}: {e}); run python -m bsa.report {sweep_dir} "
            f"--out {sweep_dir / REPORT_DIR} to retry.",
            style="yellow",
            markup=False,
            soft_wrap=True,
        )


def _multirun(config: DictConfig) -> bool:
    from hydra.types import RunMode

    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


class StopServers(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from bsa.server import POOL

        POOL.close()
