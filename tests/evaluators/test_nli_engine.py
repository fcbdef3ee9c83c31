"""The packed W8A8 cross-encoder engine: a pair's probabilities must not depend on its batch
neighbours, the batch size, the pack size or the thread count (a gate and its score cache compare
rows one by one), and the int8 forward must stay close to the fp32 model it stands for."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from tunegate.evaluators import nli as nli_mod
from tunegate.evaluators.nli import DEFAULT_MODEL_DIR, NLIModel

torch = pytest.importorskip("torch")

_SUBJECTS = ["The council", "A small bakery in Leeds", "The research team", "Maria's brother", "The airline",
             "Our neighbour", "The football club", "The city library"]
_VERBS = ["approved a budget of 4 million dollars", "opened a second shop in March", "published its results on Monday",
          "moved to Berlin in 2019", "cancelled 30 flights after the storm", "painted the fence green",
          "signed a new striker for the season", "extended its opening hours"]


def _pairs(n: int, offset: int = 0) -> tuple[list[str], list[str]]:
    """n premise/hypothesis pairs of varied lengths (entailed, contradicted and unrelated ones)."""
    combos = list(itertools.product(_SUBJECTS, _VERBS))
    prem, hyp = [], []
    for i in range(offset, offset + n):
        s, v = combos[i % len(combos)]
        filler = " It was reported by local news." * (i % 5)
        prem.append(f"{s} {v}.{filler} Nobody expected that.")
        other = combos[(i * 7 + 3) % len(combos)]
        hyp.append(f"{s} {v}." if i % 3 == 0 else f"{s} {other[1]}." if i % 3 == 1 else f"{other[0]} {v}.")
    return prem, hyp


@pytest.fixture(scope="module")
def engine() -> tuple[Any, Any]:
    m = NLIModel(DEFAULT_MODEL_DIR)
    assert m.quantize == "w8a8", "the shipped manifest runs the packed W8A8 engine"
    return m._ensure()


def _probs(eng_tok: tuple[Any, Any], prem: list[str], hyp: list[str], **kw: Any) -> np.ndarray:
    eng, tok = eng_tok
    enc = tok(prem, hyp, truncation="only_first", max_length=160)
    return np.asarray(torch.softmax(eng.logits(enc["input_ids"], enc["token_type_ids"], **kw), -1).numpy())


@pytest.mark.slow
def test_a_pairs_probabilities_do_not_depend_on_its_batch(engine: tuple[Any, Any]) -> None:
    """Bit-identical alone, in a batch of 32, among other neighbours, in small packs, on 1 or 2
    threads. torch's dynamic int8 (one activation scale per batch) moved pairs by up to 0.065 here."""
    prem, hyp = _pairs(32)
    batch = _probs(engine, prem, hyp)
    alone = np.concatenate([_probs(engine, [p], [h]) for p, h in zip(prem[:8], hyp[:8], strict=True)])
    np.testing.assert_array_equal(alone, batch[:8])
    other_p, other_h = _pairs(40, offset=17)  # different neighbours, and the pair at another position
    mixed = _probs(engine, [*other_p, prem[5], *other_p[:3]], [*other_h, hyp[5], *other_h[:3]])
    np.testing.assert_array_equal(mixed[40], batch[5])
    for kw in ({"max_tokens": 64}, {"max_tokens": 300, "threads": 2}, {"threads": 1}, {"max_tokens": 4096}):
        np.testing.assert_array_equal(_probs(engine, prem, hyp, **kw), batch, err_msg=str(kw))


@pytest.mark.slow
def test_packed_forward_matches_the_hf_model(engine: tuple[Any, Any]) -> None:
    """The hand-written forward in fp32 reproduces transformers' BERT (so the engine computes the
    shipped model), and W8A8 rounding stays small next to it (measured max 0.028 on 398 pairs)."""
    from transformers import AutoModelForSequenceClassification

    from tunegate.evaluators.nli_engine import load_packed_bert

    prem, hyp = _pairs(24)
    hf = AutoModelForSequenceClassification.from_pretrained(str(DEFAULT_MODEL_DIR), dtype=torch.float32).eval()
    ref = nli_mod.pair_probs(hf, engine[1], prem, hyp, max_length=160)
    fp32 = _probs((load_packed_bert(DEFAULT_MODEL_DIR, int8=False), engine[1]), prem, hyp)
    assert np.abs(fp32 - ref).max() < 1e-5
    w8a8 = _probs(engine, prem, hyp)
    assert np.abs(w8a8 - ref).max() < 0.06
    assert (w8a8.argmax(1) == ref.argmax(1)).mean() >= 0.9


@pytest.mark.slow
def test_nli_model_scores_the_same_through_its_memo_and_without(engine: tuple[Any, Any]) -> None:
    """NLIModel.pair_probs (dedup + memo) gives a pair the probabilities it gets in any other call."""
    prem, hyp = _pairs(12)
    m = NLIModel(DEFAULT_MODEL_DIR)
    first = m.pair_probs(prem, hyp)
    m.clear_memo()
    again = m.pair_probs(prem[::-1] + prem[:2], hyp[::-1] + hyp[:2])
    np.testing.assert_array_equal(again[:12][::-1], first)
    np.testing.assert_array_equal(again[12:], first[:2])


def test_quantize_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    """"int8" (before v4: torch's per-batch dynamic quantization, retired) now selects the packed
    W8A8 engine; "none" the fp32 HF model; anything else is refused."""
    monkeypatch.setenv("TUNEGATE_NLI_QUANTIZE", "int8")
    assert NLIModel().quantize == "w8a8"
    monkeypatch.setenv("TUNEGATE_NLI_QUANTIZE", "none")
    assert NLIModel().quantize == "none"
    monkeypatch.setenv("TUNEGATE_NLI_QUANTIZE", "fp16")
    with pytest.raises(ValueError, match="'w8a8' or 'none'"):
        NLIModel()


def test_engine_refuses_what_it_does_not_implement() -> None:
    from tunegate.evaluators.nli_engine import PackedBert

    with pytest.raises(ValueError, match="BERT"):
        PackedBert({"model_type": "llama"}, {})
    with pytest.raises(ValueError, match="GELU"):
        PackedBert({"model_type": "bert", "hidden_act": "relu"}, {})
