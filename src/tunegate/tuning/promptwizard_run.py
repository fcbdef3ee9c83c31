"""PromptWizard's run state and stage 1 (thinking-style mutation, critique and refine).

Shared by both stages: the current candidate (:class:`Cand`), budget reservation for the final
dev evaluations, strict reflection with logged rejections, and minibatch bookkeeping in the
format the history plot reads (``child_scores``). See :mod:`tunegate.tuning.promptwizard` for the
algorithm and its deviations from the paper.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field

from tunegate.core.example import Example
from tunegate.core.prompt import PromptTemplate, placeholders
from tunegate.tuning.base import TuneContext, with_instruction
from tunegate.tuning.harness import EvalBatch
from tunegate.tuning.history import ProposalStatus
from tunegate.tuning.promptwizard_examples import Demo, demos_extra
from tunegate.tuning.promptwizard_prompts import (
    CRITIQUE_PROMPT,
    MUTATE_PROMPT,
    POSITIVE_CRITIQUE_PROMPT,
    REFINE_PROMPT,
    THINKING_STYLES,
    Shown,
    answer_text,
    clip,
    current,
    examples_block,
    task_block,
)
from tunegate.tuning.reflection import Parser, check_instruction, tagged_block

__all__ = ["Cand", "PromptWizardSettings", "WizardRun"]


class PromptWizardSettings(BaseModel):
    """PromptWizard's knobs; defaults fit ~100–300 metric calls with 20–40 dev rows."""

    model_config = ConfigDict(extra="forbid")

    task_description: str = Field(default="", max_length=2000, description=(
        "What the task is, in a sentence or two (the paper's task description). Shown to the reflector "
        "next to the instruction; empty = the instruction speaks for itself."))
    mutate_refine_iterations: int = Field(default=3, ge=0, le=20, description=(
        "Stage-1 rounds of mutate → select → critique → refine (paper: 3)."))
    style_variation: int = Field(default=3, ge=1, le=len(THINKING_STYLES), description=(
        "Thinking-style mutations per round, one reflection call each (paper: 5)."))
    minibatch_size: int = Field(default=5, ge=1, le=200, description=(
        "Train rows every candidate of a round is scored on (paper's questions_batch_size: 5)."))
    refine_instruction: bool = Field(default=True, description=(
        "Critique and refine the round's best instruction (paper: refine_instruction)."))
    max_critique_examples: int = Field(default=3, ge=1, le=10, description=(
        "Most examples (with output, gold answer and evaluator feedback) shown in a critique prompt."))
    few_shot_count: int = Field(default=3, ge=0, le=20, description=(
        "Demonstrations in the final prompt (fewer if objective.max_prompt_tokens is reached; 0 = "
        "instruction only; paper: 5)."))
    example_pool_size: int = Field(default=8, ge=1, le=200, description=(
        "Train rows scored with the refined instruction to find negative/positive demonstrations."))
    refine_task_eg_iterations: int = Field(default=1, ge=0, le=10, description=(
        "Stage-2 rounds refining the example set and then the instruction with the examples (paper: 3, "
        "choosing one of the two at random per round)."))
    generate_synthetic_examples: bool = Field(default=True, description=(
        "Refine the example set by synthesising new examples from the critique (kept only if they beat "
        "the real ones on held-out train rows); off = re-choose demonstrations from the train pool."))
    generate_reasoning: bool = Field(default=False, description=(
        "Prefix each demonstration's answer with a reasoning chain (paper default on; off here because "
        "evaluators score the whole reply, so reasoning changes the output format — kept only if it "
        "does not lose on held-out train rows)."))
    generate_expert_identity: bool = Field(default=True, description=(
        "Open the system text with a generated expert persona (paper: on)."))
    generate_intent_keywords: bool = Field(default=False, description=(
        "Close the system text with generated intent keywords (paper: off)."))
    max_instruction_chars: int = Field(default=2000, ge=100, le=20000, description=(
        "Longest instruction a reflection may propose (longer replies are rejected and logged)."))


@dataclass
class Cand:
    """The current prompt state: instruction, demonstrations, system additions, its proposal id."""

    instruction: str
    pid: str
    demos: list[Demo] = field(default_factory=list)
    identity: str = ""
    keywords: str = ""
    batch: EvalBatch | None = None       #: its scores on the rows it was last compared on


def _key(mean: float, text: str) -> tuple[float, int]:
    """Selection key of the reference ``select_top_prompts``: score, then the shorter prompt."""
    return (round(mean, 9), -len(text))


class WizardRun:
    """One optimisation run: the context, the settings, and the helpers both stages share."""

    def __init__(self, ctx: TuneContext, settings: PromptWizardSettings) -> None:
        self.ctx, self.s = ctx, settings
        seed = next((p for p in ctx.history.proposals if p.status == "seed"), None)
        self.seed_id = seed.id if seed else "p0"
        self.seed_instruction = ctx.instruction(ctx.seed_prompt)
        self.keep = tuple(placeholders(self.seed_instruction))
        self.by_id: dict[str, Example] = {ex.id: ex for ex in ctx.train}
        self.reserve = 0                    #: metric calls kept for the final dev evaluations
        self.task = task_block(settings.task_description)
        order = list(THINKING_STYLES)
        ctx.rng.shuffle(order)
        self._styles, self._next_style = order, 0

    # -- prompts, budget, reflection ------------------------------------------------------------
    def system_text(self, c: Cand) -> str:
        parts = [c.identity, c.instruction, f"Keywords: {c.keywords}" if c.keywords else ""]
        return "\n\n".join(p for p in parts if p)

    def prompt(self, c: Cand) -> PromptTemplate:
        p = with_instruction(self.ctx.seed_prompt, self.system_text(c))
        if not c.demos:  # no demonstrations chosen (yet): the seed's own few-shot, if any, stays
            return p
        return p.model_copy(update={"few_shot": [d.shot for d in c.demos]})

    def can_pay(self, n_rows: int) -> bool:
        """Whether scoring ``n_rows`` rows (all assumed uncached) leaves the reserve for the final evaluations."""
        ok = self.ctx.meter.remaining_calls - n_rows >= self.reserve
        if not ok:
            self.ctx.log.append(f"promptwizard: budget kept for final dev evaluations "
                                f"({self.ctx.meter.remaining_calls} left, reserve {self.reserve})")
        return ok

    async def ask(self, operator: str, parent: str, text: str, parser: Callable[[str], Any]) -> Any:
        """The parsed reply, or None after logging why it was not usable (key = operator, so repeated
        asks of one operator draw new samples)."""
        r = await self.ctx.reflector.ask(text, cast(Parser, parser), key=operator)
        if not r.ok:
            self.ctx.reject(operator, parent, r.rejected or "no payload", r.raw)
            return None
        return r.payload

    def vet(self, operator: str, parent: Cand, text: str, seen: set[str] | None = None) -> str | None:
        """A proposed instruction, or None after logging why it cannot be used (no call spent)."""
        why = check_instruction(text, parent.instruction, required=self.keep,
                                max_chars=self.s.max_instruction_chars)
        norm = " ".join(text.split())
        if why is None and seen is not None and norm in seen:
            why = "duplicate of another proposal this round"
        if why is None:
            trial = self.prompt(Cand(text.strip(), parent.pid, parent.demos, parent.identity, parent.keywords))
            why = self.ctx.compile_error(trial) or "; ".join(self.ctx.harness.objective.violations(trial, {}))
        if why:
            self.ctx.reject(operator, parent.pid, why, text)
            return None
        if seen is not None:
            seen.add(norm)
        return text.strip()

    def shown(self, batch: EvalBatch, failed: bool) -> list[tuple[str, Shown]]:
        """(row id, example) for rows of ``batch`` the prompt got wrong (worst first) or right."""
        traces = [t for t in batch.traces if t.value is not None and (t.value < 1.0) == failed]
        traces.sort(key=lambda t: t.value or 0.0)
        out = []
        for t in traces[:self.s.max_critique_examples]:
            ex = self.by_id[t.row_id]
            user = next((m.content for m in reversed(t.messages) if m.role == "user" and m.content), "")
            out.append((t.row_id, Shown(input=user or ex.prompt_text(), expected=answer_text(ex.expected),
                                        output=t.text, feedback=(t.feedback or t.reason or None) if failed else None)))
        return out

    def minibatch(self, parent: Cand, child: EvalBatch, rows: Sequence[Example]) -> dict[str, Any]:
        pb = parent.batch
        return {"rows": [r.id for r in rows], "parent": parent.pid,
                "parent_scores": pb.scores if pb else {}, "child_scores": child.scores,
                "parent_mean": pb.mean if pb else None, "child_mean": child.mean}

    # -- stage 1 ---------------------------------------------------------------------------------
    def next_styles(self) -> list[tuple[str, str]]:
        out = []
        for _ in range(self.s.style_variation):
            out.append(self._styles[self._next_style % len(self._styles)])
            self._next_style += 1
        return out

    async def stage1(self, cur: Cand) -> Cand:
        for rnd in range(1, self.s.mutate_refine_iterations + 1):
            rows = self.ctx.sample_train(self.s.minibatch_size)
            if not self.can_pay(len(rows)):
                break
            cur.batch = await self.ctx.score(self.prompt(cur), rows)
            scored: list[tuple[str, str, EvalBatch]] = []       # (operator, instruction, batch)
            seen = {" ".join(cur.instruction.split())}
            for name, style in self.next_styles():
                op = f"style:{name}"
                text = MUTATE_PROMPT.format(task=self.task, instruction=current(cur.instruction), style=style,
                                            keep=self._keep_note())
                out = await self.ask(op, cur.pid, text, tagged_block("instruction"))
                instr = self.vet(op, cur, out, seen) if out is not None else None
                if instr is None:
                    continue
                if not self.can_pay(len(rows)):
                    break
                b = await self.ctx.score(self.prompt(Cand(instr, cur.pid)), rows)
                scored.append((op, instr, b))
            # best of {current, mutations}; max keeps the first of equals, so ties stay with the parent
            keys = [_key(cur.batch.mean, cur.instruction)] + [_key(b.mean, t) for _, t, b in scored]
            win = keys.index(max(keys)) - 1
            best = cur
            for i, (op, instr, b) in enumerate(scored):
                status: ProposalStatus = "accepted" if i == win else "rejected"
                reason = "" if i == win else (f"minibatch {b.mean:.3f} did not beat the round's best")
                p = self.ctx.record(self.prompt(Cand(instr, cur.pid)), parents=[cur.pid], operator=op,
                                    status=status, reason=reason, minibatch=self.minibatch(cur, b, rows),
                                    extra={"stage": 1, "round": rnd, "style": op.split(":", 1)[1]})
                if i == win:
                    best = Cand(instr, p.id, batch=b)
            self.ctx.log.append(f"promptwizard: round {rnd} best {best.pid} minibatch {best.batch.mean:.3f}"
                                if best.batch else f"promptwizard: round {rnd} kept {cur.pid}")
            cur = best
            if self.s.refine_instruction:
                cur = await self.critique_refine(cur, rows, stage=1, rnd=rnd)
        return cur

    def _keep_note(self) -> str:
        if not self.keep:
            return ""
        return ", and keep the placeholders " + ", ".join("{{" + k + "}}" for k in self.keep) + " unchanged"

    async def critique_refine(self, cur: Cand, rows: Sequence[Example], *, stage: int, rnd: int) -> Cand:
        """Critique ``cur`` with the rows of ``cur.batch`` it got wrong; keep the refinement if it wins."""
        assert cur.batch is not None
        failed = self.shown(cur.batch, failed=True)
        items = failed or self.shown(cur.batch, failed=False)
        if not items:
            return cur
        tmpl = CRITIQUE_PROMPT if failed else POSITIVE_CRITIQUE_PROMPT
        examples = examples_block([sh for _, sh in items])
        critique = await self.ask("critique", cur.pid, tmpl.format(task=self.task, instruction=current(cur.instruction),
                                                                    examples=examples), tagged_block("critique"))
        if critique is None:
            return cur
        op = "critique_refine"
        text = REFINE_PROMPT.format(task=self.task, instruction=current(cur.instruction), examples=examples,
                                    critique=clip(critique, 1200), keep=self._keep_note())
        out = await self.ask(op, cur.pid, text, tagged_block("instruction"))
        instr = self.vet(op, cur, out) if out is not None else None
        if instr is None or not self.can_pay(len(rows)):
            return cur
        new = Cand(instr, cur.pid, cur.demos, cur.identity, cur.keywords)
        b = await self.ctx.score(self.prompt(new), rows)
        won = _key(b.mean, instr) > _key(cur.batch.mean, cur.instruction)
        p = self.ctx.record(self.prompt(new), parents=[cur.pid], operator=op,
                            status="accepted" if won else "rejected",
                            reason="" if won else f"minibatch {b.mean:.3f} vs parent {cur.batch.mean:.3f}",
                            minibatch=self.minibatch(cur, b, rows),
                            extra={"stage": stage, "round": rnd, "critique": critique,
                                   "critique_kind": "negative" if failed else "positive",
                                   "critique_rows": [rid for rid, _ in items]})
        if not won:
            return cur
        new.pid, new.batch = p.id, b
        return new

    # -- final dev evaluations -------------------------------------------------------------------
    async def admit(self, c: Cand, operator: str, admitted: list[PromptTemplate], extra: dict[str, Any]) -> None:
        """Score ``c`` on full dev (unless an identical prompt already was, or the budget cannot pay
        for it and still keep the reserve — the stage-1 instruction gives way to the final prompt)."""
        prompt = self.prompt(c)
        if any(prompt.model_dump(exclude={"ref"}) == p.model_dump(exclude={"ref"}) for p in admitted):
            return
        left, dev = self.ctx.meter.remaining_calls, len(self.ctx.dev)
        if left - dev < self.reserve:
            self.ctx.log.append(f"promptwizard: {operator} not scored alone on dev ({left} calls left, the final "
                                f"prompt's {self.reserve} kept)" if self.reserve else
                                f"promptwizard: no budget left to evaluate {operator} on dev")
            return
        admitted.append(prompt)
        await self.ctx.admit(prompt, parents=[c.pid], operator=operator,
                             extra={**extra, "demos": demos_extra(c.demos)})
