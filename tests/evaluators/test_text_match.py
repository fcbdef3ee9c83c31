"""Unit tests of the text evaluators: exact_match, numeric_match, token_f1, regex, contains."""

from __future__ import annotations

from typing import Any

import pytest

from tunegate.core.example import Example
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.errors import UserError
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.evaluators.text_match import (
    Contains,
    ExactMatch,
    NumericMatch,
    Regex,
    TokenF1,
    normalize_answer,
    token_f1,
)


def run(ev: Evaluator, text: str, expected: Any = None, **row: Any) -> EvalResult:
    ex = Example(id="r", input="q", expected=expected, **row)
    return ev.evaluate(EvalContext(ex, ModelOutput(text=text)))


# -- exact_match ---------------------------------------------------------------------------------
def test_normalize_answer_squad_style() -> None:
    assert normalize_answer("  The  Eiffel-Tower!! ") == "eiffeltower"
    assert normalize_answer("“An apple”, a pear.") == "apple pear"


def test_exact_match_normalised_and_list() -> None:
    assert run(ExactMatch(), "The Paris.", "paris").score == 1.0
    assert run(ExactMatch(), "Lyon", ["Paris", "lyon"]).details["matched"] == "lyon"
    r = run(ExactMatch(), "Marseille", ["Paris", "Lyon"])
    assert r.score == 0.0 and "'Paris'" in r.reason and "Answer with exactly" in r.feedback


def test_exact_match_unnormalised() -> None:
    assert run(ExactMatch(normalize=False), " Paris\n", "Paris").score == 1.0
    assert run(ExactMatch(normalize=False), "paris", "Paris").score == 0.0


def test_exact_match_non_string_expected() -> None:
    assert run(ExactMatch(), "42", 42).score == 1.0


# -- numeric_match -------------------------------------------------------------------------------
def test_numeric_match_reason_shows_both_numbers() -> None:
    r = run(NumericMatch(), "So she pays $1,250 in total.", "1250")
    assert r.score == 1.0 and "extracted 1250" in r.reason and "expected 1250" in r.reason
    r = run(NumericMatch(), "The answer is 12.", 13)
    assert r.score == 0.0 and "extracted 12" in r.reason and "expected 13" in r.reason
    assert "should be 13" in r.feedback


def test_numeric_match_tolerance() -> None:
    assert run(NumericMatch(), "0.3334", "1/3").score == 0.0
    assert run(NumericMatch(rel_tol=1e-3), "0.3334", "1/3").score == 1.0
    assert run(NumericMatch(fractions=False), "3/4", 0.75).score == 0.0


def test_numeric_match_no_number() -> None:
    r = run(NumericMatch(), "I don't know.", "5")
    assert r.status == "ok" and r.score == 0.0 and r.reason.startswith("no number found")


def test_numeric_match_expected_without_number_is_skipped_not_error() -> None:
    r = run(NumericMatch(), "5", "five")
    assert (r.status, r.score) == ("skipped", None) and "not a number answer" in r.reason


def test_numeric_match_list_expected() -> None:
    assert run(NumericMatch(), "#### 7", ["6", 7]).score == 1.0


@pytest.mark.parametrize("config", [{"rel_tol": -1}, {"rel_tol": "small"}, {"rel_tol": True}, {"tol": 1}])
def test_numeric_match_config_errors(config: dict[str, Any]) -> None:
    with pytest.raises(UserError, match=r"evaluators\.numeric_match"):
        NumericMatch(**config)


# -- token_f1 ------------------------------------------------------------------------------------
def test_token_f1_values() -> None:
    assert token_f1("the cat sat", "cat sat") == 1.0
    assert token_f1("", "") == 1.0 and token_f1("a", "cat") == 0.0
    assert token_f1("cat sat on mat", "cat sat") == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_token_f1_threshold_and_max_over_references() -> None:
    r = run(TokenF1(threshold=0.8), "Barack Obama", ["Obama", "Barack Hussein Obama"])
    assert r.score == pytest.approx(0.8) and r.passed is True
    r = run(TokenF1(), "the big red dog", "a small blue cat")
    assert r.score == 0.0 and r.passed is False and "shares few words" in r.feedback


def test_token_f1_threshold_validation() -> None:
    with pytest.raises(UserError, match="threshold"):
        TokenF1(threshold=1.5)


# -- regex ---------------------------------------------------------------------------------------
def test_regex_search_and_fullmatch() -> None:
    assert run(Regex(pattern=r"\bORD-\d{4}\b"), "Your order is ORD-1234.").score == 1.0
    assert run(Regex(pattern=r"ORD-\d{4}", fullmatch=True), "ORD-1234\n").score == 1.0
    r = run(Regex(pattern=r"ORD-\d{4}", fullmatch=True), "It is ORD-1234")
    assert r.score == 0.0 and "does not fully match" in r.reason and "be exactly" in r.feedback


def test_regex_flags() -> None:
    assert run(Regex(pattern="yes", flags=["IGNORECASE"]), "YES").score == 1.0
    assert run(Regex(pattern="yes", flags="i"), "YES").score == 1.0
    assert run(Regex(pattern="yes"), "YES").score == 0.0
    assert Regex(pattern="x", flags="im").config["flags"] == ["IGNORECASE", "MULTILINE"]


def test_regex_bad_pattern_is_user_error_naming_evaluator() -> None:
    with pytest.raises(UserError) as e:
        Regex(pattern="(unclosed")
    assert "evaluators.regex" in str(e.value) and "invalid regex" in str(e.value)
    with pytest.raises(UserError, match="unknown regex flag"):
        Regex(pattern="x", flags=["Q"])


def test_regex_from_row_metadata_or_skipped() -> None:
    assert run(Regex(), "id 42", metadata={"regex": r"\d+"}).score == 1.0
    r = run(Regex(), "id 42")
    assert (r.status, r.score) == ("skipped", None) and "metadata.regex" in r.reason
    bad = run(Regex(), "x", metadata={"regex": "("})
    assert (bad.status, bad.score) == ("error", None)


# -- contains ------------------------------------------------------------------------------------
def test_contains_all_any_case() -> None:
    text = "Your refund of $20 was approved."
    assert run(Contains(substrings=["refund", "APPROVED"]), text).score == 1.0
    assert run(Contains(substrings=["refund", "APPROVED"], case_sensitive=True), text).score == 0.0
    r = run(Contains(substrings=["refund", "denied"]), text)
    assert r.score == 0.0 and r.details["missing"] == ["denied"] and "'denied'" in r.reason
    assert run(Contains(substrings=["refund", "denied"], mode="any"), text).score == 1.0


def test_contains_falls_back_to_expected() -> None:
    assert run(Contains(), "It is Paris.", "paris").score == 1.0
    assert run(Contains(mode="any"), "It is Lyon.", ["Paris", "Lyon"]).score == 1.0
    r = run(Contains(), "It is Lyon.")
    assert (r.status, r.score) == ("skipped", None)


@pytest.mark.parametrize("config", [{"mode": "some"}, {"substrings": []}, {"substrings": [1]},
                                    {"case_sensitive": "no"}, {"other": 1}])
def test_contains_config_errors(config: dict[str, Any]) -> None:
    with pytest.raises(UserError, match=r"evaluators\.contains"):
        Contains(**config)


# -- shared discipline ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [ExactMatch, NumericMatch, TokenF1])
def test_missing_expected_is_skipped(cls: type[Evaluator]) -> None:
    r = run(cls(), "anything")
    assert (r.status, r.score, r.passed) == ("skipped", None, None) and "expected" in r.reason


@pytest.mark.parametrize("cls", [ExactMatch, NumericMatch, TokenF1, Contains])
def test_exception_becomes_error_never_zero(cls: type[Evaluator]) -> None:
    class Broken(cls):  # type: ignore[valid-type,misc]
        def score(self, ctx: EvalContext) -> EvalResult:
            raise RuntimeError("boom")

    r = run(Broken(), "x", "7")
    assert (r.status, r.score, r.passed) == ("error", None, None) and "boom" in r.reason


@pytest.mark.parametrize("cls", [ExactMatch, NumericMatch, TokenF1, Contains, Regex])
def test_unknown_option_rejected(cls: type[Evaluator]) -> None:
    with pytest.raises(UserError, match="unknown option"):
        cls(bogus=True)


@pytest.mark.parametrize("cls", [ExactMatch, NumericMatch, TokenF1, Contains, Regex])
def test_metadata(cls: type[Evaluator]) -> None:
    assert cls.name and cls.version and cls.description


def test_empty_expected_list_is_skipped_not_error() -> None:
    for ev in (ExactMatch(), TokenF1(), Contains(), NumericMatch()):
        r = run(ev, "x", [])
        assert (r.status, r.score) == ("skipped", None) and "empty list" in r.reason, ev.name


def test_overflowing_number_is_not_an_answer() -> None:
    r = run(NumericMatch(), "1e99999", "5")
    assert r.status == "ok" and r.score == 0.0 and r.reason.startswith("no number found")


def test_text_evaluators_skip_structured_expected() -> None:
    from tunegate.core import Example, ModelOutput
    from tunegate.evaluators.base import EvalContext
    from tunegate.evaluators.text_match import Contains, ExactMatch, TokenF1

    ex = Example(id="s", input="extract", expected={"order_id": "A-1"})
    for ev in (ExactMatch(), TokenF1(), Contains()):
        r = ev.evaluate(EvalContext(ex, ModelOutput(text='{"order_id": "A-1"}')))
        assert r.status == "skipped" and "JSON object" in r.reason, (ev.name, r)
    assert Contains(substrings=["A-1"]).evaluate(EvalContext(ex, ModelOutput(text="A-1"))).score == 1.0
