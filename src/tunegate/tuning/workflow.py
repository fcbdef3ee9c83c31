"""The prompt-tuning release step as a library call: plan, optimise, record, gate on test.

``tunegate tune prompt``, ``tunegate demo``, ``tunegate loop`` and :func:`tunegate.tune_prompt`
all run this one workflow:

1. :func:`plan_prompt_tune` loads and validates every input (dataset, seed candidate, policy,
   objective, suite, optimizer settings, budget) before any model call or store write;
2. :func:`optimise` spends the metric-call budget on the train and dev splits only;
3. :func:`commit_versions` makes the seed and every accepted proposal a prompt version in the
   registry, with its lineage (parent version, optimizer, proposal, hashes, dev mean);
4. :func:`record` writes ``history.json``, ``score-vs-calls.png`` and ``candidate.yaml``;
5. :func:`gate_on_test` gates the best against the seed on the **test** split with the policy.

Writing the gate report is left to the caller (reports sit beside tuning, not below it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunegate.core.candidate import CandidateSpec, DecodingParams, load_candidate
from tunegate.core.dataset import Dataset
from tunegate.core.loading import load_dataset, read_yaml
from tunegate.core.policy import GatePolicy, load_policy
from tunegate.engine.gate.runs import GateResult, gate_runs
from tunegate.engine.run.ensure import ensure_run
from tunegate.engine.run.factory import make_backend
from tunegate.engine.run.rows import ProgressHook
from tunegate.engine.run.suite import resolve_suite
from tunegate.errors import UserError
from tunegate.evaluators.base import Evaluator
from tunegate.prompts import PromptRegistry, resolve_candidate
from tunegate.store.sqlite import Store
from tunegate.tuning.base import ProgressFn, load_optimizer
from tunegate.tuning.budget import Budget
from tunegate.tuning.objective import Objective
from tunegate.tuning.session import TuneOutcome, optimize_prompt

__all__ = ["PromptTunePlan", "PromptTuneResult", "commit_versions", "default_objective", "gate_evaluators",
           "gate_on_test", "optimise", "plan_prompt_tune", "record", "run_prompt_tune", "with_version",
           "write_candidate"]

PathLike = str | Path


def default_objective(policy: GatePolicy) -> str:
    """The objective when none is named: the headline evaluator, else (a guards-only policy) every
    gated evaluator with equal weight — what the gate will measure, so tuning aims at it."""
    if policy.headline is not None:
        return policy.headline.evaluator
    names = policy.gated_evaluators()
    if not names:
        raise UserError("the policy gates no evaluator (no headline, no guards); name an objective",
                        field="objective")
    return ",".join(dict.fromkeys(names))


def gate_evaluators(policy: GatePolicy) -> list[str]:
    """Every evaluator the policy's rules and cohort rules read (the final gate's suite)."""
    return list(dict.fromkeys(policy.gated_evaluators() + policy.cohort_evaluators()))


@dataclass
class PromptTunePlan:
    """Everything a prompt tune needs, validated before any model call or store write."""

    method: str
    dataset: Dataset
    seed: CandidateSpec
    reflection: CandidateSpec | None
    policy: GatePolicy
    objective: Objective
    gate_evaluators: list[str]
    suite: list[Evaluator]
    settings: dict[str, Any]
    budget: Budget
    reflection_params: DecodingParams | None   #: None = the reflector's defaults
    random_seed: int
    prompt_name: str | None
    out: Path


def _settings(settings: PathLike | Mapping[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    if settings is None:
        return {}, None
    if isinstance(settings, Mapping):
        return dict(settings), None
    _, data = read_yaml(settings)
    if data is None:
        return {}, str(settings)
    if not isinstance(data, dict):
        raise UserError("optimizer settings must be a mapping", file=str(settings))
    return data, str(settings)


def plan_prompt_tune(*, method: str, dataset: PathLike | Dataset, candidate: PathLike | CandidateSpec,
                     policy: PathLike | GatePolicy, budget: int | Budget, out: PathLike,
                     objective: str | Objective | None = None, evaluators: str | Sequence[str] | None = None,
                     floors: Mapping[str, float] | None = None, max_prompt_tokens: int | None = None,
                     max_wall: float | None = None, max_tokens: int | None = None,
                     reflection: PathLike | CandidateSpec | None = None, reflection_max_tokens: int | None = 384,
                     settings: PathLike | Mapping[str, Any] | None = None, random_seed: int = 0,
                     prompt_name: str | None = None) -> PromptTunePlan:
    """Load and validate every input (UserError, exit 2, on the first problem; nothing written).

    ``reflection_max_tokens=None`` keeps the reflector's own decoding defaults.
    """
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    seed = candidate if isinstance(candidate, CandidateSpec) else load_candidate(candidate)
    refl = reflection if isinstance(reflection, CandidateSpec) or reflection is None else load_candidate(reflection)
    pol = policy if isinstance(policy, GatePolicy) else load_policy(policy)
    if isinstance(objective, Objective):
        obj = objective
    else:
        obj = Objective.parse(objective or default_objective(pol), floors=floors or {},
                              max_prompt_tokens=max_prompt_tokens)
    gate_evs = gate_evaluators(pol)
    suite = resolve_suite(evaluators or list(dict.fromkeys(obj.evaluators + gate_evs)), ds)
    cfg, source = _settings(settings)
    load_optimizer(method, cfg, source=source)
    if isinstance(budget, int):
        if budget < 1:
            raise UserError("must be at least 1", field="budget")
        budget = Budget(metric_calls=budget, wall_s=max_wall, tokens=max_tokens)
    return PromptTunePlan(method=method, dataset=ds, seed=seed, reflection=refl, policy=pol, objective=obj,
                          gate_evaluators=gate_evs, suite=suite, settings=cfg, budget=budget,
                          reflection_params=None if reflection_max_tokens is None else DecodingParams(
                              temperature=0.7, top_p=0.95, max_tokens=reflection_max_tokens, seed=random_seed),
                          random_seed=random_seed, prompt_name=prompt_name, out=Path(out))


def optimise(plan: PromptTunePlan, store: Store, *, seed: CandidateSpec | None = None,
             progress: ProgressFn | None = None) -> TuneOutcome:
    """Run the optimizer on train/dev (the cache is ``store``); ``seed`` overrides ``plan.seed``."""
    seed_ = seed or plan.seed
    if seed_.backend == "local":
        from tunegate.backends.models import resolve_model

        resolve_model(seed_.model)
    refl_params = plan.reflection_params
    if plan.reflection is not None and plan.reflection.params.temperature > 0 and refl_params is not None:
        refl_params = plan.reflection.params.model_copy(update={"max_tokens": refl_params.max_tokens})
    return asyncio.run(optimize_prompt(
        dataset=plan.dataset, seed=seed_, evaluators=plan.suite, objective=plan.objective, method=plan.method,
        budget=plan.budget, task_backend=make_backend(seed_), cache=store,
        reflection_backend=make_backend(plan.reflection) if plan.reflection is not None else None,
        reflection_params=refl_params, settings=plan.settings, random_seed=plan.random_seed, progress=progress))


def commit_versions(store: Store, outcome: TuneOutcome, name: str, method: str, *,
                    author: str = "tunegate tune prompt") -> tuple[list[str], str | None]:
    """Seed and every accepted proposal become prompt versions (lineage: parent, optimizer, hashes).

    Returns (version refs, the best proposal's ref); the best is labelled ``candidate`` when it
    beat the seed.
    """
    reg = PromptRegistry(store)
    refs: dict[str, str] = {}
    meta = outcome.history.meta
    for p in outcome.history.proposals:
        if p.status == "rejected":
            continue
        parent = next((refs[x] for x in p.parents if x in refs), None)
        lineage = {"parent_version": parent, "optimizer": method, "proposal": p.id, "operator": p.operator,
                   "config_hash": outcome.config_hash, "dataset_hash": meta.get("dataset_hash"),
                   "dev_mean": p.dev_mean, "calls_at": p.calls_at}
        dev = f"dev {p.dev_mean:.3f}" if p.dev_mean is not None else "scored on minibatches only"
        msg = "seed prompt" if p.status == "seed" else f"{method} {p.id} ({p.operator}), {dev}"
        v = reg.commit(name, p.prompt.model_copy(update={"ref": None}), msg, author=author, lineage=lineage)
        refs[p.id] = v.ref
    best = refs.get(outcome.best.id)
    if best is not None and outcome.improved:
        reg.label(name, "candidate", int(best.rsplit("@v", 1)[1]))
    return list(dict.fromkeys(refs.values())), best


def with_version(cand: CandidateSpec, ref: str | None) -> CandidateSpec:
    """The tuned candidate, self-contained (prompt text inline, no registry ref) with the version
    it was committed as recorded in its lineage (the seed's own version is not carried over)."""
    lineage = {k: v for k, v in cand.lineage.items() if k not in ("prompt_version", "prompt_ref", "prompt_hash")}
    if ref is not None:
        lineage["prompt_version"] = ref
    return cand.model_copy(update={"prompt": cand.prompt.model_copy(update={"ref": None}), "lineage": lineage})


def write_candidate(spec: CandidateSpec, path: Path) -> Path:
    """``candidate.yaml``: the tuned candidate, gateable like any hand-written one."""
    import yaml

    data = spec.model_dump(mode="json", exclude={"source"}, exclude_defaults=False)
    data["prompt"].pop("ref", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# written by tunegate tune prompt (best proposal); gate it like any candidate\n"
                    + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _where(source: str | None, name: str) -> str:
    """``examples/support/dataset.jsonl`` → ``support/dataset.jsonl`` (a file stem alone says little)."""
    if not source:
        return name
    return "/".join(Path(source).parts[-2:])


@dataclass
class PromptTuneResult:
    """What a prompt tune produced: the optimisation, its records, and the test-split gate."""

    outcome: TuneOutcome
    baseline: CandidateSpec                  #: the seed, registry prompt resolved (the gate's baseline)
    candidate: CandidateSpec                 #: best proposal, self-contained, lineage incl. its version
    versions: list[str]
    history_path: Path
    plot_path: Path
    candidate_path: Path
    gate: GateResult | None = None           #: None when no proposal beat the seed (nothing to gate)
    reason: str = ""                         #: why there was no gate
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def decision(self) -> str:
        return self.gate.verdict.decision if self.gate is not None else "INCONCLUSIVE"

    @property
    def exit_code(self) -> int:
        """As ``tunegate gate``: 0 PROMOTE, 1 BLOCK, 3 INCONCLUSIVE (also: nothing beat the seed)."""
        return self.gate.exit_code if self.gate is not None else 3

    def outcome_dict(self) -> dict[str, Any]:
        o = self.outcome
        return {"best": o.best.id, "best_dev_mean": o.best.dev_mean, "seed_dev_mean": o.seed.dev_mean,
                "stopped": o.stopped, "spent": o.spent, "config_hash": o.config_hash, "versions": self.versions,
                "history": str(self.history_path), "plot": str(self.plot_path),
                "candidate": str(self.candidate_path)}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"outcome": self.outcome_dict(),
                               "verdict": self.gate.to_dict() if self.gate is not None else None}
        if self.gate is None:
            out.update(decision="INCONCLUSIVE", reason=self.reason)
        return out


def record(plan: PromptTunePlan, outcome: TuneOutcome, baseline: CandidateSpec, best_ref: str | None,
           versions: list[str], out: Path | None = None) -> PromptTuneResult:
    """Write history.json, score-vs-calls.png and candidate.yaml into ``out`` (default ``plan.out``)."""
    from tunegate.tuning.plot import plot_history

    out = out or plan.out
    out.mkdir(parents=True, exist_ok=True)
    hist = outcome.history.write(out / "history.json")
    title = f"{plan.method} on {_where(plan.dataset.source, plan.dataset.name)}: dev score vs metric calls"
    plot = plot_history(outcome.history, out / "score-vs-calls.png", title=title)
    best = with_version(outcome.candidate, best_ref)
    cand_path = write_candidate(best, out / "candidate.yaml")
    return PromptTuneResult(outcome=outcome, baseline=baseline, candidate=best, versions=versions, history_path=hist, plot_path=plot,
                            candidate_path=cand_path)


def gate_on_test(store: Store, dataset: Dataset, baseline: CandidateSpec, candidate: CandidateSpec,
                 policy: GatePolicy, evaluators: Sequence[str], *, progress: ProgressHook | None = None
                 ) -> GateResult:
    """Gate ``candidate`` against ``baseline`` on the test split (missing runs are run, cached)."""
    base_id, _ = ensure_run(store, dataset, baseline, list(evaluators), split="test", progress=progress)
    cand_id, _ = ensure_run(store, dataset, candidate, list(evaluators), split="test", progress=progress)
    return gate_runs(store, base_id, cand_id, policy,
                     probe_runner=lambda d, c, e: ensure_run(store, d, c, e, progress=progress))


def run_prompt_tune(plan: PromptTunePlan, store: Store, *, gate: bool = True, progress: ProgressFn | None = None,
                    gate_progress: ProgressHook | None = None) -> PromptTuneResult:
    """The whole workflow on ``store``: optimise, commit versions, record, gate the best on test.

    With ``gate=False`` the caller gates later (:func:`gate_on_test` with ``result.baseline`` and
    ``result.candidate``), e.g. to show the optimisation first.
    """
    seed = resolve_candidate(plan.seed, PromptRegistry(store))
    outcome = optimise(plan, store, seed=seed, progress=progress)
    versions, best_ref = commit_versions(store, outcome, plan.prompt_name or seed.name, plan.method)
    res = record(plan, outcome, seed, best_ref, versions)
    if not outcome.improved:
        res.reason = ("no proposal beat the seed on dev, so there is no new candidate to gate "
                      f"({len(outcome.history.proposals) - 1} proposals, {len(outcome.history.rejections)} "
                      "rejected replies; a stronger reflection model or a larger budget may help)")
        return res
    if gate:
        res.gate = gate_on_test(store, plan.dataset, seed, res.candidate, plan.policy, plan.gate_evaluators,
                                progress=gate_progress)
    return res
