"""numeric_match against GSM8K: every reference solution must score 1 against its final answer."""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared_dataset
from tunegate.core.example import Example
from tunegate.core.result import ModelOutput
from tunegate.evaluators.base import EvalContext
from tunegate.evaluators.text_match import NumericMatch, extract_number


def test_every_reference_solution_matches_its_final_answer() -> None:
    path = shared_dataset("gsm8k") / "data.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) == 1319
    ctxs = [EvalContext(Example(id=r["id"], input=r["question"], expected=r["final_answer"]),
                        ModelOutput(text=r["solution"])) for r in rows]
    results = NumericMatch().evaluate_batch(ctxs)
    failures = [(r["id"], res.reason) for r, res in zip(rows, results, strict=True) if res.score != 1.0]
    print(f"\ngsm8k numeric_match on reference solutions: {len(rows) - len(failures)}/{len(rows)}")
    assert not failures, failures[:5]
    assert all(res.details["method"] == "####" for res in results)


@pytest.mark.parametrize("text, value, how", [
    ("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", 18.0, "####"),
    ("#### 1,000,000", 1e6, "####"),
    ("Total: 80,000+50,000=$130,000 so\n#### -5", -5.0, "####"),
    ("The answer is $1,234.50.", 1234.5, "answer is"),
    ("answer: -3.", -3.0, "answer is"),
    ("Thus the final answer is \\boxed{42}", 42.0, "answer is"),
    ("We get \\boxed{7} apples, 3 left over", 7.0, "boxed"),
    ("x = 4 + 5 = 9", 9.0, "= at end"),
    ("3 of 4 bags, 25% of them, i.e. 12 apples and 2 pears", 2.0, "last number"),
    ("Half is 3/4 of the cake", 0.75, "last number"),
    ("It grew by 50%", 50.0, "last number"),
    ("Only .5 left", 0.5, "last number"),
    ("Avogadro: 6.02e23", 6.02e23, "last number"),
    ("Between 10-5 there", 5.0, "last number"),
])
def test_extraction(text: str, value: float, how: str) -> None:
    got = extract_number(text)
    assert got is not None
    assert got[0] == pytest.approx(value) and got[1] == how


def test_extraction_none_and_no_fractions() -> None:
    assert extract_number("no digits here") is None
    got = extract_number("ratio 3/4", fractions=False)  # the slash is plain text: 3, then 4
    assert got is not None and got[0] == 4.0
