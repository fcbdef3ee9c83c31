"""The harness's promises: test rows refused, budget checked before and charged after, cache hits free."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes import FakeBackend
from tests.tuning.conftest import MAGIC, harness_for, make_dataset, task_script
from tunegate.core.dataset import Dataset
from tunegate.core.prompt import PromptTemplate
from tunegate.errors import UserError
from tunegate.evaluators.registry import default_registry
from tunegate.tuning import Budget, BudgetExhausted, Objective, SplitViolation
from tunegate.tuning.base import with_instruction
from tunegate.tuning.session import optimize_prompt


def test_test_rows_are_refused(seed, store):
    ds = make_dataset()
    h = harness_for(ds, seed, FakeBackend(task_script()), store)
    test_rows = [ex for ex in ds if ds.split_of(ex) == "test"]
    with pytest.raises(SplitViolation):
        asyncio.run(h.evaluate(seed.prompt, test_rows[:1]))
    with pytest.raises(SplitViolation):
        h.rows("test")
    assert h.rows_seen == set()


def test_cache_hits_are_not_charged(seed, store):
    ds = make_dataset()
    backend = FakeBackend(task_script())
    h = harness_for(ds, seed, backend, store)
    dev = h.rows("dev")
    first = asyncio.run(h.evaluate(seed.prompt, dev))
    assert first.metric_calls == len(dev) and h.meter.metric_calls == len(dev)
    again = asyncio.run(h.evaluate(seed.prompt, dev))
    assert again.metric_calls == 0 and again.cached_rows == len(dev)
    assert h.meter.metric_calls == len(dev) and h.meter.cached_rows == len(dev)
    assert len(backend.calls) == len(dev)  # the model really was not called again
    assert [t.value for t in again.traces] == [t.value for t in first.traces]


def test_budget_is_checked_before_generation(seed, store):
    ds = make_dataset()
    backend = FakeBackend(task_script())
    h = harness_for(ds, seed, backend, store, calls=5)
    dev = h.rows("dev")
    with pytest.raises(BudgetExhausted, match="9 needed, 5 left"):
        asyncio.run(h.evaluate(seed.prompt, dev))
    assert backend.calls == [] and h.meter.metric_calls == 0
    asyncio.run(h.evaluate(seed.prompt, dev[:5]))
    assert h.meter.metric_calls == 5 and h.meter.exhausted()
    # cached rows stay affordable after the budget is spent
    b = asyncio.run(h.evaluate(seed.prompt, dev[:5]))
    assert b.metric_calls == 0


def test_objective_and_feedback(seed, store):
    ds = make_dataset()
    h = harness_for(ds, seed, FakeBackend(task_script()), store)
    dev = h.rows("dev")
    bad = asyncio.run(h.evaluate(seed.prompt, dev))
    good = asyncio.run(h.evaluate(with_instruction(seed.prompt, f"Answer in {MAGIC}."), dev))
    assert bad.mean == 0.0 and good.mean == 1.0
    assert all(t.feedback.startswith("exact_match (0.00)") for t in bad.traces)
    assert good.means == {"exact_match": 1.0}


def test_objective_weights_and_errors():
    from tunegate.core.result import EvalResult

    obj = Objective.parse("a=3,b=1")
    ok = EvalResult.ok
    assert obj.row({"a": ok("a", "1", 1.0), "b": ok("b", "1", 0.0)}).value == pytest.approx(0.75)
    assert obj.row({"a": EvalResult.skipped("a", "1", "n/a"), "b": ok("b", "1", 0.4)}).value == pytest.approx(0.4)
    r = obj.row({"a": EvalResult.error("a", "1", "boom"), "b": ok("b", "1", 1.0)})
    assert r.error and r.value == 0.0 and "boom" in r.reason
    assert obj.row({"a": EvalResult.skipped("a", "1", "n/a")}).value is None
    with pytest.raises(UserError):
        Objective.parse("a=-1")
    with pytest.raises(UserError):
        Objective.parse("a=x")


def test_constraints():
    obj = Objective(weights={"a": 1}, floors={"safety": 0.9}, max_prompt_tokens=10)
    p = PromptTemplate(system="x" * 100)
    v = obj.violations(p, {"safety": 0.5})
    assert any("budget 10" in s for s in v) and any("below floor" in s for s in v)
    assert obj.violations(PromptTemplate(system="short"), {"safety": 0.95}) == []


def test_objective_must_name_suite_evaluators(seed, store):
    with pytest.raises(UserError, match="not in the suite"):
        harness_for(make_dataset(), seed, FakeBackend(task_script()), store, objective="token_f1")


def test_rows_the_objective_cannot_score_are_not_spent_on(seed, store):
    """A row without ``expected`` cannot move an exact-match objective: never generated, never charged."""
    base = list(make_dataset())
    blind = [ex.model_copy(update={"expected": None, "id": f"x{ex.id}", "input": f"unscorable {ex.input}"})
             for ex in base if ex.split != "test"]
    ds = Dataset.of(base + blind, name="mixed", source="mixed.jsonl")
    h = harness_for(ds, seed, FakeBackend(task_script()), store)
    kept, out = h.objective_rows("train")
    assert out == len([ex for ex in blind if ex.split == "train"]) and all(ex.expected for ex in kept)
    task = FakeBackend(task_script())
    result = asyncio.run(optimize_prompt(
        dataset=ds, seed=seed, evaluators=[default_registry().create("exact_match")],
        objective=Objective.parse("exact_match"), method="gepa", budget=Budget(metric_calls=40),
        task_backend=task, cache=store, reflection_backend=FakeBackend(lambda r: "```\nAnswer it.\n```")))
    sent = {m.content for req in task.calls for m in req.messages if m.role == "user"}
    assert task.calls and not any(ex.input in text for ex in blind for text in sent)
    assert result.history.meta["rows_outside_objective"] == {"train": 15, "dev": 9}
    assert result.history.meta["dev_rows"] == 9
