"""bsa: an evaluator for the Beyond Safe Answers benchmark (arXiv 2505.19690).

Public API (``bsa.api``), for notebooks and scripts::

    import bsa
    res = bsa.evaluate(["model=deepseek_r1", "sampling.k=2"])   # the CLI's overrides -> Results
    res = await bsa.aevaluate([...])                             # the same, for code that awaits
    res = bsa.load_run("outputs/2026-12-01/10-00-00_deepseek_r1_none")
    est = bsa.estimate(["model=deepseek_r1"])                    # the dry run: calls, tokens, $, wall
    res.samples, res.metrics, res.metrics_dict, res.run_dir, res.complete

``compute`` turns per-sample verdicts into the BSA metrics (``bsa.metrics``). ``bsa.run`` is the
module bsa/run.py, whose ``run(cfg, run_dir) -> bsa.run.Results`` evaluates a typed ``Config`` (what
the CLI calls and tests call directly: ``from bsa.run import run``).

Why ``bsa.run`` is the module and not a function: a package attribute named like a submodule is
replaced by that submodule as soon as anything imports it (``import bsa.run``, which the CLI and
``bsa.evaluate`` do), so a lazy ``bsa.run`` function would be a function before that import and a
module after it (``TypeError: 'module' object is not callable`` on the second call). Functions and
modules therefore have different names here: ``bsa.evaluate`` is the function to call, ``bsa.run``
always the module. Heavy modules (LiteLLM, Hydra, pandas) load only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["Results", "__version__", "aevaluate", "compute", "estimate", "evaluate", "load_run", "run"]

# Lazy attributes: name -> (module, attribute). Never a submodule's name (see the docstring).
_LAZY = {
    "evaluate": ("bsa.api", "evaluate"),
    "aevaluate": ("bsa.api", "aevaluate"),
    "estimate": ("bsa.api", "estimate"),
    "load_run": ("bsa.api", "load_run"),
    "Results": ("bsa.api", "Results"),
    "compute": ("bsa.metrics", "compute"),
}
_SUBMODULES = ("run",)  # exported as the modules themselves, whatever was imported first


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"bsa.{name}")
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'bsa' has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})
