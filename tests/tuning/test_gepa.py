"""GEPA's mechanics: Pareto selection, strict minibatch acceptance, reflection content, budgets, merge."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import pytest

from tests.fakes import FakeBackend
from tests.tuning.conftest import MAGIC, harness_for, make_dataset, task_script
from tunegate.core.candidate import CandidateSpec
from tunegate.core.prompt import FewShot, PromptTemplate
from tunegate.core.request import GenerationRequest
from tunegate.core.result import ModelOutput, Usage
from tunegate.errors import UserError
from tunegate.evaluators.registry import default_registry
from tunegate.store.sqlite import Store
from tunegate.tuning import Budget, History, Objective, Reflector, load_optimizer, with_instruction
from tunegate.tuning.base import TuneContext
from tunegate.tuning.gepa import GEPARun, GEPASettings
from tunegate.tuning.gepa_merge import find_merge
from tunegate.tuning.gepa_pareto import (
    EpochSampler,
    front_counts,
    pareto_fronts,
    remove_dominated,
    select_pareto,
)
from tunegate.tuning.session import optimize_prompt

GOOD = f"```\nAnswer the question, then {MAGIC} it by appending the word ok.\n```"


def reflector(*replies: str | ModelOutput) -> FakeBackend:
    """A reflection model cycling through ``replies`` (strings are complete, well-formed replies)."""
    n = {"i": 0}

    def script(req: GenerationRequest) -> str | ModelOutput:
        r = replies[n["i"] % len(replies)]
        n["i"] += 1
        return r
    return FakeBackend(script, name="reflector")


def run(store: Store, seed: CandidateSpec, task: FakeBackend, refl: FakeBackend, *, n: int = 30, calls: int = 200,
        **settings):
    return asyncio.run(optimize_prompt(
        dataset=make_dataset(n), seed=seed, evaluators=[default_registry().create("exact_match")],
        objective=Objective.parse("exact_match"), method="gepa", budget=Budget(metric_calls=calls),
        task_backend=task, reflection_backend=refl, cache=store, settings=settings, random_seed=0))


def row_ids(ds, split: str) -> set[str]:
    return {ex.id for ex in ds if ds.split_of(ex) == split}


# -- Pareto frontier and selection ------------------------------------------------------------
def test_frontier_prunes_dominated_and_samples_by_rows_won():
    a = {"r1": 1.0, "r2": 1.0, "r3": 0.0}
    b = {"r1": 0.0, "r2": 0.0, "r3": 1.0}
    c = {"r1": 1.0, "r2": 0.0, "r3": 0.0}  # on r1's frontier only, where A also is: dominated
    fronts = pareto_fronts([a, b, c])
    assert fronts == {"r1": {0, 2}, "r2": {0}, "r3": {1}}
    agg = [2 / 3, 1 / 3, 1 / 3]
    assert remove_dominated(fronts, agg) == {"r1": {0}, "r2": {0}, "r3": {1}}
    assert front_counts(remove_dominated(fronts, agg)) == {0: 2, 1: 1}
    rng = random.Random(7)
    draws = Counter(select_pareto(fronts, agg, rng) for _ in range(6000))
    assert draws[2] == 0
    assert draws[0] / 6000 == pytest.approx(2 / 3, abs=0.03)
    assert draws[1] / 6000 == pytest.approx(1 / 3, abs=0.03)


def test_frontier_ties_and_identical_candidates():
    # rows every candidate fails keep everyone on their frontier; of two identical candidates the
    # older (lower aggregate tie broken by index) is pruned, so exactly one survives
    same = {"r1": 1.0, "r2": 0.0}
    fronts = pareto_fronts([same, dict(same), {"r1": 0.0, "r2": 0.0}])
    assert fronts == {"r1": {0, 1}, "r2": {0, 1, 2}}
    assert front_counts(remove_dominated(fronts, [0.5, 0.5, 0.0])) == {1: 2}


def test_epoch_sampler_covers_each_row_once_per_epoch():
    ids = [f"t{i}" for i in range(7)]
    s = EpochSampler(ids, 3, random.Random(0))
    epoch = [s.next() for _ in range(3)]
    flat = [r for b in epoch for r in b]
    assert set(flat) == set(ids) and len(flat) == 9  # 7 rows + 2 least-seen pads
    assert all(len(set(b)) == 3 for b in epoch)       # never a row twice in one minibatch
    assert s.epoch == 1 and (s.next() and s.epoch == 2)


# -- acceptance, reflection prompt, budget ------------------------------------------------------
def test_equal_child_is_not_promoted_to_dev(store, seed):
    task = FakeBackend(task_script())
    out = run(store, seed, task, reflector("```\nAnswer the question briefly and precisely.\n```"), max_iterations=1)
    ds = make_dataset()
    _, p1 = out.history.proposals
    assert p1.status == "rejected" and p1.reason == "no improvement on minibatch"
    assert p1.dev_mean is None and p1.parents == ["p0"] and p1.operator == "reflect"
    assert p1.minibatch["child_sum"] == p1.minibatch["parent_sum"] == 0.0
    assert set(p1.minibatch["rows"]) <= row_ids(ds, "train") and len(p1.minibatch["rows"]) == 3
    child_calls = [r for r in task.calls if r.messages[0].content == p1.prompt.system]
    assert len(child_calls) == 3 and {r.messages[-1].content for r in child_calls} <= {
        ex.input for ex in ds if ds.split_of(ex) == "train"}
    assert out.spent["metric_calls"] == len(row_ids(ds, "dev")) + 3 + 3  # no dev call for the child


def test_reflection_prompt_shows_instruction_and_feedback(store, seed):
    refl = reflector("```\nAnswer the question briefly and precisely.\n```")
    out = run(store, seed, FakeBackend(task_script()), refl, max_iterations=1)
    [req] = refl.calls
    text = req.messages[-1].content
    assert "```\nAnswer the question.\n```" in text
    by_id = {ex.id: ex for ex in make_dataset()}
    for rid in out.history.proposals[1].minibatch["rows"]:
        assert f"Answer with exactly '{by_id[rid].input} ok'" in text  # the evaluator's feedback
        assert by_id[rid].input in text
    assert text.count("## Feedback") == 3 and text.rstrip().endswith("within ``` blocks.")
    assert len(text) < 6000


def test_cached_parent_minibatch_is_free(store, seed):
    # 3 train rows and minibatch 3: every iteration re-scores the seed on the same rows
    refl = reflector("```\nFirst rewrite of the answering instruction.\n```",
                     "```\nSecond rewrite of the answering instruction.\n```")
    out = run(store, seed, FakeBackend(task_script()), refl, n=6, max_iterations=2)
    dev = len(row_ids(make_dataset(6), "dev"))
    assert [p.status for p in out.history.proposals] == ["seed", "rejected", "rejected"]
    # iteration 1: parent 3 + child 3; iteration 2: parent 0 (cached) + child 3
    assert out.spent["metric_calls"] == dev + 3 + 3 + 3
    assert out.spent["cached_rows"] == 3


def test_budget_stop_after_minibatch_records_the_child(store, seed):
    dev = len(row_ids(make_dataset(6), "dev"))
    out = run(store, seed, FakeBackend(task_script()), reflector(GOOD), n=6, calls=dev + 3 + 3 + 1)
    last = out.history.proposals[-1]
    assert last.status == "rejected" and last.reason.startswith("passed the minibatch; budget exhausted")
    assert out.spent["metric_calls"] <= dev + 7 and "metric-call budget" in out.stopped
    assert out.best.id == "p0"


def test_truncated_reflection_is_logged_never_adopted(store, seed):
    cut = ModelOutput(text=f"```\nAlways {MAGIC} the", finish_reason="length",
                      usage=Usage(prompt_tokens=10, completion_tokens=512))
    task = FakeBackend(task_script())
    out = run(store, seed, task, reflector(cut), max_iterations=3)
    assert [p.id for p in out.history.proposals] == ["p0"] and out.best.id == "p0"
    assert len(out.history.rejections) == 3
    assert all("truncated" in r.reason and r.operator == "reflect" for r in out.history.rejections)
    assert all(MAGIC not in (r.messages[0].content or "") for r in task.calls)


def test_end_to_end_improvement_within_budget(store, seed):
    out = run(store, seed, FakeBackend(task_script()), reflector(GOOD), calls=120, max_iterations=500)
    assert out.seed.dev_mean == 0.0 and out.best.dev_mean == 1.0 and out.improved
    assert out.best.operator == "reflect" and out.best.parents == ["p0"] and MAGIC in out.best.prompt.system
    assert out.spent["metric_calls"] <= 120
    meta = out.history.meta["gepa"]
    # the perfect child is then skipped on every minibatch until the idle guard ends the run
    assert meta["skipped_perfect"] >= 20 and meta["front_counts"] == {out.best.id: 9}


def test_skip_perfect_score_spares_the_reflector(store):
    perfect = CandidateSpec(name="seed", backend="local", model="fake",
                            prompt=PromptTemplate(system=f"Answer and {MAGIC}."))
    refl = reflector(GOOD)
    out = run(store, perfect, FakeBackend(task_script()), refl, max_iterations=500)
    assert refl.calls == [] and len(out.history.proposals) == 1
    assert out.spent["metric_calls"] == 9 + 15  # dev once, each train row once
    # 5 paying iterations (one epoch of 15 train rows), then max_idle_iterations free ones: stop
    assert out.history.meta["gepa"]["iterations"] == 5 + 20 and out.history.meta["gepa"]["skipped_perfect"] == 25
    refl2 = reflector("```\nAnswer the question briefly and precisely.\n```")
    run(store, perfect, FakeBackend(task_script()), refl2, skip_perfect_score=False, max_iterations=2)
    assert len(refl2.calls) == 2


def test_same_seed_same_history(tmp_path: Path, seed):
    def solve(system: str, user: str) -> bool:  # partial, instruction-dependent successes
        return (len(system) + int(user.rsplit("alpha", 1)[1])) % 3 == 0

    def once(db: str):
        n = {"i": 0}

        def script(req: GenerationRequest) -> str:
            n["i"] += 1
            return f"```\nVariant {n['i']}: answer the question{' carefully' * (n['i'] % 4)}.\n```"
        with Store(tmp_path / db) as s:
            out = run(s, seed, FakeBackend(task_script(solve)), FakeBackend(script), calls=150)
        return ([p.model_dump(exclude={"wall_s"}) for p in out.history.proposals],
                [r.model_dump() for r in out.history.rejections], out.history.meta["gepa"])

    first, second = once("a.db"), once("b.db")
    assert first == second
    assert sum(p["status"] == "accepted" for p in first[0]) >= 2  # the pool really branched


# -- merge -------------------------------------------------------------------------------------
def test_merge_combines_the_components_each_side_changed(store, seed):
    demo = FewShot(input="word99 alpha1", output="word99 alpha1 ok")

    def solve(req: GenerationRequest) -> ModelOutput:
        system = req.messages[0].content or ""
        user = req.messages[-1].content or ""
        odd = int(user.split()[0][4:]) % 2
        good = (MAGIC in system) if not odd else any(m.role == "assistant" for m in req.messages)
        return ModelOutput(text=f"{user} ok" if good else user, finish_reason="stop")

    ds = make_dataset()
    task = FakeBackend(solve)
    h = harness_for(ds, seed, task, store, calls=200)
    refl = Reflector(FakeBackend(lambda r: GOOD), store, h.meter)
    ctx = TuneContext(harness=h, reflector=refl, meter=h.meter, history=History(), rng=random.Random(0),
                      seed_prompt=seed.prompt, train=h.rows("train"), dev=h.rows("dev"))
    p_demo = seed.prompt.model_copy(update={"few_shot": [demo]})
    p_magic = with_instruction(seed.prompt, f"Answer the question and {MAGIC}.")

    async def warm_start() -> GEPARun:
        ctx.record(seed.prompt, parents=[], operator="seed", status="seed", dev=await ctx.score_dev(seed.prompt))
        await ctx.admit(p_demo, parents=["p0"], operator="edit")
        await ctx.admit(p_magic, parents=["p0"], operator="reflect")
        r = GEPARun(GEPASettings(use_merge=True), ctx)
        r.merges_due, r.found_new = 1, True  # as after an accepted reflective child
        await r.step()
        return r

    r = asyncio.run(warm_start())
    merged = ctx.history.proposals[-1]
    assert merged.operator == "merge" and merged.status == "accepted" and merged.parents == ["p1", "p2"]
    assert merged.extra["ancestor"] == "p0" and merged.extra["sources"] == ["p2", "p1"]
    assert merged.prompt.system == p_magic.system and merged.prompt.few_shot == [demo]
    assert merged.dev_mean == 1.0 and len(merged.minibatch["rows"]) == 5
    assert r.merges_due == 0 and r.merges_tested == 1 and [c.pid for c in r.pool] == ["p0", "p1", "p2", "p3"]


def test_merge_needs_a_one_sided_change():
    base = PromptTemplate(system="Answer the question.")
    kids = [with_instruction(base, "Answer the question in one line."),
            with_instruction(base, "Answer the question politely.")]
    plan = find_merge([base, *kids], [(), (0,), (0,)], [0.0, 0.5, 0.5], [1, 2], random.Random(0), set(), set())
    assert plan is None  # GEPA's own children only ever change the instruction: nothing to combine


def test_settings_are_validated():
    with pytest.raises(UserError, match=r"settings\.minibatch_size"):
        load_optimizer("gepa", {"minibatch_size": 0})
    with pytest.raises(UserError, match=r"settings\.mutation_rate"):
        load_optimizer("gepa", {"mutation_rate": 0.5})
    assert load_optimizer("gepa", {"use_merge": True}).settings.max_merge_invocations == 5

