"""Runs one prompt optimisation end to end: seed on dev, optimizer until the budget, best prompt.

The seed is scored on the full dev split first (that spends budget, as in GEPA), so every later
proposal is compared with it on the same rows. Test rows are never loaded into the context: the
harness only serves train and dev, and the CLI gates the result on test afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunegate._version import __version__
from tunegate.backends.base import Backend
from tunegate.backends.cache import CacheStore
from tunegate.core.candidate import CandidateSpec, DecodingParams
from tunegate.core.dataset import Dataset
from tunegate.core.hashing import content_hash
from tunegate.errors import UserError
from tunegate.evaluators.base import Evaluator
from tunegate.tuning.base import ProgressFn, TuneContext, load_optimizer
from tunegate.tuning.budget import Budget, BudgetExhausted, BudgetMeter
from tunegate.tuning.harness import TaskHarness
from tunegate.tuning.history import History, Proposal
from tunegate.tuning.objective import Objective
from tunegate.tuning.reflection import Reflector

__all__ = ["TuneOutcome", "optimize_prompt"]


@dataclass
class TuneOutcome:
    """The best proposal, the seed it is compared with, the full history and what was spent."""

    best: Proposal
    seed: Proposal
    candidate: CandidateSpec        #: seed candidate with the best prompt and lineage filled in
    history: History
    spent: dict[str, Any]
    config_hash: str
    stopped: str

    @property
    def improved(self) -> bool:
        return self.best.id != self.seed.id


async def optimize_prompt(*, dataset: Dataset, seed: CandidateSpec, evaluators: Sequence[Evaluator],
                          objective: Objective, method: str, budget: Budget, task_backend: Backend,
                          cache: CacheStore, reflection_backend: Backend | None = None,
                          reflection_params: DecodingParams | None = None, settings: dict[str, Any] | None = None,
                          random_seed: int = 0, progress: ProgressFn | None = None) -> TuneOutcome:
    """Optimise ``seed``'s prompt on ``dataset``'s train/dev rows with ``method``."""
    optimizer = load_optimizer(method, settings)
    meter = BudgetMeter(budget)
    history = History()
    harness = TaskHarness(dataset, seed, task_backend, cache, evaluators, objective, meter)
    reflector = Reflector(reflection_backend or task_backend, cache, meter, params=reflection_params)
    (train, train_out), (dev, dev_out) = harness.objective_rows("train"), harness.objective_rows("dev")
    if not train or not dev:
        raise UserError(f"the optimizer needs train and dev rows the objective {objective.evaluators} can "
                        f"score (train {len(train)}, dev {len(dev)}; {train_out + dev_out} rows lack the "
                        "fields those evaluators require)", file=dataset.source, field="split")
    config = {"method": method, "settings": optimizer.settings.model_dump(mode="json"),
              "budget": budget.model_dump(mode="json"), "objective": objective.model_dump(mode="json"),
              "random_seed": random_seed, "reflection": reflector.identity()}
    config_hash = content_hash(config, prefix="tune-")
    history.meta = {"tunegate_version": __version__, "config": config, "config_hash": config_hash,
                    **harness.provenance(), "train_rows": len(train), "dev_rows": len(dev),
                    "rows_outside_objective": {"train": train_out, "dev": dev_out}}
    ctx = TuneContext(harness=harness, reflector=reflector, meter=meter, history=history,
                      rng=random.Random(random_seed), seed_prompt=seed.prompt, train=train, dev=dev,
                      progress=progress)
    try:
        dev_batch = await ctx.score_dev(seed.prompt)
    except BudgetExhausted as e:
        raise UserError(f"the budget cannot pay for scoring the seed on {len(dev)} dev rows ({e.what})",
                        field="budget") from None
    seed_p = ctx.record(seed.prompt, parents=[], operator="seed", status="seed", dev=dev_batch)
    stopped = "optimizer finished"
    try:
        await optimizer.optimize(ctx)
    except BudgetExhausted as e:
        stopped = e.what
    else:
        stopped = meter.exhausted() or stopped
    best = history.best()
    history.meta.update({"stopped": stopped, "spent": meter.snapshot(), "best": best.id,
                         "rejected_reflections": len(history.rejections), "log": list(ctx.log)})
    lineage = {**seed.lineage, "method": f"prompt:{method}", "parent": seed.hash, "config_hash": config_hash,
               "tuning_data": {"path": dataset.source, "hash": dataset.hash, "split": ["train", "dev"],
                               "rows": len(train) + len(dev)},
               "proposal": best.id, "dev_mean": best.dev_mean, "seed_dev_mean": seed_p.dev_mean}
    cand = seed.model_copy(update={"prompt": best.prompt, "lineage": lineage,
                                   "name": f"{seed.name}+{method}"})
    await harness.aclose()
    if reflector.backend.inner is not harness.backend.inner:  # one backend closes once
        await reflector.aclose()
    return TuneOutcome(best=best, seed=seed_p, candidate=cand, history=history, spent=meter.snapshot(),
                       config_hash=config_hash, stopped=stopped)
