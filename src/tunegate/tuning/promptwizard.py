"""PromptWizard: mutate with thinking styles, critique and refine, then optimise the examples.

Follows Agarwal et al. 2024, "PromptWizard: Task-Aware Prompt Optimization Framework"
(arXiv 2405.18369v2) and its reference code (microsoft/PromptWizard,
``promptopt/techniques/critique_n_refine``):

* **Stage 1 — instruction.** For ``mutate_refine_iterations`` rounds: mutate the current
  instruction with ``style_variation`` thinking styles, score the mutations *and the current
  instruction* on a train minibatch, keep the best (ties to the shorter text, as the reference
  ``select_top_prompts``), then critique it with the minibatch rows it got wrong (evaluator
  feedback included; a "positive" critique when it got none wrong) and refine it from the
  critique; the refinement is kept if it beats the best on the same rows.
* **Stage 2 — in-context examples** (:mod:`tunegate.tuning.promptwizard_stage2`): negative and
  positive train rows become demonstrations; the set is critiqued and refined (synthesised from
  the critique, or re-chosen from the pool), the instruction is critiqued again with the
  examples, reasoning chains are optionally added, and an expert identity / intent keywords join
  the system text.
* The final prompt is scored on full dev (``ctx.admit``), and the refined instruction alone too
  when the budget still pays for the final pass after it; ``history.best()`` compares them with
  the seed on the same rows.

Deviations, and why: one reflection call per thinking style (the paper asks for all variations in
one reply, which small local models cannot format reliably; one call per style also gives each
mutation an exact lineage), styles drawn round-robin from a seeded shuffle (the reference always
uses the first ``N``); the score is the minibatch mean of the objective on the *same* rows for
every candidate of a round (the reference counts fully-correct batches of freshly sampled
questions — noisier and unpaired); every step that changes the prompt after stage 1 is kept only
if it does not lose on held-out train rows (the reference adopts unconditionally; small models
make unverified synthetic examples and personas risky). Full-dev evaluations — the expensive
part — happen only for the final candidates, as in the paper.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from tunegate.tuning.base import TuneContext
from tunegate.tuning.promptwizard_prompts import THINKING_STYLES
from tunegate.tuning.promptwizard_run import Cand, PromptWizardSettings, WizardRun
from tunegate.tuning.promptwizard_stage2 import stage2

__all__ = ["THINKING_STYLES", "PromptWizard", "PromptWizardSettings"]


class PromptWizard:
    """The PromptWizard optimizer (name ``promptwizard``)."""

    name: ClassVar[str] = "promptwizard"
    Settings: ClassVar[type[BaseModel]] = PromptWizardSettings

    def __init__(self, settings: PromptWizardSettings) -> None:
        self.settings = settings

    async def optimize(self, ctx: TuneContext) -> None:
        """Stage 1, full-dev evaluation of its instruction, stage 2, full-dev evaluation of the final prompt.

        One full-dev evaluation is reserved up front for the final prompt, so running short ends
        the search early with an evaluated candidate instead of interrupting it before anything
        reached dev. The stage-1 instruction alone is scored on dev only when the budget can pay
        for it *and* still keep that reserve: it is an ablation (does the instruction help without
        the examples?), and the final prompt carries the same instruction anyway — reserving two
        dev passes up front left small budgets (the demo's 100 calls on 40 dev rows) with nothing
        for stage 1 at all.
        """
        run = WizardRun(ctx, self.settings)
        admitted = [ctx.seed_prompt]
        cur = Cand(run.seed_instruction, run.seed_id)
        run.reserve = len(ctx.dev)
        cur = await run.stage1(cur)
        if cur.instruction != run.seed_instruction:  # admit honours the reserve like every other step
            await run.admit(cur, "final_instruction", admitted, {"stage": 1})
        cur = await stage2(run, cur)
        run.reserve = 0
        await run.admit(cur, "final", admitted, {"stage": 2, "expert_identity": cur.identity,
                                                  "intent_keywords": cur.keywords})
