"""Graders as rewards: tunegate evaluators wrapped as a TRL ``GRPOTrainer`` reward function.

TRL 1.16 calls each custom reward function as ``f(prompts=..., completions=..., completion_ids=...,
**columns, trainer_state=..., log_extra=..., log_metric=...)`` where every dataset column arrives
as a list aligned with ``completions``; it must return one float (or ``None``) per completion.
TRL turns ``None`` into NaN and leaves that function out of the sample's reward; a sample for which
*every* function returns None gets advantage 0 and a warning (``GRPOTrainer._calculate_rewards``).

So the reward is the weighted mean of the applicable evaluators' scores, and ``None`` when no
evaluator applies (all skipped) or when any evaluator errored — an error is logged, never turned
into a 0 that would push the policy away from a possibly correct answer.

A row is found by its ``id`` column in ``dataset`` (see :func:`.data.build_prompt_rows`) or, when
no dataset is given, rebuilt from an ``example`` column holding the row as JSON.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tunegate.backends.toolparse import parse_tool_calls
from tunegate.core.dataset import Dataset
from tunegate.core.example import Example
from tunegate.core.result import ModelOutput
from tunegate.errors import UserError
from tunegate.evaluators.base import EvalContext, Evaluator

__all__ = ["RewardFn", "completion_text", "suite_reward"]

log = logging.getLogger("tunegate.tuning.rewards")

RewardFn = Callable[..., list[float | None]]


def completion_text(completion: Any) -> str:
    """Text of a TRL completion: a string (standard format) or ``[{"role", "content"}]`` (conversational)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    raise TypeError(f"unsupported completion type {type(completion).__name__}")


def _examples(n: int, dataset: Dataset | None, kwargs: Mapping[str, Any]) -> list[Example]:
    if dataset is not None:
        ids = kwargs.get("id")
        if ids is None or len(ids) != n:
            raise UserError("suite_reward with a dataset needs an 'id' column in the training rows", field="id")
        return [dataset[str(i)] for i in ids]
    rows = kwargs.get("example")
    if rows is None or len(rows) != n:
        raise UserError("suite_reward needs dataset= or an 'example' column (the row as JSON)", field="example")
    return [Example.model_validate(json.loads(r) if isinstance(r, str) else r) for r in rows]


def suite_reward(evaluators: Sequence[Evaluator], weights: Mapping[str, float] | Sequence[float] | None = None,
                 dataset: Dataset | None = None) -> RewardFn:
    """A TRL reward function scoring each completion with ``evaluators``.

    ``weights``: per evaluator (by name, or in order); default 1 each. Only applicable evaluators
    count, and their weights are renormalised, so a structured row is rewarded by JSON validity
    alone and a tool row by tool choice alone. Tool calls are parsed from the completion text the
    same way the local backend parses them.
    """
    evs = list(evaluators)
    if not evs:
        raise UserError("suite_reward needs at least one evaluator", field="evaluators")
    if weights is None:
        w = [1.0] * len(evs)
    elif isinstance(weights, Mapping):
        unknown = set(weights) - {e.name for e in evs}
        if unknown:
            raise UserError(f"weights for unknown evaluator(s) {sorted(unknown)}", field="weights")
        w = [float(weights.get(e.name, 1.0)) for e in evs]
    else:
        w = [float(x) for x in weights]
        if len(w) != len(evs):
            raise UserError(f"{len(w)} weights for {len(evs)} evaluators", field="weights")
    if any(x < 0 for x in w) or not any(x > 0 for x in w):
        raise UserError("weights must be >= 0 and not all 0", field="weights")

    def reward(prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (),
               **kwargs: Any) -> list[float | None]:
        n = len(completions)
        if n == 0:
            return []
        examples = _examples(n, dataset, kwargs)
        ctxs = []
        for ex, comp in zip(examples, completions, strict=True):
            text = completion_text(comp)
            calls = parse_tool_calls(text, ex.tools) if ex.tools else []
            ctxs.append(EvalContext(example=ex, output=ModelOutput(text=text, tool_calls=calls)))
        per_ev = [ev.evaluate_batch(ctxs) for ev in evs]
        out: list[float | None] = []
        for i, ex in enumerate(examples):
            total = weight = 0.0
            failed = False
            for ev, wi, results in zip(evs, w, per_ev, strict=True):
                r = results[i]
                if r.status == "error":
                    log.warning("reward: evaluator %s failed on row %s: %s", ev.name, ex.id, r.reason)
                    failed = True
                elif r.status == "ok" and r.score is not None and wi > 0:
                    total += wi * r.score
                    weight += wi
            out.append(None if failed or weight == 0 else total / weight)
        return out

    reward.__name__ = "tunegate_" + "_".join(e.name for e in evs)  # TRL logs rewards under this name
    return reward
