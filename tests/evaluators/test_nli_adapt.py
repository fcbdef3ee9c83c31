"""nli_adapt: the document split that keeps the published figures honest, and the claim-level
labels it derives from SummEdits' seed summaries (no model: the windower needs no weights)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared_dataset
from tunegate.evaluators.nli import NLIModel
from tunegate.evaluators.training.nli_adapt import INFERENCE, claim_pairs, dev_part
from tunegate.evaluators.training.nli_calibrate import load_summedits
from tunegate.evaluators.training.nli_train import NOT_ENTAILED


def _windower() -> NLIModel:
    w = NLIModel.__new__(NLIModel)
    w.window_words, w.top_k = INFERENCE["window_words"], 1
    return w


DOC = ("The council met on Monday. It approved a budget of 4 million dollars for the new library. "
       "The mayor said construction starts in May.")


def test_claim_pairs_label_only_the_edited_claim_not_entailed() -> None:
    seed = "The council approved a budget of 4 million dollars. Construction starts in May."
    rows = [
        {"doc": DOC, "summary": seed, "original_summary": seed, "label": 1},
        {"doc": DOC, "summary": "The council approved a budget of 9 million dollars. Construction starts in May.",
         "original_summary": seed, "label": 0},
    ]
    pairs = {p["hypothesis"]: p["label"] for p in claim_pairs(rows, _windower())}
    assert pairs == {"The council approved a budget of 4 million dollars.": 0,
                     "Construction starts in May.": 0,
                     "The council approved a budget of 9 million dollars.": NOT_ENTAILED}


def test_an_unchanged_claim_of_an_inconsistent_row_is_not_a_negative() -> None:
    """Only the claims an edit introduced are negatives; the copied ones stay entailed (the seed's)."""
    seed = "The council met on Monday. The mayor spoke."
    rows = [{"doc": DOC, "summary": "The council met on Friday. The mayor spoke.", "original_summary": seed,
             "label": 0}]
    pairs = {p["hypothesis"]: p["label"] for p in claim_pairs(rows, _windower())}
    assert pairs["The mayor spoke."] == 0
    assert pairs["The council met on Friday."] == NOT_ENTAILED


def test_dev_part_is_a_function_of_the_document_only() -> None:
    assert {dev_part(f"document {i}") for i in range(200)} == {"test", "calibrate", "adapt"}
    assert all(dev_part(f"document {i}") == dev_part(f"document {i}") for i in range(50))


def test_test_documents_are_never_adaptation_or_calibration_documents() -> None:
    """The held-out figure's documents (odd sha256, nli_calibrate's 'test') are exactly dev_part's 'test'."""
    path = shared_dataset("summedits") / "data.jsonl"
    test = load_summedits(path, "test")
    dev = load_summedits(path, "dev")
    assert {dev_part(r["doc"]) for r in test} == {"test"}
    assert {dev_part(r["doc"]) for r in dev} == {"adapt", "calibrate"}
    assert not {r["doc"] for r in test} & {r["doc"] for r in dev}


def test_head_was_fitted_with_the_shipped_inference_settings() -> None:
    """The head's probabilities are calibrated for one way of running the model (windows, length,
    int8): a change to the model's ``inference`` without a refit would silently miscalibrate it."""
    from tunegate.evaluators.grounding import load_grounding_head
    from tunegate.evaluators.nli import DEFAULT_MODEL_DIR

    m = json.loads((DEFAULT_MODEL_DIR / "tunegate-nli.json").read_text(encoding="utf-8"))
    head = load_grounding_head().manifest
    assert head["nli_inference"] == m["inference"]
    assert head["inference"]["top_k"] == m["inference"]["top_k"]


def test_quantize_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEGATE_NLI_QUANTIZE", "int4")
    with pytest.raises(ValueError, match="w8a8' or 'none'"):
        NLIModel()
