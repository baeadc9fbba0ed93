"""``bsa estimate RUN_DIR [--to OVERRIDE …] [--within 4h]``: a pilot run's measured tokens, dollars and
seconds per call, scaled to a larger selection (by default the whole benchmark), with intervals; the
wall time at the target's concurrency, and the concurrency that would end within a chosen time.

The target is the pilot's own config (its ``.hydra/overrides.yaml``) with ``--to`` overrides on top;
without ``--to`` the pilot's selection (``dataset.limit``, ``dataset.shard``, ``dataset.scenarios``) is
dropped, which leaves the full benchmark. The scaling itself is ``bsa.forecast.scale``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bsa import contract, rundir
from bsa.forecast import ROLES, Figure, Scaled, hours, parse_duration, pilot_overhead, pilot_queries, scale

# The pilot's overrides that say where and how it ran, not what: never carried to the target.
NOT_CARRIED = ("hydra.", "resume", "output_dir", "dry_run", "progress", "labels")
# Without --to, the pilot's selection is dropped: the target is the full benchmark.
SELECTION = ("dataset.limit", "dataset.shard", "dataset.scenarios", "dataset.ids")


class PilotError(ValueError):
    """A pilot run dir or target that cannot be estimated from, with what to do."""


def override_key(override: str) -> str:
    """``dataset.limit`` of ``dataset.limit=30``, ``+gate.min.x=1``, ``~judge.members``."""
    return override.lstrip("+~").split("=", 1)[0].strip()


def target_overrides(pilot: list[str], to: list[str]) -> list[str]:
    """The pilot's overrides, less where it ran (and, without ``to``, its selection), then ``to``."""
    given = {override_key(o) for o in to}
    drop = given | (set() if to else set(SELECTION))
    kept = [
        o
        for o in pilot
        if not override_key(o).startswith(NOT_CARRIED)
        and override_key(o) not in drop
        and not any(override_key(o).startswith(d + ".") for d in drop)
    ]
    return kept + list(to)


def _pilot_overrides(run: rundir.RunFiles) -> list[str]:
    path = run.hydra_file("overrides.yaml")
    try:
        got = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise PilotError(
            f"{path}: the pilot's overrides cannot be read ({e}); a run dir written by bsa has them"
        ) from e
    return [str(o) for o in got] if isinstance(got, list) else []


def load_pilot(path: Path) -> rundir.RunFiles:
    if not path.is_dir():
        raise PilotError(
            f"{path}: no such directory; give a run dir of a pilot run (bsa run dataset.limit=50)"
        )
    run = rundir.read(path, lenient=True)
    if not run.is_run:
        raise PilotError(f"{path}: not a run dir ({contract.RUN_JSON} missing); give a pilot run's dir")
    if not run.generations:
        raise PilotError(f"{path}: the pilot has no generations yet; let it run (resume={path}) first")
    return run


def estimate_from_pilot(
    path: Path,
    to: list[str],
    within_s: float | None = None,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[Scaled, dict[str, Any]]:
    """The scaled figures and what they stand on (pilot, target, limits, missing keys, notes)."""
    from bsa import data
    from bsa.compose import compose
    from bsa.config import role_limits
    from bsa.run import endpoints_of, missing_keys

    run = load_pilot(path)
    overrides = target_overrides(_pilot_overrides(run), to)
    cfg = compose(overrides).cfg
    queries, _ = data.load(cfg.dataset, cfg.cache.dir)
    counts: dict[str, int] = {}
    for q in queries:
        counts[q.scenario] = counts.get(q.scenario, 0) + 1
    pilot_cfg = run.config or {}
    batch_samples = bool((pilot_cfg.get("sampling") or {}).get("batch_samples"))
    pilot = pilot_queries(run.generations, run.judgments, batch_samples)
    limits = role_limits(cfg)
    rpm = {"model": cfg.model.rpm, "judge": cfg.judge.rpm}
    pilot_limits = {
        role: int((pilot_cfg.get(role) or {}).get("concurrency") or pilot_cfg.get("concurrency") or 1)
        for role in ROLES
    }
    pilot_rpm = {role: (pilot_cfg.get(role) or {}).get("rpm") for role in ROLES}
    pilot_wall = (run.info or {}).get("wall_s")
    complete = (run.info or {}).get("status") == "complete"
    overhead = (
        pilot_overhead(pilot, float(pilot_wall), pilot_limits, pilot_rpm)
        if complete and isinstance(pilot_wall, (int, float))
        else 0.0
    )
    scaled = scale(
        pilot,
        counts,
        cfg.sampling.k,
        limits,
        rpm,
        within_s=within_s,
        overhead_s=overhead,
        n_boot=n_boot,
        seed=seed,
        level=level,
    )
    if overhead:
        scaled.notes.append(
            f"{overhead:.1f} s added for what a run takes beyond its calls (start-up, writing its files): "
            "the pilot's wall time less its calls' time"
        )
    if run.info and run.info.get("status") != "complete":
        scaled.notes.append(
            f"the pilot is {run.info.get('status', 'unfinished')}: scaled from its finished rows"
        )
    scaled.notes.append(
        "seconds per call as the pilot measured them at "
        + ", ".join(f"{role} concurrency {pilot_limits[role]}" for role in ROLES)
        + "; a server or provider under more load may answer more slowly"
    )
    ids = {q.id for q in queries}
    shared = sum(1 for q in pilot if q.id in ids)
    if shared:
        scaled.notes.append(
            f"{shared} of the target's queries are the pilot's: with its cache, their samples cost "
            "nothing again"
        )
    missing = missing_keys(endpoints_of(cfg.model, cfg.judge, True))
    basis = {
        "pilot": str(path),
        "pilot_queries": len(pilot),
        "pilot_samples": sum(q.samples for q in pilot),
        "target_overrides": overrides,
        "target_queries": counts,
        "k": cfg.sampling.k,
        "concurrency": limits,
        "rpm": rpm,
        "missing": missing,
        "overhead_s": overhead,
    }
    return scaled, basis


def _one(v: float | None, money: bool = False) -> str:
    if v is None:
        return "?"
    if money:
        return f"${v:,.2f}"
    return f"{v:,.0f}"


def _fmt(f: Figure, money: bool = False) -> str:
    """``159,400 [156,290–162,560]`` (or "unpriced" / "?" where the pilot cannot size it)."""
    if f.value is None:
        return "unpriced" if money else "?"
    return f"{_one(f.value, money)} [{_one(f.low, money)}–{_one(f.high, money)}]"


FIGURE_NAMES = {
    "calls": "calls",
    "prompt_tokens": "prompt tokens",
    "completion_tokens": "completion tokens",
    "usd": "USD",
    "seconds": "call time (summed)",
}


def print_scaled(
    scaled: Scaled, basis: dict[str, Any], within: str | None, out: Console | None = None
) -> None:
    out = out or Console()
    pct = round(scaled.level * 100)
    t = Table(
        title=escape(
            f"Estimate for {scaled.samples:,} samples ({sum(basis['target_queries'].values()):,} queries × "
            f"{basis['k']}), from a pilot of {basis['pilot_samples']:,} samples ({basis['pilot']})"
        ),
        title_justify="left",
    )
    t.add_column("role")
    t.add_column("figure")
    t.add_column("estimate", justify="right")
    t.add_column(f"{pct} % interval", justify="right")
    for role in ROLES:
        for name, label in FIGURE_NAMES.items():
            f = scaled.per_role[role][name]
            if name == "seconds":
                cells = (hours(f.value or 0), f"{hours(f.low or 0)}–{hours(f.high or 0)}")
            elif f.value is None:
                cells = ("unpriced" if name == "usd" else "?", "")
            else:
                money = name == "usd"
                cells = (_one(f.value, money), f"{_one(f.low, money)}–{_one(f.high, money)}")
            t.add_row(role if name == "calls" else "", label, *cells)
    t.caption = escape("interval: the pilot's queries resampled within each scenario")
    t.caption_justify = "left"
    out.print(t)
    usd = [scaled.per_role[r]["usd"] for r in ROLES]
    priced = [u for u in usd if u.value is not None]
    if priced:
        total = Figure(
            sum(u.value or 0 for u in priced),
            sum(u.low or 0 for u in priced),
            sum(u.high or 0 for u in priced),
        )
        note = "" if len(priced) == len(usd) else " (priced roles only)"
        out.print(f"[bold]Cost:[/] {escape(_fmt(total, money=True))}{note}")
    w = scaled.wall_s
    limits = ", ".join(
        f"{role} {ld.concurrency} in flight" + (f" ≤ {ld.rpm}/min" if ld.rpm else "")
        for role, ld in scaled.loads.items()
    )
    out.print(
        f"[bold]Wall time:[/] {escape(hours(w.value or 0))} \\[{escape(hours(w.low or 0))}–"
        f"{escape(hours(w.high or 0))}] at {escape(limits)}"
    )
    if scaled.within is not None and within is not None:
        m, j = scaled.within["model"], scaled.within["judge"]
        if m is None or j is None:
            out.print(
                f"[yellow]Within {escape(within)}:[/] not reachable by concurrency alone "
                "(an rpm cap, or single calls longer than that)"
            )
        else:
            out.print(
                f"[bold]Within {escape(within)}:[/] model.concurrency={m} judge.concurrency={j} "
                "(sized on the interval's slow end)"
            )
    for note in scaled.notes:
        out.print(f"[dim]{escape(note)}[/]")
    for problem in basis["missing"]:
        out.print(f"[yellow]A real run would stop here:[/] {escape(problem)}")


def to_json(scaled: Scaled, basis: dict[str, Any]) -> dict[str, Any]:
    def fig(f: Figure) -> dict[str, float | None]:
        return {"value": f.value, "low": f.low, "high": f.high}

    return {
        **basis,
        "samples": scaled.samples,
        "level": scaled.level,
        "per_role": {r: {n: fig(f) for n, f in figs.items()} for r, figs in scaled.per_role.items()},
        "wall_s": fig(scaled.wall_s),
        "within": scaled.within,
        "notes": scaled.notes,
    }


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Scale a pilot run's measured tokens, dollars and seconds per call to a larger "
        "selection (default: the full benchmark), with intervals; the wall time at the target's "
        "concurrency. Nothing is called.",
        epilog=f"Example: {prog} outputs/2026-12-06/10-00-00_deepseek_r1_none --to dataset.limit=null "
        "--within 4h",
    )
    p.add_argument("run_dir", type=Path, help="the pilot's run dir")
    p.add_argument(
        "--to",
        action="append",
        default=[],
        metavar="OVERRIDE",
        help="an override of the target, on top of the pilot's (repeat it; e.g. dataset.limit=null, "
        "sampling.k=5, concurrency=32); without one, the full benchmark",
    )
    p.add_argument("--within", metavar="DURATION", help="the concurrency that ends within this (4h, 90m)")
    p.add_argument("--level", type=float, default=0.95, help="the intervals' level (default 0.95)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    return p


def main(argv: list[str] | None = None, prog: str = "bsa estimate") -> int:
    args = parser(prog).parse_args(argv)
    from hydra.errors import HydraException

    from bsa.config import ConfigError
    from bsa.data import DatasetError

    try:
        within_s = parse_duration(args.within) if args.within else None
        if not 0 < args.level < 1:
            raise PilotError(f"--level {args.level}: a fraction between 0 and 1, e.g. 0.95")
        scaled, basis = estimate_from_pilot(args.run_dir, args.to, within_s, args.level, args.n_boot)
    except (PilotError, ConfigError, DatasetError, HydraException, ValueError, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    print_scaled(scaled, basis, args.within)
    if args.json:
        args.json.write_text(json.dumps(to_json(scaled, basis), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
