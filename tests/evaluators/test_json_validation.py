"""Unit tests of json_validation: extraction, verdicts, reasons, feedback, skip/error discipline."""

from __future__ import annotations

from typing import Any

import pytest

from tunegate.core.example import Example
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.errors import UserError
from tunegate.evaluators.base import EvalContext
from tunegate.evaluators.json_validation import JSONValidation, NotJSON, extract_json, validate_instance

ORDER = {
    "type": "object",
    "properties": {"order_id": {"type": "integer"}, "status": {"enum": ["open", "closed"]},
                   "items": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    "required": ["order_id", "status"],
    "additionalProperties": False,
}


def run(text: str, schema: Any = ORDER, **config: Any) -> EvalResult:
    ex = Example(id="r1", input="give me the order", json_schema=schema)
    return JSONValidation(**config).evaluate(EvalContext(ex, ModelOutput(text=text)))


def test_valid_whole_text() -> None:
    r = run('{"order_id": 7, "status": "open"}')
    assert (r.status, r.score, r.passed) == ("ok", 1.0, True)
    assert r.details["extraction"] == "whole"


def test_fenced_block_is_extracted() -> None:
    r = run('Here it is:\n```json\n{"order_id": 7, "status": "open"}\n```\nAnything else?')
    assert r.score == 1.0 and r.details["extraction"] == "fenced"


def test_first_balanced_span_is_extracted() -> None:
    r = run('Sure! {"order_id": 7, "status": "closed", "items": ["a}b"]} hope that helps [1]')
    assert r.score == 1.0 and r.details["extraction"] == "span"


def test_strict_only_accepts_whole_text() -> None:
    r = run('Sure! {"order_id": 7, "status": "open"}', strict=True)
    assert r.status == "ok" and r.score == 0.0
    assert r.reason.startswith("output is not JSON: ")
    assert "JSON" in r.feedback


def test_not_json_at_all() -> None:
    r = run("I cannot help with that.")
    assert r.score == 0.0 and r.reason.startswith("output is not JSON: ")
    assert r.details["extraction"] is None


def test_nan_is_not_json() -> None:
    with pytest.raises(NotJSON):
        extract_json("NaN", strict=True)


def test_reason_names_path_and_message() -> None:
    r = run('{"order_id": "abc", "status": "open"}')
    assert r.score == 0.0 and r.passed is False
    assert r.reason == "$.order_id: 'abc' is not of type 'integer'"
    assert "field `order_id` must be of type integer" in r.feedback


def test_feedback_lists_at_most_five_paths() -> None:
    schema = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(8)}}
    r = run("{" + ", ".join(f'"p{i}": "x"' for i in range(8)) + "}", schema)
    assert r.details["error_count"] == 8
    assert len(r.details["error_paths"]) == 5
    assert r.feedback.count("\n- field") == 5 and "and 3 more" in r.feedback
    assert r.reason.endswith("(and 7 more)")


def test_feedback_plain_words_for_common_keywords() -> None:
    r = run('{"status": "pending", "items": [], "extra": 1}')
    fb = r.feedback
    assert "missing the required property `order_id`" in fb
    assert 'field `status` must be one of ["open", "closed"]' in fb
    assert "field `items` must have at least 1 items" in fb
    assert "properties the schema does not allow" in fb


def test_draft_selected_by_dollar_schema() -> None:
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "integer"}]}
    assert run('[1, "x"]', draft7).score == 1.0  # draft-07 tuple form: extra items allowed
    assert run('["x"]', draft7).score == 0.0


def test_formats_checked_only_when_asked() -> None:
    schema = {"type": "string", "format": "email"}
    assert run('"not-an-email"', schema).score == 1.0
    assert run('"not-an-email"', schema, check_formats=True).score == 0.0
    assert run('"a@b.example"', schema, check_formats=True).score == 1.0


def test_missing_schema_is_skipped_not_zero() -> None:
    ex = Example(id="r1", input="q")
    r = JSONValidation().evaluate(EvalContext(ex, ModelOutput(text="{}")))
    assert (r.status, r.score, r.passed) == ("skipped", None, None)
    assert "schema" in r.reason


def test_ecma_only_regex_is_an_error_not_a_verdict() -> None:
    # the row loads (metaschema check without format checks); the evaluator reports the regex
    ex = Example(id="r1", input="q", json_schema={"type": "string", "pattern": r"^\p{L}+$"})
    r = JSONValidation().evaluate(EvalContext(ex, ModelOutput(text='"abc"')))
    assert (r.status, r.score) == ("error", None)
    assert "regex" in r.reason


def test_unresolvable_remote_ref_is_an_error() -> None:
    r = run("1", {"$ref": "http://localhost:1234/integer.json"})
    assert r.status == "error" and r.score is None and "Unresolvable" in r.reason


def test_boolean_schemas() -> None:
    ev = JSONValidation()
    for schema, want in ((True, 1.0), (False, 0.0)):
        ex = Example(id="b", input="q", json_schema=schema)
        assert ev.evaluate(EvalContext(ex, ModelOutput(text="{}"))).score == want


def test_validator_cache_shared_across_equal_schemas() -> None:
    ev = JSONValidation()
    a = Example(id="a", input="q", json_schema=dict(ORDER))
    b = Example(id="b", input="q", json_schema=dict(ORDER))
    out = ModelOutput(text='{"order_id": 1, "status": "open"}')
    assert [r.score for r in ev.evaluate_batch([EvalContext(a, out), EvalContext(b, out)])] == [1.0, 1.0]
    assert len(ev._by_text) == 1


def test_validate_instance() -> None:
    assert validate_instance(ORDER, {"order_id": 1, "status": "open"}) == []
    assert validate_instance(ORDER, {"order_id": "x", "status": "open"}) == [
        "$.order_id: 'x' is not of type 'integer'"]


@pytest.mark.parametrize("config, words", [
    ({"strict": "yes"}, "must be a boolean"),
    ({"stritc": True}, "unknown option"),
    ({"check_formats": 1}, "must be a boolean"),
])
def test_config_errors(config: dict[str, Any], words: str) -> None:
    with pytest.raises(UserError) as e:
        JSONValidation(**config)
    assert words in str(e.value) and "evaluators.json_validation" in str(e.value)


def test_identity_includes_defaults() -> None:
    assert JSONValidation().hash == JSONValidation(strict=False).hash != JSONValidation(strict=True).hash
