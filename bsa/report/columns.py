"""The metric columns every table, plot and CSV shows, and how their numbers are written."""

from __future__ import annotations

import math

# Display name -> key of bsa.stats.estimates: the one table, in bsa.contract.
from bsa.contract import ABBR as ABBR
from bsa.contract import BY_SCENARIO as BY_SCENARIO
from bsa.contract import HEADLINE as HEADLINE
from bsa.contract import METRICS as METRICS

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
