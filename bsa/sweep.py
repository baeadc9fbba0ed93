"""Hydra glue for sweeps (``python -m bsa -m …``): stop the managed servers a sweep kept running.

``bsa.server.acquire`` keeps a server up between the points of a multirun run by Hydra's basic
launcher, so points that serve the same model share one server. ``StopServers`` (registered under
``hydra.callbacks`` in conf/config.yaml) stops them when the multirun ends; a single run has
nothing kept, so it does nothing there. Interpreter exit stops them too (atexit), which also covers
a multirun that ends with a failed point (Hydra then skips ``on_multirun_end``).
"""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class StopServers(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from bsa.server import POOL

        POOL.close()
