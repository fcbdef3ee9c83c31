"""The Python API, mirroring the CLI: ``run`` a candidate, ``gate`` two runs or two candidates.

>>> import tunegate
>>> verdict = tunegate.gate(dataset="examples/support/dataset.jsonl",
...                         baseline="examples/support/incumbent.yaml",
...                         candidate="examples/support/candidate.yaml",
...                         policy="examples/support/policy.yaml")  # doctest: +SKIP
>>> verdict.decision  # doctest: +SKIP
'PROMOTE'
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from tunegate.core.candidate import CandidateSpec, load_candidate
from tunegate.core.dataset import Dataset
from tunegate.core.example import Split
from tunegate.core.loading import load_dataset
from tunegate.core.policy import GatePolicy, load_policy
from tunegate.core.verdict import Verdict
from tunegate.engine.gate.runs import GateResult, gate_runs
from tunegate.engine.run.executor import ProgressHook, RunSummary, execute
from tunegate.engine.run.factory import install_judge_factory, make_backend
from tunegate.engine.run.plan import plan_run
from tunegate.engine.run.suite import resolve_suite
from tunegate.prompts import PromptRegistry, resolve_candidate
from tunegate.report.files import write_report
from tunegate.store.sqlite import Store

__all__ = ["ensure_run", "gate", "gate_detailed", "run"]

PathLike = str | Path


def _dataset(d: PathLike | Dataset) -> Dataset:
    install_judge_factory()
    return d if isinstance(d, Dataset) else load_dataset(d)


def _candidate(c: PathLike | CandidateSpec, store: Store | None = None) -> CandidateSpec:
    """The spec; with ``store``, a registry prompt reference (``prompt: name@label``) is resolved."""
    spec = c if isinstance(c, CandidateSpec) else load_candidate(c)
    return resolve_candidate(spec, PromptRegistry(store)) if store is not None else spec


def _policy(p: PathLike | GatePolicy) -> GatePolicy:
    return p if isinstance(p, GatePolicy) else load_policy(p)


def run(dataset: PathLike | Dataset, candidate: PathLike | CandidateSpec, *,
        evaluators: str | Sequence[str] | None = None, split: Split | None = None,
        cohorts: Sequence[str] | None = None, limit: int | None = None, db: PathLike | None = None,
        resume: bool = False, use_cache: bool = True, progress: ProgressHook | None = None) -> RunSummary:
    """Generate and evaluate ``candidate`` on ``dataset`` (cached, resumable)."""
    ds = _dataset(dataset)
    cand = _candidate(candidate)
    if cand.prompt.ref is not None:  # the registry lives in the store: open it early only for this
        with Store(db) as store:
            cand = _candidate(cand, store)
    plan = plan_run(ds, resolve_suite(evaluators, ds), candidate=cand, split=split, cohorts=cohorts, limit=limit)
    backend = make_backend(cand)
    with Store(db) as store:
        return asyncio.run(execute(plan, store, backend, resume=resume, use_cache=use_cache, progress=progress))


def ensure_run(store: Store, dataset: Dataset, candidate: CandidateSpec, evaluators: str | Sequence[str] | None,
               *, split: Split | None = None, cohorts: Sequence[str] | None = None, limit: int | None = None,
               progress: ProgressHook | None = None) -> tuple[str, bool]:
    """The id of a finished run with this exact identity, running it first if missing.

    Returns (run id, whether it was reused). Unfinished runs of the identity are resumed.
    """
    candidate = _candidate(candidate, store)
    plan = plan_run(dataset, resolve_suite(evaluators, dataset), candidate=candidate, split=split,
                    cohorts=cohorts, limit=limit)
    existing = store.latest_finished(plan.identity)
    if existing is not None:
        return existing, True
    summary = asyncio.run(execute(plan, store, make_backend(candidate), resume=True, progress=progress))
    return summary.run_id, False


def gate_detailed(*, baseline: str | PathLike | CandidateSpec, candidate: str | PathLike | CandidateSpec,
                  policy: PathLike | GatePolicy, dataset: PathLike | Dataset | None = None,
                  evaluators: str | Sequence[str] | None = None, split: Split | None = None,
                  cohorts: Sequence[str] | None = None, limit: int | None = None, db: PathLike | None = None,
                  report_dir: PathLike | None = None, progress: ProgressHook | None = None,
                  allow_contaminated: bool = False) -> GateResult:
    """Gate ``candidate`` against ``baseline``.

    With ``dataset``: both are candidate specs (files or objects) and whatever runs are missing are
    run first (cached). Without: both are stored run ids. Rows that overlap the candidate's tuning
    data (``lineage["tuning_data"]``) are excluded unless ``allow_contaminated``; both ways reported.
    """
    pol = _policy(policy)
    with Store(db) as store:
        if dataset is not None:
            ds = _dataset(dataset)
            base_c, cand_c = _candidate(baseline, store), _candidate(candidate, store)
            evs = evaluators if evaluators is not None else \
                list(dict.fromkeys(pol.gated_evaluators() + pol.cohort_evaluators()))
            base_id, _ = ensure_run(store, ds, base_c, evs, split=split, cohorts=cohorts, limit=limit,
                                    progress=progress)
            cand_id, _ = ensure_run(store, ds, cand_c, evs, split=split, cohorts=cohorts, limit=limit,
                                    progress=progress)
        else:
            base_id, cand_id = str(baseline), str(candidate)
        result = gate_runs(store, base_id, cand_id, pol, allow_contaminated=allow_contaminated,
                           probe_runner=lambda d, c, e: ensure_run(store, d, c, e, progress=progress))
    if report_dir is not None:
        write_report(result, report_dir)
    return result


def gate(**kw: object) -> Verdict:
    """Like :func:`gate_detailed`, returning only the :class:`Verdict` (``.decision``, ``.rules``)."""
    return gate_detailed(**kw).verdict  # type: ignore[arg-type]
