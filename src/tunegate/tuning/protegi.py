"""ProTeGi: prompt optimization with textual gradients, beam search and bandit selection.

Follows Pryzant et al. 2023, "Automatic Prompt Optimization with 'Gradient Descent' and Beam
Search" (EMNLP 2023, arXiv 2305.03495v2), Algorithms 1–4, and its reference code
(microsoft/LMOps ``prompt_optimization``). Each round expands every beam prompt — score it on a
train minibatch, ask for ``num_gradients`` reasons it fails (the textual *gradient*), ask
``edits_per_gradient`` edits that fix each reason, ask ``paraphrases_per_edit`` Monte-Carlo
paraphrases of each edit — then keeps the ``beam_width`` best of beam + children with a
best-arm-identification bandit (:mod:`tunegate.tuning.bandits`: successive rejects or UCB). The
final beam is scored on all dev rows, best first, and the session keeps the highest dev mean.

Splits: gradients come from **train** rows only; the bandit pulls and the final evaluation use
**dev** rows (the paper selects on a held-out D_dev too). Test rows never reach the optimizer.

Deviations, and why:
* The beam parents compete in every selection with their children (as in the reference code's
  ``new_prompts += prompts``; the paper's Algorithm 1 selects among the expansion only), so a round
  of bad edits cannot make the beam worse.
* Paraphrases are made of the edits only (the paper's Algorithm 2); the reference code also
  paraphrases the parent. The reference's ``max_expansion_factor`` filter is not applied: the
  defaults produce few enough candidates.
* One gradient call per beam prompt returns ``num_gradients`` reasons (the paper's prompt asks for
  "N reasons"); the reference makes several calls of one reason each on different error samples.
  Edits are asked one per call (several calls give several edits) so a small model writes one
  tagged prompt per reply.
* A beam prompt with no error on its minibatch is not expanded (there is nothing to learn from).
* Candidates are de-duplicated across the whole run (a re-proposed prompt costs selection budget
  and teaches nothing); duplicates and every unusable reply are logged as rejections.
* Bandit budgets are counted in pulls (rows scored) so the schedule never depends on the cache;
  a cached pull costs no metric call. A share of the budget equal to one full dev evaluation is
  reserved for the final beam's best prompt, so the result is always comparable with the seed.

History: every candidate is recorded once, at the end of the round that produced it: ``edit``
(parent: the beam prompt, ``extra.gradient``: the reason it fixes) or ``paraphrase`` (parent: its
edit), ``accepted`` when it entered the beam, ``rejected`` with the bandit's reason otherwise, and
the bandit's estimate in ``minibatch``. The final full-dev evaluations are ``select`` proposals
whose parent is the beam candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from tunegate.core.example import Example
from tunegate.core.prompt import PromptTemplate
from tunegate.tuning import bandits
from tunegate.tuning.base import TuneContext, with_instruction
from tunegate.tuning.budget import BudgetExhausted
from tunegate.tuning.history import ProposalStatus
from tunegate.tuning.protegi_prompts import (
    EDIT_PROMPT,
    GRADIENT_PROMPT,
    PARAPHRASE_PROMPT,
    format_errors,
    parse_prompt,
    parse_reasons,
)
from tunegate.tuning.reflection import Reflection, check_instruction

__all__ = ["ProTeGi", "ProTeGiSettings"]


class ProTeGiSettings(BaseModel):
    """ProTeGi settings; defaults fit ~100–300 metric calls on a dev split of ~20–40 rows."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(default=3, ge=1, le=50, description="Beam-search rounds (expand, then select).")
    beam_width: int = Field(default=4, ge=1, le=32, description="Prompts kept after each selection (paper: 4).")
    minibatch_size: int = Field(default=8, ge=1, description=(
        "Train rows each beam prompt is scored on to find its errors (paper: 64)."))
    error_threshold: float = Field(default=1.0, gt=0.0, le=1.0, description=(
        "A minibatch row whose objective is below this is an error (1.0: any imperfect row)."))
    errors_per_gradient: int = Field(default=4, ge=1, le=16, description=(
        "Errors shown in the gradient and edit prompts (reference: 4)."))
    num_gradients: int = Field(default=2, ge=1, le=8, description="Reasons (textual gradients) per beam prompt.")
    edits_per_gradient: int = Field(default=1, ge=1, le=8, description="Edited prompts asked per reason.")
    paraphrases_per_edit: int = Field(default=1, ge=0, le=8, description=(
        "Monte-Carlo paraphrases of each edit (reference: 2; 0 disables)."))
    selector: Literal["successive_rejects", "ucb"] = Field(default="successive_rejects", description=(
        "Best-arm identification used to pick the beam (the paper's best: successive rejects)."))
    selection_budget: int = Field(default=60, ge=2, description=(
        "Dev rows scored (pulls) per selection step; a cached pull costs no metric call."))
    bandit_sample_size: int = Field(default=4, ge=1, description="UCB only: dev rows per pull.")
    ucb_c: float = Field(default=1.0, ge=0.0, description="UCB only: exploration constant c (reference: 1.0).")


@dataclass
class _Cand:
    """A prompt in the search: the seed, or a child not yet / already recorded in the history."""

    text: str
    prompt: PromptTemplate
    operator: str
    round: int
    parent: _Cand | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    pid: str | None = None
    estimate: dict[str, Any] = field(default_factory=dict)   #: latest bandit estimate
    rows: list[str] = field(default_factory=list)           #: dev rows pulled in the current selection


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


class _Search:
    """State of one ``optimize`` call (the optimizer object itself stays stateless)."""

    def __init__(self, s: ProTeGiSettings, ctx: TuneContext) -> None:
        self.s, self.ctx = s, ctx
        self.seen: dict[str, set[str]] = {}          # instruction → rows scored this run (cost upper bound)
        self.known: dict[str, str] = {}              # normalised instruction → who proposed it
        self.pending: list[tuple[str, _Cand | None, str, str]] = []   # buffered rejections
        self.reserve = len(ctx.dev)
        self.rounds_meta: list[dict[str, Any]] = []
        ctx.history.meta["protegi"] = {"rounds": self.rounds_meta}

    # ---- budget -------------------------------------------------------------------------
    def cost(self, text: str, rows: list[Example] | int) -> int:
        """Upper bound on the metric calls of scoring ``text`` on ``rows`` (rows seen this run are cached)."""
        if isinstance(rows, int):
            return rows
        done = self.seen.get(text, set())
        return sum(1 for ex in rows if ex.id not in done)

    def affordable(self) -> int:
        return self.ctx.meter.remaining_calls - self.reserve

    async def score(self, cand: _Cand, rows: list[Example]) -> Any:
        batch = await self.ctx.score(cand.prompt, rows)
        self.seen.setdefault(cand.text, set()).update(ex.id for ex in rows)
        return batch

    # ---- proposals ----------------------------------------------------------------------
    def adopt(self, ref: Reflection, operator: str, parent: _Cand, rnd: int, extra: dict[str, Any]) -> _Cand | None:
        """A child from a reflection reply, or None (with the reason buffered as a rejection)."""
        if not ref.ok:
            self.pending.append((operator, parent, ref.rejected or "unusable reply", ref.raw))
            return None
        text = str(ref.payload).strip()
        why = check_instruction(text, parent.text)
        prompt = with_instruction(parent.prompt, text)
        why = why or self.ctx.compile_error(prompt)
        if why is None and (dup := self.known.get(_norm(text))):
            why = f"duplicate of {dup}"
        if why:
            self.pending.append((operator, parent, why, ref.raw))
            return None
        self.known[_norm(text)] = f"a round-{rnd} {operator}"
        extra = {**extra, "round": rnd, "sample_index": ref.meta.get("sample_index")}
        return _Cand(text, prompt, operator, rnd, parent, extra)

    def flush_rejections(self) -> None:
        for operator, parent, why, raw in self.pending:
            self.ctx.reject(operator, parent.pid if parent else None, why, raw)
        self.pending.clear()

    async def expand(self, parent: _Cand, rnd: int) -> list[_Cand]:
        """Algorithm 2: minibatch errors → gradients → edits → paraphrases."""
        s, ctx = self.s, self.ctx
        rows = ctx.sample_train(s.minibatch_size)
        if self.cost(parent.text, rows) > self.affordable():
            ctx.log.append(f"protegi round {rnd}: {parent.pid} not expanded (budget kept for the final evaluation)")
            return []
        batch = await self.score(parent, rows)
        by_id = {t.row_id: t for t in batch.traces}
        errors = [(ex, by_id[ex.id]) for ex in rows
                  if by_id[ex.id].value is not None and by_id[ex.id].value < s.error_threshold]
        if not errors:
            ctx.log.append(f"protegi round {rnd}: {parent.pid} made no error on {len(rows)} train rows")
            return []
        shown = ctx.rng.sample(errors, min(s.errors_per_gradient, len(errors)))
        err_text = format_errors(shown)
        base = {"minibatch_rows": [ex.id for ex in rows], "minibatch_mean": batch.mean,
                "errors": [ex.id for ex, _ in shown]}
        g = await ctx.reflector.ask(GRADIENT_PROMPT.format(instruction=parent.text, errors=err_text,
                                                           n=s.num_gradients), parse_reasons, key="protegi:gradient")
        if not g.ok:
            self.pending.append(("gradient", parent, g.rejected or "unusable reply", g.raw))
            return []
        reasons = list(g.payload or [])[:s.num_gradients]
        if len(reasons) < s.num_gradients:
            ctx.log.append(f"protegi round {rnd}: asked {s.num_gradients} reasons for {parent.pid}, got {len(reasons)}")
        out: list[_Cand] = []
        for gi, reason in enumerate(reasons):
            for _ in range(s.edits_per_gradient):
                ask = EDIT_PROMPT.format(instruction=parent.text, errors=err_text, gradient=reason)
                ref = await ctx.reflector.ask(ask, parse_prompt, key="protegi:edit")
                edit = self.adopt(ref, "edit", parent, rnd, {**base, "gradient": reason, "gradient_index": gi})
                if edit is None:
                    continue
                out.append(edit)
                for _ in range(s.paraphrases_per_edit):
                    ref = await ctx.reflector.ask(PARAPHRASE_PROMPT.format(instruction=edit.text), parse_prompt,
                                                  key="protegi:paraphrase")
                    para = self.adopt(ref, "paraphrase", edit, rnd, {"gradient": reason, "gradient_index": gi})
                    if para is not None:
                        out.append(para)
        return out

    # ---- selection ----------------------------------------------------------------------
    async def select(self, arms: list[_Cand]) -> bandits.Selection | None:
        """Best-arm identification over ``arms`` on dev rows; None when the budget cannot pay for it."""
        s, ctx = self.s, self.ctx
        for a in arms:
            a.rows = []
        budget = min(s.selection_budget, self.affordable())
        if len(arms) > s.beam_width and budget < (s.bandit_sample_size if s.selector == "ucb" else len(arms) + 1):
            return None

        async def pull(arm: int, rows: Any) -> list[float]:
            cand = arms[arm]
            batch = await self.score(cand, list(rows))
            cand.rows.extend(ex.id for ex in rows)
            return [batch.scores[ex.id] for ex in rows if ex.id in batch.scores]

        if s.selector == "ucb":
            return await bandits.ucb(len(arms), s.beam_width, ctx.dev, pull, budget=budget,
                                     sample_size=s.bandit_sample_size, c=s.ucb_c, rng=ctx.rng)
        return await bandits.successive_rejects(len(arms), s.beam_width, ctx.dev, pull, budget=budget, rng=ctx.rng)

    def record_children(self, children: list[_Cand], arms: list[_Cand], sel: bandits.Selection | None,
                        why_not: str = "") -> None:
        """Record each child once, in production order: accepted into the beam, or rejected and why."""
        phase = {arm: ph for ph, arm in sel.eliminated} if sel else {}
        for child in children:
            idx = arms.index(child)
            status: ProposalStatus = "rejected"
            reason = why_not
            if sel is not None:
                st = sel.stats[idx]
                child.estimate = {"selector": self.s.selector, "round": child.round, "rank": sel.ranking.index(idx),
                                  "mean": st.mean, "pulls": st.requested, "rows": list(child.rows)}
                mean = "no reward" if st.mean is None else f"mean {st.mean:.3f}"
                if idx in sel.survivors:
                    status, reason = "accepted", ""
                elif idx in phase:
                    child.estimate["eliminated_phase"] = phase[idx]
                    reason = f"rejected by successive rejects in phase {phase[idx]} ({mean} on {st.rows} dev rows)"
                else:
                    reason = f"not among the top {self.s.beam_width} by UCB ({mean} on {st.rows} dev rows)"
            parents = [child.parent.pid] if child.parent and child.parent.pid else []
            p = self.ctx.record(child.prompt, parents=parents, operator=child.operator, status=status,
                                reason=reason, minibatch=child.estimate, extra=child.extra)
            child.pid = p.id
            self.known[_norm(child.text)] = p.id

    async def round(self, beam: list[_Cand], rnd: int) -> list[_Cand] | None:
        """One expansion + selection; the new beam, or None when the search must stop."""
        s = self.s
        per = s.num_gradients * s.edits_per_gradient * (1 + s.paraphrases_per_edit)
        arms_max = len(beam) * (1 + per)
        need = len(beam) * s.minibatch_size + (arms_max + 1 if arms_max > s.beam_width else 0)
        if self.affordable() < need:
            self.ctx.log.append(f"protegi: stopped before round {rnd} ({self.affordable()} calls left after the "
                                f"final-evaluation reserve, a round needs up to {need})")
            return None
        children: list[_Cand] = []
        sel: bandits.Selection | None = None
        why_not = "not selected: the budget ran out during the round"
        try:
            for parent in beam:
                children += await self.expand(parent, rnd)
            if not children:
                self.rounds_meta.append({"round": rnd, "beam": [c.pid for c in beam], "children": 0})
                return beam
            sel = await self.select(beam + children)
            if sel is None:
                why_not = "not selected: the budget left cannot pay for a selection"
                return None
        finally:
            self.record_children(children, beam + children, sel, why_not)
            self.flush_rejections()
        arms = beam + children
        for i, a in enumerate(arms):
            if a not in children:
                a.estimate = {**a.estimate, "round": rnd, "mean": sel.stats[i].mean, "pulls": sel.stats[i].requested}
        new_beam = [arms[i] for i in sel.survivors]
        self.rounds_meta.append({
            "round": rnd, "beam": [c.pid for c in beam], "children": len(children), "pulls": sel.pulls,
            "selector": s.selector, "eliminated": [(ph, arms[i].pid) for ph, i in sel.eliminated],
            "ranking": [arms[i].pid for i in sel.ranking], "new_beam": [c.pid for c in new_beam]})
        self.ctx.log.append(f"protegi round {rnd}: {len(children)} candidates, {sel.pulls} pulls, "
                            f"beam {[c.pid for c in new_beam]}")
        return new_beam

    async def finish(self, beam: list[_Cand]) -> None:
        """Algorithm 1's last line: evaluate the final beam on all dev rows, best estimate first."""
        for rank, cand in enumerate(beam):
            if cand.operator == "seed" or cand.pid is None:
                continue
            if self.cost(cand.text, self.ctx.dev) > self.ctx.meter.remaining_calls:
                self.ctx.log.append(f"protegi: {cand.pid} (beam rank {rank}) not evaluated on dev: budget")
                continue
            try:
                await self.ctx.admit(cand.prompt, parents=[cand.pid], operator="select", minibatch=cand.estimate,
                                     extra={"beam_rank": rank, "round": cand.round, "candidate_operator": cand.operator})
            except BudgetExhausted as e:
                self.ctx.log.append(f"protegi: final evaluation stopped: {e.what}")
                return
            self.seen.setdefault(cand.text, set()).update(ex.id for ex in self.ctx.dev)


class ProTeGi:
    """ProTeGi (Pryzant et al. 2023): textual gradients, beam search, bandit selection."""

    name: ClassVar[str] = "protegi"
    Settings: ClassVar[type[BaseModel]] = ProTeGiSettings

    def __init__(self, settings: ProTeGiSettings) -> None:
        self.settings = settings

    async def optimize(self, ctx: TuneContext) -> None:
        search = _Search(self.settings, ctx)
        seed_p = next((p for p in ctx.history.proposals if p.status == "seed"), None)
        if seed_p is None:
            seed_p = ctx.record(ctx.seed_prompt, parents=[], operator="seed", status="seed")
        text = ctx.instruction(ctx.seed_prompt)
        seed = _Cand(text, ctx.seed_prompt, "seed", 0, pid=seed_p.id)
        search.known[_norm(text)] = seed_p.id
        if seed_p.dev_mean is not None:
            search.seen[text] = {ex.id for ex in ctx.dev}
        beam = [seed]
        stop: BudgetExhausted | None = None
        try:
            for rnd in range(1, self.settings.rounds + 1):
                nxt = await search.round(beam, rnd)
                if nxt is None:
                    break
                beam = nxt
        except BudgetExhausted as e:
            stop = e
        await search.finish(beam)
        if stop is not None:
            raise stop
