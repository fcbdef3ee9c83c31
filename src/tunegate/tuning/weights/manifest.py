"""Lineage of a tuned adapter: ``tunegate-manifest.json``, ``candidate.yaml`` and the store record.

The candidate's ``lineage`` *is* the manifest, so the gate, ``tunegate candidates show`` and any
other tool read the same fields. Keys other tools may rely on (format 1):

``method``            lora | qlora | dpo | soft_prompt
``base_model``        ``{"ref", "path", "digest"}``: the seed candidate's model reference, the folder
                      trained on, and a SHA-256 over its weights and config
``tuning_data``       ``{"path", "hash", "split", "rows", ...}``: dataset file, dataset content hash,
                      always ``"train"``, rows used (plus skipped counts, training-text hash and,
                      for DPO, the preference file's path/digest/pairs)
``config_hash``       hash of the TuneConfig fields that change weights
``parent``            content hash of the seed candidate
``adapter_digest``    ``sha256:`` of the adapter folder, equal to ``CandidateSpec.adapter_digest()``
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from tunegate.core.candidate import CandidateSpec, load_candidate
from tunegate.core.hashing import file_digest
from tunegate.store.sqlite import Store
from tunegate.tuning.weights.config import TuneConfig
from tunegate.tuning.weights.data import TuningRows
from tunegate.tuning.weights.training import MANIFEST_FILE, TrainOutcome

__all__ = ["LINEAGE_KEYS", "MANIFEST_FILE", "build_manifest", "library_versions", "register_candidate",
           "write_candidate"]

#: Lineage keys every tuned candidate carries (see the module docstring).
LINEAGE_KEYS = ("base_model", "method", "tuning_data", "config_hash", "parent", "adapter_digest")
_LIBS = ("tunegate", "torch", "transformers", "peft", "trl", "datasets", "accelerate")


def library_versions() -> dict[str, str]:
    out = {}
    for lib in _LIBS:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            continue
    return out


def build_manifest(*, cfg: TuneConfig, seed: CandidateSpec, base_path: Path, base_digest: str, rows: TuningRows,
                   outcome: TrainOutcome, wall_s: float, preferences: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything that produced the adapter, plus what training measured."""
    tuning_data = {**rows.source, "skipped": dict(sorted(rows.skipped.items())), "rows_hash": rows.text_hash}
    if tuning_data.get("path"):
        tuning_data["path"] = str(Path(tuning_data["path"]).resolve())
    if preferences is not None:
        tuning_data["preferences"] = preferences
    manifest: dict[str, Any] = {
        "format": 1,
        "method": cfg.method,
        "base_model": {"ref": seed.model, "path": str(base_path.resolve()), "digest": base_digest},
        "tuning_data": tuning_data,
        "config": {**cfg.model_dump(mode="json"), "lr": cfg.learning_rate},
        "config_hash": cfg.hash,
        "parent": seed.hash,
        "parent_name": seed.name,
        "parent_path": str(Path(seed.source).resolve()) if seed.source else None,
        "adapter_digest": "sha256:" + file_digest(outcome.adapter_dir),
        "seeds": {"seed": cfg.seed, "data_seed": cfg.seed},
        "libraries": library_versions(),
        "metrics": outcome.metrics,
        "resumed_from_step": outcome.resumed_from,
        "wall_s": round(wall_s, 2),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": cfg.threads},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if outcome.merged_dir is not None:
        manifest["merged_digest"] = "sha256:" + file_digest(outcome.merged_dir)
    return manifest


def write_candidate(out: Path, manifest: dict[str, Any], seed: CandidateSpec, outcome: TrainOutcome) -> Path:
    """Write ``tunegate-manifest.json`` and ``candidate.yaml``; return the YAML path.

    The candidate keeps the seed's model reference (an alias stays an alias, so the file works on
    another machine with the same cache) and attaches ``adapter/``; with ``merge: true`` it points
    at ``merged/`` instead. Prompt, decoding params, tools and options are the seed's, so the gate
    measures the weights alone.
    """
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    model = seed.model
    if Path(model).expanduser().exists():
        model = str(Path(model).expanduser().resolve())
    spec: dict[str, Any] = {
        "name": f"{seed.name}-{manifest['method'].replace('_', '-')}",
        "backend": "local",
        "model": str(outcome.merged_dir.resolve()) if outcome.merged_dir else model,
    }
    if outcome.merged_dir is None:
        spec["adapter"] = str(outcome.adapter_dir.resolve())
    spec["prompt"] = seed.prompt.model_dump(mode="json", exclude_none=True)
    spec["params"] = seed.params.model_dump(mode="json", exclude_none=True)
    spec["tools"] = seed.tools
    if seed.options:
        spec["options"] = dict(seed.options)
    spec["lineage"] = manifest
    path = out / "candidate.yaml"
    header = (f"# Tuned by `tunegate tune {manifest['method'].replace('_', '-')}` from {seed.source or seed.name}.\n"
              "# Lineage (base model, training data, config, metrics) is the manifest copied below.\n")
    path.write_text(header + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=100))
    return path


def register_candidate(store: Store, candidate_yaml: Path) -> CandidateSpec:
    """Put the tuned candidate in the store (kind ``spec``), lineage = manifest. Returns the spec."""
    spec = load_candidate(candidate_yaml)
    record = spec.model_dump(mode="json", exclude={"source"})
    record["identity"] = spec.identity()
    store.put_candidate(spec.hash, spec.name, "spec", record, spec.lineage)
    return spec
