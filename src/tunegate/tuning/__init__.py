"""Tuning: prompt optimizers (GEPA, ProTeGi, PromptWizard) over one protocol, and weight tuning.

Everything here *proposes* candidates; nothing here decides. Every tuned candidate goes through
the same gate as a hand-written one (see :mod:`tunegate.engine.gate.runs`). Prompts are scored
through the engine's one row executor (:mod:`.harness` adds the split guard and the budget);
optimizers are registered by name like evaluators (:mod:`.registry`, entry points
``tunegate.optimizers``); the release step of a prompt — plan, optimise, commit versions, gate on
test — is :mod:`.workflow` (``tunegate.tune_prompt``; imported on use, it pulls in the gate).
"""

from tunegate.tuning.base import OPTIMIZERS, Optimizer, TuneContext, load_optimizer, with_instruction
from tunegate.tuning.budget import Budget, BudgetExhausted, BudgetMeter
from tunegate.tuning.harness import EvalBatch, RowTrace, SplitViolation, TaskHarness
from tunegate.tuning.history import History, Proposal, Rejection
from tunegate.tuning.objective import Objective, prompt_tokens
from tunegate.tuning.reflection import (
    Reflection,
    Reflector,
    check_instruction,
    fenced_block,
    numbered_items,
    tagged_block,
)
from tunegate.tuning.registry import OptimizerRegistry, default_optimizers

__all__ = [
    "OPTIMIZERS",
    "Budget",
    "BudgetExhausted",
    "BudgetMeter",
    "EvalBatch",
    "History",
    "Objective",
    "Optimizer",
    "OptimizerRegistry",
    "Proposal",
    "Reflection",
    "Reflector",
    "Rejection",
    "RowTrace",
    "SplitViolation",
    "TaskHarness",
    "TuneContext",
    "check_instruction",
    "default_optimizers",
    "fenced_block",
    "load_optimizer",
    "numbered_items",
    "prompt_tokens",
    "tagged_block",
    "with_instruction",
]
