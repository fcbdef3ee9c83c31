"""PromptWizard stage 2: in-context examples, reasoning, expert identity — from train rows only.

The refined instruction is scored on a pool of train rows; rows it fails (negative examples) and
passes become demonstrations (:mod:`tunegate.tuning.promptwizard_examples`). The example set is
then critiqued and refined — by synthesising new examples from the critique (the paper's
``generate_best_examples``) or, with synthesis off, by letting the reflector re-choose among the
pool — and the instruction is critiqued again with the examples in place. Every change is scored
against the current prompt on *held-out* train rows (never a row shown as a demonstration), so a
demonstration cannot answer its own test question. Dev rows are never read here.
"""

from __future__ import annotations

from collections.abc import Sequence

from tunegate.core.example import Example
from tunegate.core.prompt import PromptTemplate
from tunegate.tuning.harness import EvalBatch
from tunegate.tuning.promptwizard_examples import Demo, demos_extra, fit_demos, select_demos
from tunegate.tuning.promptwizard_prompts import (
    EXAMPLES_CRITIQUE_PROMPT,
    EXAMPLES_SELECT_PROMPT,
    EXAMPLES_SYNTH_PROMPT,
    EXPERT_PROMPT,
    INTENT_PROMPT,
    REASONING_PROMPT,
    Shown,
    clip,
    current,
    demo_of,
    examples_block,
    parse_examples,
    parse_indices,
)
from tunegate.tuning.promptwizard_run import Cand, WizardRun
from tunegate.tuning.reflection import check_instruction, tagged_block

__all__ = ["stage2"]

#: Most pool rows offered to the reflector when it re-chooses demonstrations.
_MAX_CHOICES = 8


async def stage2(run: WizardRun, cur: Cand) -> Cand:
    """Demonstrations, their refinement, and the system-text additions; returns the final candidate."""
    pool, holdout = _pool_and_holdout(run, cur)
    ranked: list[Demo] = []
    if run.s.few_shot_count > 0 and run.can_pay(len(pool)):
        ranked, cur = await _select(run, cur, pool, holdout)
    if cur.demos:
        for it in range(1, run.s.refine_task_eg_iterations + 1):
            cur = await _refine_examples(run, cur, ranked, it)
            if run.s.refine_instruction and cur.batch is not None:
                rows = [run.by_id[t.row_id] for t in cur.batch.traces]
                cur = await run.critique_refine(cur, rows, stage=2, rnd=it)
        if run.s.generate_reasoning:
            cur = await _reasoning(run, cur)
    return await _persona(run, cur, holdout)


def _pool_and_holdout(run: WizardRun, cur: Cand) -> tuple[list[Example], list[Example]]:
    """Pool: rows the instruction was already scored on (free), topped up; holdout: other train rows."""
    ctx, s = run.ctx, run.s
    known = _holdout_of(cur, run)[:s.example_pool_size]
    ids = {ex.id for ex in known}
    rest = [ex for ex in ctx.train if ex.id not in ids]
    pool = known + ctx.rng.sample(rest, min(len(rest), s.example_pool_size - len(known)))
    ids = {ex.id for ex in pool}
    outside = [ex for ex in ctx.train if ex.id not in ids]
    holdout = ctx.rng.sample(outside or ctx.train, min(s.minibatch_size, len(outside or ctx.train)))
    return pool, holdout


def _base(run: WizardRun, c: Cand) -> PromptTemplate:
    """``c``'s prompt without demonstrations (what demonstrations are fitted onto)."""
    return run.prompt(c).model_copy(update={"few_shot": []})


async def _compare(run: WizardRun, cur: Cand, new: Cand, holdout: Sequence[Example],
                   ) -> tuple[EvalBatch, EvalBatch, list[Example]] | None:
    """Both candidates scored on the held-out rows neither shows as a demonstration."""
    drop = {d.row_id for d in (*cur.demos, *new.demos) if d.row_id}
    rows = [ex for ex in holdout if ex.id not in drop]
    if not rows:
        run.ctx.log.append("promptwizard: no held-out train row left to compare demonstrations on")
        return None
    if not run.can_pay(2 * len(rows)):  # conservative: the parent is usually cached
        return None
    return await run.ctx.score(run.prompt(cur), rows), await run.ctx.score(run.prompt(new), rows), rows


async def _select(run: WizardRun, cur: Cand, pool: list[Example], holdout: list[Example]) -> tuple[list[Demo], Cand]:
    """Negative/positive train rows → demonstrations (PromptWizard's example selection)."""
    ctx, s = run.ctx, run.s
    batch = await ctx.score(_base(run, cur), pool)
    neg: list[Demo] = []
    pos: list[Demo] = []
    for t in batch.traces:
        if t.value is None:
            continue
        good = t.value >= 1.0
        out = t.outputs[0].text if (good and t.outputs and t.outputs[0] is not None) else None
        shot = demo_of(ctx.seed_prompt, run.by_id[t.row_id], out)
        if shot is not None:
            (pos if good else neg).append(Demo(shot, t.row_id, "positive" if good else "negative"))
    ranked = select_demos(neg, pos, s.few_shot_count, ctx.rng)
    demos = fit_demos(_base(run, cur), ranked, s.few_shot_count, ctx.harness.objective.max_prompt_tokens)
    if not demos:
        ctx.log.append("promptwizard: no train row makes a usable demonstration within the prompt budget")
        return ranked, cur
    # like every later stage-2 step, the demonstrations must not lose to the bare instruction on
    # held-out train rows (the paper adopts them unconditionally)
    new = Cand(cur.instruction, cur.pid, demos, cur.identity, cur.keywords)
    kept = await _adopt(run, cur, new, "fewshot_select", strict=False, holdout=holdout,
                        extra={"pool": [ex.id for ex in pool], "pool_scores": batch.scores})
    return ranked, kept


async def _adopt(run: WizardRun, cur: Cand, new: Cand, op: str, *, strict: bool, holdout: Sequence[Example],
                 extra: dict[str, object]) -> Cand:
    """Score ``new`` against ``cur`` on held-out rows, record it, return whichever is kept."""
    cmp = await _compare(run, cur, new, holdout)
    if cmp is None:
        return cur
    pb, cb, rows = cmp
    cur.batch = pb
    won = cb.mean > pb.mean if strict else cb.mean >= pb.mean
    p = run.ctx.record(run.prompt(new), parents=[cur.pid], operator=op, status="accepted" if won else "rejected",
                       reason="" if won else f"held-out minibatch {cb.mean:.3f} vs parent {pb.mean:.3f}",
                       minibatch=run.minibatch(cur, cb, rows),
                       extra={"stage": 2, **extra, "demos": demos_extra(new.demos)})
    if not won:
        return cur
    new.pid, new.batch = p.id, cb
    return new


def _holdout_of(cur: Cand, run: WizardRun) -> list[Example]:
    """The rows ``cur`` was last scored on (the held-out rows of its latest comparison)."""
    return [run.by_id[t.row_id] for t in cur.batch.traces] if cur.batch is not None else []


async def _refine_examples(run: WizardRun, cur: Cand, ranked: list[Demo], it: int) -> Cand:
    """Critique the example set, then synthesise a new one from the critique (or re-choose)."""
    ctx, s = run.ctx, run.s
    k, budget = s.few_shot_count, ctx.harness.objective.max_prompt_tokens
    now = examples_block([Shown(d.shot.input, d.shot.output) for d in cur.demos])
    critique = await run.ask("fewshot_critique", cur.pid, EXAMPLES_CRITIQUE_PROMPT.format(
        instruction=current(cur.instruction), task=run.task, examples=now), tagged_block("critique"))
    if critique is None:
        return cur
    holdout = _holdout_of(cur, run)
    if s.generate_synthetic_examples:
        op = "fewshot_synthesize"
        others = [d for d in ranked if d not in cur.demos] or [d for d in ranked if d.row_id] or cur.demos
        gt = ctx.rng.choice(others)
        sources = tuple(dict.fromkeys(d.row_id for d in (*cur.demos, gt) if d.row_id))
        text = EXAMPLES_SYNTH_PROMPT.format(instruction=current(cur.instruction), task=run.task, examples=now,
                                            critique=clip(critique, 1200), gt_input=clip(gt.shot.input),
                                            gt_output=clip(gt.shot.output, 300), n=k)
        shots = await run.ask(op, cur.pid, text, parse_examples)
        if shots is None:
            return cur
        fresh = [Demo(shot, None, "synthetic", sources=sources) for shot in shots[:k]]
    else:
        op = "fewshot_refine"
        choices = ranked[:_MAX_CHOICES]
        text = EXAMPLES_SELECT_PROMPT.format(
            instruction=current(cur.instruction), task=run.task, critique=clip(critique, 1200), n=k,
            examples=examples_block([Shown(d.shot.input, d.shot.output) for d in choices], numbered=True))
        picked = await run.ask(op, cur.pid, text, parse_indices(len(choices), k))
        if picked is None:
            return cur
        fresh = [choices[int(i) - 1] for i in picked]
    demos = fit_demos(_base(run, cur), fresh, k, budget)
    if not demos or [d.shot for d in demos] == [d.shot for d in cur.demos]:
        ctx.reject(op, cur.pid, "no new demonstration set (none fits the prompt budget, or unchanged)",
                   "\n\n".join(f"{d.shot.input} => {d.shot.output}" for d in fresh))
        return cur
    new = Cand(cur.instruction, cur.pid, demos)
    return await _adopt(run, cur, new, op, strict=op == "fewshot_synthesize", holdout=holdout,
                        extra={"round": it, "critique": critique})


async def _reasoning(run: WizardRun, cur: Cand) -> Cand:
    """Each demonstration's answer preceded by a generated reasoning chain (paper: generate_reasoning)."""
    op = "fewshot_reasoning"
    out: list[Demo] = []
    for d in cur.demos:
        text = REASONING_PROMPT.format(instruction=current(cur.instruction), input=clip(d.shot.input),
                                       answer=clip(d.shot.output, 300))
        why = None if d.reasoning else await run.ask(op, cur.pid, text, tagged_block("reasoning"))
        out.append(d.with_output(f"{why.strip()}\nAnswer: {d.shot.output}") if why else d)
    if out == cur.demos:
        return cur
    demos = fit_demos(_base(run, cur), out, run.s.few_shot_count, run.ctx.harness.objective.max_prompt_tokens)
    new = Cand(cur.instruction, cur.pid, demos)
    return await _adopt(run, cur, new, op, strict=False, holdout=_holdout_of(cur, run), extra={})


async def _persona(run: WizardRun, cur: Cand, holdout: list[Example]) -> Cand:
    """Expert identity and/or intent keywords in the system text (paper's final-prompt additions)."""
    s = run.s
    if not (s.generate_expert_identity or s.generate_intent_keywords):
        return cur
    task_text = clip(s.task_description or cur.instruction, 1200)
    identity = keywords = ""
    if s.generate_expert_identity:
        got = await run.ask("expert_identity", cur.pid, EXPERT_PROMPT.format(task_text=task_text),
                            tagged_block("identity"))
        identity = _vet_text(run, "expert_identity", cur.pid, got, 600)
    if s.generate_intent_keywords:
        got = await run.ask("intent_keywords", cur.pid, INTENT_PROMPT.format(task_text=task_text),
                            tagged_block("keywords"))
        keywords = " ".join(_vet_text(run, "intent_keywords", cur.pid, got, 200).split())
    if not (identity or keywords):
        return cur
    op = "expert_identity" if identity else "intent_keywords"
    new = Cand(cur.instruction, cur.pid, list(cur.demos), identity, keywords)
    budget = run.ctx.harness.objective.max_prompt_tokens
    if cur.demos:
        new.demos = fit_demos(_base(run, new), cur.demos, len(cur.demos), budget)
    bad = run.ctx.harness.objective.violations(run.prompt(new), {})
    if bad or (cur.demos and not new.demos):
        run.ctx.reject(op, cur.pid, "; ".join(bad) or "leaves no room for demonstrations", run.system_text(new))
        return cur
    rows = _holdout_of(cur, run) or holdout
    return await _adopt(run, cur, new, op, strict=False, holdout=rows,
                        extra={"expert_identity": identity, "intent_keywords": keywords})


def _vet_text(run: WizardRun, op: str, parent: str, text: str | None, max_chars: int) -> str:
    """A generated persona/keyword text, or "" after logging why it is unusable."""
    if text is None:
        return ""
    why = check_instruction(text, "", min_chars=3, max_chars=max_chars)
    if why:
        run.ctx.reject(op, parent, why, text)
        return ""
    return text.strip()
