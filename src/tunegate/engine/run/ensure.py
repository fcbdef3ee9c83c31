"""Reuse-or-run: the id of a finished run with a given identity, running (or resuming) it if missing.

The gate, the forgetting probe, prompt tuning's final gate and the Python API all need "the run
of this candidate on these rows with these evaluators"; they get it here, so an unchanged
candidate is never re-run and an interrupted run is resumed, not duplicated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from tunegate.backends.base import Backend
from tunegate.core.candidate import CandidateSpec
from tunegate.core.dataset import Dataset
from tunegate.core.example import Split
from tunegate.engine.run.executor import execute
from tunegate.engine.run.factory import make_backend
from tunegate.engine.run.plan import plan_run
from tunegate.engine.run.rows import ProgressHook
from tunegate.engine.run.suite import resolve_suite
from tunegate.prompts import PromptRegistry, resolve_candidate
from tunegate.store.sqlite import Store

__all__ = ["ensure_run"]


def ensure_run(store: Store, dataset: Dataset, candidate: CandidateSpec, evaluators: str | Sequence[str] | None,
               *, split: Split | None = None, cohorts: Sequence[str] | None = None, limit: int | None = None,
               progress: ProgressHook | None = None,
               backends: Callable[[CandidateSpec], Backend] = make_backend) -> tuple[str, bool]:
    """The id of a finished run with this exact identity, running it first if missing.

    Returns (run id, whether it was reused). Unfinished runs of the identity are resumed. A
    registry prompt reference (``prompt: name@label``) is resolved from ``store`` first.
    ``backends`` builds the candidate's backend (default: the backend registry).
    """
    candidate = resolve_candidate(candidate, PromptRegistry(store))
    plan = plan_run(dataset, resolve_suite(evaluators, dataset), candidate=candidate, split=split,
                    cohorts=cohorts, limit=limit)
    existing = store.latest_finished(plan.identity)
    if existing is not None:
        return existing, True
    summary = asyncio.run(execute(plan, store, backends(candidate), resume=True, progress=progress))
    return summary.run_id, False
