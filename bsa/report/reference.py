"""The published BSA leaderboard (resources/leaderboard.csv) and which published model a run is."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from bsa.contract import SCENARIOS
from bsa.metrics import f_score
from bsa.report.columns import ABBR

REFERENCE_CSV = Path(__file__).parent.parent / "resources" / "leaderboard.csv"

# Hydra model config name -> the model's name on the published leaderboard.
REFERENCE_NAMES: dict[str, str] = {
    "doubao_15_thinking_pro": "Doubao-1.5-thinking-pro",
    "gemini_25_flash": "Gemini-2.5-Flash",
    "gemini_25_pro": "Gemini-2.5-Pro",
    "claude_37_sonnet": "Claude-3.7-Sonnet",
    "claude_4_sonnet": "Claude-4-Sonnet",
    "glm_z1_airx": "GLM-Z1-AirX",
    "kimi_k15": "Kimi-K1.5",
    "qwq_32b": "QwQ-32B",
    "qwen3_235b_a22b": "Qwen3-235B-A22B",
    "qwen3_30b_a3b": "Qwen3-30B-A3B",
    "qwen3_32b": "Qwen3-32B",
    "qwen3_14b": "Qwen3-14B",
    "qwen3_8b": "Qwen3-8B",
    "qwen3_4b": "Qwen3-4B",
    "qwen3_1_7b": "Qwen3-1.7B",
    "qwen3_0_6b": "Qwen3-0.6B",
    "deepseek_r1": "Deepseek-R1",
    "r1_distill_llama_70b": "R1-Distill-Llama-70B",
    "r1_distill_qwen_32b": "R1-Distill-Qwen-32B",
    "r1_distill_qwen_14b": "R1-Distill-Qwen-14B",
    "r1_distill_llama_8b": "R1-Distill-Llama-8B",
    "r1_distill_qwen_7b": "R1-Distill-Qwen-7B",
    "r1_distill_qwen_1_5b": "R1-Distill-Qwen-1.5B",
}
# Model strings whose last path segment does not spell the published name (after _undecorated).
REFERENCE_ALIASES = {
    "deepseekreasoner": "Deepseek-R1",
    "deepseekr1v10": "Deepseek-R1",  # Amazon Bedrock's model id (bedrock/deepseek.r1-v1:0)
    "usdeepseekr1v10": "Deepseek-R1",  # … and its US inference profile (model=deepseek_r1)
    "claude37sonnet": "Claude-3.7-Sonnet",
    "claudesonnet4": "Claude-4-Sonnet",
}
# What providers add to a model's name without changing the model: an OpenRouter variant
# (":free"), a dated snapshot ("-20250219"), a dated preview ("-preview-04-17"). Quantized
# variants ("-AWQ", "-fp8") are other weights and stay unmatched.
_DECORATION = re.compile(
    r"(:(free|nitro|floor|online|beta|thinking)|-\d{8}|-preview(-\d{2}-\d{2})?|-latest)$"
)


# The three rows whose published F-score uses evaluate.py's default α; the rest use α ≈ 0.61.
REFERENCE_ALPHA_0_7639 = ("GLM-Z1-AirX", "Kimi-K1.5", "Qwen3-235B-A22B")


REFERENCE_NOTE = (
    "The published BSA leaderboard (23 models; figures from the BSA project page). Its F-scores use "
    "α ≈ 0.61 for most rows but α = 0.7639 (evaluate.py's default) for GLM-Z1-AirX, Kimi-K1.5 and "
    "Qwen3-235B-A22B, as the 'published α' column (solved from each row) shows; the 'F-score "
    "(α={alpha:.4f})' column recomputes them with the runs' α so they compare with your runs. "
    "The paper's sampling settings may differ from your runs'."
)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.casefold())


def _undecorated(tail: str) -> str:
    while (stripped := _DECORATION.sub("", tail)) != tail:
        tail = stripped
    return tail


def reference_name(model_config: str | None, model: str) -> str | None:
    """The published model a run matches: by model config name, else by the model string's last
    segment, without what providers add to it (see _DECORATION)."""
    if model_config in REFERENCE_NAMES:
        return REFERENCE_NAMES[model_config]
    tail = _norm(_undecorated(model.rstrip("/").rsplit("/", 1)[-1].casefold()))
    if tail.startswith("deepseekr1distill"):  # deepseek-ai/DeepSeek-R1-Distill-… is published as R1-Distill-…
        tail = tail[len("deepseek") :]
    if tail in REFERENCE_ALIASES:
        return REFERENCE_ALIASES[tail]
    by_norm = {_norm(v): v for v in REFERENCE_NAMES.values()}
    return by_norm.get(tail)


def load_reference(alpha: float) -> pd.DataFrame:
    """The published leaderboard with the F-score recomputed at ``alpha`` and the α each published
    F-score implies (solving F = T^α S^(1−α) for α)."""
    ref = pd.read_csv(REFERENCE_CSV)
    t, s = ref["Think@1"], ref["Safe@1"]
    ref["published α"] = (ref["F-score"] / s).map(math.log) / (t / s).map(math.log)
    ref["F-score (run α)"] = [f_score(ti, si, alpha) for ti, si in zip(t, s, strict=True)]
    return ref


def reference_medians(ref: pd.DataFrame) -> dict[str, float]:
    return {s: float(ref[f"{ABBR[s]}@1"].median()) for s in SCENARIOS}
