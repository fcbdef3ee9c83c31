"""GEPA: reflective prompt evolution with Pareto-based candidate selection.

Follows Agrawal et al. 2025, "GEPA: Reflective Prompt Evolution Can Outperform Reinforcement
Learning" (arXiv 2507.19457v1, Algorithms 1–2) and the reference implementation gepa-ai/gepa
(``core/engine.py``, ``proposer/reflective_mutation``, ``strategies/candidate_selector.py``,
``strategies/batch_sampler.py``, ``gepa_utils.py``, ``proposer/merge.py``). Our train split is the
paper's D_feedback (minibatches, reflection) and our dev split its D_pareto (selection).

One iteration:

1. pick a parent from the pool: sampled ∝ the number of dev rows on whose Pareto frontier it
   sits, dominated candidates removed (``pareto``), or the best dev mean (``current_best``);
2. score the parent on the next train minibatch (epoch-shuffled), keeping input, output and the
   evaluators' feedback per row; if every row is already perfect, skip (``skip_perfect_score``);
3. show the reflector the instruction and those examples (GEPA's meta prompt) and take the new
   instruction from its last ``` block — truncated, empty, malformed or unusable replies are
   logged with ``ctx.reject`` and never adopted;
4. score the child on the same minibatch; only if its sum is **strictly** greater than the
   parent's is it scored on all dev rows and added to the pool, otherwise it is recorded as a
   rejected proposal with both minibatch score tables;
5. with ``use_merge``, after an accepted child the next iteration first tries a system-aware merge
   (see :mod:`tunegate.tuning.gepa_merge` for why it rarely fires on single-instruction prompts).

Deviations, all deliberate: budgets are metric calls on *uncached* rows, so re-scoring a parent
on a minibatch it has seen is free (the reference counts every rollout); the run also stops after
``max_idle_iterations`` iterations in a row that caused no metric call (with a scripted or
converged reflector and a fully cached pool the reference loop would spin forever); a child that
duplicates a pool member or breaks the prompt-size constraint is rejected before any call is spent;
a child that passed the minibatch but could not be paid a dev evaluation is recorded (rejected,
with the reason) before the budget stop propagates; the prompt text of the meta prompt asks for
the *complete* instruction so that small local reflectors do not reply with a diff.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from tunegate.core.example import Example
from tunegate.core.prompt import PromptTemplate
from tunegate.tuning.base import TuneContext, with_instruction
from tunegate.tuning.budget import BudgetExhausted
from tunegate.tuning.gepa_merge import find_merge, merge_subsample
from tunegate.tuning.gepa_pareto import (
    EpochSampler,
    PoolEntry,
    front_counts,
    pareto_fronts,
    remove_dominated,
    select_best,
    select_pareto,
)
from tunegate.tuning.harness import EvalBatch
from tunegate.tuning.history import Proposal
from tunegate.tuning.reflection import check_instruction, fenced_block

__all__ = ["GEPA", "REFLECTION_PROMPT", "GEPARun", "GEPASettings", "reflection_prompt"]

#: GEPA's instruction-proposal meta prompt (reference ``InstructionProposalSignature``), with the
#: last line asking for the complete instruction. ``<curr_instructions>`` and
#: ``<inputs_outputs_feedback>`` are replaced verbatim (no format braces: instructions contain JSON).
REFLECTION_PROMPT = """I provided an assistant with the following instructions to perform a task for me:
```
<curr_instructions>
```

The following are examples of different task inputs provided to the assistant along with the assistant's response for each of them, and some feedback on how the assistant's response could be better:
```
<inputs_outputs_feedback>
```

Your task is to write a new instruction for the assistant.

Read the inputs carefully and identify the input format and infer a detailed description of the task I wish to solve with the assistant.

Read all the assistant responses and the corresponding feedback. Identify all niche and domain-specific factual information about the task and include it in the instruction, as a lot of it may not be available to the assistant in the future. If the assistant used a generalizable strategy to solve the task, include that in the instruction as well.

Write the complete new instruction, not a list of changes, and provide it within ``` blocks."""

_EMPTY_INSTRUCTION = "(no instruction yet)"


class GEPASettings(BaseModel):
    """Settings of :class:`GEPA` (defaults follow dspy.GEPA / gepa.optimize unless noted)."""

    model_config = ConfigDict(extra="forbid")

    minibatch_size: int = Field(default=3, ge=1, description=(
        "Train rows per reflection minibatch (the paper's b; dspy's reflection_minibatch_size)."))
    max_iterations: int | None = Field(default=None, ge=1, description=(
        "Stop after this many iterations (skipped and rejected ones count); None = until the budget."))
    candidate_selection: Literal["pareto", "current_best"] = Field(default="pareto", description=(
        "Parent choice: 'pareto' samples ∝ dev rows won among non-dominated candidates; "
        "'current_best' always takes the best dev mean (the paper's greedy ablation)."))
    skip_perfect_score: bool = Field(default=True, description=(
        "Skip an iteration when the parent already scores perfect_score on every minibatch row."))
    perfect_score: float = Field(default=1.0, ge=0.0, le=1.0, description="Row objective counted as perfect.")
    use_merge: bool = Field(default=False, description=(
        "Try a system-aware merge after each accepted child (few-shot × instruction; see docs)."))
    max_merge_invocations: int = Field(default=5, ge=0, description="Most merges accepted in one run.")
    merge_subsample_size: int = Field(default=5, ge=1, description=(
        "Dev rows a merged prompt is screened on before its full dev evaluation."))
    max_idle_iterations: int = Field(default=20, ge=1, description=(
        "Stop after this many consecutive iterations that cause no metric call (nothing left to learn; "
        "tunegate addition, the reference would loop)."))
    example_chars: int = Field(default=1200, ge=200, le=8000, description=(
        "Characters of one example (input + output + feedback) shown to the reflector; longer "
        "fields are cut in the middle so the meta prompt stays small for local models."))


def _clip(text: str, n: int) -> str:
    text = text.strip().replace("```", "'''")
    if len(text) <= n:
        return text
    head = max(0, (n - 5) * 2 // 3)
    tail = max(0, n - 5 - head)
    return text[:head] + " […] " + (text[-tail:] if tail else "")


def _share(texts: list[str], limit: int) -> list[str]:
    """Clip ``texts`` to ``limit`` characters in total, short ones kept whole (water-filling)."""
    out = list(texts)
    left = limit
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for n, i in enumerate(order):
        out[i] = _clip(texts[i], left // (len(texts) - n))
        left -= len(out[i])
    return out


def _example(n: int, ex: Example, trace: Any, limit: int) -> str:
    user = next((m.content or "" for m in reversed(trace.messages) if m.role == "user"), ex.prompt_text())
    score = "no objective applies" if trace.value is None else f"{trace.value:.2f}"
    feedback = trace.feedback or "(the evaluators gave no feedback)"
    wrong = trace.value is None or trace.value < 1.0
    if wrong and isinstance(ex.expected, str) and ex.expected.strip() and ex.expected.strip() not in feedback:
        feedback += f"\nExpected answer: {ex.expected.strip()}"
    inp, out, fb = _share([user, trace.text, f"Score: {score}\n{feedback}"], limit)
    return f"# Example {n}\n## Inputs\n{inp}\n\n## Generated Outputs\n{out}\n\n## Feedback\n{fb}"


def reflection_prompt(instruction: str, rows: Sequence[Example], batch: EvalBatch, example_chars: int) -> str:
    """The meta prompt for one parent on one scored minibatch (GEPA's reflective dataset, rendered)."""
    examples = "\n\n".join(_example(n, ex, t, example_chars)
                           for n, (ex, t) in enumerate(zip(rows, batch.traces, strict=True), 1))
    current = instruction.strip().replace("```", "'''") or _EMPTY_INSTRUCTION
    return REFLECTION_PROMPT.replace("<curr_instructions>", current).replace("<inputs_outputs_feedback>", examples)


def _sum(scores: dict[str, float]) -> float:
    return float(sum(scores.values()))


class GEPARun:
    """The state of one GEPA run over a :class:`TuneContext`: pool, sampler, merge bookkeeping.

    ``GEPA.optimize`` drives it; tests drive :meth:`step` directly to pin one iteration.
    """

    def __init__(self, settings: GEPASettings, ctx: TuneContext) -> None:
        self.s = settings
        self.ctx = ctx
        self.pool: list[PoolEntry] = []
        index: dict[str, int] = {}
        for p in ctx.history.evaluated():  # the seed p0 (and any warm-start proposals)
            self._add(p, tuple(index[q] for q in p.parents if q in index))
            index[p.id] = len(self.pool) - 1
        if not self.pool:
            raise ValueError("GEPA needs the seed scored on dev (history has no evaluated proposal)")
        self.rows = {ex.id: ex for ex in [*ctx.train, *ctx.dev]}
        self.dev_ids = [ex.id for ex in ctx.dev]
        self.sampler = EpochSampler([ex.id for ex in ctx.train], settings.minibatch_size, ctx.rng)
        self.iterations = 0
        self.skipped = 0
        self.merges_due = 0
        self.merges_tested = 0
        self.found_new = False
        self.merge_done: set[tuple[int, int, int]] = set()
        self.merge_desc: set[tuple[int, int, tuple[int, ...]]] = set()

    # -- pool ---------------------------------------------------------------------------------
    def _add(self, p: Proposal, parents: tuple[int, ...]) -> None:
        self.pool.append(PoolEntry(p.id, p.prompt, parents, dict(p.dev_scores or {}), p.dev_mean or 0.0))

    def fronts(self) -> dict[str, set[int]]:
        return pareto_fronts([c.scores for c in self.pool], self.dev_ids)

    def select(self) -> int:
        agg = [c.mean for c in self.pool]
        if self.s.candidate_selection == "current_best":
            return select_best(agg)
        return select_pareto(self.fronts(), agg, self.ctx.rng)

    def _duplicate(self, prompt: PromptTemplate) -> str | None:
        key = prompt.model_dump(exclude={"ref"})
        return next((c.pid for c in self.pool if c.prompt.model_dump(exclude={"ref"}) == key), None)

    def _unusable(self, prompt: PromptTemplate) -> str | None:
        """Why ``prompt`` must not be scored at all (checked before any metric call)."""
        if dup := self._duplicate(prompt):
            return f"duplicate of {dup}"
        if err := self.ctx.compile_error(prompt):
            return f"does not compile: {err}"
        if size := self.ctx.harness.objective.violations(prompt, {}):
            return "; ".join(size)
        return None

    def summary(self) -> dict[str, Any]:
        agg = [c.mean for c in self.pool]
        counts = front_counts(remove_dominated(self.fronts(), agg))
        return {"iterations": self.iterations, "skipped_perfect": self.skipped,
                "merges_accepted": self.merges_tested, "pool": [c.pid for c in self.pool],
                "front_counts": {self.pool[k].pid: n for k, n in counts.items()},
                "train_epochs": self.sampler.epoch}

    # -- one iteration ------------------------------------------------------------------------
    async def step(self) -> None:
        """One GEPA iteration: a scheduled merge attempt, else one reflective mutation."""
        self.iterations += 1
        if self.s.use_merge and self.merges_due > 0 and self.found_new:
            self.found_new = False
            if await self.merge():
                return
        self.found_new = False
        await self.reflect()

    async def reflect(self) -> None:
        ctx, it = self.ctx, self.iterations
        k = self.select()
        parent = self.pool[k]
        rows = [self.rows[r] for r in self.sampler.next()]
        ids = [ex.id for ex in rows]
        before = await ctx.score(parent.prompt, rows)
        if not before.scores:
            ctx.log.append(f"gepa it{it}: no objective applies to minibatch {ids}; skipped")
            return
        if self.s.skip_perfect_score and all(v >= self.s.perfect_score for v in before.scores.values()):
            self.skipped += 1
            ctx.log.append(f"gepa it{it}: {parent.pid} perfect on minibatch {ids}; skipped")
            return
        old = ctx.instruction(parent.prompt)
        refl = await ctx.reflector.ask(reflection_prompt(old, rows, before, self.s.example_chars), fenced_block,
                                       key="gepa:reflect")
        if not refl.ok:
            ctx.reject("reflect", parent.pid, refl.rejected or "no payload", refl.raw)
            return
        assert isinstance(refl.payload, str)
        if why := check_instruction(refl.payload, old):
            ctx.reject("reflect", parent.pid, f"unusable instruction: {why}", refl.raw)
            return
        child = with_instruction(parent.prompt, refl.payload)
        if why := self._unusable(child):
            ctx.reject("reflect", parent.pid, why, refl.raw)
            return
        after = await ctx.score(child, rows)
        old_sum, new_sum = _sum(before.scores), _sum(after.scores)
        mb = {"rows": ids, "parent": parent.pid, "parent_scores": before.scores, "child_scores": after.scores,
              "parent_sum": old_sum, "child_sum": new_sum}
        if not new_sum > old_sum:  # the paper's strict acceptance
            ctx.record(child, parents=[parent.pid], operator="reflect", status="rejected",
                       reason="no improvement on minibatch", minibatch=mb)
            return
        p = await self._admit(child, [parent.pid], "reflect", mb, {})
        if p.status == "accepted":
            self._add(p, (k,))
            self.found_new = True
            if self.merges_tested < self.s.max_merge_invocations:
                self.merges_due += 1

    async def merge(self) -> bool:
        """Try one merge; False when no pair qualifies (the iteration then reflects instead)."""
        ctx, it = self.ctx, self.iterations
        agg = [c.mean for c in self.pool]
        cands = sorted(front_counts(remove_dominated(self.fronts(), agg)))
        plan = find_merge([c.prompt for c in self.pool], [c.parents for c in self.pool], agg, cands,
                          ctx.rng, self.merge_done, self.merge_desc)
        if plan is None:
            ctx.log.append(f"gepa it{it}: no merge candidates (pairs share no ancestor with a one-sided change)")
            return False
        self.merge_done.add((plan.i, plan.j, plan.ancestor))
        a, b, anc = self.pool[plan.i], self.pool[plan.j], self.pool[plan.ancestor]
        extra = {"ancestor": anc.pid, "sources": [self.pool[s].pid for s in plan.sources]}
        if why := self._unusable(plan.prompt):
            ctx.reject("merge", a.pid, f"{why} (merge of {a.pid} and {b.pid})")
            return True
        ids = merge_subsample(a.scores, b.scores, self.dev_ids, self.s.merge_subsample_size, ctx.rng)
        batch = await ctx.score(plan.prompt, [self.rows[r] for r in ids])
        sums = [float(sum(c.scores[r] for r in ids)) for c in (a, b)]
        new_sum = _sum(batch.scores)
        mb = {"rows": ids, "parents": [a.pid, b.pid], "parent_sums": sums, "child_scores": batch.scores,
              "child_sum": new_sum, "split": "dev"}
        if new_sum >= max(sums):  # the reference's merge rule (not strict)
            p = await self._admit(plan.prompt, [a.pid, b.pid], "merge", mb, extra)
            self.merges_due -= 1
            self.merges_tested += 1
            if p.status == "accepted":
                self._add(p, (plan.i, plan.j))
        else:
            ctx.record(plan.prompt, parents=[a.pid, b.pid], operator="merge", status="rejected",
                       reason="merge not better than both parents on the dev subsample", minibatch=mb, extra=extra)
        return True

    async def _admit(self, prompt: PromptTemplate, parents: list[str], op: str, mb: dict[str, Any],
                     extra: dict[str, Any]) -> Proposal:
        """Full dev evaluation; a child the budget cannot pay for is recorded before the stop."""
        try:
            return await self.ctx.admit(prompt, parents=parents, operator=op, minibatch=mb, extra=extra)
        except BudgetExhausted as e:
            self.ctx.record(prompt, parents=parents, operator=op, status="rejected", minibatch=mb, extra=extra,
                            reason=f"passed the minibatch; budget exhausted before the full dev evaluation ({e.what})")
            raise


class GEPA:
    """Reflective prompt evolution (Agrawal et al. 2025) over the tunegate optimizer protocol."""

    name: ClassVar[str] = "gepa"
    Settings: ClassVar[type[BaseModel]] = GEPASettings

    def __init__(self, settings: GEPASettings) -> None:
        self.settings = settings

    async def optimize(self, ctx: TuneContext) -> None:
        """Iterate until the budget, ``max_iterations`` or ``max_idle_iterations`` stops the run."""
        run = GEPARun(self.settings, ctx)
        idle = 0
        try:
            while self.settings.max_iterations is None or run.iterations < self.settings.max_iterations:
                if why := ctx.meter.exhausted():
                    ctx.log.append(f"gepa: stopped, {why}")
                    return
                spent = ctx.meter.metric_calls
                await run.step()
                idle = idle + 1 if ctx.meter.metric_calls == spent else 0
                if idle >= self.settings.max_idle_iterations:
                    ctx.log.append(f"gepa: stopped, {idle} iterations in a row caused no metric call")
                    return
        finally:
            ctx.history.meta["gepa"] = run.summary()
