"""Agreement of the judge family with public labels: task_completion's reference path, and the
local SmolLM2 as an LLM judge (to publish that it is *not* a signal, DESIGN §6).

What is measured (all on public sets in ../shared/datasets, read their README.txt):

* **BFCL** (Apache-2.0): ground-truth calls must pass and perturbed calls (wrong function, a
  required argument dropped, a value outside the allowed list, an extra call, a made-up call on an
  irrelevance row) must fail through ``task_completion``'s reference path. Metric: accuracy
  (agreement with the label), target 1.0 — the path delegates to ``tool_selection``.
* **TruthfulQA** (Apache-2.0): candidate output = ``best_answer`` (true) or ``best_incorrect_answer``
  (false) for each question; ``expected`` = the *other* correct answers (so no answer is matched
  against itself); with and without ``metadata.incorrect_answers`` = the other incorrect answers.
  Metrics: ROC AUC of the score against the true/false label, and accuracy of ``passed``.
* **Local judge** (SmolLM2-135M-Instruct, Apache-2.0): 40 TruthfulQA answers (questions 0..39,
  alternately the true and the false answer), judged (a) by ``task_completion`` in judge mode
  with the reference answer shown, binary scale, and (b) by ``custom`` with a truthfulness rubric
  and no reference, 1–5 scale. Metrics: AUC over the rows the judge scored, coverage (rows not
  ``error``), rows/s (torch 1 thread on a shared 2-core machine). Expected AUC ≈ 0.5.

Run: ``python bench/agreement_judge.py`` (``--no-local`` skips the local-model part, ~30 min on a
busy 2-core machine; ``--local-only`` runs only that part).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tunegate.core.example import Example, ToolCall
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.evaluators.llm_judges import CustomEvaluation, TaskCompletion

__all__ = ["main", "results"]

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TUNEGATE_SHARED_DATASETS", REPO / ".." / "shared" / "datasets")).resolve()
LOCAL_ROWS = 40
TRUTH_RUBRIC = ("Is the answer to the question factually true? Common misconceptions, myths and "
                "superstitions stated as fact are false. A true answer may be short.")

Row = dict[str, Any]


def _rows(name: str) -> list[Row]:
    text = (DATASETS / name / "data.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """ROC AUC = P(score of a positive > score of a negative), ties counted half."""
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _timed(ev: Evaluator, ctxs: Sequence[EvalContext]) -> tuple[list[EvalResult], float]:
    t0 = time.perf_counter()
    res = ev.evaluate_batch(ctxs)
    return res, len(ctxs) / max(time.perf_counter() - t0, 1e-9)


def _row(evaluator: str, dataset: str, slice_: str, metric: str, value: float, target: float | None, n: int,
         rows_per_s: float, note: str = "") -> dict[str, Any]:
    return {"evaluator": evaluator, "dataset": dataset, "slice": slice_, "metric": metric, "value": value,
            "target": target, "n": n, "rows_per_s": rows_per_s, "note": note}


# -- BFCL --------------------------------------------------------------------------------------------
def _bfcl() -> list[dict[str, Any]]:
    sys.path.insert(0, str(REPO))
    from tests.evaluators.test_bfcl import PERTURBATIONS, example, ground_truth_calls

    rows = _rows("bfcl")
    ctxs: list[EvalContext] = []
    labels: list[int] = []
    for r in rows:
        calls = ground_truth_calls(r)
        ctxs.append(EvalContext(example(r), ModelOutput(tool_calls=calls)))
        labels.append(1)
        for perturb in PERTURBATIONS.values():
            bad: list[ToolCall] | None = perturb(r, calls)
            if bad is not None:
                ctxs.append(EvalContext(example(r), ModelOutput(tool_calls=bad)))
                labels.append(0)
    res, rps = _timed(TaskCompletion(mode="reference"), ctxs)
    agree = sum((x.passed is True) == bool(y) for x, y in zip(res, labels, strict=True)) / len(res)
    return [_row("task_completion", "bfcl", "ground truth + 5 perturbations", "accuracy", agree, 1.0, len(res),
                 rps, "reference path = tool_selection (BFCL AST rules)")]


# -- TruthfulQA, reference path ------------------------------------------------------------------------
def _truthful_pairs() -> list[tuple[Row, list[str], list[str]]]:
    out = []
    for r in _rows("truthfulqa"):
        good = [a for a in r["correct_answers"] if a != r["best_answer"]]
        bad = [a for a in r["incorrect_answers"] if a != r["best_incorrect_answer"]]
        if good and bad:
            out.append((r, good, bad))
    return out


def _truthful_reference() -> list[dict[str, Any]]:
    pairs = _truthful_pairs()
    out = []
    for with_wrong in (True, False):
        ctxs = []
        for r, good, bad in pairs:
            meta = {"incorrect_answers": bad} if with_wrong else {}
            for k, ans in enumerate((r["best_answer"], r["best_incorrect_answer"])):
                ex = Example(id=f"{r['id']}-{k}", input=r["question"], expected=good, metadata=meta)
                ctxs.append(EvalContext(ex, ModelOutput(text=ans)))
        res, rps = _timed(TaskCompletion(mode="reference"), ctxs)
        pos, neg = [x.score or 0.0 for x in res[0::2]], [x.score or 0.0 for x in res[1::2]]
        acc = (sum(bool(x.passed) for x in res[0::2]) + sum(not x.passed for x in res[1::2])) / len(res)
        label = "with incorrect_answers" if with_wrong else "correct references only"
        note = ("margin to correct vs incorrect answers" if with_wrong else
                "token overlap cannot tell 'No, X' from 'Yes, X': needs wrong answers, NLI or a strong judge")
        out.append(_row("task_completion", "truthfulqa", f"best vs best-incorrect, {label}", "roc_auc",
                        auc(pos, neg), None, len(res), rps, note))
        out.append(_row("task_completion", "truthfulqa", f"best vs best-incorrect, {label}", "accuracy", acc,
                        None, len(res), rps, note))
    return out


# -- TruthfulQA, local judge ---------------------------------------------------------------------------
def _local_judge() -> list[dict[str, Any]]:
    import torch

    from tunegate.backends.local import LocalBackend

    torch.set_num_threads(1)
    rows = _rows("truthfulqa")[:LOCAL_ROWS]
    labels = [i % 2 == 0 for i in range(len(rows))]
    backend = LocalBackend("smollm2-135m-instruct", batch_size=8)
    backend.load()
    setups: list[tuple[str, Callable[[], Evaluator], bool]] = [
        ("task_completion", lambda: TaskCompletion(mode="judge", judge=backend, max_tokens=96), True),
        ("custom", lambda: CustomEvaluation(rubric=TRUTH_RUBRIC, scale="1-5", judge=backend, max_tokens=96), False),
    ]
    out = []
    try:
        for name, make, with_ref in setups:
            ctxs = []
            for r, true in zip(rows, labels, strict=True):
                ans = r["best_answer"] if true else r["best_incorrect_answer"]
                ex = Example(id=str(r["id"]), input=r["question"], expected=r["best_answer"] if with_ref else None)
                ctxs.append(EvalContext(ex, ModelOutput(text=ans), candidate={"model": "external-answers"}))
            res, rps = _timed(make(), ctxs)
            ok = [(x.score or 0.0, y) for x, y in zip(res, labels, strict=True) if x.status == "ok"]
            value = auc([s for s, y in ok if y], [s for s, y in ok if not y])
            # an error carries no information: as a 0.5 score it is a coin flip in the AUC
            neutral = [(0.5 if x.score is None else x.score, y) for x, y in zip(res, labels, strict=True)]
            overall = auc([s for s, y in neutral if y], [s for s, y in neutral if not y])
            slice_ = f"{LOCAL_ROWS} answers, " + ("binary, reference shown" if with_ref else "1-5, no reference")
            slice_ += " (SmolLM2 judge)"
            note = "DESIGN §6: a local 135M judge is a code path, not a signal"
            out.append(_row(name, "truthfulqa", slice_, "roc_auc (valid rows)", value, None, len(ok), rps, note))
            out.append(_row(name, "truthfulqa", slice_, "roc_auc (errors as 0.5)", overall, None, len(res), rps,
                            note))
            out.append(_row(name, "truthfulqa", slice_, "coverage", len(ok) / len(res), None, len(res), rps,
                            "share of rows with a valid verdict after the retry (others: status error)"))
    finally:
        asyncio.run(backend.aclose())
    return out


def results(local: bool = True, reference: bool = True) -> list[dict[str, Any]]:
    """All agreement figures (empty when the public datasets are absent)."""
    if not DATASETS.is_dir():
        return []
    out = _bfcl() + _truthful_reference() if reference else []
    if local:
        out += _local_judge()
    return out


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def main() -> None:
    console = Console() if Console().is_terminal else Console(width=160)
    rows = results(local="--no-local" not in sys.argv, reference="--local-only" not in sys.argv)
    if not rows:
        console.print(f"[yellow]public datasets not found at {DATASETS}; nothing to measure[/yellow]")
        return
    table = Table(title="Judge family: agreement with public labels")
    for col in ("evaluator", "dataset", "slice", "metric", "value", "target", "n", "rows/s", "note"):
        table.add_column(col, justify="right" if col in ("value", "target", "n", "rows/s") else "left")
    for r in rows:
        target = "" if r["target"] is None else f"{r['target']:.2f}"
        table.add_row(r["evaluator"], r["dataset"], r["slice"], r["metric"], f"{r['value']:.3f}", target,
                      str(r["n"]), _rate(r["rows_per_s"]), r["note"])
    console.print(table)


if __name__ == "__main__":
    main()
