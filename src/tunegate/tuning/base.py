"""The one optimizer protocol and the context every prompt optimizer works through.

An optimizer never touches a backend, the store or the test split directly: it reads train rows
(for minibatches and reflection) and dev rows (for selection) from the :class:`TuneContext`,
scores prompts through the harness (budgeted, cached, split-guarded), asks the reflector for
rewrites (strictly parsed), and records every proposal in the history. That keeps GEPA,
ProTeGi and PromptWizard comparable call for call, and keeps each one a small module about its
algorithm only.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ValidationError

from tunegate.core.example import Example
from tunegate.core.prompt import PromptTemplate
from tunegate.errors import UserError, field_path
from tunegate.tuning.budget import BudgetMeter
from tunegate.tuning.harness import EvalBatch, TaskHarness
from tunegate.tuning.history import History, Proposal, ProposalStatus
from tunegate.tuning.reflection import Reflector
from tunegate.tuning.registry import OPTIMIZERS, default_optimizers

__all__ = ["OPTIMIZERS", "Optimizer", "ProgressFn", "TuneContext", "load_optimizer", "with_instruction"]

#: Called after every recorded proposal with the history (for progress bars and plots).
ProgressFn = Callable[[History, BudgetMeter], None]



def with_instruction(prompt: PromptTemplate, text: str) -> PromptTemplate:
    """``prompt`` with its instruction (the system message) replaced: the text optimizers mutate.

    The user template keeps carrying the row (``{{input}}``) and the automatic context/schema
    blocks, so a rewritten instruction can never drop the evidence the row provides.
    """
    return prompt.model_copy(update={"system": text.strip(), "ref": None})


@dataclass
class TuneContext:
    """What an optimizer may use. Created by :func:`tunegate.tuning.session.optimize_prompt`."""

    harness: TaskHarness
    reflector: Reflector
    meter: BudgetMeter
    history: History
    rng: random.Random
    seed_prompt: PromptTemplate
    train: list[Example]
    dev: list[Example]
    progress: ProgressFn | None = None
    log: list[str] = field(default_factory=list)

    def instruction(self, prompt: PromptTemplate) -> str:
        """The mutable instruction text of ``prompt`` (empty when the seed has no system message)."""
        return prompt.system or ""

    def sample_train(self, k: int) -> list[Example]:
        """``k`` train rows drawn without replacement from the seeded RNG (all rows when fewer)."""
        if k >= len(self.train):
            return list(self.train)
        return self.rng.sample(self.train, k)

    async def score(self, prompt: PromptTemplate, rows: Sequence[Example]) -> EvalBatch:
        return await self.harness.evaluate(prompt, rows)

    async def score_dev(self, prompt: PromptTemplate) -> EvalBatch:
        return await self.harness.evaluate(prompt, self.dev)

    def record(self, prompt: PromptTemplate, *, parents: Sequence[str], operator: str, status: ProposalStatus,
               reason: str = "", dev: EvalBatch | None = None, minibatch: dict[str, Any] | None = None,
               extra: dict[str, Any] | None = None) -> Proposal:
        """Append a proposal to the history and report progress."""
        p = Proposal(id=self.history.next_id(), parents=list(parents), operator=operator, prompt=prompt,
                     status=status, reason=reason, minibatch=minibatch or {},
                     dev_scores=dev.scores if dev is not None else None,
                     dev_mean=dev.mean if dev is not None else None,
                     dev_means=dev.means if dev is not None else {},
                     calls_at=self.meter.metric_calls, wall_s=round(self.meter.elapsed_s, 3), extra=extra or {})
        self.history.add(p)
        if self.progress:
            self.progress(self.history, self.meter)
        return p

    def reject(self, operator: str, parent: str | None, reason: str, raw: str = "") -> None:
        """Log a reflection or proposal that is not adopted (it never reaches the history's proposals)."""
        self.history.reject(operator, parent, reason, raw, self.meter.metric_calls)

    async def admit(self, prompt: PromptTemplate, *, parents: Sequence[str], operator: str,
                    minibatch: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Proposal:
        """Score ``prompt`` on all dev rows and record it: ``accepted`` unless it breaks a constraint."""
        dev = await self.score_dev(prompt)
        bad = self.harness.objective.violations(prompt, dev.means)
        return self.record(prompt, parents=parents, operator=operator, status="rejected" if bad else "accepted",
                           reason="; ".join(bad), dev=dev, minibatch=minibatch, extra=extra)

    def compile_error(self, prompt: PromptTemplate) -> str | None:
        """Why ``prompt`` cannot render the train/dev rows (checked before any call is spent)."""
        errs = self.harness.compile_errors(prompt, [*self.train, *self.dev])
        return errs[0] if errs else None


class Optimizer(Protocol):
    """A prompt optimizer: proposes prompts through ``ctx`` until the budget is spent."""

    name: ClassVar[str]
    #: Pydantic model of the optimizer's settings (extra="forbid"), validated from CLI/YAML.
    Settings: ClassVar[type[BaseModel]]
    #: The validated settings it was built with (recorded in the history's config hash).
    settings: BaseModel

    async def optimize(self, ctx: TuneContext) -> None:
        """Record proposals in ``ctx.history``; may raise BudgetExhausted to stop."""
        ...


def load_optimizer(method: str, settings: dict[str, Any] | None = None, *, source: str | None = None) -> Optimizer:
    """Instantiate a registered optimizer (built-in or plugin) by name with validated settings."""
    cls: Any = default_optimizers().get(method)
    try:
        s = cls.Settings.model_validate(settings or {})
    except ValidationError as e:
        err = e.errors()[0]
        raise UserError(f"{err['msg']}", file=source, field=field_path(("settings", *err["loc"]), "settings")) from None
    optimizer: Optimizer = cls(s)
    return optimizer
