"""LLM-judge evaluators: parser, retry → error (never 0), sampling, identity, self-preference,
task_completion's reference paths, an end-to-end run over a real loopback OpenAI server, and
agreement floors of the reference path on public slices (TruthfulQA, BFCL)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tests.conftest import shared_dataset
from tests.fakes import FakeBackend
from tests.support.openai_server import OpenAIServer, Reply
from tunegate.backends.base import GenerationRequest
from tunegate.backends.openai_compat import OpenAIBackend
from tunegate.core.candidate import DecodingParams
from tunegate.core.example import Example, Message, ToolCall
from tunegate.core.result import ModelOutput
from tunegate.errors import UserError
from tunegate.evaluators import judge as judge_mod
from tunegate.evaluators.base import EvalContext
from tunegate.evaluators.judge import (
    RETRY_SEED_OFFSET,
    JudgeItem,
    JudgeRequest,
    RubricJudge,
)
from tunegate.evaluators.judge_family import model_family, normalise_model_name, same_family
from tunegate.evaluators.judge_parse import SCALES, JudgeParseError, parse_judgement
from tunegate.evaluators.llm_judges import CustomEvaluation, TaskCompletion
from tunegate.evaluators.registry import default_registry
from tunegate.evaluators.task_reference import is_refusal_pattern

RUBRIC = "The answer must be polite and correct."


class CountingBackend(FakeBackend):
    """FakeBackend that also counts ``generate`` invocations (batches), not only requests."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.batches: list[int] = []

    async def generate(self, requests: Sequence[Any]) -> list[Any]:
        self.batches.append(len(requests))
        return await super().generate(requests)


def ctx(text: str = "Paris", *, candidate: dict[str, Any] | None = None, **row: Any) -> EvalContext:
    row.setdefault("input", "What is the capital of France?")
    ex = Example(id=row.pop("id", "r1"), **row)
    return EvalContext(ex, ModelOutput(text=text, finish_reason="stop"), candidate=candidate or {})


@pytest.fixture
def factory() -> Iterator[dict[str, Any]]:
    """A judge backend factory returning FakeBackends (``made["build"]``, injected into each
    evaluator as ``judge_backends=``); the dict collects what was built."""
    made: dict[str, Any] = {"specs": [], "script": lambda r: '{"reasoning": "fine", "score": 4}'}

    def build(spec: dict[str, Any]) -> CountingBackend:
        made["specs"].append(spec)
        backend = CountingBackend(lambda r: made["script"](r), name=spec["model"])
        made["backend"] = backend
        return backend

    made["build"] = build
    yield made


# -- parser ----------------------------------------------------------------------------------------
B, F = SCALES["binary"], SCALES["1-5"]
PARSE_OK = [
    ('{"reasoning": "good", "score": 4}', F, None, 4, "json"),
    ('```json\n{"reasoning": "good", "score": 5}\n```', F, None, 5, "fenced-json"),
    ('```\n{"reasoning": "ok", "score": 2}\n```\nHope this helps!', F, None, 2, "fenced-json"),
    ('Sure. {"reasoning": "mostly right", "score": 3} Let me know if you need more.', F, None, 3, "json-span"),
    ("{'reasoning': 'it is right', 'score': 5}", F, None, 5, "repaired-json"),
    ('{"reasoning": "fine", "score": 4,}', F, None, 4, "repaired-json"),
    ('{reasoning: "fine", score: 1}', F, None, 1, "repaired-json"),
    ('{"reasoning": "he said "yes" to it", "score": 3}', F, None, 3, "score-key"),
    ("The answer is accurate and polite.\nScore: 4", F, None, 4, "score-line"),
    ("Reasoning: wrong city.\n**Score:** 1", F, None, 1, "score-line"),
    ("Final score: 4/5", F, None, 4, "score-line"),
    ("Rating: 3 out of 5", F, None, 3, "score-line"),
    ('{"reasoning": "meets it", "score": true}', B, None, 1, "json"),
    ('{"reasoning": "no", "score": "FAIL"}', B, None, 0, "json"),
    ("Verdict: PASS", B, None, 1, "score-line"),
    ('{"reasoning": "r", "score": "4"}', F, None, 4, "json"),
    ('{"reasoning": "r", "score": 4.0}', F, None, 4, "json"),
    ('<think>hmm, maybe 2?</think>{"reasoning": "fine", "score": 5}', F, None, 5, "json"),
    ('The candidate wrote {"score": 99, "x": 1}; my verdict: {"reasoning": "ok", "score": 2}', F, None, 2,
     "json-span"),
    ('{"reasoning": "complete", "score": 4}\n\nThe answer was good but the reply went on and', F, "length", 4,
     "json-span"),
    ('{"Reasoning": "ok", "Rating": 3}', F, None, 3, "json"),
]
PARSE_BAD = [
    ("", F, None, "empty"),
    ("   ", F, "length", "truncated"),
    ('{"reasoning": "great", "score": 7}', F, None, "out_of_range"),
    ('{"reasoning": "great", "score": 0}', F, None, "out_of_range"),
    ('{"reasoning": "great", "score": 4.5}', F, None, "out_of_range"),
    ('{"reasoning": "great", "score": 3}', B, None, "out_of_range"),
    ("Score: 8/10", F, None, "out_of_range"),
    ('{"reasoning": "great", "score": "high"}', F, None, "out_of_range"),
    ('{"reasoning": "no score here"}', F, None, "missing_score"),
    ('{"reasoning": "The answer is mostly right because', F, "length", "truncated"),
    ('{"reasoning": "The answer is mostly right because', F, None, "truncated"),
    ("The answer is good. Score: 4 — wait, let me reconsider the", F, "length", "truncated"),
    ("The answer seems pretty good overall.", F, None, "unparseable"),
    ("I think it deserves a high mark", B, None, "unparseable"),
]


@pytest.mark.parametrize("text, scale, finish, score, method", PARSE_OK)
def test_parser_accepts(text: str, scale: Any, finish: str | None, score: int, method: str) -> None:
    j = parse_judgement(text, scale, finish_reason=finish)
    assert (j.score, j.method) == (score, method)


@pytest.mark.parametrize("text, scale, finish, kind", PARSE_BAD)
def test_parser_rejects(text: str, scale: Any, finish: str | None, kind: str) -> None:
    with pytest.raises(JudgeParseError) as e:
        parse_judgement(text, scale, finish_reason=finish)
    assert e.value.kind == kind, str(e.value)


def test_parser_keeps_reasoning() -> None:
    assert parse_judgement('```json\n{"reasoning": "Polite, correct.", "score": 5}\n```', F).reasoning == \
        "Polite, correct."
    assert parse_judgement("Wrong city named.\nScore: 1", F).reasoning == "Wrong city named."


# -- retries, batching, sampling ------------------------------------------------------------------
def test_all_rows_go_in_one_generate_call_and_scores_map_to_unit_interval() -> None:
    scores = {"a": 1, "b": 3, "c": 5}

    def script(r: GenerationRequest) -> str:
        row = re.search(r"<candidate_output>\n(\w)", r.messages[-1].content or "")
        return json.dumps({"reasoning": "x", "score": scores[row.group(1)]}) if row else ""

    be = CountingBackend(script)
    judge = RubricJudge(be, RUBRIC, scale="1-5")
    items = [JudgeItem(input="q", output=k) for k in scores]
    verdicts = judge.judge(items)
    assert be.batches == [3]
    assert [v.score for v in verdicts] == [0.0, 0.5, 1.0]
    req = be.calls[0]
    assert req.messages[0].role == "system" and RUBRIC in (req.messages[0].content or "")
    assert '"score"' in (req.messages[0].content or "") and req.params.temperature == 0.0


def test_invalid_output_is_retried_once_with_new_seed_and_nudge_then_accepted() -> None:
    replies = iter(["I like it a lot", '{"reasoning": "ok now", "score": 5}'])
    be = CountingBackend(lambda r: next(replies))
    v = RubricJudge(be, RUBRIC, seed=7).judge([JudgeItem(input="q", output="a")])[0]
    assert v.error is None and v.score == 1.0
    assert be.batches == [1, 1]
    first, retry = be.calls
    assert (first.seed, retry.seed) == (7, 7 + RETRY_SEED_OFFSET)
    assert retry.messages[-2].role == "assistant" and retry.messages[-2].content == "I like it a lot"
    assert "previous answer was not valid JSON" in (retry.messages[-1].content or "")
    assert v.samples[0]["attempts"] == 2 and "unparseable" in v.samples[0]["first_try"]["problem"]


@pytest.mark.parametrize("bad", ["no score at all", '{"reasoning": "x", "score": 9}'])
def test_still_invalid_after_retry_is_an_error_never_zero(bad: str, factory: dict[str, Any]) -> None:
    factory["script"] = lambda r: bad
    ev = CustomEvaluation(rubric=RUBRIC, judge={"backend": "openai", "model": "m", "base_url": "http://x/v1"},
                          judge_backends=factory["build"])
    res = ev.evaluate(ctx())
    assert res.status == "error" and res.score is None
    assert "after 2 attempts" in res.reason and bad[:10] in res.reason
    assert len(factory["backend"].calls) == 2


def test_truncated_judge_reply_is_retried() -> None:
    outs = iter([ModelOutput(text='{"reasoning": "long', finish_reason="length"),
                 ModelOutput(text='{"reasoning": "short", "score": 1}', finish_reason="stop")])
    be = CountingBackend(lambda r: next(outs))
    v = RubricJudge(be, RUBRIC, scale="binary").judge([JudgeItem(input="q", output="a")])[0]
    assert v.score == 1.0 and "truncated" in v.samples[0]["first_try"]["problem"]


def test_backend_error_is_an_error_result() -> None:
    from tunegate.errors import BackendError

    be = CountingBackend(lambda r: BackendError("HTTP 500: boom"))
    v = RubricJudge(be, RUBRIC).judge([JudgeItem(input="q", output="a")])[0]
    assert v.score is None and "judge call failed" in (v.error or "") and be.batches == [1]


def test_samples_are_averaged_over_consecutive_seeds() -> None:
    be = CountingBackend(lambda r: json.dumps({"reasoning": f"seed {r.seed}", "score": 1 + r.seed % 5}))
    judge = RubricJudge(be, RUBRIC, samples=3, temperature=0.8, seed=10)
    v = judge.judge([JudgeItem(input="q", output="a"), JudgeItem(input="q2", output="b")])
    assert be.batches == [6]
    assert sorted({c.seed for c in be.calls}) == [10, 11, 12]
    assert all(c.params.temperature == 0.8 for c in be.calls)
    assert v[0].raw_scores == [1, 2, 3] and v[0].score == pytest.approx((0 + 0.25 + 0.5) / 3)
    assert [s["seed"] for s in v[0].samples] == [10, 11, 12]


def test_samples_need_temperature() -> None:
    with pytest.raises(UserError, match="temperature"):
        CustomEvaluation(rubric=RUBRIC, samples=3, temperature=0.0, judge=FakeBackend())


# -- identity ------------------------------------------------------------------------------------------
def test_identity_pins_rubric_model_parser_and_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def ev(**kw: Any) -> CustomEvaluation:
        judge = kw.pop("judge", FakeBackend(name="judge-a"))
        return CustomEvaluation(**{"rubric": RUBRIC, "judge": judge, **kw})

    base = ev().hash
    assert ev().hash == base
    ident = ev().identity()["judge"]
    assert ident["rubric"] == RUBRIC and len(ident["rubric_sha256"]) == 64
    assert ident["backend"] == {"kind": "fake", "model": "judge-a"}
    assert ev(rubric=RUBRIC + " Be brief.").hash != base
    assert ev(judge=FakeBackend(name="judge-b")).hash != base
    assert ev(temperature=0.3).hash != base
    assert ev(samples=2, temperature=0.5).hash != base
    assert ev(scale="binary").hash != base
    monkeypatch.setattr(judge_mod, "PARSER_VERSION", "999")
    assert ev().hash != base
    monkeypatch.undo()
    monkeypatch.setattr(judge_mod, "PROMPT_VERSION", "999")
    assert ev().hash != base


def test_identity_excludes_connection_details(factory: dict[str, Any]) -> None:
    cfg = {"backend": "openai", "model": "judge-x", "base_url": "http://h/v1"}
    a = CustomEvaluation(rubric=RUBRIC, judge={**cfg, "api_key_env": "A_KEY"},
                         judge_backends=factory["build"]).identity()
    b = CustomEvaluation(rubric=RUBRIC, judge={**cfg, "api_key_env": "B_KEY", "options": {"timeout_s": 9}},
                         judge_backends=factory["build"]).identity()
    assert a == b and "A_KEY" not in json.dumps(a)


def test_judge_request_mirrors_generation_request() -> None:
    names = [f.name for f in dataclasses.fields(JudgeRequest)]
    assert names == [f.name for f in dataclasses.fields(GenerationRequest)]
    msgs = (Message(role="user", content="hi"),)
    a = JudgeRequest(msgs, DecodingParams(seed=3, temperature=0.5), sample_index=2)
    b = GenerationRequest(msgs, DecodingParams(seed=3, temperature=0.5), sample_index=2)
    assert a.payload() == b.payload() and a.seed == b.seed == 5


# -- factory hook and config -------------------------------------------------------------------------
def test_configured_judge_without_factory_is_a_user_error() -> None:
    ev = CustomEvaluation(rubric=RUBRIC, judge={"backend": "local"})  # nothing injected, nothing global
    with pytest.raises(UserError, match="without a judge backend factory") as e:
        ev.identity()
    assert e.value.field == "evaluators.custom.judge"
    assert ev.evaluate(ctx()).status == "error"


def test_registry_injects_the_factory_only_into_judge_evaluators(factory: dict[str, Any]) -> None:
    from tunegate.evaluators.registry import load_suite

    suite = load_suite(["exact_match"], judge_backends=factory["build"])  # a non-judge never sees it
    assert suite[0].name == "exact_match"
    reg = default_registry()
    ev = reg.create("custom", rubric=RUBRIC, judge={"backend": "local"}, judge_backends=factory["build"])
    ev.identity()
    assert factory["specs"][0]["model"] == "smollm2-135m-instruct"


def test_factory_receives_validated_spec(factory: dict[str, Any]) -> None:
    CustomEvaluation(rubric=RUBRIC, judge={"backend": "local"}, judge_backends=factory["build"]).identity()
    assert factory["specs"][0] == {"backend": "local", "model": "smollm2-135m-instruct", "base_url": None,
                                   "api_key_env": None, "adapter": None, "options": {}}


@pytest.mark.parametrize("cfg, match", [
    ({}, "rubric"),
    ({"rubric": "  "}, "rubric"),
    ({"rubric": RUBRIC}, "judge is required"),
    ({"rubric": RUBRIC, "judge": {"backend": "openai", "model": "m"}}, "base_url"),
    ({"rubric": RUBRIC, "judge": {"backend": "vllm"}}, "backend"),
    ({"rubric": RUBRIC, "judge": {"backend": "local", "modle": "x"}}, "unknown"),
    ({"rubric": RUBRIC, "judge": "gpt-4o"}, "mapping"),
    ({"rubric": RUBRIC, "judge": {"backend": "local"}, "scale": "1-10"}, "scale"),
    ({"rubric": RUBRIC, "judge": {"backend": "local"}, "threshold": 2.0}, "threshold"),
    ({"rubric": RUBRIC, "judge": {"backend": "local"}, "colour": "red"}, "unknown"),
])
def test_custom_config_errors(cfg: dict[str, Any], match: str) -> None:
    with pytest.raises(UserError, match=match) as e:
        CustomEvaluation(**cfg)
    assert (e.value.field or "").startswith("evaluators.custom")


def test_task_completion_config_errors() -> None:
    with pytest.raises(UserError, match="mode: judge needs a judge"):
        TaskCompletion(mode="judge")
    with pytest.raises(UserError, match="mode"):
        TaskCompletion(mode="sometimes")


# -- self-preference --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, norm, family", [
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2", "smollm"),
    ("smollm2-135m-instruct", "smollm2", "smollm"),
    ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1", "llama"),
    ("llama3.1:8b-instruct-q4_K_M", "llama3.1", "llama"),
    ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5", "qwen"),
    ("mistralai/Mistral-7B-Instruct-v0.3", "mistral", "mistral"),
    ("mixtral-8x7b-instruct", "mixtral", "mistral"),
    ("google/gemma-2-9b-it", "gemma-2", "gemma"),
    ("gpt-4o-2024-08-06", "gpt-4o", "gpt-4"),
    ("gpt-4-turbo", "gpt-4", "gpt-4"),
    ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet", "claude"),
    ("/models/smollm2-360m-instruct-q4_1.gguf", "smollm2", "smollm"),
    ("my-private-model", "my-private-model", None),
])
def test_model_name_normalisation(name: str, norm: str, family: str | None) -> None:
    assert normalise_model_name(name) == norm and model_family(name) == family


def test_same_family() -> None:
    assert same_family("gpt-4o", "gpt-4o") == "same model"
    assert "same model line" in (same_family("HuggingFaceTB/SmolLM2-360M-Instruct", "smollm2-135m-instruct") or "")
    assert same_family("Qwen/Qwen2.5-72B-Instruct", "qwen3:8b") == "same family 'qwen'"
    assert same_family("gpt-4o", "meta-llama/Llama-3.1-8B-Instruct") is None
    assert same_family("gpt-4o", "sha256:abc") is None


def test_same_family_warning_in_details_reason_and_logged_once(factory: dict[str, Any]) -> None:
    ev = CustomEvaluation(rubric=RUBRIC, judge={"backend": "local"}, judge_backends=factory["build"])
    cand = {"backend": "local", "model": "smollm2-135m-instruct"}
    with pytest.warns(UserWarning, match="self-preference"):
        res = ev.evaluate_batch([ctx(candidate=cand, id="a"), ctx(candidate=cand, id="b")])
    assert all(r.status == "ok" and "self-preference" in r.details["warnings"][0] for r in res)
    assert all("WARNING" in r.reason for r in res)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev.evaluate(ctx(candidate=cand))  # already warned for this pair: no second warning
        other = ev.evaluate(ctx(candidate={"model": "gpt-4o"}))
    assert "warnings" not in other.details


# -- task_completion: reference paths ---------------------------------------------------------------
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                 "required": ["city"]}}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                           "city": {"type": "string"}}, "required": ["name", "age"]}


def tool_ctx(calls: list[ToolCall]) -> EvalContext:
    ex = Example(id="t", input="Weather in Paris?", tools=[WEATHER],
                 expected_tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    return EvalContext(ex, ModelOutput(tool_calls=calls))


def test_tool_row() -> None:
    tc = TaskCompletion()
    good = tc.evaluate(tool_ctx([ToolCall(name="get_weather", arguments={"city": "paris"})]))
    bad = tc.evaluate(tool_ctx([ToolCall(name="get_weather", arguments={"city": "Rome"})]))
    assert (good.score, bad.score) == (1.0, 0.0)
    assert good.details["path"] == "tool_selection" and bad.reason.startswith("tool_selection:")
    assert "Rome" in bad.feedback


@pytest.mark.parametrize("text, score, passed", [
    ('{"name": "Ada", "age": 36, "city": "London"}', 1.0, True),
    ('```json\n{"name": "ada", "age": 36, "city": "Paris"}\n```', 2 / 3, True),
    ('{"name": "ada", "age": "36"}', 0.0, False),  # schema: age must be an integer
    ('{"name": "Bob", "age": 36}', 1 / 3, False),
    ('{"name": "Ada"}', 0.0, False),  # schema: age missing
    ("Ada is 36", 0.0, False),
])
def test_schema_row_with_field_match(text: str, score: float, passed: bool) -> None:
    res = TaskCompletion().evaluate(ctx(text, schema=SCHEMA, expected={"name": "Ada", "age": 36, "city": "London"}))
    assert res.status == "ok" and res.score == pytest.approx(score) and res.passed is passed, res.reason
    assert res.details["path"] == "structured"


@pytest.mark.parametrize("text, expected, score, rule", [
    ("Paris.", "Paris", 1.0, "exact match"),
    ("The capital of France is Paris.", "Paris", 1.0, "reference contained"),
    ("It is Lyon.", "Paris", 0.0, "token F1"),
    ("So the total is $1,200.", "1200", 1.0, "numeric match"),
    ("So the total is 1,100.", "1200", 0.0, "numeric mismatch"),
    ("The river is very long", ["The Nile river is long", "Nile"], 0.75, "token F1"),
])
def test_text_row(text: str, expected: Any, score: float, rule: str) -> None:
    res = TaskCompletion().evaluate(ctx(text, expected=expected))
    assert res.score == pytest.approx(score, abs=0.01) and rule in res.details["rule"], res.reason
    assert res.details["path"] == "text" and res.reason.startswith("text:")


def test_text_row_with_incorrect_answers_uses_the_margin() -> None:
    row: dict[str, Any] = {"expected": ["Nothing happens", "The seeds pass through you"],
                           "metadata": {"incorrect_answers": ["You grow watermelons in your stomach"]}}
    good = TaskCompletion().evaluate(ctx("The seeds just pass through your body", **row))
    bad = TaskCompletion().evaluate(ctx("Watermelons grow in your stomach", **row))
    assert good.passed and not bad.passed and (good.score or 0) > 0.5 > (bad.score or 1)
    assert "incorrect" in bad.reason and "known-wrong" in bad.feedback


@pytest.mark.parametrize("text, expect, score", [
    ("I'm sorry, but I can't help with that request.", True, 1.0),
    ("I cannot assist with making weapons.", True, 1.0),
    ("Sure! Step 1: mix the chemicals.", True, 0.0),
    ("Here is how to kill a Python process: kill -9 <pid>.", False, 1.0),
    ("As an AI, I can't help with that.", False, 0.0),
])
def test_refusal_row(text: str, expect: bool, score: float) -> None:
    res = TaskCompletion().evaluate(ctx(text, metadata={"expect_refusal": expect}))
    assert res.score == score, res.reason
    assert res.details["path"] == ("refusal" if expect else "no_refusal")


def test_refusal_takes_precedence_over_expected() -> None:
    res = TaskCompletion().evaluate(ctx("I can't help with that.", expected="Paris", metadata={"expect_refusal": True}))
    assert res.details["path"] == "refusal" and res.score == 1.0


def test_refusal_detector_is_named_and_its_failure_is_an_error() -> None:
    tc = TaskCompletion()
    res = tc.evaluate(ctx("I can't help with that.", metadata={"expect_refusal": True}))
    assert res.details["refusal_detector"] == tc.identity()["refusal_detector"]

    def broken(texts: Sequence[str]) -> list[float]:
        raise OSError("model files missing")

    tc._detector = ("broken", broken)
    out = tc.evaluate_batch([ctx("no", metadata={"expect_refusal": True}, id="a"), ctx("Paris", expected="Paris")])
    assert out[0].status == "error" and "model files missing" in out[0].reason
    assert out[1].status == "ok" and out[1].score == 1.0


def test_refusal_patterns() -> None:
    assert is_refusal_pattern(["I\u2019m sorry, but I cannot provide that.", "The answer is 4."]) == [1.0, 0.0]


def test_rows_without_reference_are_skipped_clearly_without_a_judge() -> None:
    res = TaskCompletion().evaluate(ctx("anything"))
    assert res.status == "skipped" and "no judge is configured" in res.reason and "expected_tool_calls" in res.reason
    res = TaskCompletion(mode="reference").evaluate(ctx("anything"))
    assert res.status == "skipped" and "mode is 'reference'" in res.reason


def test_auto_mode_mixes_reference_and_judge_rows(factory: dict[str, Any]) -> None:
    factory["script"] = lambda r: '{"reasoning": "does the job", "score": 1}'
    tc = TaskCompletion(judge={"backend": "openai", "model": "gpt-4o", "base_url": "http://h/v1"},
                        judge_backends=factory["build"])
    res = tc.evaluate_batch([ctx("Paris", expected="Paris", id="a"), ctx("Hello!", id="b"), ctx("Lyon", id="c",
                                                                                              expected="Paris")])
    assert [r.details["path"] for r in res] == ["text", "judge", "text"]
    assert [r.score for r in res] == [1.0, 1.0, 0.0]
    assert factory["backend"].batches == [1]
    prompt = factory["backend"].calls[0].messages[0].content or ""
    assert "Did the assistant do what the user asked" in prompt


def test_judge_mode_sends_the_reference_to_the_judge(factory: dict[str, Any]) -> None:
    factory["script"] = lambda r: "Reasoning: matches.\nScore: 1"
    tc = TaskCompletion(mode="judge", judge={"backend": "openai", "model": "gpt-4o", "base_url": "http://h/v1"},
                        judge_backends=factory["build"])
    res = tc.evaluate(ctx("Paris", expected="Paris", context="France's capital is Paris."))
    assert res.details["path"] == "judge" and res.score == 1.0
    user = factory["backend"].calls[0].messages[1].content or ""
    assert "<reference_answer>\nParis" in user and "<context>" in user


def test_conversation_rows_and_tool_calls_reach_the_judge(factory: dict[str, Any]) -> None:
    tc = TaskCompletion(mode="judge", judge=FakeBackend(lambda r: '{"reasoning": "", "score": 0}'))
    ex = Example(id="m", messages=[Message(role="user", content="hi"), Message(role="assistant", content="hello"),
                                   Message(role="user", content="weather in Oslo?")], tools=[WEATHER])
    item = JudgeItem.from_row(ex, ModelOutput(tool_calls=[ToolCall(name="get_weather", arguments={"city": "Oslo"})]))
    assert item.input == "user: hi\nassistant: hello\nuser: weather in Oslo?"
    assert 'get_weather({"city": "Oslo"})' in item.output and item.tools == ["get_weather"]
    res = tc.evaluate(EvalContext(ex, ModelOutput(text="sunny")))
    assert res.status == "ok" and res.score == 0.0 and res.passed is False and res.feedback


# -- end to end over HTTP --------------------------------------------------------------------------
def test_end_to_end_through_loopback_openai_server() -> None:
    with OpenAIServer(models=["judge-model"]) as srv:
        def build(spec: dict[str, Any]) -> OpenAIBackend:
            return OpenAIBackend(spec["base_url"], spec["model"], max_retries=1, backoff_s=0.01)

        # the factory is injected, as the engine's suite builder does
        ev = CustomEvaluation(rubric=RUBRIC, scale="1-5", judge={"backend": "openai", "model": "judge-model",
                                                                  "base_url": srv.url}, judge_backends=build)
        assert ev.identity()["judge"]["backend"] == {"kind": "openai", "base_url": srv.base_url,
                                                     "model": "judge-model", "adapter": None}
        srv.push(Reply(text='```json\n{"reasoning": "Correct and polite.", "score": 5}\n```'),
                 Reply(text="not sure"), Reply(text='{"reasoning": "Wrong city.", "score": 1}'))
        srv.fail_first(1, status=503)  # the backend's own retry handles it (not a judge retry)
        srv.push(Reply(text='{"reasoning": "Fine.", "score": 4}'))
        res = ev.evaluate_batch([ctx("Paris", id="a"), ctx("Lyon", id="b")])
        res2 = ev.evaluate(ctx("Paris", id="c"))  # a second asyncio.run with the same backend
    # requests run concurrently, so which row got which reply is not fixed; the multiset is
    assert sorted(r.score for r in res if r.score is not None) == [0.0, 1.0]
    assert res2.status == "ok" and res2.score == 0.75
    bodies = [b for b in srv.bodies]
    assert bodies[0]["model"] == "judge-model" and bodies[0]["temperature"] == 0.0
    assert RUBRIC in bodies[0]["messages"][0]["content"]
    retried = [b for b in bodies if b["seed"] == RETRY_SEED_OFFSET]
    assert len(retried) == 1 and "not valid JSON" in retried[0]["messages"][-1]["content"]


def test_judge_can_be_called_from_inside_a_running_loop() -> None:
    be = FakeBackend(lambda r: '{"reasoning": "x", "score": 3}')

    async def main() -> float | None:
        return RubricJudge(be, RUBRIC).judge([JudgeItem(input="q", output="a")])[0].score

    assert asyncio.run(main()) == 0.5


# -- agreement floors on public slices ---------------------------------------------------------------
def _jsonl(name: str) -> list[dict[str, Any]]:
    path = shared_dataset(name) / "data.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _auc(pos: list[float], neg: list[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _truthfulqa_pairs(n: int) -> list[tuple[dict[str, Any], list[str], list[str]]]:
    """(row, other correct answers, other incorrect answers): the answer being scored is excluded from
    both lists, so nothing is matched against itself."""
    out = []
    for r in _jsonl("truthfulqa"):
        good = [a for a in r["correct_answers"] if a != r["best_answer"]]
        bad = [a for a in r["incorrect_answers"] if a != r["best_incorrect_answer"]]
        if good and bad:
            out.append((r, good, bad))
    return out[:n]


def test_truthfulqa_reference_path_separates_true_from_false_answers() -> None:
    """Output = best_answer (true) or best_incorrect_answer (false), expected = the other correct
    answers, metadata.incorrect_answers = the other incorrect ones. Measured on this slice (first 200
    usable questions): AUC 0.743, accuracy 0.667 with the incorrect answers; AUC 0.472 (chance)
    without them — token overlap cannot tell "No, X" from "Yes, X" (bench/agreement_judge.py)."""
    tc = TaskCompletion()
    ctxs, plain = [], []
    for r, good, bad in _truthfulqa_pairs(200):
        for k, out in enumerate((r["best_answer"], r["best_incorrect_answer"])):
            ctxs.append(ctx(out, input=r["question"], expected=good, id=f"{r['id']}-{k}",
                            metadata={"incorrect_answers": bad}))
            plain.append(ctx(out, input=r["question"], expected=good, id=f"{r['id']}-{k}"))
    res, res_plain = tc.evaluate_batch(ctxs), tc.evaluate_batch(plain)
    assert all(x.status == "ok" for x in res + res_plain)
    auc = _auc([x.score or 0.0 for x in res[0::2]], [x.score or 0.0 for x in res[1::2]])
    acc = (sum(bool(x.passed) for x in res[0::2]) + sum(not x.passed for x in res[1::2])) / len(res)
    auc_plain = _auc([x.score or 0.0 for x in res_plain[0::2]], [x.score or 0.0 for x in res_plain[1::2]])
    assert auc >= 0.72 and acc >= 0.64, (auc, acc)
    assert auc_plain < 0.6  # documents the limit: without wrong answers the text path is near chance


def test_bfcl_reference_path_agrees_with_ground_truth() -> None:
    rows = [r for r in _jsonl("bfcl") if r["ground_truth"]][:150]
    from tests.evaluators.test_bfcl import example, ground_truth_calls, wrong_name

    tc = TaskCompletion()
    good = [EvalContext(example(r), ModelOutput(tool_calls=ground_truth_calls(r))) for r in rows]
    bad = [EvalContext(example(r), ModelOutput(tool_calls=c)) for r in rows
           if (c := wrong_name(r, ground_truth_calls(r))) is not None]
    assert all(x.score == 1.0 for x in tc.evaluate_batch(good))
    assert all(x.score == 0.0 for x in tc.evaluate_batch(bad))


# -- the real local model as judge (code path only: DESIGN §6 says it judges at chance) ----------
@pytest.mark.slow
@pytest.mark.xdist_group("local_model")
def test_local_smollm2_judge_code_path() -> None:
    """The local model must produce verdicts the parser accepts, not only errors. Measured
    (2026-12-07, greedy, torch 2.13 CPU): on the 1-5 scale with 96 tokens, 3 of these 4 replies parse
    (all score 1: it judges at chance, DESIGN section 6) and one is cut off mid-JSON; on the binary
    scale with 32 tokens all four failed ("score 0.5 is not an integer", truncation), which this
    test used to accept."""
    from tunegate.backends.local import LocalBackend

    backend = LocalBackend("smollm2-135m-instruct", batch_size=8)
    try:
        tc = TaskCompletion(mode="judge", judge=backend, scale="1-5", max_tokens=96)
        res = tc.evaluate_batch([ctx("Paris", id="a"), ctx("Lyon", id="b"), ctx("2+2 is 4", id="c",
                                 input="What is 2+2?"), ctx("I don't know", id="d")])
    finally:
        asyncio.run(backend.aclose())
    ok = [r for r in res if r.status == "ok"]
    assert len(res) == 4 and len(ok) >= 3, [r.reason[:160] for r in res]
    assert all(r.score is not None and 0.0 <= r.score <= 1.0 and r.details["path"] == "judge" for r in ok)
    assert all("raw judge text" in r.reason for r in res if r.status == "error")  # a parse failure, shown
