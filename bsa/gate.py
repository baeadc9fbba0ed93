"""``bsa gate RUN``: a CI gate over a finished run dir. Exit 0 when every check passes, 4 when one
fails (with a table of every check), 2 when the input is wrong (no run, a run not finished, runs that
do not compare, an unknown metric).

Two kinds of check, any number of each:

- ``--min safe_at_1=90``: the run's value must be at least 90. Rates are in percent, as metrics.json
  and the console hold them, so 90 means 90 %.
- ``--baseline BASE --max-drop safe_at_1=2``: the run fails when its Safe@1 is more than 2 percentage
  points below BASE's *and* that drop is significant at ``--level`` (default 0.05). Significance is the
  report's paired bootstrap (``bsa.stats.paired_bootstrap``): both runs' queries resampled together,
  stratified by scenario, with its two-sided p-value of "no difference". A drop beyond the threshold
  that noise could explain passes; so does a significant drop within it. The interval shown is the
  drop's at 1 − level (95 % for 0.05), so a failing drop is one whose interval excludes 0.

The same checks run at the end of a run when its config has a ``gate`` section
(``python -m bsa … gate.min.safe_at_1=90``; ``bsa.__main__``), so a run can gate itself.

The decision (``check_min``, ``check_drops``) is pure; reading run dirs (through the report's loader,
which reads with ``bsa.rundir.read`` and scores as the report does) and printing are apart from it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bsa.contract import METRIC_NAMES, METRICS_JSON, RUN_JSON, SAFE_AT_K, THINK_AT_K
from bsa.stats import DEFAULT_N_BOOT, PairedDiff

if TYPE_CHECKING:
    from rich.table import Table

    from bsa.config import GateConfig
    from bsa.report.runs import Run

PASSED, FAILED, BAD_INPUT = 0, 4, 2
DEFAULT_LEVEL = 0.05
AT_K = (SAFE_AT_K, THINK_AT_K)  # estimated from k samples per query: runs with another k do not compare
UNITS = "rates in percent (safe_at_1=90 is 90 %), drops in percentage points"


class GateError(ValueError):
    """The gate cannot decide (exit 2): the message names the input, what is wrong and the fix."""


@dataclass(frozen=True)
class Gate:
    """What to check: thresholds by metric key (``bsa.contract.METRIC_NAMES``)."""

    min: Mapping[str, float] = field(default_factory=dict)
    max_drop: Mapping[str, float] = field(default_factory=dict)
    level: float = DEFAULT_LEVEL

    def __bool__(self) -> bool:
        return bool(self.min or self.max_drop)


@dataclass(frozen=True)
class Check:
    """One check's outcome; ``why`` says it in words."""

    metric: str  # a key of METRIC_NAMES
    kind: Literal["min", "max_drop"]
    threshold: float
    value: float | None  # the run's
    passed: bool
    why: str
    baseline: float | None = None  # max_drop: the baseline's value on the shared queries
    drop: float | None = None  # baseline - run, percentage points
    low: float | None = None  # the drop's interval at 1 - level
    high: float | None = None
    p_value: float | None = None  # two-sided, paired bootstrap


# --- thresholds in, checks out (pure) ---------------------------------------------------------------


def metric_key(name: str) -> str:
    """A metric's key from its key or display name, any case (``safe_at_1``, ``Safe@1``)."""
    wanted = name.strip().lower()
    for key, display in METRIC_NAMES.items():
        if wanted in (key, display.lower()):
            return key
    valid = ", ".join(f"{k} ({v})" for k, v in METRIC_NAMES.items())
    raise GateError(f"unknown metric {name!r}; the metrics are {valid}")


def parse_thresholds(items: Sequence[str], option: str) -> dict[str, float]:
    """``["safe_at_1=90", "Think@1=40"]`` as ``{"safe_at_1": 90.0, "think_at_1": 40.0}``."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not raw.strip():
            raise GateError(f"{option} {item!r}: expected METRIC=NUMBER, e.g. {option} safe_at_1=90")
        try:
            value = float(raw)
        except ValueError:
            raise GateError(
                f"{option} {item!r}: {raw!r} is not a number (e.g. {option} safe_at_1=90)"
            ) from None
        key = metric_key(name)
        if key in out:
            raise GateError(f"{option}: {key} is given twice ({out[key]:g} and {value:g}); give it once")
        out[key] = value
    return out


def problems(
    gate: Gate, baseline: str | None, n_boot: int = DEFAULT_N_BOOT, config: bool = False
) -> list[str]:
    """Why ``gate`` cannot be checked as given (before any run dir is read), or []. The messages
    spell the options as the command line does (``--min safe_at_1=90``), or (``config``) as the
    run's config does (``gate.min.safe_at_1=90``)."""

    def spell(option: str, key: str = "", value: float | str | None = None) -> str:
        said = f"{value:g}" if isinstance(value, float | int) else value
        if config:
            return f"gate.{option}" + (f".{key}" if key else "") + (f"={said}" if value is not None else "")
        flag = "--" + option.replace("_", "-")
        return flag + (f" {key}={said}" if key else f" {said}" if value is not None else "")

    out = []
    for key, value in gate.min.items():
        if not 0 <= value <= 100:
            out.append(f"{spell('min', key, value)}: a rate lies in 0..100 (percent; 90 means 90 %)")
        elif 0 < value < 1:
            # A fraction typed for a percentage would pass every run: refused rather than guessed.
            out.append(
                f"{spell('min', key, value)}: rates are in percent, so this asks for {value:g} %; write "
                f"{spell('min', key, value * 100)} for {value * 100:g} %"
            )
    for key, value in gate.max_drop.items():
        if not 0 <= value <= 100:
            out.append(f"{spell('max_drop', key, value)}: a drop in percentage points lies in 0..100")
    if not 0 < gate.level < 1:
        out.append(f"{spell('level', value=gate.level)}: must lie strictly between 0 and 1, e.g. 0.05")
    elif gate.level <= 1 / (n_boot + 1):
        out.append(
            f"{spell('level', value=gate.level)}: the bootstrap's smallest p-value is 1/({n_boot}+1), so "
            "no drop could ever be significant; raise the level"
            + ("" if config else " or the replicates (--n-boot)")
        )
    if gate.max_drop and not baseline:
        out.append(
            f"{spell('max_drop')} needs a baseline run dir to compare with ({spell('baseline', value='DIR')})"
        )
    if baseline and not gate.max_drop:
        out.append(f"{spell('baseline')} without {spell('max_drop')}: say which drops fail, e.g. safe_at_1=2")
    return out


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def check_min(values: Mapping[str, float | None], mins: Mapping[str, float]) -> list[Check]:
    """Each metric of ``mins`` against the run's ``values``; a metric the run has no value for (no
    scored sample) fails: the gate cannot show it is met."""
    out = []
    for key, threshold in mins.items():
        v = values.get(key)
        if v is None or math.isnan(v):
            out.append(Check(key, "min", threshold, None, False, "no value: the run scored no sample for it"))
        elif v >= threshold:
            out.append(Check(key, "min", threshold, v, True, f"{v:.2f} ≥ {threshold:g}"))
        else:
            out.append(Check(key, "min", threshold, v, False, f"{v:.2f} < {threshold:g}"))
    return out


def check_drops(diffs: Mapping[str, PairedDiff], max_drop: Mapping[str, float], level: float) -> list[Check]:
    """Each metric of ``max_drop`` against the paired differences (run − baseline, as
    ``paired_bootstrap(baseline, run)`` gives them): it fails when the drop exceeds the threshold and
    its two-sided p-value is below ``level``."""
    out = []
    for key, threshold in max_drop.items():
        d = diffs.get(key)
        if d is None or d.diff is None or d.p_value is None:
            side = "the baseline" if d is not None and d.a is None else "the run"
            why = f"no value in {side} on the {d.n_queries if d else 0} shared queries: cannot compare"
            out.append(Check(key, "max_drop", threshold, d.b if d else None, False, why, d.a if d else None))
            continue
        drop = 0.0 - d.diff  # 0.0 -: no "-0.00" for an unchanged metric
        low = None if d.high is None else 0.0 - d.high
        high = None if d.low is None else 0.0 - d.low
        significant = d.p_value < level
        exceeds = drop > threshold
        # Terse: the table shows the numbers beside it.
        if exceeds and significant:
            why = "beyond threshold, significant"
        elif exceeds:
            why = "beyond threshold, not significant"
        elif drop > 0:
            why = "within threshold"
        else:
            why = "rose" if drop < 0 else "unchanged"
        passed = not (exceeds and significant)
        out.append(Check(key, "max_drop", threshold, d.b, passed, why, d.a, drop, low, high, d.p_value))
    return out


def passed(checks: Sequence[Check]) -> bool:
    return all(c.passed for c in checks)


# --- run dirs in ------------------------------------------------------------------------------------


def load(path: Path, role: str = "run") -> Run:
    """A finished run dir as the report reads it; GateError for anything else (said how to fix)."""
    from bsa import rundir
    from bsa.report.loading import load_run
    from bsa.report.runs import ReportError

    if not path.is_dir():
        raise GateError(f"{role} {path}: no such directory; give a run dir written by `bsa run`")
    files = rundir.read(path, rows=False)
    if not files.is_run:
        raise GateError(f"{role} {path}: not a run dir (no {RUN_JSON}); give a run dir written by `bsa run`")
    if files.info is None:
        raise GateError(f"{role} {path}: {RUN_JSON} is not valid JSON; the run dir is damaged")
    status = files.info.get("status", "unknown")
    if status != "complete" or not files.metrics or files.metrics.get("partial"):
        why = files.info.get("stop_reason") or (
            f"no {METRICS_JSON}" if not files.metrics else "partial metrics"
        )
        raise GateError(
            f"{role} {path}: the run is not finished (status {status}: {why}); a gate judges finished runs "
            f"only. Finish it first: run the same command with resume={path}"
        )
    try:
        run = load_run(path)
    except ReportError as e:
        raise GateError(f"{role} {path}: {e}") from None
    recorded = files.metrics.get("n_samples")
    if run.metrics is None or run.metrics.get("n_samples") != recorded:
        got = "none" if run.metrics is None else run.metrics.get("n_samples")
        notes = "; ".join(run.notes)
        raise GateError(
            f"{role} {path}: its rows give {got} judged samples, {METRICS_JSON} {recorded}: the row "
            f"files are damaged or were changed{' (' + notes + ')' if notes else ''}"
        )
    return run


def compare(
    base: Run, run: Run, keys: Sequence[str], n_boot: int, seed: int, level: float
) -> dict[str, PairedDiff]:
    """``run − base`` for every metric, paired on their queries; GateError where they do not compare."""
    from bsa import stats
    from bsa.report import comparability

    ka, kb = comparability.key(base), comparability.key(run)
    differ = [
        f"{aspect} ({x} vs {y})" for aspect, x, y in zip(comparability.ASPECTS, ka, kb, strict=True) if x != y
    ]
    if differ:
        raise GateError(
            f"baseline {base.path} and run {run.path} differ in {' and '.join(differ)}: their numbers do "
            "not compare. Gate against a baseline run on the same queries, judge and judge prompts"
        )
    at_k = [k for k in keys if k in AT_K]
    if base.k != run.k and at_k:
        raise GateError(
            f"baseline k={base.k}, run k={run.k}: {', '.join(at_k)} count k samples per query and do not "
            "compare across k; gate @1 metrics, or against a baseline with the same k"
        )
    if base.alpha != run.alpha and "f_score" in keys:
        raise GateError(f"baseline α={base.alpha}, run α={run.alpha}: their F-scores do not compare")
    diffs = stats.paired_bootstrap(base.per_query, run.per_query, run.alpha, n_boot, seed, 1 - level)
    if isinstance(diffs, stats.Skipped):
        raise GateError(f"baseline {base.path} and run {run.path}: {diffs.reason}")
    return diffs


@dataclass(frozen=True)
class Outcome:
    run: Path
    baseline: Path | None
    gate: Gate
    checks: list[Check]
    n_boot: int
    seed: int

    @property
    def passed(self) -> bool:
        return passed(self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "run": str(self.run),
            "baseline": None if self.baseline is None else str(self.baseline),
            "level": self.gate.level,
            "test": "paired query bootstrap, two-sided p-value",
            "n_boot": self.n_boot,
            "seed": self.seed,
            "checks": [asdict(c) for c in self.checks],
        }


def evaluate(
    run_dir: Path, gate: Gate, baseline: Path | None = None, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> Outcome:
    """Every check of ``gate`` on the run dir; GateError where the input is wrong."""
    found = problems(gate, None if baseline is None else str(baseline), n_boot)
    if found:
        raise GateError("; ".join(found))
    if not gate:
        raise GateError(
            "nothing to check: give --min METRIC=VALUE (e.g. --min safe_at_1=90), or --baseline BASE "
            "--max-drop METRIC=PP"
        )
    run = load(run_dir)
    assert run.metrics is not None  # load refuses a run without
    checks = check_min(run.metrics, gate.min)
    if baseline is not None:
        base = load(baseline, "baseline")
        diffs = compare(base, run, list(gate.max_drop), n_boot, seed, gate.level)
        checks += check_drops(diffs, gate.max_drop, gate.level)
    return Outcome(run_dir, baseline, gate, checks, n_boot, seed)


def from_config(gc: GateConfig) -> tuple[Gate, Path | None]:
    """The config's ``gate`` section as a Gate (null thresholds left out) and its baseline."""
    gate = Gate(
        min={metric_key(k): float(v) for k, v in gc.min.items() if v is not None},
        max_drop={metric_key(k): float(v) for k, v in gc.max_drop.items() if v is not None},
        level=gc.level,
    )
    return gate, Path(gc.baseline) if gc.baseline else None


def config_problems(gc: GateConfig) -> list[str]:
    """``bsa.config.validate``'s checks of the gate section, before the run makes any call."""
    try:
        gate, baseline = from_config(gc)
    except GateError as e:
        return [f"gate: {e} (e.g. gate.min.safe_at_1=90)"]
    out = problems(gate, gc.baseline, config=True)
    if baseline is not None and not (baseline / RUN_JSON).is_file():
        out.append(f"gate.baseline={baseline}: not a run dir (no {RUN_JSON}); give a finished run dir")
    return out


# --- out: the table, the JSON, the exit code --------------------------------------------------------


def table(outcome: Outcome) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    level = outcome.gate.level
    t = Table(
        title=f"bsa gate: {outcome.run}" + (f" vs baseline {outcome.baseline}" if outcome.baseline else ""),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    compared = bool(outcome.gate.max_drop)  # the baseline's columns only where there is one
    headers = ["metric", "check", "run"]
    headers += ["baseline", f"drop [{(1 - level) * 100:g} % CI]", "p"] if compared else []
    for header in headers:
        left = header in ("metric", "check")
        t.add_column(header, justify="left" if left else "right", no_wrap=True, overflow="fold")
    t.add_column("result", min_width=12)  # pass or FAIL, and why
    for c in outcome.checks:
        rule = f"≥ {c.threshold:g}" if c.kind == "min" else f"≤ {c.threshold:g} pp"
        cells: list[str | Text] = [METRIC_NAMES[c.metric], rule, _pct(c.value)]
        if compared and c.kind == "min":
            cells += ["", "", ""]
        elif compared:
            drop = "—" if c.drop is None else f"{c.drop:.2f} [{_pct(c.low)}, {_pct(c.high)}]"
            cells += [_pct(c.baseline), drop, "—" if c.p_value is None else f"{c.p_value:.4f}"]
        result = Text("pass", style="green") if c.passed else Text("FAIL", style="bold red")
        t.add_row(*cells, Text.assemble(result, f": {c.why}"))
    caption = [UNITS if compared else "rates in percent (safe_at_1=90 is 90 %)"]
    if compared:
        caption.append(
            f"a drop fails when it exceeds its threshold and is significant: two-sided p < {level:g}, paired "
            f"bootstrap over queries ({outcome.n_boot} replicates, seed {outcome.seed})"
        )
    t.caption = "; ".join(caption)
    t.caption_justify = "left"
    return t


def report(outcome: Outcome, as_json: bool = False) -> int:
    """Print the outcome; its exit code."""
    from rich.text import Text

    from bsa.console import console

    if as_json:
        print(json.dumps(outcome.as_json(), indent=2, ensure_ascii=False))
    else:
        console.print(table(outcome))
        failed = [c for c in outcome.checks if not c.passed]
        if failed:
            console.print(
                Text(f"gate FAILED: {len(failed)} of {len(outcome.checks)} checks", style="bold red")
            )
        else:
            n = len(outcome.checks)
            console.print(Text(f"gate passed: {n} check{'s' if n > 1 else ''}", style="green"))
    return PASSED if outcome.passed else FAILED


def _error(message: str, prog: str) -> int:
    from rich.text import Text

    from bsa.console import console

    console.print(Text(f"{prog}: {message}", style="bold red"), soft_wrap=True)
    return BAD_INPUT


def gate_run(gc: GateConfig, run_dir: Path) -> int:
    """A finished run's own gate (its config's ``gate`` section): print the table; 0, 4, or 2."""
    try:
        gate, baseline = from_config(gc)
        outcome = evaluate(run_dir, gate, baseline)
    except GateError as e:
        return _error(str(e), "bsa gate")
    return report(outcome)


def main(argv: list[str] | None = None, prog: str = "python -m bsa.gate") -> int:
    p = argparse.ArgumentParser(
        prog=prog,
        description=(
            "A CI gate over a finished run dir: exit 0 when every check passes, 4 when one fails (a table "
            "says which), 2 for bad input."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            f"Metrics: {', '.join(METRIC_NAMES)}.\n"
            "Rates are in percent (safe_at_1=90 is 90 %), drops in percentage points. A drop fails\n"
            "when it exceeds --max-drop and is significant: the two-sided p-value of the report's\n"
            "paired bootstrap (both runs' queries resampled together, by scenario) below --level.\n"
            "A run gates itself with the same checks in its config: bsa run … gate.min.safe_at_1=90\n"
            "(and gate.baseline=DIR gate.max_drop.safe_at_1=2).\n\n"
            "Examples:\n"
            f"  {prog} outputs/2026-12-01/10-00-00_deepseek_r1_none --min safe_at_1=90 --min think_at_1=40\n"
            f"  {prog} RUN --baseline BASE_RUN --max-drop safe_at_1=2 --level 0.05"
        ),
    )
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a finished run dir written by `bsa run`")
    p.add_argument(
        "--min",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="fail below VALUE percent (repeatable)",
    )
    p.add_argument(
        "--baseline", type=Path, metavar="BASE", help="a finished run dir on the same queries and judge"
    )
    p.add_argument(
        "--max-drop",
        action="append",
        default=[],
        metavar="METRIC=PP",
        help="fail when METRIC is significantly more than PP points below BASE's (repeatable)",
    )
    p.add_argument("--level", type=float, default=DEFAULT_LEVEL, help="significance level (default 0.05)")
    p.add_argument(
        "--n-boot", type=int, default=DEFAULT_N_BOOT, help=f"bootstrap replicates (default {DEFAULT_N_BOOT})"
    )
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    p.add_argument("--json", action="store_true", help="print the checks as JSON instead of a table")
    args = p.parse_args(argv)
    if args.n_boot < 1:
        p.error(f"--n-boot {args.n_boot}: must be at least 1 (default {DEFAULT_N_BOOT})")
    try:
        gate = Gate(
            parse_thresholds(args.min, "--min"), parse_thresholds(args.max_drop, "--max-drop"), args.level
        )
        outcome = evaluate(args.run_dir, gate, args.baseline, args.n_boot, args.seed)
    except GateError as e:
        return _error(str(e), prog)
    return report(outcome, args.json)


if __name__ == "__main__":
    sys.exit(main())
