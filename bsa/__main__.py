"""``python -m bsa [overrides]``: compose the config with Hydra, convert it once, run."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from bsa.config import Config, register_configs

register_configs()


def _sigterm(signum: int, frame: Any) -> None:
    # Turn SIGTERM into an exception so every `finally` (servers, open files) runs.
    raise SystemExit(128 + signum)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(dcfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from bsa import console
    from bsa.data import DatasetError
    from bsa.judge import TemplateError
    from bsa.llm import ModelCallError
    from bsa.run import ConfigError, run
    from bsa.server import ServerError

    signal.signal(signal.SIGTERM, _sigterm)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, Config)
    run_dir = Path(cfg.output_dir or HydraConfig.get().runtime.output_dir)
    try:
        res = run(cfg, run_dir)
    except (ConfigError, DatasetError, TemplateError, ModelCallError, ServerError, FileNotFoundError) as e:
        console.console.print(f"[bold red]bsa: {e}[/]")
        console.console.print(f"Finished rows, if any, are kept in {run_dir}")
        sys.exit(2)
    except KeyboardInterrupt:
        console.console.print(f"[yellow]Interrupted; finished rows are kept in {run_dir}[/]")
        sys.exit(130)
    s = res.stats
    extra = {
        "network calls": s.calls,
        "cache hits": s.cache_hits,
        "retries": s.retries,
        "prompt tokens": s.prompt_tokens,
        "completion tokens": s.completion_tokens,
        "reasoning tokens": s.reasoning_tokens,
    }
    if s.cost_usd:
        extra["cost (USD, LiteLLM prices)"] = f"{s.cost_usd:.4f}"
    title = f"{cfg.model.name} · mitigation={cfg.mitigation.name} · judge={cfg.judge.name}"
    console.print_metrics(res.metrics, title, extra)
    if cfg.dataset.demo or (cfg.model.serve.model_path is None and cfg.model.serve.backend == "llama_cpp"):
        console.console.print(
            "[yellow]This was the embedded demo: SmolLM2-135M (not a reasoning model) judged by itself "
            "on illustrative data, so the numbers show the pipeline works, not how safe any model is.\n"
            "Evaluate a real model on the benchmark, e.g.:\n"
            "  DEEPSEEK_API_KEY=… OPENAI_API_KEY=… python -m bsa model=deepseek_r1 judge=gpt4o "
            "dataset=bsa dataset.path=…/dataset.csv[/]"
        )
    console.console.print(f"Results: [bold]{res.run_dir}[/]")
    f = res.metrics.get("f_score")
    return float(f) if f is not None else None


if __name__ == "__main__":
    main()
