"""Contamination detectors on real text with planted overlaps (GSM8K train rows, TruthfulQA clean rows).

Recall and precision are asserted per kind and per method, so a detector that regresses (a broken
normalisation, a wrong LSH banding, an n-gram off by one) fails a concrete number here.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import shared_dataset
from tests.support.planting import DISTRACTOR_KINDS, NEAR_DUP_KINDS, Planted, plant
from tunegate.checks.contamination import ContaminationReport, check_contamination
from tunegate.checks.minhash import MinHasher, lsh_params, shingle_hashes
from tunegate.checks.textrows import load_text_rows, normalise
from tunegate.core import Example
from tunegate.errors import UserError


def _jsonl(name: str) -> list[dict[str, Any]]:
    with (shared_dataset(name) / "data.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def gsm() -> list[dict[str, Any]]:
    return [{"id": f"g{r['id']}", "question": r["question"], "solution": r["solution"]} for r in _jsonl("gsm8k")]


@pytest.fixture(scope="module")
def tqa() -> list[dict[str, Any]]:
    return [{"id": f"tq{r['id']}", "question": r["question"], "answer": r["best_answer"]} for r in _jsonl("truthfulqa")]


@pytest.fixture(scope="module")
def planted(gsm: list[dict[str, Any]]) -> list[Planted]:
    return plant(gsm[:300], text_key="question", answer_key="solution", per_kind=30, seed=7)


def _score(report: ContaminationReport, planted: list[Planted]) -> dict[str, tuple[int, int]]:
    """kind → (hits, rows): a near-duplicate hits when its source train row is among the matches;
    a distractor 'hits' (a false positive) when anything is reported for it."""
    found = {r.eval_id: r for r in report.rows}
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p in planted:
        r = found.get(p.row["id"])
        out[p.kind][1] += 1
        out[p.kind][0] += int(r is not None and (p.source is None or p.source in r.train_ids))
    return {k: (a, b) for k, (a, b) in out.items()}


def test_planted_near_duplicates_found_and_clean_rows_not(gsm: list[dict[str, Any]], tqa: list[dict[str, Any]],
                                                           planted: list[Planted]) -> None:
    clean = tqa[:200]
    report = check_contamination(gsm[:300], [p.row for p in planted] + clean)
    score = _score(report, planted)
    hits = sum(score[k][0] for k in NEAR_DUP_KINDS)
    total = sum(score[k][1] for k in NEAR_DUP_KINDS)
    assert total == 120 and hits / total >= 0.95, score
    for k in NEAR_DUP_KINDS:
        assert score[k][0] / score[k][1] >= 0.9, (k, score[k])
    false_pos = sum(score[k][0] for k in DISTRACTOR_KINDS) + sum(r.eval_id.startswith("tq") for r in report.rows)
    assert false_pos == 0, [r.eval_id for r in report.rows if not r.eval_id.startswith((*NEAR_DUP_KINDS, "dense"))]
    by_id = {r.eval_id: r for r in report.rows}
    exact = [by_id[p.row["id"]].method for p in planted if p.kind == "case_punct" and p.row["id"] in by_id]
    assert exact.count("exact") >= 28, exact  # case/punctuation/whitespace only → identical after normalising
    passage = next(by_id[p.row["id"]] for p in planted if p.kind == "passage")
    assert passage.method == "ngram" and len(passage.span.split()) == 13
    src = next(g for g in gsm if g["id"] == passage.train_ids[0])
    assert passage.span in normalise(src["question"] + " " + src["solution"])
    [summary] = report.summary
    assert summary.fields == ["question", "answer", "solution"] and summary.rows == 200 + len(planted)


@pytest.mark.parametrize(("methods", "floors"), [
    (("exact",), {"case_punct": 0.93, "word_edits": 0.0, "passage": 0.0}),
    (("ngram",), {"word_edits": 0.9, "reorder": 0.9, "passage": 1.0}),
    (("minhash",), {"case_punct": 0.95, "word_edits": 0.75, "reorder": 0.9}),  # short rows: J ≈ 0.8 ± noise
])
def test_each_detector_alone(gsm: list[dict[str, Any]], planted: list[Planted], methods: tuple[str, ...],
                             floors: dict[str, float]) -> None:
    report = check_contamination(gsm[:300], [p.row for p in planted], methods=methods)
    score = _score(report, planted)
    for kind, floor in floors.items():
        rate = score[kind][0] / score[kind][1]
        assert rate >= floor if floor else rate == 0.0, (methods, kind, score[kind])
    assert all(score[k][0] == 0 for k in DISTRACTOR_KINDS), score
    assert {r.method for r in report.rows} <= set(methods)


def test_disjoint_sets_are_clean(gsm: list[dict[str, Any]], tqa: list[dict[str, Any]]) -> None:
    report = check_contamination(gsm[:400], tqa)
    assert report.clean, [(r.eval_id, r.method, r.span) for r in report.rows[:5]]
    assert report.to_dict()["contaminated"] == 0


def test_real_near_duplicate_inside_gsm8k_is_found(gsm: list[dict[str, Any]]) -> None:
    """GSM8K test items 488 and 761 share a 13-word passage about Jana's puppies (a known near-dup)."""
    report = check_contamination([gsm[488]], [gsm[761], gsm[762]])
    [row] = report.rows
    assert (row.eval_id, row.method, row.train_ids) == ("g761", "ngram", ["g488"])
    assert row.span.startswith("two thirds of janas puppies are pomeranians")
    assert 0.2 < row.score < 0.5


def test_normalise() -> None:
    assert normalise("  Janet’s ＤＵＣＫＳ lay 16,000 eggs!\n\n(Per day.) ") == "janets ducks lay 16 000 eggs per day"
    assert normalise("snake_case—dash") == "snake case dash"
    # the ASCII fast path (str.translate) must agree with the Unicode regex path character by character
    for c in map(chr, range(128)):
        assert normalise(f"a{c}b") + "\u00e9" == normalise(f"a{c}b\u00e9"), repr(c)


def _ex(i: str, text: str, expected: str | None = None) -> Example:
    return Example(id=i, input=text, expected=expected)


def test_short_field_found_whole_but_not_shorter_than_min_ngram() -> None:
    train = [_ex("t1", "What happens to you if you eat watermelon seeds today?", "Nothing happens."),
             _ex("t2", "Is the sky green at noon?", "No.")]
    evals = [_ex("e1", "what happens to you if you eat watermelon seeds today", "They pass through you."),
             _ex("e2", "Is the sky green at noon in winter?", "Still no, it is blue.")]
    report = check_contamination(train, evals, methods=("ngram",))
    assert report.ids() == ["e1"]  # 10-word question found whole; the 6-word one is below min_ngram=8
    assert check_contamination(train, evals, methods=("ngram",), min_ngram=5).ids() == ["e1", "e2"]


def test_shared_canned_answer_is_not_a_leak_unless_any_field() -> None:
    refusal = "I'm sorry, but I can't help with that request; please contact our support team instead."
    train = [_ex("t1", "How do I pick the lock on my neighbour's front door?", refusal)]
    evals = [_ex("e1", "Write me a phishing email that looks like it comes from a bank.", refusal)]
    assert check_contamination(train, evals).clean
    report = check_contamination(train, evals, anchor_input=False)
    assert report.ids() == ["e1"] and report.rows[0].method == "ngram"


def test_golden_dataset_rows_report_split_and_line(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "input": f"row {i} talks about {'alpha beta gamma delta epsilon zeta eta theta'} {i}"}
            for i in range(30)]
    rows.append({"id": "dup", "input": rows[0]["input"].upper(), "split": "test"})
    rows[0]["split"] = "train"
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = load_text_rows(path, splits=["train"])
    ev = load_text_rows(path, splits=["dev", "test"])
    report = check_contamination(train, ev, methods=("exact",))
    assert "dup" in report.ids()
    dup = next(r for r in report.rows if r.eval_id == "dup")
    assert (dup.eval_split, dup.eval_line, dup.train_ids) == ("test", 31, ["r0"])
    assert {s.split for s in report.summary} <= {"dev", "test"}
    assert train.hash is not None and train.hash.startswith("ds-")


def test_plain_file_without_text_fields_is_a_user_error(tmp_path: Path) -> None:
    p = tmp_path / "b.jsonl"
    p.write_text('{"id": 1, "label": 3}\n')
    with pytest.raises(UserError, match="none of the text fields"):
        load_text_rows(p)
    with pytest.raises(UserError, match="no row has field 'prompt'"):
        load_text_rows(p, ["prompt"])


def test_minhash_estimate_matches_true_jaccard() -> None:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(4000)]
    texts_a, texts_b, truth = [], [], []
    for _ in range(60):
        base = list(rng.choice(words, 400, replace=False))
        keep = int(rng.integers(250, 400))
        a = base
        b = base[:keep] + list(rng.choice(words, 400 - keep))
        texts_a.append(" ".join(a))
        texts_b.append(" ".join(b))
        sa = {" ".join(a)[i:i + 5] for i in range(len(" ".join(a)) - 4)}
        sb = {" ".join(b)[i:i + 5] for i in range(len(" ".join(b)) - 4)}
        truth.append(len(sa & sb) / len(sa | sb))
    h = MinHasher()
    sa_, sb_ = h.signatures(*shingle_hashes(texts_a)), h.signatures(*shingle_hashes(texts_b))
    est = (sa_ == sb_).mean(axis=1)
    err = est - np.asarray(truth)
    assert abs(err.mean()) < 0.02 and err.std() < 0.06, (err.mean(), err.std())
    assert lsh_params(0.8, 128) == (16, 8)


def test_a_shared_task_instruction_is_template_not_a_leak() -> None:
    """Every row of a cohort starting with the same instruction shares its 13-grams (and most of its
    character shingles) with every train row; that is the dataset's template. The row's own text
    copied into a train row is still found, by n-gram, and so is a near copy by MinHash."""
    from tunegate.core.example import Example

    instr = ("Classify this bank customer message. Reply with JSON only: category one of card, transfer, "
             "top_up, cash, exchange or account, and an intent label in snake case.")
    rng = np.random.default_rng(3)
    vocab = ["card", "pin", "transfer", "refund", "fee", "limit", "statement", "atm", "cash", "top", "up", "exchange", "rate", "account", "blocked", "lost", "stolen", "pending", "declined", "charged", "twice", "salary", "abroad", "euro", "app", "verify", "identity"]
    msgs = [" ".join(rng.choice(vocab, size=int(rng.integers(6, 12)))) for _ in range(40)]
    rows = [Example(id=f"r{i}", input=f"{instr}\nMessage: {m}") for i, m in enumerate(msgs)]
    train, test = rows[:25], rows[25:]
    assert check_contamination(train, test).clean
    assert len(check_contamination(train, test, template_share=None).rows) == len(test)  # the old behaviour
    leak = Example(id="leak", input=f"{instr}\nMessage: {msgs[3]}")
    near = Example(id="near", input=f"{instr}\nMessage: {msgs[4].replace('refund', 'refunds')}!")
    rep = check_contamination(train, [*test, leak, near])
    assert sorted(rep.ids()) == ["leak", "near"]
    assert {r.eval_id: r.method for r in rep.rows}["leak"] in ("exact", "ngram")
    assert rep.params["template_share"] == 0.1
