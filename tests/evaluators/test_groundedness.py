"""Groundedness / faithfulness / hallucination: claim splitting, config and skip/error discipline
(no model), then the shipped NLI model on hand-made rows and a fixed SummEdits slice."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import shared_dataset
from tunegate.core.example import Example
from tunegate.core.result import ModelOutput
from tunegate.errors import UserError
from tunegate.evaluators import nli as nli_mod
from tunegate.evaluators.base import EvalContext
from tunegate.evaluators.groundedness import Faithfulness, Groundedness, HallucinationScore
from tunegate.evaluators.grounding import FEATURES, claim_hypothesis, lexical_features, load_grounding_head
from tunegate.evaluators.nli import DEFAULT_MODEL_DIR, NLIModel, chunk_context, split_claims, split_sentences
from tunegate.evaluators.training.nli_calibrate import roc_auc

#: Measured with the shipped weights and grounding head on the fixed slices below (see
#: docs/evaluators/groundedness.md); the tests fail if the model, the head or the claim/window
#: machinery regresses by more than the margin. The SummEdits slice (60 test-document rows, never
#: seen by the head's fit) measured ROC-AUC 0.737 with grounding-head.json of 2026-12-07 07:28 UTC (v4
#: inference: packed W8A8 engine, one 80-word window per claim, hash-seed-independent window choice;
#: 0.731 with v3's fp32 HF model, 0.691
#: with v2's two 60-word windows). The floor stays at the v3 figure.
SLICE_AUC_FLOOR = 0.731
SLICE_MARGIN = 0.03
NLI_AUC_FLOOR = 0.724
NLI_ACC3_FLOOR = 0.555
NLI_MARGIN = 0.05


def _score(r: Any) -> float:
    """A result's score, which must be set (an ok row always has one)."""
    assert r.score is not None, r.reason
    return float(r.score)


def ctx(output: str, context: Any = None, expected: Any = None) -> EvalContext:
    return EvalContext(example=Example(id="r", input="Answer from the context.", context=context, expected=expected),
                       output=ModelOutput(text=output))


# -- claim splitting (no model) -------------------------------------------------------------------
@pytest.mark.parametrize(("text", "claims"), [
    ("", []),
    ("  ... ", []),
    ("Paris is the capital of France.", ["Paris is the capital of France."]),
    ("Dr. Smith went to Washington. He met the U.S. president on Jan. 3.",
     ["Dr. Smith went to Washington.", "He met the U.S. president on Jan. 3."]),
    ("The manager approved the budget for the new office in Berlin, but the board rejected the hiring "
     "plan for next year.",
     ["The manager approved the budget for the new office in Berlin", "The board rejected the hiring plan for next year."]),
    ("Revenue was $1.2 billion in the second quarter of the year; net income fell to $94.8 million over the same period.",
     ["Revenue was $1.2 billion in the second quarter of the year", "Net income fell to $94.8 million over the same period."]),
    # a serial list is not cut at ", and" even in a long sentence
    ("The package includes a Market Analysis Wizard, a Social Media Tracker, and Customizable Dashboards for every team.",
     ["The package includes a Market Analysis Wizard, a Social Media Tracker, and Customizable Dashboards for every team."]),
    # a short compound sentence stays whole
    ("She sings and he plays the piano.", ["She sings and he plays the piano."]),
])
def test_split_claims(text: str, claims: list[str]) -> None:
    assert split_claims(text) == claims


def test_split_sentences_handles_lists_and_decimals() -> None:
    assert split_sentences("Costs rose 3.5% in Q2.\n\n- First item here\n- Second item here") == [
        "Costs rose 3.5% in Q2.", "- First item here", "- Second item here"]


def test_chunk_context_windows_overlap_and_cover_every_sentence() -> None:
    sents = [f"Sentence number {i} says that item {i} costs {i} dollars." for i in range(30)]
    wins = chunk_context(" ".join(sents), max_words=30)
    assert all(len(w.split()) <= 30 for w in wins)
    for s in sents:
        assert any(s in w for w in wins)
    for a, b in itertools.pairwise(sents):  # neighbours share a window
        assert any(a in w and b in w for w in wins)
    assert chunk_context("Short context.") == ["Short context."]


# -- config, skip and error discipline (no model) -------------------------------------------------
@pytest.mark.parametrize("cfg", [{"threshold": 1.5}, {"empty_output": "maybe"}, {"empty_output": "pass"},
                                 {"max_claims": 0}, {"bogus": 1}, {"threshold": "high"}])
def test_bad_config_is_a_user_error_naming_the_evaluator(cfg: dict[str, Any]) -> None:
    with pytest.raises(UserError, match=r"evaluators\.groundedness"):
        Groundedness(**cfg)


@pytest.mark.parametrize("context", [None, "", "   \n ", []])
def test_rows_without_their_source_are_skipped_not_errors(context: Any) -> None:
    for ev in (Groundedness(), Faithfulness()):
        r = ev.evaluate(ctx("A claim.", context=context))
        assert r.status == "skipped" and "context" in r.reason and r.score is None
    r = HallucinationScore().evaluate(ctx("A claim.", context=context))
    assert r.status == "skipped" and "context or expected" in r.reason
    r = HallucinationScore().evaluate(ctx("A claim.", context=context, expected=["  "]))
    assert r.status == "skipped"


@pytest.mark.parametrize("output", ["", "   ", "\n\t", " ... "])
def test_empty_output_is_a_failure_without_loading_a_model(output: str) -> None:
    """Issue 11: an empty reply is never vacuously grounded; the bad end of every scale."""
    for cls in (Groundedness, Faithfulness, HallucinationScore):
        r = cls(model_path="/nonexistent/model").evaluate(ctx(output, context="The sky is blue."))
        assert (r.status, r.score, r.passed) == ("ok", 0.0, False)
        assert r.reason.startswith("empty output") and "vacuous" not in r.reason
    r = Groundedness(empty_output="skip").evaluate(ctx("  ", context="The sky is blue."))
    assert r.status == "skipped" and "empty output" in r.reason


def test_missing_model_is_an_error_not_a_zero(tmp_path: Path) -> None:
    r = Groundedness(model_path=str(tmp_path)).evaluate(ctx("The sky is green.", context="The sky is blue."))
    assert r.status == "error" and r.score is None and "no entailment model" in r.reason


def test_shipped_weights_match_the_manifests() -> None:
    manifest = json.loads((DEFAULT_MODEL_DIR / "tunegate-nli.json").read_text())
    digest = hashlib.sha256((DEFAULT_MODEL_DIR / "model.safetensors").read_bytes()).hexdigest()
    assert digest == manifest["weights"]["sha256"]
    assert manifest["weights"]["dtype"] == "float16"
    head = load_grounding_head()
    assert head.manifest["nli_model_sha256"] == digest  # the head was fitted on these weights' outputs
    assert tuple(head.manifest["features"]) == FEATURES
    used = json.dumps(head.manifest["data"]).lower()
    assert all(name.lower() not in used.replace(json.dumps(head.manifest["data"]["reserved_not_used"]).lower(), "")
               for name in ("halueval", "qags", "begin", "faithbench", "davidson"))


def test_lexical_features_catch_changed_numbers_names_and_dates() -> None:
    src = "Acme Corp reported revenue of $1,200 million in March 2023, said CEO Jane Smith."
    same = lexical_features(["Revenue was $1,200 million in March 2023, said Jane Smith."], src)
    changed = lexical_features(["Revenue was $1,300 million in April 2023, said John Brown."], src)
    assert same["novel_numbers"] == 0.0 and same["novel_names"] == 0.0
    assert changed["novel_numbers"] > 0 and changed["novel_names"] > 0
    assert changed["overlap"] < same["overlap"]


def test_short_answers_are_checked_with_their_question() -> None:
    assert claim_hypothesis("Paris.", "What is the capital of France?") == "What is the capital of France? Paris."
    long = "The capital of France is Paris, which has been the seat of government for centuries."
    assert claim_hypothesis(long, "What is the capital of France?") == long
    assert claim_hypothesis("Paris.", None) == "Paris."
    assert claim_hypothesis("Paris.", "Summarize the document.") == "Paris."  # not a question


# -- with the shipped model -----------------------------------------------------------------------
DOC = ("The Eiffel Tower is in Paris. It was completed in 1889 and is 330 metres tall. "
       "Gustave Eiffel's company designed and built it for the World's Fair.")


@pytest.mark.slow
def test_supported_claims_score_above_invented_ones() -> None:
    g, f = Groundedness(), Faithfulness()
    store = "The store opens at 9am and closes at 5pm on weekdays. It sells shoes and bags."
    rows = [ctx("Gustave Eiffel's company built the tower for the World's Fair.", context=DOC),
            ctx("The tower was completed in 1925 by Pierre Lemaire.", context=DOC),
            ctx("The store opens at 9am on weekdays.", context=store),
            ctx("The store opens at 7am on Sundays and sells jewellery.", context=store)]
    good1, bad1, good2, bad2 = g.evaluate_batch(rows)
    assert _score(good1) > _score(bad1) and _score(good2) > _score(bad2)
    assert not bad1.passed and not bad2.passed
    assert "not supported by the context" in (bad1.feedback or "") or "contradicted by the context" in (bad1.feedback or "")
    assert bad1.details["claims"][0]["supported"] is False
    assert 0.0 <= _score(bad1) <= _score(good1) <= 1.0
    fg1, fb1, fg2, fb2 = f.evaluate_batch(rows)
    assert _score(fg1) > _score(fb1) and _score(fg2) > _score(fb2)
    assert not fb1.passed


@pytest.mark.slow
def test_short_answer_judged_with_the_question() -> None:
    context = ("Canberra is the capital city of Australia. Sydney is the largest city in Australia "
               "and Melbourne is the second largest.")
    rows = [EvalContext(example=Example(id=a, input="What is the capital of Australia?", context=context),
                        output=ModelOutput(text=a)) for a in ("Canberra", "Perth")]
    right, wrong = Groundedness().evaluate_batch(rows)
    assert _score(right) > _score(wrong)
    # What the model saw: the answer with its question.
    assert right.details["claims"][0]["claim"] == "Canberra"


@pytest.mark.slow
def test_evidence_at_the_end_of_a_long_context_is_found() -> None:
    filler = " ".join(f"Paragraph {i} describes the weather in the northern valley on day {i}." for i in range(60))
    context = filler + " The bridge over the Varna river was opened in 1931 by the mayor."
    good, bad = Groundedness().evaluate_batch([ctx("The bridge over the Varna river was opened in 1931.", context=context),
                                               ctx("The bridge over the Varna river was opened in 1975.", context=context)])
    assert _score(good) > _score(bad)
    assert "1931" in good.details["claims"][0]["evidence"]


@pytest.mark.slow
def test_hallucination_uses_expected_facts_without_context() -> None:
    h = HallucinationScore()
    facts = ["The meeting is on Tuesday at 10am.", "It takes place in room 4."]
    ok, bad = h.evaluate_batch([ctx("The meeting takes place in room 4.", expected=facts),
                                ctx("The meeting is cancelled. Nobody will attend the meeting on Friday.",
                                    expected=facts)])
    assert ok.status == bad.status == "ok"
    assert _score(ok) > _score(bad) and ok.passed and not bad.passed
    assert "the expected facts" in (bad.feedback or "")


@pytest.mark.slow
def test_batch_api_loads_the_model_once_and_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = nli_mod.packed_pair_probs

    def counting(*a: Any, **kw: Any) -> np.ndarray:
        calls.append(len(a[2]))
        return real(*a, **kw)

    monkeypatch.setattr(nli_mod, "packed_pair_probs", counting)
    rows = [ctx(f"The tower is {n} metres tall. It is in Paris.", context=DOC) for n in (330, 331, 332, 333)]
    Groundedness().evaluate_batch(rows)
    Faithfulness().evaluate_batch(rows)  # same pairs: answered from the model's memo
    assert len(calls) == 1
    assert NLIModel.load().loads == 1
    assert NLIModel.load() is NLIModel.load(DEFAULT_MODEL_DIR)


def _summedits_slice() -> list[dict[str, Any]]:
    """30 consistent + 30 inconsistent test-document rows of the three short-document domains
    (fixed by sha256 of the id), never the calibration documents."""
    from tunegate.evaluators.training.nli_calibrate import load_summedits

    rows = load_summedits(shared_dataset("summedits") / "data.jsonl", "test")
    rows = [r for r in rows if r["domain"] in ("samsum", "ectsum", "scitldr")]
    rows.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
    return [r for r in rows if r["label"] == 1][:30] + [r for r in rows if r["label"] == 0][:30]


_WINDOWS_SCRIPT = """
import hashlib, pathlib, sys
from tunegate.evaluators.nli import NLIModel, split_claims
from tunegate.evaluators.training.nli_calibrate import load_summedits
m = NLIModel.__new__(NLIModel)
m.window_words, m.top_k = 80, 1
h = hashlib.sha256()
for r in load_summedits(pathlib.Path(sys.argv[1]), "test"):
    for c in split_claims(r["summary"]):
        h.update(repr(m.windows(r["doc"], c)).encode())
print(h.hexdigest())
"""


@pytest.mark.slow
def test_window_choice_does_not_depend_on_the_hash_seed() -> None:
    """The evidence window a claim is checked against must be the same in every process: summing
    rare-word weights in set order (PYTHONHASHSEED) picked different near-tied windows per run, so
    SummEdits scores moved between bench runs (scitldr AUC 0.645 vs 0.582)."""
    import os
    import subprocess
    import sys

    data = shared_dataset("summedits") / "data.jsonl"
    digests = set()
    for seed in ("1", "2", "3"):
        out = subprocess.run([sys.executable, "-c", _WINDOWS_SCRIPT, str(data)], capture_output=True, text=True,
                             check=True, env={**os.environ, "PYTHONHASHSEED": seed})
        digests.add(out.stdout.strip())
    assert len(digests) == 1


@pytest.mark.slow
def test_summedits_slice_auc_above_floor() -> None:
    rows = _summedits_slice()
    res = Groundedness().evaluate_batch([ctx(r["summary"], context=r["doc"]) for r in rows])
    assert all(r.status == "ok" for r in res)
    auc = roc_auc([r.score for r in res], [r["label"] == 1 for r in rows])
    assert auc >= SLICE_AUC_FLOOR - SLICE_MARGIN, f"groundedness ROC-AUC {auc:.3f} on the SummEdits slice"


@pytest.mark.slow
def test_nli_heldout_slice_above_floor() -> None:
    """200 held-out SNLI/MNLI pairs (premise-hash split of nli_train, never trained on)."""
    from tunegate.evaluators.training.nli_train import load_pairs

    _, held, _ = load_pairs(shared_dataset("nli"), 5)
    rows = sorted((r for r in held if r["set"] in ("snli_dev_test_esnli", "mnli_taxinli")),
                  key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())[:200]
    probs = NLIModel.load().pair_probs([r["premise"] for r in rows], [r["hypothesis"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    assert roc_auc(probs[:, 0], labels == 0) >= NLI_AUC_FLOOR - NLI_MARGIN
    assert (probs.argmax(1) == labels).mean() >= NLI_ACC3_FLOOR - NLI_MARGIN
