"""Weight tuning: LoRA / QLoRA / soft-prompt SFT and DPO adapters with TRL + PEFT, with lineage.

``tune_weights`` turns a golden dataset's *train split* and a seed candidate into an adapter, a
``tunegate-manifest.json`` and a ``candidate.yaml`` that the gate runs like any other candidate.
``suite_reward`` turns tunegate evaluators into a TRL GRPO reward function. torch, transformers,
peft, trl and datasets are imported only when training starts. See docs/weight-tuning.md.
"""

from tunegate.tuning.weights.config import TuneConfig, load_tune_config
from tunegate.tuning.weights.data import (
    Renderer,
    TuningRows,
    assistant_turn,
    build_dpo_rows,
    build_prompt_rows,
    build_sft_rows,
)
from tunegate.tuning.weights.manifest import LINEAGE_KEYS
from tunegate.tuning.weights.rewards import suite_reward
from tunegate.tuning.weights.run import TuneResult, tune_weights

__all__ = [
    "LINEAGE_KEYS",
    "Renderer",
    "TuneConfig",
    "TuneResult",
    "TuningRows",
    "assistant_turn",
    "build_dpo_rows",
    "build_prompt_rows",
    "build_sft_rows",
    "load_tune_config",
    "suite_reward",
    "tune_weights",
]
