"""``TuneConfig``: how an adapter is trained (method, LoRA shape, optimiser, DPO loss), from YAML.

Every field is part of the run's identity (``config_hash`` in the manifest and the candidate's
lineage), except ``threads`` and ``save_steps``, which change speed and crash safety, not weights.
Errors name the YAML file, line and field, like every other tunegate input.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from tunegate.core.hashing import content_hash
from tunegate.errors import UserError

__all__ = ["DEFAULT_LR", "NON_IDENTITY_FIELDS", "TuneConfig", "TuneMethod", "check_runtime", "load_tune_config"]

TuneMethod = Literal["lora", "qlora", "dpo", "soft_prompt"]

#: Learning rate per method when ``lr`` is not set. A soft prompt trains a few thousand embedding
#: values from scratch and needs a much larger step than a LoRA delta; DPO moves a model that
#: already answers, so it takes the smallest.
DEFAULT_LR: dict[str, float] = {"lora": 2e-4, "qlora": 2e-4, "dpo": 5e-5, "soft_prompt": 3e-2}

#: Fields that change speed or crash safety but not the trained weights (left out of the hash).
NON_IDENTITY_FIELDS = frozenset({"threads", "save_steps"})


class TuneConfig(BaseModel):
    """One weight-tuning run. Unknown keys are errors (a typo must not silently use a default)."""

    model_config = ConfigDict(extra="forbid")

    method: TuneMethod = Field(
        default="lora", description="lora: LoRA SFT; qlora: LoRA on a 4-bit base (needs CUDA + bitsandbytes); "
        "dpo: LoRA trained with DPO on preference pairs; soft_prompt: prompt tuning (virtual tokens).")
    rank: int = Field(default=8, ge=1, le=1024, description="LoRA rank r (lora, qlora, dpo).")
    alpha: float = Field(default=16.0, gt=0, description="LoRA scaling alpha; the update is scaled by alpha/rank.")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"], min_length=1,
        description="Module names LoRA wraps (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj "
        "for Llama-style models such as SmolLM2), or ['all-linear'].")
    lr: float | None = Field(default=None, gt=0, description="Peak learning rate (linear decay). Default per "
                             "method: lora/qlora 2e-4, dpo 5e-5, soft_prompt 3e-2.")
    epochs: float = Field(default=1.0, gt=0, description="Passes over the training rows (ignored when max_steps is set).")
    max_steps: int | None = Field(default=None, ge=1, description="Optimiser steps; overrides epochs.")
    time_limit_s: float | None = Field(
        default=None, gt=0, description="Stop cleanly after the step that passes this many seconds of training "
        "(the schedule is still planned for max_steps/epochs; the steps done are in the manifest).")
    batch_size: int = Field(default=2, ge=1, description="Rows per forward pass.")
    grad_accum: int = Field(default=1, ge=1, description="Forward passes per optimiser step "
                            "(effective batch = batch_size x grad_accum).")
    max_length: int = Field(default=512, ge=16, description="Longest prompt+answer in tokens; longer rows are "
                            "skipped and counted (a truncated answer would teach the model to stop mid-way).")
    seed: int = Field(default=0, description="Seed for adapter init, data order and dropout.")
    bf16: bool = Field(default=False, description="bfloat16 autocast for the forward/backward pass (weights and "
                       "adapter stay fp32). ~1.8x faster on CPUs with AMX/AVX512-BF16; false = exact fp32.")
    num_virtual_tokens: int = Field(default=16, ge=1, le=512, description="Soft prompt length (soft_prompt).")
    soft_prompt_init_text: str | None = Field(
        default=None, description="Initialise the soft prompt from this text's token embeddings instead of "
        "random values (soft_prompt); e.g. the seed candidate's system prompt.")
    beta: float = Field(default=0.1, gt=0, description="DPO beta: how far the policy may move from the "
                        "reference (higher = closer).")
    dpo_loss: Literal["sigmoid", "hinge", "ipo", "robust"] = Field(
        default="sigmoid", description="TRL DPO loss type (sigmoid is the original DPO).")
    margin_scale: float = Field(
        default=0.0, ge=0.0, description="ODPO-style offset (dpo): a pair with margin m must be preferred by at "
        "least margin_scale x m in reward units, i.e. loss = -log sigmoid(beta*delta - margin_scale*m). 0 = off; "
        "pairs without margin count as 0.")
    merge: bool = Field(default=False, description="Also save the base with the adapter merged in and point "
                        "candidate.yaml at it (lora, dpo). false = the candidate attaches the adapter at load.")
    threads: int | None = Field(default=None, ge=1, description="torch intra-op threads (speed only; not hashed).")
    save_steps: int = Field(default=50, ge=1, description="Checkpoint every N steps for --resume (not hashed).")

    @field_validator("merge")
    @classmethod
    def _merge(cls, v: bool, info: ValidationInfo) -> bool:
        method = info.data.get("method")
        if v and method == "soft_prompt":
            raise ValueError("a soft prompt has no weights to merge; use merge: false")
        if v and method == "qlora":
            raise ValueError("merging into a 4-bit base is lossy; use method: lora to merge")
        return v

    @field_validator("margin_scale")
    @classmethod
    def _margin(cls, v: float, info: ValidationInfo) -> float:
        if v > 0 and info.data.get("method") != "dpo":
            raise ValueError("applies to method: dpo only")
        return v

    @field_validator("soft_prompt_init_text")
    @classmethod
    def _init_text(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("method") != "soft_prompt":
            raise ValueError("applies to method: soft_prompt only")
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v

    @property
    def learning_rate(self) -> float:
        """``lr`` or the method's default."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    def identity(self) -> dict[str, Any]:
        """Fields that change the trained weights (with the resolved learning rate)."""
        data = self.model_dump(mode="json", exclude=set(NON_IDENTITY_FIELDS))
        data["lr"] = self.learning_rate
        return data

    @property
    def hash(self) -> str:
        return content_hash(self.identity(), prefix="tcfg-")


def load_tune_config(path: str | Path, *, method: TuneMethod | None = None) -> TuneConfig:
    """Read a TuneConfig YAML (errors name file:line:field).

    ``method`` is what the command asked for (``tunegate tune lora`` ...): it fills a missing
    ``method:`` key, and a file that says otherwise is an error rather than a silent override.
    An empty file means all defaults.
    """
    from tunegate.core.loading import pydantic_message, read_yaml, yaml_line

    file = str(path)
    text, data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError("a tuning config must be a mapping (method, rank, lr, ...)", file=file, line=1)
    if method is not None:
        given = data.get("method")
        if given is None:
            data["method"] = method
        elif given != method and not (method == "lora" and given == "qlora"):
            raise UserError(f"this command trains method {method!r} but the file says {given!r}",
                            file=file, line=yaml_line(text, ("method",)), field="method")
    try:
        cfg = TuneConfig.model_validate(data)
    except ValidationError as e:
        loc, msg = pydantic_message(e)
        raise UserError(msg, file=file, line=yaml_line(text, tuple(e.errors()[0]["loc"])), field=loc) from None
    check_runtime(cfg, file=file, line=yaml_line(text, ("method",)) if "method" in text else None)
    return cfg


def check_runtime(cfg: TuneConfig, *, file: str | None = None, line: int | None = None) -> None:
    """Refuse what this machine cannot run, before any model is loaded.

    QLoRA quantizes the base to 4 bits with bitsandbytes kernels that need a CUDA GPU.
    """
    if cfg.method != "qlora":
        return
    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package is not installed")
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except ImportError:
        cuda = False
    if not cuda:
        missing.append("no CUDA GPU is available")
    if missing:
        raise UserError(f"method qlora needs bitsandbytes and a CUDA GPU, but {' and '.join(missing)}; "
                        "use `method: lora` (same adapter, full-precision base) on this machine",
                        file=file, line=line, field="method")
