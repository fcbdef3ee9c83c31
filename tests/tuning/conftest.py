"""Shared fixtures for prompt-optimizer tests: a tiny labelled dataset and a scripted task model.

The fake task model answers correctly only when the instruction contains a magic word, so an
optimizer that adopts a reflection mentioning it improves measurably, and budgets/caching can be
checked call for call. Fake backends are for unit tests only (never demo or benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tunegate.core.candidate import CandidateSpec, DecodingParams
from tunegate.core.dataset import Dataset
from tunegate.core.example import Example
from tunegate.core.prompt import PromptTemplate
from tunegate.core.request import GenerationRequest
from tunegate.core.result import ModelOutput, Usage
from tunegate.evaluators.registry import default_registry
from tunegate.store.sqlite import Store
from tunegate.tuning.budget import Budget, BudgetMeter
from tunegate.tuning.harness import TaskHarness
from tunegate.tuning.objective import Objective

MAGIC = "CONFIRM"


def make_dataset(n: int = 30) -> Dataset:
    """Rows whose expected answer is the input followed by ``ok``; explicit splits 50/30/20 %."""
    rows = []
    for i in range(n):
        split = "train" if i < n * 0.5 else ("dev" if i < n * 0.8 else "test")
        word = f"word{i} alpha{i % 7}"
        rows.append(Example(id=f"r{i:03d}", input=word, expected=f"{word} ok", split=split,
                            cohorts=["odd" if i % 2 else "even"]))
    return Dataset.of(rows, name="upper", source="upper.jsonl")


def task_script(solve: Callable[[str, str], bool] | None = None) -> Callable[[GenerationRequest], ModelOutput]:
    """Appends `` ok`` to the input when the system message says CONFIRM (or ``solve(system, input)``)."""
    def script(req: GenerationRequest) -> ModelOutput:
        system = next((m.content or "" for m in req.messages if m.role == "system"), "")
        user = [m.content or "" for m in req.messages if m.role == "user"][-1]
        good = solve(system, user) if solve else MAGIC in system
        text = f"{user} ok" if good else user
        return ModelOutput(text=text, finish_reason="stop", usage=Usage(prompt_tokens=5, completion_tokens=3))
    return script


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "t.db") as s:
        yield s


@pytest.fixture
def seed() -> CandidateSpec:
    return CandidateSpec(name="seed", backend="local", model="fake",
                         prompt=PromptTemplate(system="Answer the question."),
                         params=DecodingParams(max_tokens=32))


def harness_for(ds: Dataset, seed: CandidateSpec, backend, store: Store, calls: int = 1000,
                objective: str = "exact_match") -> TaskHarness:
    evs = [default_registry().create("exact_match")]
    return TaskHarness(ds, seed, backend, store, evs, Objective.parse(objective), BudgetMeter(Budget(metric_calls=calls)))
