"""FactualAccuracy: does the answer say what a reference answer says?

Cheap, exact evidence first and models only for what is left, so most rows of a short-answer set
never touch a model:

1. normalised exact match (SQuAD normalisation) with any reference → 1;
2. numeric match (GSM8K-style number extraction) with a short reference (≤ 5 tokens) → 1, and a
   reference that is a bare number the answer contradicts → 0;
3. token F1 ≥ ``f1_threshold`` with a reference → that F1;
4. semantic equivalence: MiniLM cosine ≥ ``similarity_threshold`` AND entailment both ways
   (answer ⊨ reference and reference ⊨ answer) ≥ ``entailment_threshold``. The score is the
   soft AND ``min(cosine, p_fwd, p_bwd)``. The entailment model is ``tunegate.evaluators.nli``'s
   ``NLIModel``; when it is not installed (or has no weights yet) the check is embedding-only and
   every result says ``details["entailment"] = "unavailable"``.

With ``metadata.incorrect_answers`` (TruthfulQA style) the answer is also matched against the
incorrect answers, by the same paths; the score is ``0.5 + (best correct match − best incorrect
match) / 2`` and ``passed`` means it is closer to a correct answer than to every incorrect one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunegate.core.example import Example
from tunegate.core.hashing import content_hash
from tunegate.core.result import EvalResult
from tunegate.errors import EvaluatorError, UserError
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.evaluators.relevancy import embed
from tunegate.evaluators.text_match import extract_number, normalize_answer, parse_options, token_f1

__all__ = ["FactualAccuracy", "load_entailment"]

_SHORT_REF_TOKENS = 5


def load_entailment() -> tuple[Any | None, str]:
    """The shared ``NLIModel`` (lazy import) and a note; ``(None, why)`` when it is not available."""
    try:
        from tunegate.evaluators.nli import NLIModel
    except ImportError as e:
        return None, f"tunegate.evaluators.nli is not importable ({e})"
    try:
        return NLIModel.load(), ""
    except (FileNotFoundError, OSError, ValueError) as e:
        return None, str(e)


def _texts(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in items
            if x is not None and (not isinstance(x, str) or x.strip())]


def _short(text: str, n: int = 70) -> str:
    return repr(text if len(text) <= n else text[: n - 1] + "…")


@dataclass
class _Match:
    """How well the answer matches one reference, and by which path."""

    ref: str
    score: float
    path: str  #: exact | numeric | numeric mismatch | token F1 | semantic | none
    detail: str = ""
    info: dict[str, float] = field(default_factory=dict)


class FactualAccuracy(Evaluator):
    """Answer agrees with a reference answer (exact → numeric → token F1 → semantic equivalence)."""

    name = "factual_accuracy"
    version = "1"
    requires = ("expected",)
    description = ("Answer matches the expected answer: exact, numeric, token F1, then MiniLM similarity "
                   "+ two-way entailment; TruthfulQA-style incorrect answers supported.")

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        cfg = parse_options(self.name, config, {
            "f1_threshold": (float, 0.8), "similarity_threshold": (float, 0.75),
            "entailment_threshold": (float, 0.5), "use_entailment": (bool, True)})
        for key in ("f1_threshold", "similarity_threshold", "entailment_threshold"):
            if not 0.0 <= cfg[key] <= 1.0:
                raise UserError(f"option {key!r} must be in [0, 1], got {cfg[key]!r}", field=f"evaluators.{self.name}")
        self._nli, self._nli_note = load_entailment() if cfg["use_entailment"] else (None, "disabled by config")
        return cfg

    def identity(self) -> dict[str, Any]:
        """Includes which entailment model (if any) was used: with and without it the scores differ."""
        ident = super().identity()
        ident["entailment_model"] = (content_hash(getattr(self._nli, "manifest", {}) or {}, prefix="nli-")
                                     if self._nli is not None else "unavailable")
        return ident

    def missing(self, ex: Example) -> list[str]:
        if ex.expected is None:
            return ["expected"]
        if isinstance(ex.expected, dict):
            return ["textual expected (expected is a JSON object; score it with json_validation)"]
        if not _texts(ex.expected):
            return ["non-empty expected"]
        return []

    # -- cheap paths ---------------------------------------------------------------------------
    @staticmethod
    def _cheap(answer: str, ref: str, f1_threshold: float) -> _Match | None:
        """Exact / numeric / token-F1 decision for one reference, or None (needs the models)."""
        if normalize_answer(answer) == normalize_answer(ref):
            return _Match(ref, 1.0, "exact", "normalised exact match")
        ref_tokens = normalize_answer(ref).split()
        ref_num = extract_number(ref) if len(ref_tokens) <= _SHORT_REF_TOKENS else None
        if ref_num is not None:
            got = extract_number(answer)
            if got is not None and math.isclose(got[0], ref_num[0], rel_tol=1e-6):
                return _Match(ref, 1.0, "numeric", f"same number {got[2]!r}")
            if got is not None and len(ref_tokens) == 1:
                return _Match(ref, 0.0, "numeric mismatch", f"number {got[2]!r} vs expected {ref_num[2]!r}")
        f1 = token_f1(answer, ref)
        if f1 >= f1_threshold:
            return _Match(ref, f1, "token F1", f"token F1 {f1:.2f}")
        return None

    # -- batch scoring -------------------------------------------------------------------------
    def score(self, ctx: EvalContext) -> EvalResult:
        return self.score_batch([ctx])[0]

    def score_batch(self, ctxs: Sequence[EvalContext]) -> list[EvalResult]:
        plans: list[tuple[str, list[str], list[str]]] = []
        decided: dict[int, EvalResult] = {}
        todo: list[tuple[int, str]] = []  # (row, reference) pairs that need the semantic check
        for i, c in enumerate(ctxs):
            answer = c.output.text.strip()
            refs = _texts(c.example.expected)
            wrong = _texts(c.example.metadata.get("incorrect_answers") or [])
            plans.append((answer, refs, wrong))
            if not answer:
                decided[i] = self.ok(0.0, "empty output: the answer is blank", passed=False, empty_output=True,
                                     feedback=f"Answer the question; expected {_short(refs[0])}.")
                continue
            early = self._early(answer, refs, wrong)
            if early is not None:
                decided[i] = early
                continue
            todo.extend((i, r) for r in [*refs, *wrong])
        sem = self._semantic([(plans[i][0], r) for i, r in todo]) if todo else []
        sem_by_row: dict[int, dict[str, _Match]] = {}
        for (i, r), m in zip(todo, sem, strict=True):
            sem_by_row.setdefault(i, {})[r] = m
        out: list[EvalResult] = []
        for i in range(len(ctxs)):
            if i in decided:
                out.append(decided[i])
                continue
            answer, refs, wrong = plans[i]
            out.append(self._finish(answer, refs, wrong, sem_by_row[i]))
        return out

    def _early(self, answer: str, refs: list[str], wrong: list[str]) -> EvalResult | None:
        """A result decided by exact/numeric evidence alone (or by token F1 when there are no
        incorrect answers to weigh against), else None."""
        t = self.config["f1_threshold"]
        right = [m for r in refs if (m := self._cheap(answer, r, t)) is not None]
        for path in ("exact", "numeric"):
            hit = next((m for m in right if m.path == path), None)
            if hit is not None:
                return self._ok_match(hit, 1.0, True)
        for w in wrong:
            m = self._cheap(answer, w, t)
            if m is not None and m.path in ("exact", "numeric"):
                return self.ok(0.0, f"matches the incorrect answer {_short(w)} ({m.detail})", passed=False,
                               feedback=f"The answer repeats a known falsehood ({_short(w)}); "
                                        f"the expected answer is {_short(refs[0])}.",
                               path=m.path, matched_incorrect=w, entailment=self._entail_state())
        if wrong:
            return None
        f1s = [m for m in right if m.path == "token F1"]
        if f1s:
            best = max(f1s, key=lambda m: m.score)
            return self._ok_match(best, best.score, True)
        mismatch = next((m for m in right if m.path == "numeric mismatch"), None)
        if mismatch is not None and len(refs) == 1:
            return self.ok(0.0, f"numeric mismatch: {mismatch.detail}", passed=False,
                           feedback=f"The number is wrong; the expected answer is {_short(refs[0])}.",
                           path=mismatch.path, best_reference=mismatch.ref, entailment=self._entail_state())
        return None

    def _entail_state(self) -> str:
        return "used" if self._nli is not None else "unavailable"

    def _ok_match(self, m: _Match, score: float, passed: bool) -> EvalResult:
        return self.ok(score, f"{m.path}: {m.detail} with {_short(m.ref)}", passed=passed,
                       path=m.path, best_reference=m.ref, entailment=self._entail_state())

    def _semantic(self, pairs: list[tuple[str, str]]) -> list[_Match]:
        """Embedding cosine (one batched call), token F1 and two-way entailment (one batched call)
        per (answer, reference) pair. ``score`` is the semantic-equivalence score ``min(cosine,
        p_fwd, p_bwd)`` (cosine alone without the entailment model); ``info["agreement"]`` is the
        graded agreement used against incorrect answers (mean of cosine, token F1 and, when
        available, ``min(p_fwd, p_bwd)``)."""
        texts = sorted({t for p in pairs for t in p})
        vecs = embed(texts)
        index = {t: k for k, t in enumerate(texts)}
        cos = np.array([float(vecs[index[a]] @ vecs[index[r]]) for a, r in pairs])
        fwd = bwd = None
        if self._nli is not None:
            answers, refs = [a for a, _ in pairs], [r for _, r in pairs]
            probs = np.asarray(self._nli.entail_probs(answers + refs, refs + answers), dtype=float)
            if probs.shape != (2 * len(pairs),):
                raise EvaluatorError(f"entailment model returned shape {probs.shape}, expected ({2 * len(pairs)},)")
            fwd, bwd = probs[: len(pairs)], probs[len(pairs):]
        out = []
        for k, (a, r) in enumerate(pairs):
            c = max(0.0, float(cos[k]))
            f1 = token_f1(a, r)
            info = {"cosine": round(c, 4), "token_f1": round(f1, 4)}
            parts = [c, f1]
            score, detail = c, f"cosine {c:.2f}"
            if fwd is not None and bwd is not None:
                e_f, e_b = float(fwd[k]), float(bwd[k])
                info.update(entail_fwd=round(e_f, 4), entail_bwd=round(e_b, 4))
                score = min(c, e_f, e_b)
                parts.append(min(e_f, e_b))
                detail += f", entailment {e_f:.2f} / {e_b:.2f}"
            info["agreement"] = round(sum(parts) / len(parts), 4)
            out.append(_Match(r, score, "semantic", detail, info))
        return out

    def _equivalent(self, m: _Match) -> bool:
        ok = bool(m.info["cosine"] >= float(self.config["similarity_threshold"]))
        if "entail_fwd" in m.info:
            t = float(self.config["entailment_threshold"])
            ok = ok and m.info["entail_fwd"] >= t and m.info["entail_bwd"] >= t
        return ok

    def _finish(self, answer: str, refs: list[str], wrong: list[str], sem: dict[str, _Match]) -> EvalResult:
        if not wrong:
            best = max((sem[r] for r in refs), key=lambda m: m.score)
            passed = self._equivalent(best)
            reason = (f"semantic: {best.detail} with {_short(best.ref)} -> "
                      f"{'equivalent' if passed else 'not equivalent'}")
            feedback = "" if passed else f"The answer does not state the expected answer {_short(refs[0])}."
            return self.ok(best.score, reason, passed=passed, feedback=feedback, path="semantic",
                           best_reference=best.ref, entailment=self._entail_state(), **best.info)
        # Against incorrect answers: mean agreement with each side (the mean beat the max on the
        # fit half of TruthfulQA: ROC-AUC 0.77 vs 0.70; see docs/evaluators/relevancy-factual.md).
        right = [sem[r] for r in refs]
        false = [sem[w] for w in wrong]
        s_c = float(np.mean([m.info["agreement"] for m in right]))
        s_i = float(np.mean([m.info["agreement"] for m in false]))
        near_c = max(right, key=lambda m: m.info["agreement"])
        near_i = max(false, key=lambda m: m.info["agreement"])
        score = min(1.0, max(0.0, 0.5 + (s_c - s_i) / 2))
        passed = s_c > s_i
        reason = (f"mean agreement with the {len(right)} correct answer(s) {s_c:.2f} "
                  f"{'>' if passed else '<='} with the {len(false)} incorrect one(s) {s_i:.2f}; closest correct "
                  f"{_short(near_c.ref, 50)}, closest incorrect {_short(near_i.ref, 50)}")
        feedback = "" if passed else (f"The answer sides with falsehoods such as {_short(near_i.ref)}; the "
                                      f"correct answer is {_short(refs[0])}.")
        return self.ok(score, reason, passed=passed, feedback=feedback, path="semantic vs incorrect",
                       best_reference=near_c.ref, closest_incorrect=near_i.ref, correct_agreement=round(s_c, 4),
                       incorrect_agreement=round(s_i, 4), entailment=self._entail_state())
