"""Applicability and empty replies (issue 11): a row an evaluator cannot use is ``skipped`` with
the reason, never ``error``; a blank reply is a failure (score 0, status ok, "empty output")."""

from __future__ import annotations

from typing import Any

import pytest

from tunegate.core.example import Example, ToolCall
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.evaluators.adherence import PromptAdherence
from tunegate.evaluators.applicability import EMPTY_OUTPUT, structured_reference
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.evaluators.factual import FactualAccuracy
from tunegate.evaluators.json_validation import JSONValidation
from tunegate.evaluators.refusal import Refusal
from tunegate.evaluators.task_reference import reference_outcome, reference_path
from tunegate.evaluators.text_match import (
    Contains,
    ExactMatch,
    NumericMatch,
    Regex,
    TokenF1,
    numeric_reference,
)
from tunegate.evaluators.tool_selection import ToolSelection

WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                 "required": ["city"]}}
TRIAGE = {"product": "ThinkPad X1", "priority": 2, "category": "hardware"}


def ev(e: Evaluator, text: str = "", calls: list[ToolCall] | None = None, **row: Any) -> EvalResult:
    ex = Example(id=row.pop("id", "r"), input=row.pop("input", "q"), **row)
    return e.evaluate(EvalContext(ex, ModelOutput(text=text, tool_calls=calls or [])))


# -- numeric_match applies only to number answers ----------------------------------------------
@pytest.mark.parametrize(("ref", "value"), [
    ("42", 42.0), ("$1,250", 1250.0), ("3/4", 0.75), ("12 apples", 12.0), ("50%", 50.0),
    ("#### 42", 42.0), ("Tom has 3 apples, so the answer is 7.", 7.0), ("-2.5", -2.5),
])
def test_number_answers_are_numeric_references(ref: str, value: float) -> None:
    assert numeric_reference(ref) == pytest.approx(value)


@pytest.mark.parametrize("ref", ["ThinkPad X1", "ThinkPad X1 Gen 11", "Order 123 shipped on 2024-01-03",
                                 "Refunds take 5 to 7 business days", "five", "Contact support"])
def test_text_with_digits_is_not_a_numeric_reference(ref: str) -> None:
    assert numeric_reference(ref) is None


@pytest.mark.parametrize("expected", [
    TRIAGE, '{"product": "ThinkPad X1", "priority": 2}', [TRIAGE], "ThinkPad X1",
    "Refunds are issued within 14 days of the return.", "no number here", [],
])
def test_numeric_match_skips_rows_it_does_not_apply_to(expected: Any) -> None:
    # the output holds a number that would "match" a digit of the reference if it were scored
    r = ev(NumericMatch(), "Priority 2 for the ThinkPad X1; 14 days.", expected=expected)
    assert r.status == "skipped" and r.score is None and "numeric expected" in r.reason, r


def test_numeric_match_still_scores_number_rows() -> None:
    assert ev(NumericMatch(), "It costs $12.", expected="12 dollars").score == 1.0
    assert ev(NumericMatch(), "It costs $13.", expected=12).score == 0.0


# -- text metrics skip structured references -----------------------------------------------------
@pytest.mark.parametrize("cls", [ExactMatch, TokenF1, Contains])
@pytest.mark.parametrize("expected", [TRIAGE, [TRIAGE], '{"product": "ThinkPad X1"}'])
def test_text_metrics_skip_structured_references(cls: type[Evaluator], expected: Any) -> None:
    r = ev(cls(), '{"product": "ThinkPad X1"}', expected=expected)
    assert r.status == "skipped" and "json_validation" in r.reason, r


def test_structured_reference_reasons() -> None:
    assert structured_reference("Paris") is None and structured_reference(["a", "b"]) is None
    assert "JSON object" in (structured_reference({"a": 1}) or "")
    assert "JSON text" in (structured_reference("[1, 2]") or "")


# -- blank replies fail, for every output-quality evaluator ------------------------------------
CASES: list[tuple[str, Evaluator, dict[str, Any]]] = [
    ("exact_match", ExactMatch(), {"expected": ""}),  # even an empty reference is not matched by nothing
    ("numeric_match", NumericMatch(), {"expected": 4}),
    ("token_f1", TokenF1(), {"expected": "Paris"}),
    ("contains", Contains(substrings=["x"]), {}),
    ("regex", Regex(pattern=r"^\s*$"), {}),  # a pattern that "accepts" blank text still fails
    ("json_validation", JSONValidation(), {"schema": {"type": "object"}}),
    ("tool_selection", ToolSelection(), {"expected_tool_calls": [], "tools": [WEATHER]}),
    ("prompt_adherence", PromptAdherence(), {"metadata": {"instructions": [
        {"id": "change_case:english_lowercase"}]}}),
    ("refusal", Refusal(), {"metadata": {"expect_refusal": False}}),
    ("factual_accuracy", FactualAccuracy(), {"expected": "Paris"}),
]


@pytest.mark.parametrize(("name", "evaluator", "row"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_blank_reply_is_a_failure_with_the_reason(name: str, evaluator: Evaluator, row: dict[str, Any],
                                                  text: str) -> None:
    r = ev(evaluator, text, **row)
    assert (r.status, r.score, r.passed) == ("ok", 0.0, False), (name, r)
    assert r.reason.startswith(EMPTY_OUTPUT), (name, r.reason)
    assert r.feedback


def test_tool_calls_are_a_reply_for_tool_selection_not_for_text_metrics() -> None:
    call = [ToolCall(name="get_weather", arguments={"city": "Oslo"})]
    row = {"expected_tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}], "tools": [WEATHER]}
    assert ev(ToolSelection(), "", call, **row).score == 1.0
    r = ev(ExactMatch(), "", call, expected="Oslo")
    assert r.score == 0.0 and "tool calls only" in r.reason


def test_task_completion_reference_paths_fail_blank_replies() -> None:
    for row in ({"expected": "Paris"}, {"metadata": {"expect_refusal": False}}, {"schema": {"type": "object"}}):
        ex = Example(id="t", input="q", **row)
        path = reference_path(ex)
        assert path is not None
        score, passed, reason, _, details = reference_outcome(EvalContext(ex, ModelOutput(text=" ")), path, 0.5,
                                                              refused=False)
        assert (score, passed) == (0.0, False) and EMPTY_OUTPUT in reason and details["empty_output"], row


def test_task_completion_empty_expected_list_is_no_reference() -> None:
    """``expected: []`` names no acceptable answer: skipped with the reason, not an error result."""
    from tunegate.evaluators.llm_judges import TaskCompletion

    assert reference_path(Example(id="r", input="q", expected=[])) is None
    r = ev(TaskCompletion(), "an answer", expected=[])
    assert r.status == "skipped" and "reference" in r.reason, r
    r = ev(TaskCompletion(), "an answer", expected=["an answer"])
    assert r.status == "ok" and r.passed, r
