"""Groundedness, Faithfulness and HallucinationScore: the output's claims checked by the shipped NLI model.

All three split the output into claims (:func:`~tunegate.evaluators.nli.split_claims`) and check
each claim against a source with :class:`~tunegate.evaluators.nli.NLIModel` (max over context
windows). They differ in what counts against the output, so that each answers its own question:

* ``groundedness`` — *is every statement backed by the context?* Score = share of claims the
  context entails (P(entailment) ≥ the calibrated threshold). Information that is merely absent
  from the context counts against the output, as in RAG grounding checks.
* ``faithfulness`` — *how strongly is the weakest claim supported, net of contradiction?*
  Score = min over claims of (1 + P(e) − P(c)) / 2 (SummaC's e − c, mapped to [0, 1]): continuous,
  and dominated by the worst claim, so one fabricated number sinks a long, otherwise-correct answer
  that groundedness would still give 0.9. ``passed`` at its own calibrated threshold.
* ``hallucination`` — *does the output state things its source does not support?* (1 = no
  hallucination). The source is the context, or — on rows without one — the ``expected`` facts
  (text or list), so it also works for closed-book QA with reference answers. Score = share of claims
  that are not hallucinated; a claim is hallucinated when the source does not entail it.

An output with no claims (empty, or only punctuation) is vacuously grounded by default: nothing was
asserted, so nothing is unsupported; ``empty_output: fail`` or ``skip`` changes that (a gate that
should punish empty answers should also run a relevancy or reference evaluator).
Thresholds come from the model's manifest (``calibration``), fitted on the SummEdits dev documents
by ``nli_train``; a user model without a manifest gets 0.5.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from tunegate.core.example import Example
from tunegate.core.result import EvalResult
from tunegate.errors import EvaluatorError, UserError
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.evaluators.nli import ClaimCheck, NLIModel, split_claims
from tunegate.evaluators.text_match import parse_options

__all__ = ["Faithfulness", "Groundedness", "HallucinationScore", "faithfulness_claim_score"]

_EMPTY = ("pass", "fail", "skip")


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def faithfulness_claim_score(c: ClaimCheck) -> float:
    """(1 + P(entailment) − P(contradiction)) / 2 of a claim's best window, in [0, 1]."""
    return min(1.0, max(0.0, (1.0 + c.entail - c.contradict) / 2.0))


class _ClaimEvaluator(Evaluator):
    """Shared machinery: config, claim extraction, one batched model call for all rows."""

    requires: ClassVar[tuple[str, ...]] = ("context",)
    #: Key under the manifest's ``calibration`` holding this evaluator's threshold.
    calibration_key: ClassVar[str] = ""
    source_name: ClassVar[str] = "the context"

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        cfg = parse_options(self.name, config, {
            "threshold": ((float, type(None)), None), "model_path": ((str, type(None)), None),
            "max_claims": (int, 64), "empty_output": (str, "pass")})
        where = f"evaluators.{self.name}"
        if cfg["threshold"] is not None and not 0.0 <= cfg["threshold"] <= 1.0:
            raise UserError(f"option 'threshold' must be in [0, 1], got {cfg['threshold']!r}", field=where)
        if cfg["max_claims"] < 1:
            raise UserError(f"option 'max_claims' must be ≥ 1, got {cfg['max_claims']!r}", field=where)
        if cfg["empty_output"] not in _EMPTY:
            raise UserError(f"option 'empty_output' must be one of {list(_EMPTY)}, got {cfg['empty_output']!r}",
                            field=where)
        return cfg

    # -- model ----------------------------------------------------------------------------------
    def model(self) -> NLIModel:
        try:
            return NLIModel.load(self.config["model_path"])
        except FileNotFoundError as e:
            raise EvaluatorError(str(e)) from None

    def threshold(self, model: NLIModel) -> float:
        if self.config["threshold"] is not None:
            return float(self.config["threshold"])
        cal = model.manifest.get("calibration", {}).get(self.calibration_key, {})
        return float(cal.get("threshold", 0.5))

    # -- scoring --------------------------------------------------------------------------------
    def source(self, ex: Example) -> tuple[str, str]:
        """(source text, what to call it in messages)."""
        return ex.context_text() or "", self.source_name

    def score(self, ctx: EvalContext) -> EvalResult:
        return self.score_batch([ctx])[0]

    def score_batch(self, ctxs: Sequence[EvalContext]) -> list[EvalResult]:
        rows: list[tuple[str, str, list[str]]] = []
        for c in ctxs:
            src, what = self.source(c.example)
            rows.append((src, what, split_claims(c.output.text)[: self.config["max_claims"]]))
        todo = [(i, cl) for i, (_, _, claims) in enumerate(rows) for cl in claims]
        checks: list[ClaimCheck] = []
        model: NLIModel | None = None
        if todo:
            model = self.model()
            checks = model.check([rows[i][0] for i, _ in todo], [cl for _, cl in todo])
        per_row: list[list[ClaimCheck]] = [[] for _ in ctxs]
        for (i, _), chk in zip(todo, checks, strict=True):
            per_row[i].append(chk)
        out: list[EvalResult] = []
        for (_, what, claims), found in zip(rows, per_row, strict=True):
            if not claims:
                out.append(self._empty())
                continue
            try:
                assert model is not None
                out.append(self.judge(found, what, self.threshold(model)))
            except Exception as e:  # one bad row is an error result, not a failed batch
                out.append(self.error(f"{type(e).__name__}: {e}"))
        return out

    def _empty(self) -> EvalResult:
        mode = self.config["empty_output"]
        if mode == "skip":
            return self.skipped("output makes no claims to check (empty_output: skip)")
        if mode == "fail":
            return self.ok(0.0, "output makes no claims (empty_output: fail)",
                           feedback="The reply was empty; answer the question using the context.", n_claims=0)
        return self.ok(1.0, "output makes no claims: vacuously grounded (empty_output: pass)", n_claims=0)

    def judge(self, checks: list[ClaimCheck], what: str, threshold: float) -> EvalResult:
        """Share of claims the source entails, with the unsupported ones named."""
        bad = [c for c in checks if c.entail < threshold]
        score = 1.0 - len(bad) / len(checks)
        details = _details(checks, threshold)
        if not bad:
            return self.ok(score, f"all {len(checks)} claim(s) supported by {what}", passed=True, **details)
        reason = (f"{len(bad)} of {len(checks)} claim(s) not supported by {what}: "
                  + "; ".join(repr(_short(c.claim, 80)) for c in bad[:5]))
        feedback = "\n".join(f"Claim not supported by {what}: '{_short(c.claim)}'" for c in bad[:5])
        feedback += f"\nState only what {what} says, or remove these claims."
        return self.ok(score, reason, passed=False, feedback=feedback, **details)


def _details(checks: list[ClaimCheck], threshold: float) -> dict[str, Any]:
    return {"threshold": threshold, "n_claims": len(checks), "claims": [
        {"claim": c.claim, "entailment": round(c.entail, 4), "contradiction": round(c.contradict, 4),
         "supported": c.entail >= threshold, "evidence": _short(c.window, 300)} for c in checks]}


class Groundedness(_ClaimEvaluator):
    """Share of the output's claims that the context entails."""

    name = "groundedness"
    version = "1"
    description = "Share of output claims entailed by the context (local NLI model, calibrated threshold)."
    calibration_key = "groundedness"


class Faithfulness(_ClaimEvaluator):
    """The weakest claim's (1 + P(e) − P(c)) / 2 against the context."""

    name = "faithfulness"
    version = "1"
    description = "Weakest output claim's entailment-minus-contradiction against the context (local NLI)."
    calibration_key = "faithfulness"

    def judge(self, checks: list[ClaimCheck], what: str, threshold: float) -> EvalResult:
        scores = [faithfulness_claim_score(c) for c in checks]
        worst = min(range(len(checks)), key=lambda i: scores[i])
        w = checks[worst]
        details = _details(checks, threshold)
        for d, s in zip(details["claims"], scores, strict=True):
            d["faithfulness"] = round(s, 4)
            d["supported"] = s >= threshold
        verdict = "contradicted by" if w.contradict > w.entail else "weakly supported by"
        reason = (f"weakest of {len(checks)} claim(s) scores {scores[worst]:.2f} "
                  f"(P(entail) {w.entail:.2f}, P(contradict) {w.contradict:.2f}): {_short(w.claim, 80)!r}")
        if scores[worst] >= threshold:
            return self.ok(scores[worst], reason, passed=True, **details)
        bad = [c for c, s in zip(checks, scores, strict=True) if s < threshold]
        feedback = "\n".join(
            f"Claim {'contradicted by' if c.contradict > c.entail else 'not supported by'} {what}: "
            f"'{_short(c.claim)}'" for c in bad[:5])
        feedback += f"\nCorrect or remove these claims so every statement follows from {what}."
        return self.ok(scores[worst], f"{reason}; it is {verdict} {what}", passed=False,
                       feedback=feedback, **details)


class HallucinationScore(_ClaimEvaluator):
    """1 − share of claims the source (context, else expected facts) does not support."""

    name = "hallucination"
    version = "1"
    requires = ()
    description = "1 = no hallucination: output claims checked against the context, else the expected facts."
    calibration_key = "hallucination"

    def missing(self, ex: Example) -> list[str]:
        if ex.context is None and ex.expected is None:
            return ["context or expected"]
        if ex.context is None and isinstance(ex.expected, dict):
            return ["context (expected is a JSON object, not facts)"]
        return []

    def source(self, ex: Example) -> tuple[str, str]:
        if ex.context is not None:
            return ex.context_text() or "", "the context"
        facts = ex.expected if isinstance(ex.expected, list) else [ex.expected]
        texts = [f if isinstance(f, str) else json.dumps(f, ensure_ascii=False) for f in facts]
        return " ".join(t.strip() if t.strip().endswith((".", "!", "?")) else t.strip() + "."
                        for t in texts if t.strip()), "the expected facts"
