"""Hydra's run dir for a single run (``python -m bsa``): checked before Hydra makes it, removed when the
run left nothing in it.

Hydra makes ``hydra.run.dir`` (and any missing parents) before the task starts, for every run: a
refused config or a dry run would leave an empty dated directory behind, and a directory that cannot
be made would end in Hydra's traceback. ``RunDirCallback`` (registered under ``hydra.callbacks`` in
bsa/conf/config.yaml) refuses the latter in one line, before Hydra tries, and notes which directories
this run will create; ``remove_if_unused`` removes them again when the run wrote nothing there. Sweep
points (``-m``) keep their dirs: a failed point's dir says why it failed (bsa.sweep).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

# The top directory Hydra is about to create for this process's single run: the run dir itself, or a
# parent of it (outputs/<date>/ on the first run of a day). None: the run dir existed already.
_created: Path | None = None


def _first_missing(path: Path) -> Path | None:
    """The top directory of ``path`` that does not exist yet; None when ``path`` exists."""
    missing = None
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


class RunDirCallback(Callback):
    """Checks a single run's dir before Hydra makes it, and notes what Hydra is about to create."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _created
        from hydra.core.hydra_config import HydraConfig

        from bsa.rundir import unwritable

        # hydra.run.dir names ${hydra:runtime.choices.model}: resolved as run_job is about to (the same
        # config object, so ${now:…} resolves to the same time).
        HydraConfig.instance().set_config(config)
        run_dir = Path(os.path.abspath(str(config.hydra.run.dir)))  # as Hydra's runtime.output_dir
        _created = _first_missing(run_dir)
        # An existing run dir that cannot be written is refused by bsa.run.run (a dry run may read it).
        why = unwritable(run_dir) if _created is not None else None
        if why:
            key = f"resume={config.resume}" if config.get("resume") else f"hydra.run.dir={run_dir}"
            sys.stderr.write(
                f"bsa: {key}: cannot make the run dir there ({why}); choose a directory you can write, "
                "e.g. hydra.run.dir=outputs/my_run\n"
            )
            sys.exit(2)


def remove_if_unused(run_dir: Path) -> None:
    """Remove ``run_dir`` and the parents this run's Hydra made for it, where they are still empty: a
    refused run, a dry run, or a run whose output_dir is elsewhere. Never a directory that existed."""
    global _created
    top, _created = _created, None
    if top is None:
        return
    path = Path(os.path.abspath(run_dir))
    while path == top or top in path.parents:
        try:
            path.rmdir()  # only ever an empty directory
        except OSError:
            return  # not empty (the run wrote there), or gone
        if path == top:
            return
        path = path.parent
