"""Agreement of groundedness / faithfulness / hallucination with SummEdits' human labels.

SummEdits (shared/datasets/summedits, Apache-2.0): summaries of documents from 8 domains, each a seed
summary or a minimal LLM edit of it, labelled by annotators as consistent (1) or inconsistent (0)
with the document. The row is ``context = doc``, ``output = summary``. The documents are split in
two by ``sha256(doc)``: the grounding head was fitted on the even half (``grounding_train``), so
every figure here is on the **odd half only** (test documents).

Per domain and averaged over domains: ROC-AUC of the score against the label and balanced
accuracy of ``passed``, next to the naive word-overlap baseline (share of the summary's words found
in the document; its threshold is fitted on the dev half in the same run). The grounding head
(``training/grounding_train.py``) was fitted on the even half only. rows/s is for the first
evaluator with a cold pair cache (model loading excluded); faithfulness and hallucination reuse the
same (window, claim) probabilities, as they would in one run of a suite. A separate speed row times
groundedness on ~300-token contexts (SummEdits test documents cut to 230 words) with a cold cache.

Run: ``python bench/agreement_groundedness.py`` (``TUNEGATE_BENCH_SUMMEDITS_PER_DOMAIN=N`` to
score N test rows per domain (smallest sha256(id)); default 0 = all ~100 per domain;
``TUNEGATE_BENCH_THREADS`` torch threads, default 2).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from tunegate.core.example import Example
from tunegate.core.result import ModelOutput
from tunegate.evaluators.base import EvalContext
from tunegate.evaluators.groundedness import Faithfulness, Groundedness, HallucinationScore
from tunegate.evaluators.nli import NLIModel
from tunegate.evaluators.training.nli_calibrate import (
    balanced_accuracy,
    best_threshold,
    calibration_sample,
    load_summedits,
    roc_auc,
)

__all__ = ["main", "naive_overlap", "results", "speed_results", "summedits_contexts", "summedits_results",
           "truthfulqa_results"]

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TUNEGATE_SHARED_DATASETS", REPO / ".." / "shared" / "datasets")).resolve()
TARGET_AUC = 0.75
SPEED_TARGET = 50.0
_TOKEN = re.compile(r"[a-z0-9]+")


def naive_overlap(output: str, document: str) -> float:
    """Share of the output's word tokens that occur in the document (the classic baseline)."""
    out = _TOKEN.findall(output.lower())
    if not out:
        return 1.0
    doc = set(_TOKEN.findall(document.lower()))
    return sum(t in doc for t in out) / len(out)


def summedits_contexts(rows: list[dict[str, Any]]) -> list[EvalContext]:
    return [EvalContext(example=Example(id=r["id"], input="Summarize the document.", context=r["doc"],
                                        cohorts=[r["domain"]]),
                        output=ModelOutput(text=r["summary"])) for r in rows]


def _per_domain(evaluator: str, rows: list[dict[str, Any]], scores: np.ndarray, passed: np.ndarray,
                rate: float) -> list[dict[str, Any]]:
    y = np.array([r["label"] == 1 for r in rows])
    dom = np.array([r["domain"] for r in rows])
    out: list[dict[str, Any]] = []
    aucs, baccs = [], []
    for d in sorted(set(dom.tolist())):
        m = dom == d
        auc, bacc = roc_auc(scores[m], y[m]), balanced_accuracy(passed[m], y[m])
        aucs.append(auc)
        baccs.append(bacc)
        base = {"evaluator": evaluator, "dataset": "summedits (test docs)", "slice": d, "n": int(m.sum()),
                "rows_per_s": rate}
        out += [{**base, "metric": "ROC-AUC", "value": auc, "target": None},
                {**base, "metric": "balanced accuracy", "value": bacc, "target": None}]
    base = {"evaluator": evaluator, "dataset": "summedits (test docs)", "slice": "mean over domains",
            "n": len(rows), "rows_per_s": rate}
    target = TARGET_AUC if evaluator == "groundedness" else None
    out += [{**base, "metric": "ROC-AUC", "value": float(np.mean(aucs)), "target": target},
            {**base, "metric": "balanced accuracy", "value": float(np.mean(baccs)), "target": None}]
    return out


def summedits_results() -> list[dict[str, Any]]:
    """SummEdits test documents: the three evaluators and the naive baseline, per domain."""
    path = DATASETS / "summedits" / "data.jsonl"
    per_domain = int(os.environ.get("TUNEGATE_BENCH_SUMMEDITS_PER_DOMAIN", "0"))
    test = load_summedits(path, "test")
    if per_domain > 0:
        test = calibration_sample(test, per_domain)
    ctxs = summedits_contexts(test)
    out: list[dict[str, Any]] = []
    NLIModel.load()._ensure()  # exclude loading from rows/s
    rate = 0.0
    for i, ev in enumerate((Groundedness(), Faithfulness(), HallucinationScore())):
        t0 = time.perf_counter()
        res = ev.evaluate_batch(ctxs)
        if i == 0:
            rate = round(len(ctxs) / (time.perf_counter() - t0), 2)
        bad = [r for r in res if r.status != "ok"]
        if bad:
            raise RuntimeError(f"{ev.name}: {len(bad)} rows not ok, e.g. {bad[0].reason}")
        out += _per_domain(ev.name, test, np.array([r.score for r in res], float),
                           np.array([bool(r.passed) for r in res]), rate)
    dev = load_summedits(path, "dev")
    t_naive, _ = best_threshold([naive_overlap(r["summary"], r["doc"]) for r in dev],
                                [r["label"] == 1 for r in dev])
    t0 = time.perf_counter()
    naive = np.array([naive_overlap(r["summary"], r["doc"]) for r in test])
    naive_rate = round(len(test) / max(time.perf_counter() - t0, 1e-9), 1)
    out += _per_domain(f"naive word overlap (t={t_naive:.3f})", test, naive, naive >= t_naive, naive_rate)
    return out


def truthfulqa_results(n_questions: int = 200) -> list[dict[str, Any]]:
    """``hallucination`` without context: per question (the ``n_questions`` smallest sha256(id)), a
    correct answer other than the best one (label 1) and the best incorrect answer (label 0) are
    scored against ``expected`` = the question's other correct answers. No calibration uses this set."""
    import hashlib

    text = (DATASETS / "truthfulqa" / "data.jsonl").read_text(encoding="utf-8")
    qs = sorted((json.loads(line) for line in text.splitlines() if line.strip()),
                key=lambda r: hashlib.sha256(str(r["id"]).encode()).hexdigest())
    ctxs: list[EvalContext] = []
    labels: list[bool] = []
    for q in qs:
        good = [a for a in q["correct_answers"] if a != q["best_answer"]]
        if not good or len(ctxs) >= 2 * n_questions:
            continue
        for out, label in ((good[0], True), (q["best_incorrect_answer"], False)):
            facts = [a for a in q["correct_answers"] if a != out]
            ctxs.append(EvalContext(example=Example(id=f"{q['id']}-{int(label)}", input=q["question"],
                                                    expected=facts), output=ModelOutput(text=out)))
            labels.append(label)
    t0 = time.perf_counter()
    res = HallucinationScore().evaluate_batch(ctxs)
    rate = round(len(ctxs) / (time.perf_counter() - t0), 2)
    ok = [i for i, r in enumerate(res) if r.status == "ok"]
    scores = np.array([res[i].score for i in ok], float)
    y = np.array([labels[i] for i in ok])
    passed = np.array([bool(res[i].passed) for i in ok])
    base = {"evaluator": "hallucination", "dataset": "truthfulqa (expected = other correct answers)",
            "slice": f"{n_questions} questions", "n": len(ok), "rows_per_s": rate}
    return [{**base, "metric": "ROC-AUC", "value": roc_auc(scores, y), "target": None},
            {**base, "metric": "balanced accuracy", "value": balanced_accuracy(passed, y), "target": None}]


def speed_results(n: int = 200, words: int = 230) -> list[dict[str, Any]]:
    """groundedness rows/s on ~300-token contexts (SummEdits test documents cut to ``words`` words,
    their summaries as outputs), pair cache cleared first, model loading excluded."""
    test = load_summedits(DATASETS / "summedits" / "data.jsonl", "test")[:n]
    ctxs = summedits_contexts([{**r, "doc": " ".join(r["doc"].split()[:words])} for r in test])
    model = NLIModel.load()
    model._ensure()
    model.clear_memo()
    t0 = time.perf_counter()
    res = Groundedness().evaluate_batch(ctxs)
    rate = len(ctxs) / (time.perf_counter() - t0)
    assert all(r.status == "ok" for r in res)
    claims = sum(r.details.get("n_claims", 0) for r in res) / len(res)
    load = os.getloadavg()[0]
    return [{"evaluator": "groundedness", "dataset": f"summedits docs cut to {words} words (~300 tokens)",
             "slice": f"{n} rows, {claims:.1f} claims/row, cold cache, batch 32, {model.top_k} window/claim of "
                      f"{model.window_words} words, quantize={model.quantize}, load avg {load:.1f}",
             "metric": "rows/s", "value": round(rate, 1), "target": SPEED_TARGET, "n": n,
             "rows_per_s": round(rate, 1), "load_avg_1m": round(load, 2)}]


def results() -> list[dict[str, Any]]:
    return summedits_results() + truthfulqa_results() + speed_results()


def main() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("TUNEGATE_BENCH_THREADS", "2")))
    rows = results()
    table = Table(title="agreement: groundedness family on SummEdits (test documents)")
    for col in ("evaluator", "dataset", "slice", "metric", "value", "target", "n", "rows/s"):
        table.add_column(col)
    for r in rows:
        miss = r["target"] is not None and r["value"] < r["target"]
        table.add_row(r["evaluator"], r["dataset"], r["slice"], r["metric"],
                      f"[red]{r['value']:.3f}[/red]" if miss else f"{r['value']:.3f}",
                      "" if r["target"] is None else f"{r['target']:.2f}", str(r["n"]), f"{r['rows_per_s']:.1f}")
    Console().print(table)
    out = Path(os.environ.get("TUNEGATE_BENCH_JSON", REPO / "bench" / "results" / "agreement_groundedness.json"))
    out.write_text(json.dumps({"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "load_avg_1m_5m_15m": [round(x, 2) for x in os.getloadavg()],
                               "threads": int(os.environ.get("TUNEGATE_BENCH_THREADS", "2")),
                               "rows": rows}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
