"""PromptWizard's mechanics, pinned with scripted fakes: styles, selection, critique, examples, budget."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes import FakeBackend
from tests.tuning.conftest import MAGIC, make_dataset
from tunegate.core.candidate import CandidateSpec
from tunegate.core.dataset import Dataset
from tunegate.core.request import GenerationRequest
from tunegate.core.result import ModelOutput, Usage
from tunegate.errors import UserError
from tunegate.evaluators.registry import default_registry
from tunegate.store.sqlite import Store
from tunegate.tuning.base import load_optimizer
from tunegate.tuning.budget import Budget
from tunegate.tuning.objective import Objective, prompt_tokens
from tunegate.tuning.promptwizard import THINKING_STYLES
from tunegate.tuning.session import TuneOutcome, optimize_prompt

#: Settings that switch stage 2 off, to look at stage 1 alone.
STAGE1 = {"few_shot_count": 0, "generate_expert_identity": False}
STYLE_TEXT = {text: name for name, text in THINKING_STYLES}


def task(extra: Callable[[GenerationRequest], bool] | None = None) -> FakeBackend:
    """Right (input + `` ok``) when the system says CONFIRM, or a demonstration says SYNTH, or ``extra``."""
    def script(req: GenerationRequest) -> ModelOutput:
        system = next((m.content or "" for m in req.messages if m.role == "system"), "")
        user = [m.content or "" for m in req.messages if m.role == "user"][-1]
        demos = " ".join(m.content or "" for m in req.messages if m.role == "assistant")
        good = MAGIC in system or "SYNTH" in demos or bool(extra and extra(req))
        return ModelOutput(text=f"{user} ok" if good else user, finish_reason="stop",
                           usage=Usage(prompt_tokens=5, completion_tokens=3))
    return FakeBackend(script)


def style_of(prompt: str) -> str | None:
    return next((name for text, name in STYLE_TEXT.items() if f"Thinking style: {text}" in prompt), None)


def reflector(**over: Callable[[str, GenerationRequest], str | ModelOutput]) -> FakeBackend:
    """Answers each PromptWizard meta prompt by what it asks for; ``over`` replaces one kind of answer."""
    kinds: dict[str, Callable[[str, GenerationRequest], str | ModelOutput]] = {
        "mutate": lambda p, r: f"<instruction>Answer the question; style {style_of(p)} applied here.</instruction>",
        "critique": lambda p, r: "<critique>CRITIQUE-TOKEN: the instruction never asks to confirm.</critique>",
        "refine": lambda p, r: f"<instruction>Answer the question and {MAGIC} the answer.</instruction>",
        "fewshot_critique": lambda p, r: "<critique>The demonstrations are too similar.</critique>",
        "synth": lambda p, r: "".join(f"<example><input>made up {i}</input><output>made up {i} SYNTH</output>"
                                      f"</example>" for i in range(3)),
        "choice": lambda p, r: "<choice>2, 1, 3</choice>",
        "reasoning": lambda p, r: "<reasoning>Repeat the input, then add ok.</reasoning>",
        "identity": lambda p, r: "<identity>You are a meticulous answer checker.</identity>",
        "keywords": lambda p, r: "<keywords>answer, confirm</keywords>",
    }
    kinds.update(over)

    def script(req: GenerationRequest) -> str | ModelOutput:
        p = req.messages[-1].content or ""
        if "Thinking style:" in p:
            return kinds["mutate"](p, req)
        if "Write an improved instruction" in p:
            return kinds["refine"](p, req)
        if "<example>" in p:
            return kinds["synth"](p, req)
        if "<choice>" in p:
            return kinds["choice"](p, req)
        if "Current demonstrations" in p:
            return kinds["fewshot_critique"](p, req)
        if "<critique>" in p:
            return kinds["critique"](p, req)
        for k in ("reasoning", "identity", "keywords"):
            if f"<{k}>" in p:
                return kinds[k](p, req)
        raise AssertionError(f"unexpected meta prompt: {p[:200]}")
    return FakeBackend(script)


def run(store: Store, seed: CandidateSpec, refl: FakeBackend, *, task_backend: FakeBackend | None = None,
        settings: dict[str, Any] | None = None, calls: int = 300, max_tokens: int | None = None,
        ds: Dataset | None = None) -> TuneOutcome:
    return asyncio.run(optimize_prompt(
        dataset=ds or make_dataset(), seed=seed, evaluators=[default_registry().create("exact_match")],
        objective=Objective.parse("exact_match", max_prompt_tokens=max_tokens), method="promptwizard",
        budget=Budget(metric_calls=calls), task_backend=task_backend or task(), reflection_backend=refl,
        cache=store, settings=settings or {}, random_seed=0))


def prompts_of(backend: FakeBackend) -> list[str]:
    return [m.content or "" for r in backend.calls for m in r.messages]


def ops(out: TuneOutcome, prefix: str) -> list:
    return [p for p in out.history.proposals if p.operator.startswith(prefix)]


def test_thinking_style_mutations(store, seed):
    refl = reflector()
    out = run(store, seed, refl, settings={**STAGE1, "mutate_refine_iterations": 1, "style_variation": 3,
                                           "refine_instruction": False})
    asks = [c.messages[-1].content or "" for c in refl.calls]
    mutations = [a for a in asks if "Thinking style:" in a]
    assert len(mutations) == 3 == len(asks)
    names = [style_of(a) for a in mutations]
    assert None not in names and len(set(names)) == 3
    assert all("Answer the question." in a for a in mutations)  # the current instruction is what is mutated
    props = ops(out, "style:")
    assert [p.operator for p in props] == [f"style:{n}" for n in names]
    assert all(p.parents == [out.seed.id] and p.extra["style"] == n for p, n in zip(props, names, strict=True))
    assert all(f"style {n} applied" in (p.prompt.system or "") for p, n in zip(props, names, strict=True))


def test_best_of_mutations_on_one_minibatch(store, seed):
    winner: list[str] = []

    def mutate(p: str, r: GenerationRequest) -> str:
        name = style_of(p)
        if not winner:       # the first style asked wins; the others do not mention the magic word
            winner.append(name or "")
            return f"<instruction>Answer it and {MAGIC} ({name}).</instruction>"
        return f"<instruction>Answer the question in the {name} way, please.</instruction>"
    out = run(store, seed, reflector(mutate=mutate),
              settings={**STAGE1, "mutate_refine_iterations": 1, "style_variation": 3, "refine_instruction": False})
    props = ops(out, "style:")
    assert len(props) == 3
    rows = {tuple(p.minibatch["rows"]) for p in props}
    assert len(rows) == 1 and len(next(iter(rows))) == 5  # every mutation scored on the same train rows
    train = {ex.id for ex in make_dataset() if ex.split == "train"}
    assert set(next(iter(rows))) <= train
    best = [p for p in props if p.status == "accepted"]
    assert [p.operator for p in best] == [f"style:{winner[0]}"] and best[0].minibatch["child_mean"] == 1.0
    assert all(p.minibatch["child_mean"] == 0.0 and "did not beat" in p.reason for p in props if p not in best)
    final = ops(out, "final_instruction")
    assert len(final) == 1 and final[0].parents == [best[0].id] and final[0].dev_mean == 1.0
    assert out.best.id == final[0].id


def test_parent_kept_when_no_mutation_beats_it(store, seed):
    out = run(store, seed, reflector(), settings={**STAGE1, "mutate_refine_iterations": 1,
                                                  "refine_instruction": False})
    assert ops(out, "style:") and all(p.status == "rejected" for p in ops(out, "style:"))
    assert not ops(out, "final") and out.best.id == out.seed.id


def test_critique_refine_uses_failed_examples_feedback(store, seed):
    refl = reflector()
    out = run(store, seed, refl, settings={**STAGE1, "mutate_refine_iterations": 1, "style_variation": 1})
    critiques = [c.messages[-1].content or "" for c in refl.calls
                 if "<critique>" in (c.messages[-1].content or "")]
    assert len(critiques) == 1
    crit = critiques[0]
    assert "got these examples wrong" in crit and "Evaluator feedback: exact_match (0.00): Answer with exactly" in crit
    [refined] = ops(out, "critique_refine")
    shown = refined.extra["critique_rows"]
    assert refined.extra["critique_kind"] == "negative" and 1 <= len(shown) <= 3
    assert set(shown) <= set(refined.minibatch["rows"])
    ds = make_dataset()
    for rid in shown:  # the failed rows' input, reply and gold answer are all in the critique prompt
        ex = next(e for e in ds if e.id == rid)
        assert f"Input: {ex.input}" in crit and f"Expected answer: {ex.expected}" in crit
    refine_ask = next(c.messages[-1].content or "" for c in refl.calls
                      if "Write an improved instruction" in (c.messages[-1].content or ""))
    assert "CRITIQUE-TOKEN" in refine_ask
    assert refined.status == "accepted" and refined.minibatch["child_mean"] == 1.0
    assert refined.minibatch["parent_mean"] == 0.0 and MAGIC in (refined.prompt.system or "")
    assert out.best.dev_mean == 1.0 and out.best.parents == [refined.id]


def test_positive_critique_when_nothing_fails(store, seed):
    good = seed.model_copy(update={"prompt": seed.prompt.model_copy(update={"system": f"Answer and {MAGIC}."})})
    refl = reflector()
    out = run(store, good, refl, settings={**STAGE1, "mutate_refine_iterations": 1, "style_variation": 1})
    crit = [c.messages[-1].content or "" for c in refl.calls if "<critique>" in (c.messages[-1].content or "")]
    assert len(crit) == 1 and "got these examples right" in crit[0] and "Evaluator feedback" not in crit[0]
    [refined] = ops(out, "critique_refine")
    assert refined.extra["critique_kind"] == "positive"


def _tokens(texts: list[str]) -> set[int]:
    return {int(m) for t in texts for m in re.findall(r"\bword(\d+)\b", t)}


def test_fewshot_examples_come_from_train_rows_only(store, seed):
    ds = make_dataset()
    train_ids = {ex.id for ex in ds if ds.split_of(ex) == "train"}
    hidden = {int(ex.id[1:]) for ex in ds if ds.split_of(ex) != "train"}
    test_nums = {int(ex.id[1:]) for ex in ds if ds.split_of(ex) == "test"}
    # the task solves rows whose alpha-number is odd, so the pool holds failures and successes
    tb = task(lambda r: bool(re.search(r"alpha[135]\b", r.messages[-1].content or "")))
    refl = reflector(refine=lambda p, r: "<instruction>Answer the question, please, briefly.</instruction>")
    out = run(store, seed, refl, task_backend=tb, settings={"generate_synthetic_examples": False,
                                                            "generate_reasoning": True})
    [sel] = ops(out, "fewshot_select")
    kinds = [d["kind"] for d in sel.extra["demos"]]
    assert len(kinds) == 3 and "negative" in kinds and "positive" in kinds
    assert {d["row"] for d in sel.extra["demos"]} <= train_ids and set(sel.extra["pool"]) <= train_ids
    assert not set(sel.minibatch["rows"]) & {d["row"] for d in sel.extra["demos"]}  # held out
    train_inputs = {ex.input for ex in ds if ex.id in train_ids}
    for p in out.history.proposals:
        for d, shot in zip(p.extra.get("demos", []), p.prompt.few_shot, strict=False):
            assert d["synthetic"] is False and shot.input in train_inputs
    assert ops(out, "fewshot_refine") and ops(out, "fewshot_reasoning")
    # no dev/test row text ever reaches the reflector; the task model sees dev rows only as the row scored
    assert not _tokens(prompts_of(refl)) & hidden
    for req in tb.calls:
        assert not _tokens([m.content or "" for m in req.messages[:-1]]) & hidden
        assert not _tokens([req.messages[-1].content or ""]) & test_nums


def test_synthetic_examples_are_marked(store, seed):
    ds = make_dataset()
    train_ids = {ex.id for ex in ds if ds.split_of(ex) == "train"}
    hidden = {int(ex.id[1:]) for ex in ds if ds.split_of(ex) != "train"}
    refl = reflector(refine=lambda p, r: "<instruction>Answer the question, please, briefly.</instruction>")
    out = run(store, seed, refl, settings={"mutate_refine_iterations": 1})
    [syn] = ops(out, "fewshot_synthesize")
    assert syn.status == "accepted" and syn.minibatch["child_mean"] > syn.minibatch["parent_mean"]
    assert all(d["synthetic"] and d["row"] is None and set(d["source_rows"]) <= train_ids
               for d in syn.extra["demos"])
    assert [s.output for s in syn.prompt.few_shot] == [f"made up {i} SYNTH" for i in range(3)]
    [final] = ops(out, "final")
    assert all(d["synthetic"] for d in final.extra["demos"]) and final.dev_mean == 1.0
    asks = [c.messages[-1].content or "" for c in refl.calls if "<example>" in (c.messages[-1].content or "")]
    assert len(asks) == 1 and not _tokens(asks) & hidden and _tokens(asks)  # built from train rows


def test_prompt_token_budget_limits_examples(store, seed):
    long = "<instruction>" + "Answer the question with great care. " * 20 + "</instruction>"
    out = run(store, seed, reflector(mutate=lambda p, r: long), max_tokens=22,
              settings={"generate_expert_identity": False, "generate_synthetic_examples": False})
    assert any("budget 22" in r.reason for r in out.history.rejections if r.operator.startswith("style:"))
    fewshot = [p for p in out.history.proposals if p.prompt.few_shot]
    assert fewshot and all(1 <= len(p.prompt.few_shot) < 3 for p in fewshot)
    assert all(prompt_tokens(p.prompt) <= 22 for p in out.history.proposals if p.status != "rejected")
    assert prompt_tokens(out.best.prompt) <= 22


def test_truncated_reflections_are_rejected_and_logged(store, seed):
    cut = ModelOutput(text=f"<instruction>Answer and {MAGIC} the", finish_reason="length")
    out = run(store, seed, reflector(mutate=lambda p, r: cut, refine=lambda p, r: cut,
                                     synth=lambda p, r: ModelOutput(text="<example><input>a", finish_reason="length")))
    assert not ops(out, "style:") and not ops(out, "critique_refine") and not ops(out, "fewshot_synthesize")
    reasons = {(r.operator.split(":")[0], r.reason) for r in out.history.rejections}
    assert ("style", "truncated at max_tokens=512") in reasons
    assert ("critique_refine", "truncated at max_tokens=512") in reasons
    assert ("fewshot_synthesize", "truncated at max_tokens=512") in reasons
    assert all(MAGIC not in (p.prompt.system or "") for p in out.history.proposals)
    assert out.best.dev_mean == 0.0


def test_end_to_end_improvement_within_budget(store, seed):
    out = run(store, seed, reflector(), calls=150)
    assert out.seed.dev_mean == 0.0 and out.best.dev_mean == 1.0 and out.improved
    assert out.spent["metric_calls"] <= 150
    assert MAGIC in (out.candidate.prompt.system or "")


@pytest.mark.parametrize("calls", [12, 30, 45, 70])
def test_budget_is_respected(store, seed, calls):
    out = run(store, seed, reflector(), calls=calls)
    assert out.spent["metric_calls"] <= calls
    if calls >= 45:  # a stage-1 round (the refinement finds CONFIRM) and the final prompt's dev evaluation fit
        assert out.best.dev_mean == 1.0 and out.best.operator == "final"
    if calls <= 12:  # the seed's dev scoring plus the final evaluation's reserve leave no round
        assert not ops(out, "style:") and out.best.id == out.seed.id
    if calls == 30:  # a round starts, stops at the reserve, and nothing unevaluated is returned
        assert ops(out, "style:") and out.best.id == out.seed.id


def test_stage1_instruction_scored_alone_only_beyond_the_final_reserve(store, seed):
    """With budget for one dev pass after stage 1, it goes to the final prompt, not the ablation."""
    out = run(store, seed, reflector(), calls=45)
    assert not ops(out, "final_instruction") and ops(out, "final")
    assert any("not scored alone" in line for line in out.history.meta["log"])  # and history.json says why
    roomy = run(store, seed, reflector(), calls=150)
    assert ops(roomy, "final_instruction") and ops(roomy, "final")


def test_demonstrations_that_lose_on_held_out_rows_are_rejected(store, seed):
    """A demo set is adopted only if it does not lose to the bare instruction on held-out train rows."""
    def no_demos_solve(req: GenerationRequest) -> ModelOutput:
        user = [m.content or "" for m in req.messages if m.role == "user"][-1]
        shown = any(m.role == "assistant" for m in req.messages)  # demonstrations confuse this model
        return ModelOutput(text=user if shown else f"{user} ok", finish_reason="stop",
                           usage=Usage(prompt_tokens=5, completion_tokens=3))
    out = run(store, seed, reflector(), task_backend=FakeBackend(no_demos_solve),
              settings={"mutate_refine_iterations": 0, "generate_expert_identity": False})
    [sel] = ops(out, "fewshot_select")
    assert sel.status == "rejected" and "held-out minibatch 0.000 vs parent 1.000" in sel.reason
    assert sel.prompt.few_shot and not out.best.prompt.few_shot
    assert not set(sel.minibatch["rows"]) & {d["row"] for d in sel.extra["demos"]}


def test_deterministic(tmp_path, seed):
    def once(name: str) -> dict[str, Any]:
        with Store(tmp_path / f"{name}.db") as s:
            h = run(s, seed, reflector(), settings={"generate_intent_keywords": True}).history.to_dict()
        for p in h["proposals"]:
            p.pop("wall_s")
        h["meta"].pop("spent", None)
        return h
    assert once("a") == once("b")


def test_settings_are_validated():
    with pytest.raises(UserError, match=r"settings\.bogus"):
        load_optimizer("promptwizard", {"bogus": 1})
    with pytest.raises(UserError, match="style_variation"):
        load_optimizer("promptwizard", {"style_variation": len(THINKING_STYLES) + 1})
    assert load_optimizer("promptwizard").settings.few_shot_count == 3
