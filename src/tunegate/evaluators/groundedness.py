"""Groundedness, Faithfulness and HallucinationScore: the output's claims judged against a source.

All three split the output into claims (:func:`~tunegate.evaluators.nli.split_claims`), check each
claim against windows of the source with the shipped entailment model, add lexical checks
(numbers, dates, names and content words the source never mentions) and turn the evidence into a
probability with the calibrated grounding head (:mod:`tunegate.evaluators.grounding`). A short
answer is judged together with the row's question ("Paris" → "What is the capital of France?
Paris"), since it cannot be judged alone. They differ in the question each answers:

* ``groundedness`` — *is the output as a whole backed by the context?* Score = the head's
  P(grounded) for the whole output: 0.5 means "as likely grounded as not" on the calibration
  documents, and ``passed`` is ``score >= 0.5`` unless ``threshold`` says otherwise.
* ``faithfulness`` — *how well supported is the weakest claim?* Each claim gets its own P(grounded)
  from the head; the score is the weakest claim's, mapped by a Platt fit to P(output consistent),
  so one fabricated number sinks a long, otherwise correct answer.
* ``hallucination`` — *does the output state things its source does not support?* (1 = no
  hallucination). Same probability as groundedness, but the source is the context or — on rows
  without one — the ``expected`` facts (text or list), so it also works for closed-book QA.

An empty or whitespace-only output is a failure (score 0, reason "empty output"): a reply that says
nothing has not answered from the context (``empty_output: skip`` leaves such rows out instead). A
row without its source (no context; for hallucination no context and no expected facts) is
``skipped`` with the reason, never an error or a score.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from tunegate.core.example import Example
from tunegate.core.result import EvalResult
from tunegate.errors import EvaluatorError, UserError
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.evaluators.grounding import (
    GroundingHead,
    RowEvidence,
    featurize,
    load_grounding_head,
    row_features,
)
from tunegate.evaluators.nli import NLIModel, split_claims, split_sentences
from tunegate.evaluators.text_match import parse_options

__all__ = ["Faithfulness", "Groundedness", "HallucinationScore"]

_EMPTY = ("fail", "skip")


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _evidence(window: str, claim: str, n: int = 300) -> str:
    """The part of a window worth showing: the whole window when it fits in ``n`` characters, else
    the sentence sharing most words with the claim plus its neighbours while they fit (an 80-word
    window cut at its start would often hide the very sentence that decided the claim)."""
    if len(window) <= n:
        return window
    sents = split_sentences(window) or [window]
    words = set(re.findall(r"[a-z0-9]+", claim.lower()))
    best = max(range(len(sents)), key=lambda i: (len(words & set(re.findall(r"[a-z0-9]+", sents[i].lower()))), -i))
    lo = hi = best
    while True:
        grew = False
        for cand in ((lo - 1, hi), (lo, hi + 1)):
            if cand[0] >= 0 and cand[1] < len(sents) and len(" ".join(sents[cand[0]:cand[1] + 1])) <= n:
                lo, hi, grew = cand[0], cand[1], True
                break
        if not grew:
            break
    return _short(" ".join(sents[lo:hi + 1]), n)


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


class _ClaimEvaluator(Evaluator):
    """Shared machinery: config, claim extraction, one batched model call for all rows."""

    requires: ClassVar[tuple[str, ...]] = ()
    source_name: ClassVar[str] = "the context"

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        cfg = parse_options(self.name, config, {
            "threshold": ((float, type(None)), None), "model_path": ((str, type(None)), None),
            "max_claims": (int, 64), "empty_output": (str, "fail"), "use_question": (bool, True)})
        where = f"evaluators.{self.name}"
        if cfg["threshold"] is not None and not 0.0 <= cfg["threshold"] <= 1.0:
            raise UserError(f"option 'threshold' must be in [0, 1], got {cfg['threshold']!r}", field=where)
        if cfg["max_claims"] < 1:
            raise UserError(f"option 'max_claims' must be ≥ 1, got {cfg['max_claims']!r}", field=where)
        if cfg["empty_output"] not in _EMPTY:
            raise UserError(f"option 'empty_output' must be one of {list(_EMPTY)} (an empty reply is never "
                            f"vacuously grounded), got {cfg['empty_output']!r}", field=where)
        return cfg

    def missing(self, ex: Example) -> list[str]:
        return [] if not _blank(ex.context_text()) else ["context"]

    # -- model ----------------------------------------------------------------------------------
    def model(self) -> NLIModel:
        try:
            return NLIModel.load(self.config["model_path"])
        except FileNotFoundError as e:
            raise EvaluatorError(str(e)) from None

    def threshold(self) -> float:
        return 0.5 if self.config["threshold"] is None else float(self.config["threshold"])

    # -- scoring --------------------------------------------------------------------------------
    def source(self, ex: Example) -> tuple[str, str]:
        """(source text, what to call it in messages)."""
        return ex.context_text() or "", self.source_name

    def score(self, ctx: EvalContext) -> EvalResult:
        return self.score_batch([ctx])[0]

    def score_batch(self, ctxs: Sequence[EvalContext]) -> list[EvalResult]:
        out: list[EvalResult | None] = [None] * len(ctxs)
        todo: list[tuple[int, str, str, list[str], str | None]] = []
        for i, c in enumerate(ctxs):
            claims = split_claims(c.output.text or "")[: self.config["max_claims"]]
            if not claims:
                out[i] = self._empty()
                continue
            src, what = self.source(c.example)
            question = c.example.prompt_text() if self.config["use_question"] else None
            todo.append((i, src, what, claims, question or None))
        if todo:
            model = self.model()
            head = load_grounding_head()
            evidence = featurize(model, [(src, claims, q) for _, src, _, claims, q in todo],
                                 top_k=head.inference.get("top_k"))
            probs = head.predict([e.features for e in evidence])
            for (i, src, what, _, _), ev, p in zip(todo, evidence, probs, strict=True):
                try:
                    out[i] = self.judge(ev, float(p), head, src, what)
                except Exception as e:  # one bad row is an error result, not a failed batch
                    out[i] = self.error(f"{type(e).__name__}: {e}")
        return [r if r is not None else self.error("row was not scored") for r in out]

    def _empty(self) -> EvalResult:
        if self.config["empty_output"] == "skip":
            return self.skipped("empty output: nothing to check (empty_output: skip)")
        return self.ok(0.0, "empty output: the reply makes no claim, so nothing in it is grounded",
                       passed=False, empty_output=True, n_claims=0,
                       feedback="The reply was empty; answer the question using the context.")

    def claim_probs(self, ev: RowEvidence, head: GroundingHead, src: str) -> list[float]:
        """Each claim's own P(grounded) (the head on that claim alone), for naming the weak ones."""
        return [float(p) for p in head.predict([row_features([c], [c.claim], src) for c in ev.checks])]

    def judge(self, ev: RowEvidence, p: float, head: GroundingHead, src: str, what: str) -> EvalResult:
        """P(grounded) of the whole output, with the claims that pulled it down named."""
        return self._result(p, self.claim_probs(ev, head, src), ev, head, what)

    def _result(self, score: float, claim_p: list[float], ev: RowEvidence, head: GroundingHead,
                what: str) -> EvalResult:
        t = self.threshold()
        weak = [(c, q) for c, q in zip(ev.checks, claim_p, strict=True) if q < 0.5]
        details: dict[str, Any] = {
            "threshold": t, "n_claims": len(ev.checks), "features": {k: round(v, 4) for k, v in ev.features.items()},
            "contributions": head.contributions(ev.features),
            "claims": [{"claim": c.claim, "p_grounded": round(q, 4), "entailment": round(c.entail, 4),
                        "contradiction": round(c.contradict, 4), "supported": q >= 0.5,
                        "evidence": _evidence(c.window, c.claim)} for c, q in zip(ev.checks, claim_p, strict=True)]}
        if score >= t:
            return self.ok(score, f"P(grounded in {what}) = {score:.2f} over {len(ev.checks)} claim(s)"
                           + (f"; weakest: {_short(weak[0][0].claim, 80)!r}" if weak else ""), passed=True, **details)
        named = weak or [min(zip(ev.checks, claim_p, strict=True), key=lambda cq: cq[1])]
        reason = (f"P(grounded in {what}) = {score:.2f} < {t:.2f}; {len(weak)} of {len(ev.checks)} claim(s) "
                  f"not supported: " + "; ".join(repr(_short(c.claim, 80)) for c, _ in named[:5]))
        feedback = "\n".join(f"Claim {'contradicted by' if c.contradict > 0.5 else 'not supported by'} {what}: "
                             f"'{_short(c.claim)}'" for c, _ in named[:5])
        feedback += f"\nState only what {what} says, or remove these claims."
        return self.ok(score, reason, passed=False, feedback=feedback, **details)


class Groundedness(_ClaimEvaluator):
    """P(the output is grounded in the context), from the calibrated grounding head."""

    name = "groundedness"
    version = "4"  # v4: packed W8A8 engine (batch-invariant), refitted head (scores not comparable with v3)
    description = "P(output grounded in the context): NLI windows + lexical/entity checks, calibrated head."


class Faithfulness(_ClaimEvaluator):
    """The weakest claim's P(grounded), Platt-mapped to P(output consistent)."""

    name = "faithfulness"
    version = "4"
    description = "Weakest output claim's calibrated P(grounded) against the context (local NLI + head)."

    def judge(self, ev: RowEvidence, p: float, head: GroundingHead, src: str, what: str) -> EvalResult:
        claim_p = self.claim_probs(ev, head, src)
        platt = head.manifest.get("faithfulness_platt", {"a": 1.0, "b": 0.0})
        q = min(max(min(claim_p), 1e-6), 1 - 1e-6)
        score = 1.0 / (1.0 + math.exp(-(platt["a"] * math.log(q / (1 - q)) + platt["b"])))
        return self._result(score, claim_p, ev, head, what)


class HallucinationScore(_ClaimEvaluator):
    """1 − P(hallucinated): the output against the context, else against the expected facts."""

    name = "hallucination"
    version = "4"
    description = "1 = no hallucination: output judged against the context, else the expected facts."

    def missing(self, ex: Example) -> list[str]:
        if not _blank(ex.context_text()):
            return []
        if ex.expected is None or (isinstance(ex.expected, (str, list)) and not self._facts(ex.expected)):
            return ["context or expected facts"]
        if isinstance(ex.expected, dict):
            return ["context (expected is a JSON object, not facts)"]
        return []

    @staticmethod
    def _facts(expected: Any) -> list[str]:
        facts = expected if isinstance(expected, list) else [expected]
        texts = [f if isinstance(f, str) else json.dumps(f, ensure_ascii=False) for f in facts]
        return [t.strip() for t in texts if t.strip()]

    def source(self, ex: Example) -> tuple[str, str]:
        if not _blank(ex.context_text()):
            return ex.context_text() or "", "the context"
        return " ".join(t if t.endswith((".", "!", "?")) else t + "." for t in self._facts(ex.expected)), \
            "the expected facts"
