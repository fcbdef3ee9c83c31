"""The Python API, mirroring the CLI: ``run`` a candidate, ``gate`` two runs or two candidates,
``tune_prompt`` a candidate's prompt (optimise on train/dev, gate the best on test).

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunegate.core.candidate import CandidateSpec, load_candidate
from tunegate.core.dataset import Dataset
from tunegate.core.example import Split
from tunegate.core.loading import load_dataset
from tunegate.core.policy import GatePolicy, load_policy
from tunegate.core.verdict import Verdict
from tunegate.engine.gate.runs import GateResult, gate_runs
from tunegate.engine.run import ensure as _ensure
from tunegate.engine.run.executor import ProgressHook, RunSummary, execute
from tunegate.engine.run.factory import make_backend
from tunegate.engine.run.plan import plan_run
from tunegate.engine.run.suite import resolve_suite
from tunegate.errors import UserError
from tunegate.prompts import PromptRegistry, resolve_candidate
from tunegate.report.files import write_report
from tunegate.store.sqlite import Store
from tunegate.tuning.base import ProgressFn
from tunegate.tuning.budget import Budget
from tunegate.tuning.objective import Objective
from tunegate.tuning.workflow import PromptTuneResult, plan_prompt_tune, run_prompt_tune

__all__ = ["ensure_run", "gate", "gate_detailed", "run", "tune_prompt"]

PathLike = str | Path


def _dataset(d: PathLike | Dataset) -> Dataset:
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
        resume: bool = False, use_cache: bool = True, progress: ProgressHook | None = None,
        executor: str = "local", workers: int | None = None) -> RunSummary:
    """Generate and evaluate ``candidate`` on ``dataset`` (cached, resumable).

    ``executor="ray"`` scores the rows on Ray workers (``RAY_ADDRESS``, else a local Ray
    instance; ``workers`` actors), with the same stored result as the local executor.
    """
    ds = _dataset(dataset)
    cand = _candidate(candidate)
    if cand.prompt.ref is not None:  # the registry lives in the store: open it early only for this
        with Store(db) as store:
            cand = _candidate(cand, store)
    plan = plan_run(ds, resolve_suite(evaluators, ds), candidate=cand, split=split, cohorts=cohorts, limit=limit)
    backend = make_backend(cand)
    with Store(db) as store:
        if executor == "ray":
            from tunegate.engine.run.ray_executor import RayOptions, run_plan_ray

            return run_plan_ray(plan, store, resume=resume, use_cache=use_cache, progress=progress,
                                options=RayOptions(workers=workers))
        if executor != "local":
            raise UserError(f"unknown executor {executor!r} (local or ray)", field="executor")
        return asyncio.run(execute(plan, store, backend, resume=resume, use_cache=use_cache, progress=progress))


def ensure_run(store: Store, dataset: Dataset, candidate: CandidateSpec, evaluators: str | Sequence[str] | None,
               *, split: Split | None = None, cohorts: Sequence[str] | None = None, limit: int | None = None,
               progress: ProgressHook | None = None) -> tuple[str, bool]:
    """The id of a finished run with this exact identity, running it first if missing (see
    :func:`tunegate.engine.run.ensure.ensure_run`); backends are built by this module's
    ``make_backend`` (the one seam the API's callers replace in tests)."""
    return _ensure.ensure_run(store, dataset, candidate, evaluators, split=split, cohorts=cohorts, limit=limit,
                              progress=progress, backends=make_backend)


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


def tune_prompt(*, dataset: PathLike | Dataset, candidate: PathLike | CandidateSpec, policy: PathLike | GatePolicy,
                method: str, budget: int | Budget, out_dir: PathLike, objective: str | Objective | None = None,
                evaluators: str | Sequence[str] | None = None, floors: Mapping[str, float] | None = None,
                max_prompt_tokens: int | None = None, max_wall: float | None = None, max_tokens: int | None = None,
                reflection: PathLike | CandidateSpec | None = None, reflection_max_tokens: int = 384,
                settings: PathLike | Mapping[str, Any] | None = None, random_seed: int = 0,
                prompt_name: str | None = None, db: PathLike | None = None, gate: bool = True,
                progress: ProgressFn | None = None, gate_progress: ProgressHook | None = None) -> PromptTuneResult:
    """Optimise ``candidate``'s prompt on ``dataset``'s train/dev rows, then gate the best on test.

    The same workflow as ``tunegate tune prompt`` (:mod:`tunegate.tuning.workflow`): ``method``
    (gepa, protegi, promptwizard or a plugin's) spends ``budget`` metric calls; the seed and every
    accepted proposal become prompt versions (``prompt_name``, default the candidate's name) with
    their lineage; ``out_dir`` receives ``history.json``, ``score-vs-calls.png``, ``candidate.yaml``
    and, when the best beat the seed, the test-split gate report in ``gate/``. The objective
    defaults to the policy's headline evaluator (or, without one, its gated evaluators).

    >>> res = tunegate.tune_prompt(dataset="examples/support/dataset.jsonl",
    ...                            candidate="examples/support/incumbent.yaml",
    ...                            policy="examples/support/policy.yaml", method="gepa", budget=60,
    ...                            out_dir="tune-out")  # doctest: +SKIP
    >>> res.decision, res.candidate_path  # doctest: +SKIP
    """
    plan = plan_prompt_tune(method=method, dataset=dataset, candidate=candidate, policy=policy, budget=budget,
                            out=out_dir, objective=objective, evaluators=evaluators, floors=floors,
                            max_prompt_tokens=max_prompt_tokens, max_wall=max_wall, max_tokens=max_tokens,
                            reflection=reflection, reflection_max_tokens=reflection_max_tokens, settings=settings,
                            random_seed=random_seed, prompt_name=prompt_name)
    with Store(db) as store:
        result = run_prompt_tune(plan, store, gate=gate, progress=progress, gate_progress=gate_progress)
    if result.gate is not None:
        write_report(result.gate, Path(out_dir) / "gate")
    return result
