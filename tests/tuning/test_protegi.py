"""ProTeGi's mechanics: gradient → edit → paraphrase expansion, bandit-selected beam, budget, rejections."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeBackend
from tests.tuning.conftest import MAGIC, make_dataset, task_script
from tunegate.core.candidate import CandidateSpec
from tunegate.core.request import GenerationRequest
from tunegate.core.result import ModelOutput, Usage
from tunegate.errors import UserError
from tunegate.evaluators.registry import default_registry
from tunegate.store.sqlite import Store
from tunegate.tuning import Budget, Objective
from tunegate.tuning.base import load_optimizer
from tunegate.tuning.protegi_prompts import parse_prompt, parse_reasons
from tunegate.tuning.session import TuneOutcome, optimize_prompt

Reply = Callable[[str, int], str]


def _tag(prompt: str, idx: int) -> str:
    return f"{hashlib.sha1(prompt.encode()).hexdigest()[:6]}-{idx}"


def reflector(*, reasons: int = 3, edit: Reply | None = None, para: Reply | None = None,
              truncate: tuple[str, ...] = ()) -> Callable[[GenerationRequest], ModelOutput]:
    """Scripted reflection model: answers the gradient, edit and paraphrase prompts by their wording."""
    def script(req: GenerationRequest) -> ModelOutput:
        p = req.messages[-1].content or ""
        i = req.sample_index
        if "reasons why" in p:
            kind = "gradient"
            text = "\n".join(f"<reason>Reason {k}: the answer lacks the ok suffix.</reason>" for k in range(reasons))
        elif "the problem with this instruction is that" in p:
            kind = "edit"
            text = (edit or (lambda p, i: f"<prompt>Answer, then {MAGIC} with ok. [edit {_tag(p, i)}]</prompt>"))(p, i)
        elif "Generate a variation" in p:
            kind = "paraphrase"
            text = (para or (lambda p, i: f"Sure.\n<prompt>Reply and {MAGIC} it with ok. [para {_tag(p, i)}]</prompt>"))(
                p, i)
        else:
            raise AssertionError(f"unexpected reflection prompt: {p[:80]}")
        finish = "stop"
        if kind in truncate:
            text, finish = text[: len(text) // 2], "length"
        return ModelOutput(text=text, finish_reason=finish, usage=Usage(prompt_tokens=50, completion_tokens=20))
    return script


def run(store: Store, seed: CandidateSpec, refl: Callable[[GenerationRequest], ModelOutput], *,
        settings: dict[str, Any] | None = None, budget: int = 400, task: Any = None,
        random_seed: int = 0) -> tuple[TuneOutcome, FakeBackend]:
    refl_be = FakeBackend(refl, name="reflector")
    out = asyncio.run(optimize_prompt(
        dataset=make_dataset(), seed=seed, evaluators=[default_registry().create("exact_match")],
        objective=Objective.parse("exact_match"), method="protegi", budget=Budget(metric_calls=budget),
        task_backend=FakeBackend(task or task_script()), reflection_backend=refl_be, cache=store,
        settings=settings or {}, random_seed=random_seed))
    return out, refl_be


def _kinds(be: FakeBackend) -> Counter[str]:
    c: Counter[str] = Counter()
    for r in be.calls:
        p = r.messages[-1].content or ""
        c["gradient" if "reasons why" in p else "edit" if "problem with this" in p else "paraphrase"] += 1
    return c


def test_expansion_counts_and_lineage(seed, store):
    s = {"rounds": 1, "num_gradients": 2, "edits_per_gradient": 2, "paraphrases_per_edit": 2, "beam_width": 4}
    out, refl = run(store, seed, reflector(reasons=3), settings=s)
    h = out.history
    assert _kinds(refl) == {"gradient": 1, "edit": 4, "paraphrase": 8}
    edits = [p for p in h.proposals if p.operator == "edit"]
    paras = [p for p in h.proposals if p.operator == "paraphrase"]
    assert len(edits) == 4 and len(paras) == 8 and not h.rejections
    assert all(e.parents == ["p0"] for e in edits)
    # only num_gradients of the 3 reasons are used, each by edits_per_gradient edits
    assert Counter(e.extra["gradient"] for e in edits) == {
        "Reason 0: the answer lacks the ok suffix.": 2, "Reason 1: the answer lacks the ok suffix.": 2}
    by_id = {p.id: p for p in h.proposals}
    assert Counter(p.parents[0] for p in paras) == {e.id: 2 for e in edits}
    for p in paras:
        parent = by_id[p.parents[0]]
        assert parent.operator == "edit" and p.extra["gradient"] == parent.extra["gradient"]
        assert h.proposals.index(parent) < h.proposals.index(p)
    # every edit records what it learnt from: the train minibatch and the errors shown
    assert all(set(e.extra["errors"]) <= set(e.extra["minibatch_rows"]) and len(e.extra["errors"]) == 4 for e in edits)
    # 13 arms (seed + 12) → 4 survive the bandit; the rest are rejected with the bandit's reason
    children = edits + paras
    assert sum(p.status == "accepted" for p in children) == 4
    assert all("successive rejects" in p.reason for p in children if p.status == "rejected")
    assert all(p.dev_mean is None for p in children)           # estimates only: never compared with the seed
    assert all(p.minibatch["selector"] == "successive_rejects" and p.minibatch["rows"] for p in children)
    assert tuple(h.meta["protegi"]["rounds"][0]["eliminated"][0]) == (1, "p0")   # the seed scores 0


def test_end_to_end_improvement(seed, store):
    out, _ = run(store, seed, reflector(), budget=200)
    assert out.seed.dev_mean == 0.0
    assert out.best.dev_mean == 1.0 and out.improved and MAGIC in (out.best.prompt.system or "")
    assert out.best.operator == "select" and out.best.status == "accepted"
    cand = out.history.get(out.best.parents[0])
    assert cand.operator in {"edit", "paraphrase"} and cand.status == "accepted"
    assert out.best.dev_scores is not None and set(out.best.dev_scores) == set(out.seed.dev_scores or {})
    assert out.spent["metric_calls"] <= 200


def test_selection_keeps_the_most_accurate_candidate(seed, store):
    """Each edit has a known accuracy (level L: right on rows with (7·i mod 10) < L)."""
    levels = [3, 10, 6]

    def edit(p: str, i: int) -> str:
        return f"<prompt>Answer the question at level {levels[i]} of care.</prompt>"

    s = {"rounds": 1, "num_gradients": 1, "edits_per_gradient": 3, "paraphrases_per_edit": 0, "beam_width": 1}
    out, _ = run(store, seed, reflector(edit=edit), settings=s, task=task_script(_level_solver))
    h = out.history
    lvl = {p.id: _level(p.prompt.system or "") for p in h.proposals if p.operator == "edit"}
    elim = [pid for _, pid in h.meta["protegi"]["rounds"][0]["eliminated"]]
    assert elim[0] == "p0" and [lvl[pid] for pid in elim[1:]] == [3, 6]     # worst arm first
    [winner] = [p for p in h.proposals if p.operator == "edit" and p.status == "accepted"]
    assert lvl[winner.id] == 10 and out.best.parents == [winner.id] and out.best.dev_mean == 1.0
    rejected = {p.id: p.reason for p in h.proposals if p.status == "rejected"}
    assert "phase 2" in rejected[elim[1]] and "phase 3" in rejected[elim[2]]


def _level_solver(system: str, user: str) -> bool:
    """Known accuracy per prompt: ``level L`` answers right the rows with (7·i mod 10) < L."""
    m = re.search(r"level (\d+)", system)
    i = int(re.match(r"word(\d+)", user).group(1))  # type: ignore[union-attr]
    return m is not None and (7 * i) % 10 < int(m.group(1))


def _level(text: str) -> int:
    m = re.search(r"level (\d+)", text)
    return int(m.group(1)) if m else 0


def _climb_edit(p: str, i: int) -> str:
    """An edit raises the level of the instruction it edits by 3 (capped at 9)."""
    return f"<prompt>Answer the question at level {min(_level(p.split(chr(34) * 3)[1]) + 3, 9)} of care. " \
           f"[{_tag(p, i)}]</prompt>"


def _climb_para(p: str, i: int) -> str:
    return f"<prompt>Reply to the question at level {_level(p.split(chr(34) * 3)[1])} of care. [{_tag(p, i)}]</prompt>"


CLIMB = {"rounds": 3, "beam_width": 2, "num_gradients": 1, "edits_per_gradient": 2, "paraphrases_per_edit": 1}


def test_beam_search_climbs_across_rounds(seed, store):
    """Only a real multi-round beam (round-2 edits of round-1 survivors, …) reaches level 9."""
    out, _ = run(store, seed, reflector(edit=_climb_edit, para=_climb_para), settings=CLIMB, budget=400,
                 task=task_script(_level_solver))
    h = out.history
    assert [r["round"] for r in h.meta["protegi"]["rounds"]] == [1, 2, 3]
    assert _level(out.best.prompt.system or "") == 9 and out.best.dev_mean == pytest.approx(8 / 9)
    chain, p = [], h.get(out.best.parents[0])
    while p.parents:
        chain.append((p.operator, p.extra.get("round")))
        p = h.get(p.parents[0])
    edits = [(op, r) for op, r in chain if op == "edit"]
    assert [r for _, r in edits] == [3, 2, 1] and p.id == "p0"
    # round-2 children descend from round-1 beam members only
    beam1 = set(h.meta["protegi"]["rounds"][0]["new_beam"])
    assert {h.get(q.parents[0]).id for q in h.proposals if q.operator == "edit" and q.extra["round"] == 2} <= beam1
    # the errors shown are the minibatch rows the level-3 parent got wrong, and no others
    for q in h.proposals:
        if q.operator == "edit" and q.extra["round"] == 2:
            wrong = [r for r in q.extra["minibatch_rows"] if (7 * int(r[1:])) % 10 >= 3]
            assert set(q.extra["errors"]) <= set(wrong) and len(q.extra["errors"]) == min(4, len(wrong))
    assert out.spent["metric_calls"] <= 400


def test_ucb_selector_end_to_end(seed, store):
    out, _ = run(store, seed, reflector(), settings={"selector": "ucb", "beam_width": 2}, budget=250)
    assert out.best.dev_mean == 1.0
    kids = [p for p in out.history.proposals if p.operator in {"edit", "paraphrase"}]
    assert all(p.minibatch["selector"] == "ucb" for p in kids)
    assert any("by UCB" in p.reason for p in kids if p.status == "rejected")
    assert out.spent["metric_calls"] <= 250


@pytest.mark.parametrize("budget", [20, 30, 40, 60, 80, 90, 120, 150, 200])
def test_budget_respected(seed, store, budget):
    out, _ = run(store, seed, reflector(edit=_climb_edit, para=_climb_para), budget=budget,
                 settings={**CLIMB, "rounds": 5}, task=task_script(_level_solver))
    assert out.spent["metric_calls"] <= budget
    # whenever a candidate entered a beam, the reserve paid for a full dev evaluation of the final beam's best
    kids = [p for p in out.history.proposals if p.operator in {"edit", "paraphrase"}]
    if any(p.status == "accepted" for p in kids):
        assert any(p.operator == "select" for p in out.history.proposals)
        assert out.improved and (out.best.dev_mean or 0) > (out.seed.dev_mean or 0)
    if budget >= 60:
        assert out.improved


def test_budget_below_the_seed_is_a_user_error(seed, store):
    with pytest.raises(UserError, match="budget"):
        run(store, seed, reflector(), budget=5)


@pytest.mark.parametrize("where", ["edit", "gradient"])
def test_truncated_reflections_are_rejected_and_logged(seed, store, where):
    out, refl = run(store, seed, reflector(truncate=(where,)), settings={"rounds": 2})
    h = out.history
    assert not [p for p in h.proposals if p.operator in {"edit", "paraphrase"}]
    assert h.rejections and all(r.operator == where and "truncated" in r.reason for r in h.rejections)
    assert all(r.parent == "p0" for r in h.rejections)
    assert _kinds(refl)["paraphrase"] == 0
    assert out.best.id == "p0" and not out.improved


def test_unusable_paraphrases_are_logged_against_their_edit(seed, store):
    def para(p: str, i: int) -> str:
        return "Here is a variation: answer and CONFIRM."                  # no <prompt> tag, no fence

    s = {"rounds": 1, "num_gradients": 1, "edits_per_gradient": 2, "paraphrases_per_edit": 1}
    out, _ = run(store, seed, reflector(para=para), settings=s)
    h = out.history
    edits = [p.id for p in h.proposals if p.operator == "edit"]
    assert len(edits) == 2 and not [p for p in h.proposals if p.operator == "paraphrase"]
    assert sorted(r.parent for r in h.rejections) == sorted(edits)
    assert all(r.operator == "paraphrase" and "no <prompt>" in r.reason for r in h.rejections)


def test_duplicates_and_unchanged_prompts_are_rejected(seed, store):
    def edit(p: str, i: int) -> str:
        return "<prompt>Answer the question.</prompt>" if i == 0 else f"<prompt>Always {MAGIC} with ok.</prompt>"

    s = {"rounds": 1, "num_gradients": 1, "edits_per_gradient": 3, "paraphrases_per_edit": 0}
    out, _ = run(store, seed, reflector(edit=edit), settings=s)
    reasons = [r.reason for r in out.history.rejections]
    assert any("identical to the parent" in r for r in reasons) and any("duplicate of" in r for r in reasons)
    assert len([p for p in out.history.proposals if p.operator == "edit"]) == 1


def test_deterministic(seed, tmp_path: Path):
    def strip(d: Any) -> Any:
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k not in {"wall_s"}}
        if isinstance(d, list):
            return [strip(v) for v in d]
        return d

    runs = []
    for k in range(2):
        with Store(tmp_path / f"{k}.db") as st:
            out, _ = run(st, seed, reflector(), budget=220, random_seed=3)
            runs.append(strip(out.history.to_dict()))
    assert runs[0] == runs[1]
    assert len(runs[0]["proposals"]) > 5


def test_settings_are_validated():
    with pytest.raises(UserError, match=r"settings\.selector"):
        load_optimizer("protegi", {"selector": "thompson"})
    with pytest.raises(UserError, match=r"settings\.beam_widht"):
        load_optimizer("protegi", {"beam_widht": 3})
    assert load_optimizer("protegi").settings.beam_width == 4


def test_parsers():
    assert parse_reasons("<reason>too vague</reason> and <reason>no format</reason>") == ["too vague", "no format"]
    assert parse_reasons("Reasons:\n1. too vague\n2. no format") == ["too vague", "no format"]
    with pytest.raises(ValueError, match="not closed"):
        parse_reasons("<reason>too vague")
    assert parse_prompt("x <prompt> Be brief. </prompt>") == "Be brief."
    assert parse_prompt("```\nBe brief.\n```") == "Be brief."
    with pytest.raises(ValueError, match="not closed"):
        parse_prompt("<prompt>Be brief.")
