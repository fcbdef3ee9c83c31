"""Unit tests of tool_selection: BFCL AST rules, parallel matching, reasons and feedback."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunegate.core.example import Example, ToolCall
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.errors import UserError
from tunegate.evaluators.base import EvalContext
from tunegate.evaluators.tool_selection import ToolSelection, standardize_string, value_matches

WEATHER = {"name": "get_weather", "description": "Weather for a city.", "parameters": {
    "type": "dict",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "scale": {"type": "float"},
                   "units": {"type": "string", "enum": ["c", "f"]},
                   "spots": {"type": "array", "items": {"type": "string"}},
                   "window": {"type": "dict", "properties": {"start": {"type": "integer"}}}},
    "required": ["city"]}}
TIME = {"type": "function", "function": {"name": "time.now", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}
TOOLS = [WEATHER, TIME]


def call(name: str, **args: Any) -> ToolCall:
    return ToolCall(name=name, arguments=args)


def run(calls: list[ToolCall], expected: list[Any], tools: list[dict[str, Any]] | None = TOOLS,
        text: str = "", **config: Any) -> EvalResult:
    ex = Example(id="r", input="q", tools=tools, expected_tool_calls=expected)
    return ToolSelection(**config).evaluate(EvalContext(ex, ModelOutput(text=text, tool_calls=calls)))


GT = [{"get_weather": {"city": ["San Francisco", "SF"], "days": [3], "units": ["c", ""]}}]


def test_standardize_string_like_bfcl() -> None:
    assert standardize_string("April 1, 2024") == standardize_string("april 1 2024") == "april12024"
    assert standardize_string("it's") == 'it"s'


def test_exact_call_scores_one() -> None:
    r = run([call("get_weather", city="san francisco", days=3)], GT)
    assert (r.score, r.passed) == (1.0, True) and "matched" in r.reason


def test_optional_arg_may_be_given_with_allowed_value() -> None:
    assert run([call("get_weather", city="SF", days=3, units="c")], GT).score == 1.0
    r = run([call("get_weather", city="SF", days=3, units="f")], GT)
    assert r.score == 0.0
    assert r.reason == "get_weather: value not allowed for 'units': got 'f', allowed ['c']"
    assert "Set `units` in `get_weather` to one of ['c']" in r.feedback


def test_wrong_function() -> None:
    r = run([call("time.now", tz="UTC")], GT)
    assert r.score == 0.0 and r.reason == "wrong function: expected get_weather, got time.now"
    assert "Call `get_weather` instead of `time.now`" in r.feedback
    assert "not an offered tool" in run([call("search_web", q="x")], GT).reason


def test_missing_required_arg_from_spec_and_from_answer() -> None:
    r = run([call("get_weather", days=3)], GT)
    assert r.reason == "get_weather: missing required arg 'city'"
    assert "Pass the required argument `city`" in r.feedback
    r = run([call("get_weather", city="SF")], GT)  # 'days' is not optional in the answer
    assert r.reason == "get_weather: missing required arg 'days'"


def test_unexpected_arg() -> None:
    r = run([call("get_weather", city="SF", days=3, colour="red")], GT)
    assert r.reason == "get_weather: unexpected arg 'colour' (not a parameter of the function)"
    gt = [{"get_weather": {"city": ["SF"], "undeclared": ["x", ""]}}]
    r = run([call("get_weather", city="SF", undeclared="x")], gt)  # BFCL: declared params only
    assert r.score == 0.0 and "not a parameter" in r.reason
    r = run([call("get_weather", city="SF", scale=1.0)], [{"get_weather": {"city": ["SF"]}}])
    assert "'scale' (not expected in this call)" in r.reason


def test_types() -> None:
    gt = [{"get_weather": {"city": ["SF"], "days": [3], "scale": [2.0]}}]
    assert run([call("get_weather", city="SF", days=3, scale=2)], gt).score == 1.0  # int where float ok
    r = run([call("get_weather", city="SF", days=3.0, scale=2.0)], gt)  # float where int: rejected
    assert r.score == 0.0 and "'days' must be integer, got number 3.0" in r.reason
    r = run([call("get_weather", city="SF", days="3", scale=2.0)], gt)
    assert "'days' must be integer, got string" in r.reason and "as integer" in r.feedback
    r = run([call("get_weather", city="SF", days=True, scale=2.0)], gt)
    assert "got boolean" in r.reason


def test_variable_rule_accepts_the_answers_own_type() -> None:
    gt = [{"get_weather": {"city": ["SF"], "days": ["numDays"]}}]  # a variable name where int declared
    assert run([call("get_weather", city="SF", days="numdays")], gt).score == 1.0


def test_lists_and_item_types() -> None:
    gt = [{"get_weather": {"city": ["SF"], "spots": [["Pier 39", "Golden Gate"]]}}]
    assert run([call("get_weather", city="SF", spots=["pier39", "golden-gate"])], gt).score == 1.0
    assert run([call("get_weather", city="SF", spots=["Golden Gate", "Pier 39"])], gt).score == 0.0
    r = run([call("get_weather", city="SF", spots=["Pier 39", 7])], gt)
    assert "element 1 of 'spots' must be string" in r.reason


def test_nested_dict_answers() -> None:
    gt = [{"get_weather": {"city": ["SF"], "window": [{"start": [9, 10], "end": [17, ""]}]}}]
    assert run([call("get_weather", city="SF", window={"start": 10})], gt).score == 1.0
    assert run([call("get_weather", city="SF", window={"start": 9, "end": 17})], gt).score == 1.0
    assert run([call("get_weather", city="SF", window={"start": 8})], gt).score == 0.0
    assert run([call("get_weather", city="SF", window={"start": 9, "x": 1})], gt).score == 0.0


def test_value_matches_list_of_dicts_and_literals() -> None:
    want = [{"k": ["a", "A2"], "n": [1, ""]}]
    assert value_matches([{"k": "a2"}], want)
    assert not value_matches([{"k": "a2"}, {"k": "a"}], want)
    assert value_matches({"tags": ["x"]}, {"tags": ["x"]}, nested=False)
    assert not value_matches({"tags": "x"}, {"tags": ["x"]}, nested=False)
    assert value_matches({"tags": "x"}, {"tags": ["x"]}, nested=True)
    assert not value_matches(1, True) and not value_matches(True, 1) and value_matches(None, None)


def test_exact_arguments_form() -> None:
    expected = [{"name": "get_weather", "arguments": {"city": "Paris", "window": {"start": 9}}}]
    assert run([call("get_weather", city="paris", window={"start": 9})], expected).score == 1.0
    assert run([call("get_weather", city="paris", window={"start": 8})], expected).score == 0.0


def test_no_call_expected() -> None:
    r = run([], [], text="None of my tools can do that, sorry.")
    assert r.score == 1.0 and "no call" in r.reason
    r = run([], [])  # neither text nor a call is not a decline: an empty reply fails
    assert (r.status, r.score) == ("ok", 0.0) and r.reason.startswith("empty output")
    r = run([call("get_weather", city="SF")], [])
    assert r.score == 0.0 and r.reason == "called get_weather but no function fits this request"
    assert "without calling a tool" in r.feedback


def test_call_expected_but_none_made() -> None:
    r = run([], GT)
    assert r.score == 0.0 and r.reason.startswith("empty output") and "wrong number of calls: expected 1 (get_weather), got 0 (none)" in r.reason
    assert "missing call to get_weather" in r.reason


PAR = [{"get_weather": {"city": ["SF", "San Francisco"], "days": [1]}},
       {"get_weather": {"city": ["SF"], "days": [1]}},
       {"time.now": {"tz": ["UTC"]}}]


def test_parallel_any_order_perfect_matching() -> None:
    # a greedy first-fit pairs SF with the first answer and then fails the second one
    calls = [call("time.now", tz="utc"), call("get_weather", city="SF", days=1),
             call("get_weather", city="San Francisco", days=1)]
    assert run(calls, PAR).score == 1.0
    assert run(list(reversed(calls)), PAR).score == 1.0


def test_parallel_wrong_count_and_partial() -> None:
    calls = [call("get_weather", city="SF", days=1), call("time.now", tz="UTC")]
    r = run(calls, PAR)
    assert r.score == 0.0 and r.reason.startswith("wrong number of calls: expected 3")
    assert run(calls, PAR, partial=True).score == pytest.approx(2 / 3)
    extra = [*calls, call("get_weather", city="San Francisco", days=1), call("time.now", tz="UTC")]
    r = run(extra, PAR, partial=True)
    assert r.score == pytest.approx(3 / 4) and r.passed is False
    assert r.details["problems"] == ["wrong_count", "extra_call"]
    assert "Do not make the extra call to `time.now`" in r.feedback


def test_underscored_names_accepted_unless_disabled() -> None:
    gt = [{"time.now": {"tz": ["UTC"]}}]
    assert run([call("time_now", tz="UTC")], gt).score == 1.0
    assert run([call("time_now", tz="UTC")], gt, underscore_names=False).score == 0.0


def test_without_tool_specs() -> None:
    assert run([call("get_weather", city="SF", days=3)], GT, tools=None).score == 1.0
    assert run([call("get_weather", city="SF", days=3, x=1)], GT, tools=None).score == 0.0


def test_skip_and_error() -> None:
    ex = Example(id="r", input="q")
    r = ToolSelection().evaluate(EvalContext(ex, ModelOutput()))
    assert (r.status, r.score) == ("skipped", None) and "expected_tool_calls" in r.reason

    class Broken(ToolSelection):
        def _same_name(self, expected: str, got: str, offered: dict[str, Any]) -> bool:
            raise KeyError("spec")

    ex = Example(id="r", input="q", expected_tool_calls=GT)
    r = Broken().evaluate(EvalContext(ex, ModelOutput(tool_calls=[call("get_weather")])))
    assert (r.status, r.score, r.passed) == ("error", None, None) and "KeyError" in r.reason


@pytest.mark.parametrize("config, words", [({"partial": "yes"}, "must be a boolean"),
                                           ({"strict": True}, "unknown option")])
def test_config_errors(config: dict[str, Any], words: str) -> None:
    with pytest.raises(UserError, match=words):
        ToolSelection(**config)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                max_size=3), max_leaves=8)


def _has_dict(v: Any) -> bool:
    return isinstance(v, dict) or (isinstance(v, list) and any(_has_dict(x) for x in v))


@given(_json)
def test_every_json_value_matches_itself(v: Any) -> None:
    assert value_matches(v, v, nested=False)
    if not _has_dict(v):  # with nested=True, dicts of lists are read as BFCL answer sets instead
        assert value_matches(v, v, nested=True)
