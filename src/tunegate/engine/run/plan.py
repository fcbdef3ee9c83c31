"""A run plan: what will be run, fully validated before anything is written to the store.

Planning checks every selected row against the candidate's prompt template (a missing variable
names the dataset file, line and field), resolves evaluators and computes the run identity.
Only a valid plan reaches the executor, so bad input never leaves a half-written run behind.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from tunegate.core.candidate import CandidateSpec
from tunegate.core.dataset import Dataset
from tunegate.core.example import Split
from tunegate.core.hashing import content_hash
from tunegate.core.outputs import OutputsFile
from tunegate.errors import UserError
from tunegate.evaluators.base import Evaluator

__all__ = ["RunPlan", "machine_info", "plan_run"]


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """What produced a run: host, CPU count, Python and the versions of the libraries involved."""
    libs = {p: _version(p) for p in ("tunegate", "torch", "transformers", "peft", "httpx", "numpy", "jsonschema")}
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "libraries": {k: v for k, v in libs.items() if v},
    }


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs, validated."""

    dataset: Dataset
    rows: Dataset
    evaluators: Sequence[Evaluator]
    selection: dict[str, Any]
    candidate: CandidateSpec | None = None
    outputs: OutputsFile | None = None
    candidate_hash: str = field(default="")

    @property
    def identity(self) -> str:
        return content_hash({
            "dataset": self.dataset.hash,
            "selection": self.selection,
            "candidate": self.candidate_hash,
            "evaluators": [e.identity() for e in self.evaluators],
        }, prefix="rid-")

    @property
    def samples(self) -> int:
        if self.candidate is not None:
            return self.candidate.params.n
        assert self.outputs is not None
        return max((len(v) for v in self.outputs.outputs.values()), default=1)

    def candidate_record(self) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
        """(name, kind, spec, lineage) to store for the candidate."""
        if self.candidate is not None:
            spec = self.candidate.model_dump(mode="json", exclude={"source"})
            spec["identity"] = self.candidate.identity()
            return self.candidate.name, "spec", spec, self.candidate.lineage
        assert self.outputs is not None
        return (os.path.basename(self.outputs.path), "outputs",
                {"path": self.outputs.path, "digest": self.outputs.digest}, {})


def plan_run(dataset: Dataset, evaluators: Sequence[Evaluator], *, candidate: CandidateSpec | None = None,
             outputs: OutputsFile | None = None, split: Split | None = None,
             cohorts: Sequence[str] | None = None, limit: int | None = None) -> RunPlan:
    """Select rows and validate the candidate against each of them."""
    if (candidate is None) == (outputs is None):
        raise UserError("give exactly one of --candidate and --outputs", field="candidate")
    if not evaluators:
        raise UserError("no evaluators selected", field="evaluators")
    rows = dataset
    if split:
        rows = rows.split(split)
    if cohorts:
        unknown = set(cohorts) - set(dataset.cohort_counts())
        if unknown:
            raise UserError(f"no rows have cohort(s) {sorted(unknown)}; known: {sorted(dataset.cohort_counts())}",
                            file=dataset.source, field="cohort")
        rows = rows.with_cohorts(cohorts)
    if limit is not None:
        if limit < 1:
            raise UserError("--limit must be >= 1", field="limit")
        rows = rows.head(limit)
    if len(rows) == 0:
        raise UserError(f"the selection (split={split}, cohorts={list(cohorts or [])}) has no rows",
                        file=dataset.source, field="split")
    if candidate is not None:
        ref = candidate.prompt.ref
        if ref is not None and candidate.lineage.get("prompt_version") != ref:  # never run the default template
            raise UserError(f"prompt {ref!r} is a registry reference that was not resolved "
                            "(tunegate.prompts.resolve_candidate)", file=candidate.source, field="prompt")
        for ex in rows:
            missing = candidate.prompt.check_variables(ex)
            if missing:
                raise UserError(
                    f"candidate {candidate.source or candidate.name} needs template variable "
                    f"{{{{{missing[0]}}}}} but this row has no value for it",
                    file=dataset.source, line=dataset.line_of(ex.id), field=missing[0])
        chash = candidate.hash
    else:
        assert outputs is not None
        outputs.check_against(dataset)
        chash = outputs.hash
    selection = {
        "split": split,
        "cohorts": sorted(cohorts) if cohorts else None,
        "limit": limit,
        "rows": content_hash(sorted(ex.id for ex in rows)),
        "n_rows": len(rows),
    }
    return RunPlan(dataset=dataset, rows=rows, evaluators=list(evaluators), selection=selection,
                   candidate=candidate, outputs=outputs, candidate_hash=chash)
