"""bsa: an evaluator for the Beyond Safe Answers benchmark (arXiv 2505.19690).

Public API: ``run(cfg, run_dir)`` evaluates a model; ``compute`` turns per-sample verdicts into the
BSA metrics. Heavy modules (LiteLLM, Hydra) load only when used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "compute", "run"]


def __getattr__(name: str) -> Any:
    if name == "run":
        from bsa.run import run

        return run
    if name == "compute":
        from bsa.metrics import compute

        return compute
    raise AttributeError(f"module 'bsa' has no attribute {name!r}")
