"""suite_reward: tunegate evaluators as a TRL GRPO reward function (called the way TRL 1.16 calls it)."""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

import pytest

from tunegate.core.dataset import Dataset
from tunegate.core.example import Example
from tunegate.core.result import EvalResult
from tunegate.errors import UserError
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.evaluators.registry import default_registry
from tunegate.tuning.weights.rewards import suite_reward

from .weights_fixtures import LOOKUP, SCHEMA

ROWS = Dataset.of([
    Example(id="j", input="extract", json_schema=SCHEMA),
    Example(id="e", input="capital?", expected="Paris"),
    Example(id="je", input="both", json_schema={"type": "object"}, expected="done"),  # text ref: exact_match applies
    Example(id="n", input="no reference at all"),
    Example(id="t", input="where is A-7", tools=[LOOKUP],
            expected_tool_calls=[{"name": "lookup_order", "arguments": {"order_id": "A-7"}}]),
])


def trl_call(fn: Any, ids: list[str], completions: list[Any], **extra: Any) -> list[float | None]:
    """What GRPOTrainer._calculate_rewards passes: prompts, completions, completion_ids, every dataset
    column as a list, trainer_state, log_extra, log_metric."""
    return fn(prompts=["p"] * len(ids), completions=completions, completion_ids=[[1]] * len(ids), id=ids,
              trainer_state=None, log_extra=lambda *a, **k: None, log_metric=lambda *a, **k: None, **extra)


def suite(*names: str) -> list[Evaluator]:
    reg = default_registry()
    return [reg.create(n) for n in names]


def test_scores_each_completion_with_applicable_evaluators() -> None:
    fn = suite_reward(suite("json_validation", "exact_match"), dataset=ROWS)
    got = trl_call(fn, ["j", "j", "e", "e", "n"], [
        json.dumps({"order_id": "A-1", "issue": "late"}),  # valid
        '{"order_id": "A-1", "issue": "early"}',           # enum violated
        "Paris",                                            # exact
        "London",
        "anything",                                         # no evaluator applies
    ])
    assert got == [1.0, 0.0, 1.0, 0.0, None]


def test_weights_renormalise_over_applicable_evaluators() -> None:
    fn = suite_reward(suite("json_validation", "exact_match"), weights={"json_validation": 3.0}, dataset=ROWS)
    # row "je": json valid (1.0, weight 3) and exact_match fails (0.0, weight 1) → 0.75
    assert trl_call(fn, ["je", "e"], ["[1]", "Paris"]) == [pytest.approx(0.0), 1.0]
    assert trl_call(fn, ["je"], ['{"a": 1}']) == [pytest.approx(0.75)]
    fn2 = suite_reward(suite("json_validation", "exact_match"), weights=[0.0, 1.0], dataset=ROWS)
    assert trl_call(fn2, ["j"], ["{}"]) == [None]  # only a zero-weight evaluator applies


def test_tool_calls_parsed_like_the_local_backend() -> None:
    fn = suite_reward(suite("tool_selection"), dataset=ROWS)
    good = '<tool_call>{"name": "lookup_order", "arguments": {"order_id": "A-7"}}</tool_call>'
    assert trl_call(fn, ["t", "t", "t"], [good, "I can't", [{"role": "assistant", "content": good}]]) == \
        [1.0, 0.0, 1.0]


def test_example_column_instead_of_dataset() -> None:
    fn = suite_reward(suite("exact_match"))
    rows = [ROWS["e"].model_dump_json(by_alias=True, exclude_none=True)]
    assert fn(prompts=["p"], completions=["Paris"], example=rows) == [1.0]
    with pytest.raises(UserError, match="needs dataset= or an 'example' column"):
        fn(prompts=["p"], completions=["Paris"])


class Boom(Evaluator):
    name = "boom"
    requires: ClassVar[tuple[str, ...]] = ("expected",)

    def score(self, ctx: EvalContext) -> EvalResult:
        raise RuntimeError("kaput")


def test_evaluator_error_is_none_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    fn = suite_reward([*suite("exact_match"), Boom()], dataset=ROWS)
    with caplog.at_level(logging.WARNING, logger="tunegate.tuning.rewards"):
        got = trl_call(fn, ["e", "j"], ["Paris", "{}"])
    assert got == [None, None]  # "e": exact_match ok but boom errored → None, not a partial score
    assert "boom failed on row e: RuntimeError: kaput" in caplog.text
    assert "row j" not in caplog.text  # "j" has no expected: boom skipped, not errored


def test_bad_weights_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown evaluator"):
        suite_reward(suite("exact_match"), weights={"nope": 1.0})
    with pytest.raises(UserError, match="2 weights for 1 evaluators"):
        suite_reward(suite("exact_match"), weights=[1.0, 2.0])
    with pytest.raises(UserError, match="not all 0"):
        suite_reward(suite("exact_match"), weights=[0.0])
