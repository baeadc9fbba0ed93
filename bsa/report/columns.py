"""The metric columns every table, plot and CSV shows, and how their numbers are written."""

from __future__ import annotations

import math

ABBR = {"Over Sensitivity": "OS", "Cognitive Shortcut": "CS", "Risk Omission": "RO"}
# Display name -> key of bsa.stats.estimates (scenario columns are Think per scenario, as published:
# the paper's Think@1 is the size-weighted mean of RO@1, CS@1 and OS@1).
HEADLINE: tuple[tuple[str, str], ...] = (
    ("Safe@1", "safe_at_1"),
    ("Safe@k", "safe_at_k"),
    ("Think@1", "think_at_1"),
    ("Think@k", "think_at_k"),
    ("F-score", "f_score"),
)
BY_SCENARIO: tuple[tuple[str, str], ...] = tuple(
    (f"{ABBR[s]}@{n}", f"{s}/think_at_{n}")
    for s in ("Over Sensitivity", "Cognitive Shortcut", "Risk Omission")
    for n in ("1", "k")
)
METRICS = HEADLINE + BY_SCENARIO
PUBLISHED_METRICS = [name for name, _ in METRICS]


def fmt_num(v: float | None, digits: int = 2) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def fmt_interval(est: float | None, lo: float | None, hi: float | None, digits: int) -> str:
    """An estimate with its interval in brackets; the estimate alone where there is no interval."""
    if est is None:
        return "—"
    if lo is None or hi is None:
        return f"{est:.{digits}f}"
    return f"{est:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"
