"""Agreement of the embedding evaluators with public labels.

* ``answer_relevancy`` on shared/datasets/bitext_customer_support: each question with its own
  reference answer (on topic, label 1) versus the answer of a random row of another intent (off
  topic, label 0), and a harder variant where the other answer comes from the same category (e.g.
  "cancel order" vs "change order"). The logistic calibration is fit on one half of the rows
  (:func:`fit_calibration`, which reproduces ``relevancy.CALIBRATION``) and scored on the other half.
* ``factual_accuracy`` on shared/datasets/truthfulqa: every human-written correct and incorrect
  answer is scored as a model output against the *other* references of its question (the candidate
  is removed from the lists it is scored against); ROC-AUC of the score and accuracy of ``passed``,
  with ``expected`` only and with ``metadata.incorrect_answers`` too.

Run: ``python bench/agreement_relevancy.py`` (``--fit`` prints freshly fit calibration constants).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from tunegate.core.example import Example
from tunegate.core.result import ModelOutput
from tunegate.evaluators.base import EvalContext
from tunegate.evaluators.relevancy import CALIBRATION, AnswerRelevancy, embed, fit_logistic, roc_auc

__all__ = [
    "factual_results",
    "fit_calibration",
    "main",
    "relevancy_pairs",
    "relevancy_results",
    "relevancy_truthfulqa",
    "results",
    "truthfulqa_eval",
    "truthfulqa_rows",
]

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TUNEGATE_SHARED_DATASETS", REPO / ".." / "shared" / "datasets")).resolve()
SEED = 0


def _rows(name: str) -> list[dict[str, Any]]:
    text = (DATASETS / name / "data.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def split_of(row_id: Any) -> str:
    """'fit' or 'held' by a hash of the row id (stable, independent of file order)."""
    return "fit" if hashlib.sha256(str(row_id).encode()).digest()[0] % 2 == 0 else "held"


def relevancy_pairs(rows: list[dict[str, Any]], *, seed: int = SEED,
                    hard: bool = False) -> list[tuple[str, str, int]]:
    """(question, answer, on-topic label): each row's own answer (1) and one answer of another row
    (0) — of another intent, or with ``hard`` of another intent in the same category."""
    rng = random.Random(seed)
    out: list[tuple[str, str, int]] = []
    for r in rows:
        if hard:
            pool = [o for o in rows if o["category"] == r["category"] and o["intent"] != r["intent"]]
        else:
            pool = [o for o in rows if o["intent"] != r["intent"]]
        if not pool:
            continue
        other = rng.choice(pool)
        out.append((r["instruction"], r["expected_response"], 1))
        out.append((r["instruction"], other["expected_response"], 0))
    return out


def _cosines(pairs: list[tuple[str, str, int]]) -> tuple[np.ndarray, np.ndarray]:
    qs = sorted({q for q, _, _ in pairs})
    ans = sorted({a for _, a, _ in pairs})
    vecs = embed(qs + ans)
    qv = {q: vecs[i] for i, q in enumerate(qs)}
    av = {a: vecs[len(qs) + i] for i, a in enumerate(ans)}
    cos = np.array([float(qv[q] @ av[a]) for q, a, _ in pairs])
    return cos, np.array([y for _, _, y in pairs])


def fit_calibration(seed: int = SEED) -> dict[str, Any]:
    """Fit ``(a, b)`` on the fit half of bitext; return them with held-out AUC/accuracy."""
    rows = _rows("bitext_customer_support")
    fit_rows = [r for r in rows if split_of(r["id"]) == "fit"]
    held_rows = [r for r in rows if split_of(r["id"]) == "held"]
    x, y = _cosines(relevancy_pairs(fit_rows, seed=seed))
    a, b = fit_logistic(x, y)
    hx, hy = _cosines(relevancy_pairs(held_rows, seed=seed))
    p = 1.0 / (1.0 + np.exp(-(a * hx + b)))
    return {"a": round(a, 4), "b": round(b, 4), "fit_rows": len(fit_rows), "held_rows": len(held_rows),
            "held_auc": roc_auc(hx, hy), "held_accuracy": float(np.mean((p >= 0.5) == (hy == 1)))}


def _relevancy_eval(pairs: list[tuple[str, str, int]]) -> tuple[np.ndarray, np.ndarray, float]:
    ev = AnswerRelevancy()
    ctxs = [EvalContext(Example(id=str(i), input=q), ModelOutput(text=a)) for i, (q, a, _) in enumerate(pairs)]
    t0 = time.perf_counter()
    res = ev.evaluate_batch(ctxs)
    dt = time.perf_counter() - t0
    scores = np.array([r.score for r in res], dtype=float)
    return scores, np.array([y for _, _, y in pairs]), len(pairs) / dt


def relevancy_results() -> list[dict[str, Any]]:
    rows = _rows("bitext_customer_support")
    held = [r for r in rows if split_of(r["id"]) == "held"]
    out: list[dict[str, Any]] = []
    for domain, hard in (("held-out half, other intent", False), ("held-out half, same category", True)):
        pairs = relevancy_pairs(held, seed=SEED, hard=hard)
        scores, labels, rate = _relevancy_eval(pairs)
        base = {"evaluator": "answer_relevancy", "dataset": "bitext_customer_support", "slice": domain,
                "n": len(pairs), "rows_per_s": round(rate, 1)}
        out.append({**base, "metric": "ROC-AUC", "value": roc_auc(scores, labels), "target": 0.95 if not hard else None})
        out.append({**base, "metric": "accuracy@0.5", "value": float(np.mean((scores >= 0.5) == (labels == 1))),
                    "target": 0.9 if not hard else None})
    return out


def truthfulqa_rows(questions: list[dict[str, Any]], *, with_incorrect: bool) -> list[tuple[Example, str, int]]:
    """(row, candidate answer, truth label) for every correct and incorrect answer of each question.

    The candidate is removed from the references it is scored against (it would match itself);
    a candidate that leaves no correct reference is dropped.
    """
    out: list[tuple[Example, str, int]] = []
    for q in questions:
        correct = list(dict.fromkeys([q["best_answer"], *q["correct_answers"]]))
        wrong = list(dict.fromkeys(q["incorrect_answers"]))
        for label, pool in ((1, correct), (0, wrong)):
            for k, cand in enumerate(pool):
                refs = [c for c in correct if c != cand]
                bad = [w for w in wrong if w != cand]
                if not refs:
                    continue
                meta = {"incorrect_answers": bad} if with_incorrect and bad else {}
                ex = Example(id=f"{q['id']}-{label}-{k}", input=q["question"], expected=refs, metadata=meta)
                out.append((ex, cand, label))
    return out


def truthfulqa_eval(questions: list[dict[str, Any]], *, with_incorrect: bool) -> dict[str, Any]:
    """ROC-AUC of the factual_accuracy score and accuracy of ``passed`` (true vs false answers)."""
    from tunegate.evaluators.factual import FactualAccuracy

    ev = FactualAccuracy()
    rows = truthfulqa_rows(questions, with_incorrect=with_incorrect)
    ctxs = [EvalContext(ex, ModelOutput(text=cand)) for ex, cand, _ in rows]
    t0 = time.perf_counter()
    res = ev.evaluate_batch(ctxs)
    dt = time.perf_counter() - t0
    bad = [r for r in res if r.status != "ok"]
    if bad:
        raise RuntimeError(f"{len(bad)} rows not scored: {bad[0].reason}")
    scores = np.array([r.score for r in res], dtype=float)
    labels = np.array([y for _, _, y in rows])
    passed = np.array([bool(r.passed) for r in res])
    paths: dict[str, int] = {}
    for r in res:
        paths[r.details.get("path", "?")] = paths.get(r.details.get("path", "?"), 0) + 1
    return {"auc": roc_auc(scores, labels), "accuracy": float(np.mean(passed == (labels == 1))),
            "n": len(rows), "rows_per_s": len(rows) / dt, "paths": paths,
            "entailment": res[0].details.get("entailment", "?")}


def factual_results() -> list[dict[str, Any]]:
    """factual_accuracy on TruthfulQA: expected only, and expected + incorrect_answers; on all 790
    questions and on the held-out half (the mean-over-references aggregation used against incorrect
    answers was chosen on the other, 'fit', half)."""
    all_q = _rows("truthfulqa")
    out: list[dict[str, Any]] = []
    for part, questions in (("all", all_q), ("held-out half", [q for q in all_q if split_of(q["id"]) == "held"])):
        for slice_name, with_incorrect in (("expected only", False), ("expected + incorrect_answers", True)):
            r = truthfulqa_eval(questions, with_incorrect=with_incorrect)
            base = {"evaluator": "factual_accuracy", "dataset": "truthfulqa",
                    "slice": f"{part}, {slice_name} (entailment {r['entailment']})", "n": r["n"],
                    "rows_per_s": round(r["rows_per_s"], 1)}
            # no target: embedding-only until the NLI model lands (then the lead re-runs this)
            out.append({**base, "metric": "ROC-AUC", "value": r["auc"], "target": None})
            out.append({**base, "metric": "accuracy(passed)", "value": r["accuracy"], "target": None})
    return out


def relevancy_truthfulqa() -> list[dict[str, Any]]:
    """Out-of-domain check of the bitext calibration: TruthfulQA question + its best answer (1) vs
    + the best answer of another question (0)."""
    qs = _rows("truthfulqa")
    rng = random.Random(SEED)
    pairs: list[tuple[str, str, int]] = []
    for i, q in enumerate(qs):
        other = qs[(i + rng.randrange(1, len(qs))) % len(qs)]
        pairs += [(q["question"], q["best_answer"], 1), (q["question"], other["best_answer"], 0)]
    scores, labels, rate = _relevancy_eval(pairs)
    base = {"evaluator": "answer_relevancy", "dataset": "truthfulqa", "slice": "best answer vs another "
            "question's (out of domain)", "n": len(pairs), "rows_per_s": round(rate, 1)}
    return [{**base, "metric": "ROC-AUC", "value": roc_auc(scores, labels), "target": None},
            {**base, "metric": "accuracy@0.5", "value": float(np.mean((scores >= 0.5) == (labels == 1))),
             "target": None}]


def results() -> list[dict[str, Any]]:
    return relevancy_results() + relevancy_truthfulqa() + factual_results()


def main() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("TUNEGATE_BENCH_THREADS", "1")))
    if "--fit" in sys.argv:
        fit = fit_calibration()
        print(fit)
        print(f"constants in relevancy.py: a={CALIBRATION.a} b={CALIBRATION.b}")
        return
    table = Table(title="agreement: answer_relevancy + factual_accuracy")
    for col in ("evaluator", "dataset", "slice", "metric", "value", "target", "n", "rows/s"):
        table.add_column(col)
    for r in results():
        miss = r["target"] is not None and r["value"] < r["target"]
        table.add_row(r["evaluator"], r["dataset"], r["slice"], r["metric"],
                      f"[red]{r['value']:.3f}[/red]" if miss else f"{r['value']:.3f}",
                      "" if r["target"] is None else f"{r['target']:.2f}", str(r["n"]), f"{r['rows_per_s']:.0f}")
    Console(width=180).print(table)


if __name__ == "__main__":
    main()
