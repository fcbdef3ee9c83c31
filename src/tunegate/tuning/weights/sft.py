"""Supervised adapters with TRL's ``SFTTrainer``: LoRA, QLoRA and soft prompts (PEFT prompt tuning).

The rows are ``prompt``/``completion`` text already rendered the way the local backend renders
requests (see :mod:`.data`); ``completion_only_loss`` makes the loss cover the ideal assistant
turn only, so the adapter learns answers, not prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunegate.tuning.weights.config import TuneConfig
from tunegate.tuning.weights.training import (
    TrainOutcome,
    load_base,
    make_peft_config,
    quiet_hf,
    run_trainer,
    trainer_args,
)

__all__ = ["train_sft"]


def train_sft(cfg: TuneConfig, rows: list[dict[str, Any]], base_path: Path, out: Path, *,
              resume_from: str | None = None, callbacks: Sequence[Any] = ()) -> TrainOutcome:
    """Train a LoRA/QLoRA adapter or a soft prompt on ``rows``; save it under ``out/adapter``."""
    from datasets import Dataset as HFDataset
    from trl import SFTConfig, SFTTrainer

    assert cfg.method in ("lora", "qlora", "soft_prompt"), cfg.method
    model, tok = load_base(cfg, base_path)
    train = HFDataset.from_list([{"id": r["id"], "prompt": r["prompt"], "completion": r["completion"]}
                                 for r in rows])
    with quiet_hf():
        # group_by_length: rows of similar length share a batch, so little compute goes to padding
        # (prompts with tool specs or schemas are 2-3x longer than plain questions).
        args = SFTConfig(**trainer_args(cfg, out), completion_only_loss=True, packing=False,
                         dataset_num_proc=None, train_sampling_strategy="group_by_length")
        trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tok,
                             peft_config=make_peft_config(cfg, base_path), callbacks=list(callbacks))
    return run_trainer(trainer, cfg, out, resume_from, tok)
