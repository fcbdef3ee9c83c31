"""Preference tuning: a LoRA adapter trained with TRL's ``DPOTrainer`` on chosen/rejected pairs.

**Margin-aware DPO (ODPO-style offset).** TRL 1.16 has no loss that takes a per-pair margin, so
``margin_scale > 0`` uses the smallest extension point that gives the exact ODPO objective
``-log σ(β·Δ − α·m)`` (Δ = policy-vs-reference log-ratio difference of chosen over rejected,
m = the pair's ``margin``, α = ``margin_scale``): reference log-probs are precomputed once
(``precompute_ref_log_probs``, a TRL option), and a collator wrapper adds ``α·m/β`` to each pair's
reference chosen log-prob. Since Δ = (c − ref_c) − (r − ref_r), that shifts β·Δ by exactly −α·m
for every loss built on Δ (sigmoid, hinge, ipo, robust). The subclass only keeps the ``margin``
column through the Trainer's unused-column filter. TRL's logged ``rewards/chosen`` and
``rewards/margins`` include the offset.
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

__all__ = ["MarginOffsetCollator", "train_dpo"]


class MarginOffsetCollator:
    """Wraps TRL's preference collator: ``ref_chosen_logps += scale * margin`` (scale = α/β)."""

    def __init__(self, base: Any, scale: float) -> None:
        self.base, self.scale = base, scale

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch: dict[str, Any] = self.base(examples)
        if "ref_chosen_logps" in batch and examples and "margin" in examples[0]:
            margin = torch.tensor([float(e["margin"] or 0.0) for e in examples], dtype=batch["ref_chosen_logps"].dtype)
            batch["ref_chosen_logps"] = batch["ref_chosen_logps"] + self.scale * margin
        return batch


def _margin_trainer(margin_scale: float) -> Any:
    """DPOTrainer whose batches carry the row margin into ``MarginOffsetCollator``."""
    from trl import DPOTrainer

    class MarginDPOTrainer(DPOTrainer):
        data_collator: Any
        _signature_columns: list[str] | None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.data_collator = MarginOffsetCollator(self.data_collator, margin_scale / self.beta)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            cols: list[str] = list(self._signature_columns or [])
            if "margin" not in cols:
                self._signature_columns = [*cols, "margin"]

    return MarginDPOTrainer


def train_dpo(cfg: TuneConfig, rows: list[dict[str, Any]], base_path: Path, out: Path, *,
              resume_from: str | None = None, callbacks: Sequence[Any] = ()) -> TrainOutcome:
    """Train a LoRA adapter with DPO (reference = the base, i.e. the adapter disabled)."""
    from datasets import Dataset as HFDataset
    from trl import DPOConfig, DPOTrainer

    assert cfg.method == "dpo", cfg.method
    model, tok = load_base(cfg, base_path)
    use_margin = cfg.margin_scale > 0
    cols = ("prompt", "chosen", "rejected", "margin") if use_margin else ("prompt", "chosen", "rejected")
    train = HFDataset.from_list([{k: r[k] for k in cols} for r in rows])
    cls = _margin_trainer(cfg.margin_scale) if use_margin else DPOTrainer
    with quiet_hf():
        args = DPOConfig(**trainer_args(cfg, out), beta=cfg.beta, loss_type=[cfg.dpo_loss],
                         precompute_ref_log_probs=use_margin, dataset_num_proc=None)
        trainer = cls(model=model, args=args, train_dataset=train, processing_class=tok,
                      peft_config=make_peft_config(cfg, base_path), callbacks=list(callbacks))
    return run_trainer(trainer, cfg, out, resume_from, tok)
