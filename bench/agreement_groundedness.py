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
``TUNEGATE_BENCH_THREADS`` torch threads, default 2; ``TUNEGATE_BENCH_SPEED_ONLY=1`` for the speed rows only).
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
           "torch_threads", "truthfulqa_results"]

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


def _with_engine(quantize: str) -> NLIModel:
    """The shipped model run with ``quantize`` ("w8a8" or "none"), installed as the process-wide
    instance the evaluators load (so the timing covers the whole evaluator, as a suite runs it)."""
    from tunegate.evaluators import nli

    saved = os.environ.get(nli.QUANTIZE_ENV_VAR)
    os.environ[nli.QUANTIZE_ENV_VAR] = quantize
    try:
        model = NLIModel()
    finally:
        if saved is None:
            os.environ.pop(nli.QUANTIZE_ENV_VAR, None)
        else:
            os.environ[nli.QUANTIZE_ENV_VAR] = saved
    model._ensure()
    nli._CACHE[str(model.path)] = model
    return model


def speed_results(n: int = 200, words: int = 230, reps: int = 2) -> list[dict[str, Any]]:
    """groundedness rows/s on ~300-token contexts (SummEdits test documents cut to ``words`` words,
    their summaries as outputs), pair cache cleared first, model loading excluded.

    The shipped engine (packed W8A8) and the previous one (fp32 HF model, length-sorted padded
    batches of 32) are timed **interleaved in the same process** (``reps`` times each, best run
    kept), with process CPU seconds beside wall time, because the shared VM's load moves wall time
    by 3x between runs. Also reported: max |Δ P| of a pair scored alone vs in a batch of 32."""
    from tunegate.evaluators import nli

    test = load_summedits(DATASETS / "summedits" / "data.jsonl", "test")[:n]
    ctxs = summedits_contexts([{**r, "doc": " ".join(r["doc"].split()[:words])} for r in test])
    shipped = NLIModel.load()
    engines = {"w8a8": shipped, "none": _with_engine("none")}
    runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in engines}
    claims = 0.0
    try:
        for _ in range(reps):
            for name, model in engines.items():
                nli._CACHE[str(model.path)] = model
                model.clear_memo()
                load = os.getloadavg()[0]
                c0, t0 = time.process_time(), time.perf_counter()
                res = Groundedness().evaluate_batch(ctxs)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                assert all(r.status == "ok" for r in res)
                claims = sum(r.details.get("n_claims", 0) for r in res) / len(res)
                runs[name].append((wall, cpu, load))
        # batch invariance: the first 32 (window, claim) pairs, each alone vs all 32 in one call
        pairs = list(shipped._memo)[:32]
        drift = {}
        for name, model in engines.items():
            model.clear_memo()
            together = model.pair_probs([p for p, _ in pairs], [h for _, h in pairs])
            alone = []
            for p, h in pairs:
                model.clear_memo()
                alone.append(model.pair_probs([p], [h])[0])
            drift[name] = float(np.abs(np.array(alone) - together).max())
    finally:
        nli._CACHE[str(shipped.path)] = shipped
    out: list[dict[str, Any]] = []
    for name, label in (("w8a8", "packed W8A8 engine (shipped)"), ("none", "fp32 HF model (v3, before)")):
        wall, cpu, load = min(runs[name])
        rate = n / wall
        out.append({"evaluator": "groundedness", "dataset": f"summedits docs cut to {words} words (~300 tokens)",
                    "slice": f"{label}: {n} rows, {claims:.1f} claims/row, cold cache, {shipped.top_k} window/claim "
                             f"of {shipped.window_words} words, {torch_threads()} threads, {cpu:.1f} CPU-s, "
                             f"load avg {load:.1f}, max |dP| batch 1 vs 32 {drift[name]:.1e}",
                    "metric": "rows/s", "value": round(rate, 1), "target": SPEED_TARGET if name == "w8a8" else None,
                    "n": n, "rows_per_s": round(rate, 1), "cpu_seconds": round(cpu, 2), "load_avg_1m": round(load, 2),
                    "all_runs_wall_cpu_load": [[round(x, 2) for x in r] for r in runs[name]],
                    "max_abs_dp_batch1_vs_32": drift[name]})
    out.append({"evaluator": "groundedness", "dataset": out[0]["dataset"], "slice": "speed-up, same run (best of each)",
                "metric": "rows/s ratio w8a8 / fp32", "value": round(out[0]["value"] / out[1]["value"], 2),
                "target": None, "n": n, "rows_per_s": out[0]["value"],
                "cpu_seconds_ratio_fp32_over_w8a8": round(out[1]["cpu_seconds"] / out[0]["cpu_seconds"], 2)})
    return out


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def results() -> list[dict[str, Any]]:
    if os.environ.get("TUNEGATE_BENCH_SPEED_ONLY"):
        return speed_results()
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
