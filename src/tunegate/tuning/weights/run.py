"""One call from inputs to a gated-ready candidate: validate, build rows, train, write lineage, register.

Everything that can be wrong with the inputs (config, dataset, seed candidate, preference file,
output folder) is checked before a model is loaded, so a typo costs seconds, not a training run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunegate.checks.preference_file import load_preferences
from tunegate.core.candidate import CandidateSpec, load_candidate
from tunegate.core.dataset import Dataset
from tunegate.core.loading import load_dataset
from tunegate.errors import UserError
from tunegate.store.sqlite import Store
from tunegate.tuning.weights.config import TuneConfig, check_runtime, load_tune_config
from tunegate.tuning.weights.data import (
    Renderer,
    TuningRows,
    build_dpo_rows,
    build_sft_rows,
)
from tunegate.tuning.weights.manifest import build_manifest, register_candidate, write_candidate
from tunegate.tuning.weights.training import TrainOutcome, prepare_output

__all__ = ["Command", "TuneResult", "tune_weights"]

#: What ``tunegate tune <command>`` trains. ``lora`` also runs ``method: qlora`` configs.
Command = Literal["lora", "dpo", "soft_prompt"]


@dataclass
class TuneResult:
    """A finished tuning run."""

    candidate: CandidateSpec
    candidate_path: Path
    manifest: dict[str, Any]
    outcome: TrainOutcome
    rows: TuningRows

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": str(self.candidate_path), "candidate_hash": self.candidate.hash,
                "adapter": str(self.outcome.adapter_dir),
                "merged": str(self.outcome.merged_dir) if self.outcome.merged_dir else None,
                "manifest": self.manifest}


def _config(config: str | Path | TuneConfig | None, command: Command) -> TuneConfig:
    if isinstance(config, TuneConfig):
        cfg = config
        if cfg.method != command and not (command == "lora" and cfg.method == "qlora"):
            raise UserError(f"config method {cfg.method!r} does not match command {command!r}", field="method")
        check_runtime(cfg)
        return cfg
    if config is None:
        cfg = TuneConfig(method=command)
        check_runtime(cfg)
        return cfg
    return load_tune_config(config, method=command)


def _seed(candidate: str | Path | CandidateSpec) -> CandidateSpec:
    seed = candidate if isinstance(candidate, CandidateSpec) else load_candidate(candidate)
    if seed.backend != "local":
        raise UserError("weight tuning trains a local model; the seed candidate uses backend "
                        f"{seed.backend!r} (give a local seed with the same base weights)",
                        file=seed.source, field="backend")
    if seed.adapter is not None:
        raise UserError("the seed candidate already attaches an adapter; start from the base model "
                        "(or merge that adapter into a model folder first)", file=seed.source, field="adapter")
    return seed


def _write_rows(out: Path, rows: TuningRows) -> None:
    with (out / "tuning-rows.jsonl").open("w", encoding="utf-8") as fh:
        for r in rows.rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def tune_weights(command: Command, *, dataset: str | Path | Dataset, candidate: str | Path | CandidateSpec,
                 out: str | Path, config: str | Path | TuneConfig | None = None, resume: bool = False,
                 preferences: str | Path | None = None, store: Store | None = None, progress: bool = True,
                 callbacks: Sequence[Any] = ()) -> TuneResult:
    """Train an adapter from a golden dataset's train split and register it as a candidate.

    ``callbacks`` are extra ``transformers.TrainerCallback`` objects (tests stop runs with them).
    """
    t0 = time.perf_counter()
    cfg = _config(config, command)
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    seed = _seed(candidate)
    if command == "dpo" and preferences is None:
        raise UserError("dpo needs --preferences FILE (JSONL of {id, prompt, chosen, rejected})",
                        field="--preferences")
    if command != "dpo" and preferences is not None:
        raise UserError(f"--preferences is for dpo; {command} learns from the dataset's expected answers",
                        field="--preferences")
    from tunegate.backends.models import model_digest

    renderer = Renderer(seed.model)
    base_path = renderer.path
    base_digest = model_digest(str(base_path))
    pref_info = None
    if preferences is not None:
        pf = load_preferences(preferences)  # the reader `tunegate data check` uses: one idea of a valid file
        rows = build_dpo_rows(ds, seed, pf.rows, renderer, max_length=cfg.max_length, file=str(preferences))
        pref_info = {"path": str(Path(preferences).resolve()), "digest": "sha256:" + pf.sha256,
                     "pairs": len(pf.rows)}
    else:
        rows = build_sft_rows(ds, seed, renderer, max_length=cfg.max_length)
    if not rows.rows:
        skipped = ", ".join(f"{n} {why}" for why, n in rows.skipped.most_common()) or "no train rows"
        raise UserError(f"nothing to train on in the train split ({skipped})", file=ds.source, field="split")
    out = Path(out)
    record = {"method": cfg.method, "config_hash": cfg.hash, "rows_hash": rows.text_hash, "base_digest": base_digest}
    resume_from = prepare_output(out, record, resume=resume)
    _write_rows(out, rows)
    cbs = list(callbacks)
    if cfg.time_limit_s is not None:
        from tunegate.tuning.weights.progress import time_limit

        cbs.append(time_limit(cfg.time_limit_s))
    if progress:
        from tunegate.tuning.weights.progress import progress_callback

        cbs.append(progress_callback(f"{cfg.method} ({len(rows.rows)} rows)"))
    if cfg.method == "dpo":
        from tunegate.tuning.weights.dpo import train_dpo

        outcome = train_dpo(cfg, rows.rows, base_path, out, resume_from=resume_from, callbacks=cbs)
    else:
        from tunegate.tuning.weights.sft import train_sft

        outcome = train_sft(cfg, rows.rows, base_path, out, resume_from=resume_from, callbacks=cbs)
    manifest = build_manifest(cfg=cfg, seed=seed, base_path=base_path, base_digest=base_digest, rows=rows,
                              outcome=outcome, wall_s=time.perf_counter() - t0, preferences=pref_info)
    path = write_candidate(out, manifest, seed, outcome)
    spec = register_candidate(store, path) if store is not None else load_candidate(path)
    return TuneResult(candidate=spec, candidate_path=path, manifest=manifest, outcome=outcome, rows=rows)
