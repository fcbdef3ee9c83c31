"""What SFT, soft-prompt and DPO runs share: the output folder, base model, PEFT config, Trainer args.

Output folder layout (``--out DIR``)::

    DIR/
      tunegate-run.json        what this folder is training (method, config hash, data hash, base digest)
      checkpoints/checkpoint-N HF Trainer checkpoints (adapter + optimiser + RNG state) for --resume
      tuning-rows.jsonl        the exact training texts
      adapter/                 the final PEFT adapter (what candidate.yaml attaches)
      merged/                  base with the adapter merged in (only with ``merge: true``)
      tunegate-manifest.json   lineage: base, data, config, seeds, versions, metrics
      candidate.yaml           ready to run / gate

A folder that holds another run is never overwritten: ``--resume`` continues *the same* run
(same method, config hash, training rows and base weights) from its last checkpoint, anything
else is an error.
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunegate.errors import UserError
from tunegate.tuning.weights.config import TuneConfig

__all__ = [
    "RUN_FILE",
    "TrainOutcome",
    "checkpoint_dir",
    "load_base",
    "make_peft_config",
    "prepare_output",
    "quiet_hf",
    "run_trainer",
    "trainer_args",
]

RUN_FILE = "tunegate-run.json"
MANIFEST_FILE = "tunegate-manifest.json"


@dataclass
class TrainOutcome:
    """A finished training session: the in-memory model and what the manifest needs."""

    model: Any
    tokenizer: Any
    adapter_dir: Path
    merged_dir: Path | None
    metrics: dict[str, Any]
    resumed_from: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def checkpoint_dir(out: Path) -> Path:
    return out / "checkpoints"


def prepare_output(out: Path, record: dict[str, Any], *, resume: bool) -> str | None:
    """Create or check ``out``; return the checkpoint to resume from (None = start at step 0)."""
    from transformers.trainer_utils import get_last_checkpoint

    run_file = out / RUN_FILE
    if out.exists() and not out.is_dir():
        raise UserError("exists and is not a folder", file=str(out), field="--out")
    if (out / MANIFEST_FILE).exists():
        raise UserError("holds a finished tuning run (tunegate-manifest.json); choose a new --out",
                        file=str(out), field="--out")
    if out.exists() and any(out.iterdir()):
        if not run_file.exists():
            raise UserError("is not empty and holds no tunegate tuning run; choose a new or empty --out",
                            file=str(out), field="--out")
        old = json.loads(run_file.read_text())
        ckpts = checkpoint_dir(out)
        last = get_last_checkpoint(str(ckpts)) if ckpts.is_dir() else None
        if not resume:
            raise UserError("holds an unfinished tuning run; pass --resume to continue it from its last "
                            "checkpoint, or choose a new --out", file=str(out), field="--out")
        diff = [k for k in ("method", "config_hash", "rows_hash", "base_digest") if old.get(k) != record.get(k)]
        if diff:
            raise UserError(f"--resume: this folder trains a different run ({', '.join(diff)} differ); resume with "
                            "the same config, dataset, preferences and seed candidate, or choose a new --out",
                            file=str(out), field="--out")
        return last
    out.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps({**record, "started": datetime.now(UTC).isoformat(timespec="seconds")},
                                   indent=2, sort_keys=True) + "\n")
    return None


@contextlib.contextmanager
def quiet_hf() -> Iterator[None]:
    """Silence HF progress bars and info logs while training (our own bar shows progress); restored after."""
    import datasets
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    ds_bars = datasets.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # library deprecation notices, not about the user's run
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
        if ds_bars:
            datasets.enable_progress_bars()


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def load_base(cfg: TuneConfig, base_path: Path) -> tuple[Any, Any]:
    """(model, tokenizer) of the base. fp32 on CPU; 4-bit NF4 for QLoRA (CUDA only, checked earlier)."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with quiet_hf():
        return _load_base(cfg, base_path)


def _load_base(cfg: TuneConfig, base_path: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_path, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if cfg.method == "qlora":
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(base_path, quantization_config=quant, device_map={"": 0},
                                                     local_files_only=True)
        model = prepare_model_for_kbit_training(model)
    else:
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32, local_files_only=True)
    return model, tok


def make_peft_config(cfg: TuneConfig, base_path: Path) -> Any:
    """LoraConfig (lora, qlora, dpo) or PromptTuningConfig (soft_prompt)."""
    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit

    if cfg.method == "soft_prompt":
        if cfg.soft_prompt_init_text:
            return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.num_virtual_tokens,
                                      prompt_tuning_init=PromptTuningInit.TEXT,
                                      prompt_tuning_init_text=cfg.soft_prompt_init_text,
                                      tokenizer_name_or_path=str(base_path))
        return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.num_virtual_tokens)
    targets: Any = cfg.target_modules[0] if cfg.target_modules == ["all-linear"] else list(cfg.target_modules)
    return LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha,  # a float alpha works
                      lora_dropout=cfg.dropout, target_modules=targets,
                      bias="none", task_type="CAUSAL_LM")


def trainer_args(cfg: TuneConfig, out: Path) -> dict[str, Any]:
    """TrainingArguments fields every method shares (the SFT/DPO config adds its own)."""
    cuda = _cuda()
    return {
        "output_dir": str(checkpoint_dir(out)),
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "learning_rate": cfg.learning_rate,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps if cfg.max_steps is not None else -1,
        "lr_scheduler_type": "linear",
        "warmup_steps": 0,
        "max_length": cfg.max_length,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": 2,
        "report_to": [],
        "disable_tqdm": True,
        "include_num_input_tokens_seen": "non_padding",
        "use_cpu": not cuda,
        "bf16": cfg.bf16 or (cuda and cfg.method == "qlora"),
        "fp16": False,
        "dataloader_num_workers": 0,
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_trainer(trainer: Any, cfg: TuneConfig, out: Path, resume_from: str | None, tokenizer: Any) -> TrainOutcome:
    """Train (or continue from ``resume_from``), save the adapter (and merged model), collect metrics."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints every log dict; our progress bar shows loss and tok/s
    t0 = time.perf_counter()
    resumed = int(Path(resume_from).name.split("-")[-1]) if resume_from else None
    with quiet_hf():
        result = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - t0
    state = trainer.state
    losses = [float(h["loss"]) for h in state.log_history if "loss" in h]
    tokens = int(state.num_input_tokens_seen)
    session_tokens = tokens - int(getattr(trainer, "_initial_num_input_tokens_seen", 0) or 0)
    model = trainer.model
    adapter_dir = out / "adapter"
    if adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    model.save_pretrained(adapter_dir)
    merged_dir = None
    if cfg.merge:
        merged_dir = out / "merged"
        if merged_dir.exists():
            shutil.rmtree(merged_dir)
        merged = model.merge_and_unload()
        merged.save_pretrained(merged_dir, safe_serialization=True)
        tokenizer.save_pretrained(merged_dir)
        model = merged
    metrics = {
        "train_loss": round(float(result.training_loss), 6),
        "final_loss": round(losses[-1], 6) if losses else None,
        "first_loss": round(losses[0], 6) if losses else None,
        "steps": int(state.global_step),
        "planned_steps": int(state.max_steps),
        "epochs": round(float(state.epoch or 0.0), 4),
        "tokens": tokens,
        "session_tokens": session_tokens,
        "tokens_per_s": round(session_tokens / wall, 1) if wall > 0 else None,
        "train_wall_s": round(wall, 2),
        "peak_rss_mb": peak_rss_mb(),
    }
    return TrainOutcome(model=model, tokenizer=tokenizer, adapter_dir=adapter_dir, merged_dir=merged_dir,
                        metrics=metrics, resumed_from=resumed)
