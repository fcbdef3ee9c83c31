"""prompt_adherence and the IFEval checks: per-instruction cases, the evaluator contract, and
agreement with the official checker's labels on a fixed slice of IFEval (GPT-4 responses)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest

from tests.conftest import shared_dataset
from tunegate.core.example import Example, Message
from tunegate.core.result import ModelOutput
from tunegate.errors import UserError
from tunegate.evaluators.adherence import PromptAdherence
from tunegate.evaluators.base import EvalContext
from tunegate.evaluators.ifeval import (
    INSTRUCTION_IDS,
    check,
    from_ifeval,
    ifeval_row_to_example,
    loose_variants,
    normalize_instruction,
)
from tunegate.evaluators.ifeval_text import (
    count_sentences,
    count_words,
    detect_language,
    split_sentences,
    word_tokens,
)


def _followed(iid: str, kwargs: dict[str, Any], text: str, *, prompt: str = "", loose: bool = False) -> bool:
    return check(normalize_instruction({"id": iid, "kwargs": kwargs}), text, prompt=prompt, loose=loose).followed


def test_all_25_ifeval_instruction_types_are_implemented() -> None:
    assert len(INSTRUCTION_IDS) == 25
    groups = {i.split(":")[0] for i in INSTRUCTION_IDS}
    assert groups == {"punctuation", "detectable_format", "length_constraints", "detectable_content", "change_case",
                      "startend", "keywords", "combination", "language"}


LONG_EN = "this is a plain english sentence about the weather and the garden in spring. " * 3
CASES: list[tuple[str, dict[str, Any], str, bool]] = [
    ("punctuation:no_comma", {}, "No commas here.", True),
    ("punctuation:no_comma", {}, "One, two.", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* a\n* b", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* a\n- b\n- c", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 1}, "**bold** line\n* item", True),
    ("detectable_format:constrained_response", {}, "My answer is maybe.", True),
    ("detectable_format:constrained_response", {}, "My answer is probably.", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*a* and **b**", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*a* and ** **", False),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nfoo\nSection 2\nbar", True),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\nfoo only", False),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', True),
    ("detectable_format:json_format", {}, "{'a': 1}", False),
    ("detectable_format:title", {}, "<<My Title>>\ntext", True),
    ("detectable_format:title", {}, "<< >> text", False),
    ("length_constraints:number_words", {"relation": "less than", "num_words": 4}, "one two three", True),
    ("length_constraints:number_words", {"relation": "at least", "num_words": 4}, "one two-three", False),
    ("length_constraints:number_sentences", {"relation": "less than", "num_sentences": 2}, "Mr. Smith came.", True),
    ("length_constraints:number_sentences", {"relation": "at least", "num_sentences": 3}, "A. B? C!", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "p1\n***\np2", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "p1\n***\n***\np2", False),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"}, "First.\n\n\"Then, more.", True),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "then"}, "First.\n\nThen more.", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\n\nP.S. bye", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi.\n\nP.S. bye", False),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[name] at [address]", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[name] only", False),
    ("change_case:english_capital", {}, LONG_EN.upper(), True),
    ("change_case:english_capital", {}, "MOSTLY CAPITALS but not all", False),
    ("change_case:english_lowercase", {}, LONG_EN, True),
    ("change_case:english_lowercase", {}, "Capitalised start", False),
    ("change_case:english_lowercase", {}, "ceci est une phrase entièrement en français, écrite en minuscules.", False),
    ("change_case:capital_word_frequency", {"capital_relation": "at least", "capital_frequency": 3},
     "I LOVE NASA", True),
    ("change_case:capital_word_frequency", {"capital_relation": "less than", "capital_frequency": 2},
     "WE DON'T", False),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, 'Done. "Any other questions?"', True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Bye.", False),
    ("startend:quotation", {}, '  "quoted"  ', True),
    ("startend:quotation", {}, '"', False),
    ("keywords:existence", {"keywords": ["Rust", "speed"]}, "rust gives SPEEDS", True),
    ("keywords:existence", {"keywords": ["rust", "speed"]}, "rust only", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"}, "Cat and concatenate", True),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "less than"}, "cat cat", False),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "badly done", True),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "Bad idea", False),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "at least"}, "Zzz", True),
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 2, "let_relation": "less than"}, "#a #b", False),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, "say hi. Hi!", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, "Hi! Say hi.", False),
    ("combination:two_responses", {}, "one\n******\ntwo", True),
    ("combination:two_responses", {}, "same\n******\nsame", False),
    ("language:response_language", {"language": "de"}, "Das ist ein ganz normaler deutscher Satz über das Wetter.",
     True),
    ("language:response_language", {"language": "de"}, "This is a perfectly ordinary English sentence.", False),
]


@pytest.mark.parametrize("iid, kwargs, text, want", CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_instruction_cases(iid: str, kwargs: dict[str, Any], text: str, want: bool) -> None:
    assert _followed(iid, kwargs, text) is want


def test_every_instruction_has_a_true_and_a_false_case() -> None:
    seen = defaultdict(set)
    for iid, _, _, want in CASES:
        seen[iid].add(want)
    assert {i for i, v in seen.items() if v == {True, False}} == set(INSTRUCTION_IDS)


def test_empty_reply_follows_nothing() -> None:
    assert not _followed("keywords:forbidden_words", {"forbidden_words": ["x"]}, "   ")


def test_loose_mode_trims_first_line_and_asterisks() -> None:
    reply = "Sure, here it is:\n\"all quoted\""
    assert not _followed("startend:quotation", {}, reply)
    assert _followed("startend:quotation", {}, reply, loose=True)
    assert len(loose_variants("a\nb\nc")) == 8


def test_details_are_plain_words() -> None:
    ins = normalize_instruction({"id": "length_constraints:number_words",
                                 "kwargs": {"relation": "less than", "num_words": 300}})
    c = check(ins, "word " * 312)
    assert not c.followed
    assert c.detail == "wrote 312 words; the limit is fewer than 300 words"
    assert c.ask == "Answer with fewer than 300 words."


# -- text measurements ----------------------------------------------------------------------------
@pytest.mark.parametrize("text, n", [
    ("Hello world. How are you? I'm fine!", 3),
    ("Mr. Smith went to Washington. He arrived at 5 p.m. on Friday.", 2),
    ("I like fruits, e.g. apples and pears.", 2),  # NLTK's English model has no 'e.g' abbreviation
    ("The U.S. is large.", 1),
    ("Items:\n- one\n- two", 1),  # layout alone never splits
    ("It costs 3.5 dollars. Nice.", 2),
    ("Wait... what?", 1),
    ('He said "Stop." Then he left.', 2),
    ("1. Introduction\n2. Body", 3),
    ("", 0),
])
def test_sentence_splitter(text: str, n: int) -> None:
    assert count_sentences(text) == n, split_sentences(text)


def test_words_and_tokens() -> None:
    assert count_words("state-of-the-art, isn't it? 42") == 8  # \w+ runs, as IFEval counts
    assert word_tokens("I DON'T like AI's U.S. plans.") == ["I", "DO", "N'T", "like", "AI", "'s", "U.S.", "plans", "."]


def test_language_detection_is_deterministic() -> None:
    text = "Je pense donc je suis, mais parfois je doute."
    assert {detect_language(text) for _ in range(5)} == {"fr"}
    assert detect_language("12345 !!!") is None


# -- conversion -------------------------------------------------------------------------------------
def test_from_ifeval_converts_and_drops_none() -> None:
    out = from_ifeval(["punctuation:no_comma", "length_constraints:number_words"],
                      [{"num_words": None}, {"relation": "at least", "num_words": 5, "keywords": None}])
    assert out == [{"id": "punctuation:no_comma", "kwargs": {}},
                   {"id": "length_constraints:number_words", "kwargs": {"relation": "at least", "num_words": 5}}]
    row = ifeval_row_to_example({"key": 7, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"],
                                 "kwargs": [{}]})
    assert Example.model_validate(row).metadata["instructions"][0]["id"] == "punctuation:no_comma"


@pytest.mark.parametrize("bad, words", [
    ({"id": "nope:x"}, "unknown instruction id 'nope:x'"),
    ({"id": "length_constraints:number_words", "kwargs": {"num_words": 3}}, "missing kwargs ['relation']"),
    ({"id": "length_constraints:number_words", "kwargs": {"num_words": "3", "relation": "at least"}}, "must be int"),
    ({"id": "length_constraints:number_words", "kwargs": {"num_words": 3, "relation": "about"}}, "relation must be"),
    ({"id": "punctuation:no_comma", "kwargs": {"x": 1}}, "unknown kwargs ['x']"),
    ({"id": "free_form"}, "non-empty 'text'"),
])
def test_normalize_rejects(bad: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        normalize_instruction(bad)


# -- evaluator ------------------------------------------------------------------------------------
def _ctx(text: str, instructions: list[dict[str, Any]] | None = None, prompt: str = "Write something.") -> EvalContext:
    md = {"instructions": instructions} if instructions is not None else {}
    return EvalContext(Example(id="r1", input=prompt, metadata=md), ModelOutput(text=text))


WORDS_300 = {"id": "length_constraints:number_words", "kwargs": {"relation": "less than", "num_words": 300}}
NO_COMMA = {"id": "punctuation:no_comma"}


def test_evaluator_scores_fraction_and_names_failures() -> None:
    res = PromptAdherence().evaluate(_ctx("word, " * 312, [WORDS_300, NO_COMMA, {"id": "detectable_format:title"}]))
    assert res.status == "ok" and res.score == 0.0 and res.passed is False
    assert "wrote 312 words; the limit is fewer than 300" in res.reason
    assert "used 312 commas" in res.reason
    assert "Answer with fewer than 300 words." in res.feedback
    res = PromptAdherence().evaluate(_ctx("no commas and short", [WORDS_300, NO_COMMA, {"id": "detectable_format:title"}]))
    assert res.score == pytest.approx(2 / 3) and res.passed is False
    assert res.details["followed"] == 2 and res.details["total"] == 3
    ok = PromptAdherence().evaluate(_ctx("<<T>> fine", [WORDS_300, NO_COMMA]))
    assert ok.score == 1.0 and ok.passed is True and ok.feedback == ""


def test_config_instructions_apply_to_every_row_and_combine_with_row_ones() -> None:
    ev = PromptAdherence(instructions=[NO_COMMA])
    assert ev.evaluate(_ctx("a, b")).score == 0.0
    assert ev.evaluate(_ctx("a b", [WORDS_300])).details["total"] == 2


def test_ifeval_native_metadata_is_accepted() -> None:
    ex = Example(id="x", input="p", metadata={"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]})
    assert PromptAdherence().evaluate(EvalContext(ex, ModelOutput(text="a, b"))).score == 0.0


def test_unknown_id_is_an_error_never_a_pass() -> None:
    res = PromptAdherence().evaluate(_ctx("anything", [{"id": "detectable_format:haiku"}]))
    assert res.status == "error" and "detectable_format:haiku" in res.reason
    with pytest.raises(UserError, match=r"evaluators\.prompt_adherence\.instructions"):
        PromptAdherence(instructions=[{"id": "detectable_format:haiku"}])
    with pytest.raises(UserError, match="unknown option"):
        PromptAdherence(strict=True)


def test_rows_without_instructions_are_skipped() -> None:
    assert PromptAdherence().evaluate(_ctx("text")).status == "skipped"


def test_repeat_prompt_defaults_to_the_row_prompt() -> None:
    ex = Example(id="m", messages=[Message(role="user", content="Name a colour.")],
                 metadata={"instructions": [{"id": "combination:repeat_prompt"}]})
    assert PromptAdherence().evaluate(EvalContext(ex, ModelOutput(text="Name a colour. Blue."))).score == 1.0


FREE = {"id": "free_form", "text": "Sound cheerful."}


def test_free_form_without_judge_is_skipped_and_reported() -> None:
    only = PromptAdherence().evaluate(_ctx("hi", [FREE]))
    assert only.status == "skipped" and "needs a judge" in only.reason
    mixed = PromptAdherence().evaluate(_ctx("hi", [FREE, NO_COMMA]))
    assert mixed.status == "ok" and mixed.score == 1.0 and "not scored" in mixed.reason
    assert mixed.details["unjudged"] == ["Sound cheerful."]


def test_free_form_judge_hook() -> None:
    calls: list[tuple[str, str, str]] = []

    def judge(instruction: str, prompt: str, output: str) -> tuple[float, str]:
        calls.append((instruction, prompt, output))
        return 0.25, "sounds glum"

    ev = PromptAdherence(judge={"backend": "openai", "model": "fake"}, judge_fn=judge)
    res = ev.evaluate(_ctx("meh", [FREE, NO_COMMA], prompt="Greet me."))
    assert calls == [("Sound cheerful.", "Greet me.", "meh")]
    assert res.score == pytest.approx((0.25 + 1) / 2) and res.passed is False
    assert "sounds glum" in res.reason
    assert ev.identity()["config"]["judge"] == {"backend": "openai", "model": "fake"}
    unwired = PromptAdherence(judge={"model": "x"}).evaluate(_ctx("hi", [FREE]))
    assert unwired.status == "error" and "no judge callable" in unwired.reason
    with pytest.raises(UserError, match="judge"):
        PromptAdherence(judge_fn=judge)
    bad = PromptAdherence(judge={"model": "x"}, judge_fn=lambda *a: (3.0, "?")).evaluate(_ctx("hi", [FREE]))
    assert bad.status == "error"


# -- agreement with the official labels -----------------------------------------------------------------
SLICE = 300  # first 300 labelled IFEval rows (fixed order of the file)


@pytest.mark.parametrize("loose", [False, True], ids=["strict", "loose"])
def test_agreement_with_official_ifeval_labels(loose: bool) -> None:
    path = shared_dataset("ifeval") / "data.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r.get("strict_follow_instruction_list") is not None][:SLICE]
    key = "loose_follow_instruction_list" if loose else "strict_follow_instruction_list"
    ctxs = [EvalContext(Example.model_validate(ifeval_row_to_example(r)), ModelOutput(text=r["gpt4_response"]))
            for r in rows]
    results = PromptAdherence(loose=loose).evaluate_batch(ctxs)
    per: dict[str, list[bool]] = defaultdict(list)
    for r, res in zip(rows, results, strict=True):
        assert res.status == "ok", res.reason
        for iid, kw, label, got in zip(r["instruction_id_list"], r["kwargs"], r[key], res.details["instructions"],
                                       strict=True):
            if iid == "keywords:letter_frequency" and not kw["letter"].isalpha():
                continue  # the official checker swaps a non-letter for a random letter
            per[iid].append(got["followed"] == label)
    total = [a for v in per.values() for a in v]
    print(f"\nifeval {'loose' if loose else 'strict'} agreement on {len(total)} instructions: "
          f"{sum(total) / len(total):.4f}")
    assert len(total) > 400
    assert sum(total) / len(total) >= 0.995  # measured 1.000 on this slice (2026-11)
    for iid, agree in per.items():
        assert sum(agree) / len(agree) >= 0.95, (iid, sum(agree), len(agree))
