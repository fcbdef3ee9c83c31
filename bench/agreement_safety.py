"""Agreement of ``content_safety`` (shipped head) with the OpenAI moderation set, on toxic social-media
text, and of the refusal signal with the hand-written evaluation list.

* moderation: only the *test* split (sha256(id) % 10 >= 8: never used to fit or calibrate) is scored
  here; the 5-fold CV spread comes from the head's manifest;
* toxic social-media text: the Surge AI toxicity set (``bench/data/surge_toxicity.jsonl``, 1,000
  comments, MIT; see its README), its *proxy* half (492 rows, ``safety_train.social_half``; the other
  half trains the ``toxic`` head and chooses its cut), never used to fit or choose anything - the
  non-reserved proxy for issue 16's "balanced accuracy >= 0.80 on toxic social-media text" (the
  Davidson tweets are reserved and measured independently, never here). A row counts as flagged
  when the evaluator fails it (max head probability >= the shipped ``tau``).

Each figure is printed beside the naive baselines (flag everything; a keyword list).
Run: ``python bench/agreement_safety.py``.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["KEYWORDS", "keyword_flag", "main", "results"]

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "datasets" / "openai_moderation" / "data.jsonl"
CASES = ROOT / "tests" / "evaluators" / "data" / "refusal_cases.jsonl"
SOCIAL = ROOT / "bench" / "data" / "surge_toxicity.jsonl"
TARGET_F1 = 0.80
TARGET_BACC = 0.80


#: The keyword baseline: words a naive filter would block (profanity, sexual, violent, self-harm terms).
KEYWORDS = frozenset(re.findall(r"\S+", """fuck fucking fucked shit bitch bastard asshole cunt dick cock pussy whore slut porn porno nude
naked sex sexy horny rape raped kill killed killing murder murdered shoot stab bomb die dead suicide
hang gun blood torture hate stupid idiot retard moron ugly disgusting"""))


def keyword_flag(text: str) -> bool:
    """True when the text contains a word of ``KEYWORDS`` (case-insensitive, whole words)."""
    return any(w in KEYWORDS for w in re.findall(r"[a-z]+", text.lower()))


def _bacc(y: Any, pred: Any) -> float:
    y, pred = np.asarray(y, bool), np.asarray(pred, bool)
    return float((pred[y].mean() + (~pred[~y]).mean()) / 2)


def results() -> list[dict[str, Any]]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tunegate.evaluators.refusal import refusal_signals
    from tunegate.evaluators.safety import CATEGORIES, load_head
    from tunegate.evaluators.training.safety_train import prf, split_of

    head = load_head()
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    test = [r for r in rows if split_of(r["id"]) == "test"]
    head.embed(["warm-up"])
    t0, c0 = time.perf_counter(), time.process_time()
    P = head.predict(head.embed([r["text"] for r in test]))
    rate = len(test) / (time.perf_counter() - t0)
    cpu_ms = 1000 * (time.process_time() - c0) / len(test)
    cv = head.manifest.get("cv5_f1", {})
    out: list[dict[str, Any]] = []

    def add(slice_: str, metric: str, value: float, n: int, target: float | None, r: float, **kw: Any) -> None:
        out.append({"evaluator": kw.pop("evaluator", "content_safety"), "dataset": kw.pop("dataset", "openai_moderation"),
                    "slice": slice_, "metric": metric, "value": round(value, 4), "target": target, "n": n,
                    "rows_per_s": round(r, 1), **kw})

    y = np.array([r["any_flagged"] for r in test])
    p, r_, f = prf(y, head.unsafe(P) >= head.tau)
    add("test/any_flagged", "F1", f, len(test), TARGET_F1, rate, precision=round(p, 4), recall=round(r_, 4),
        cv5=cv.get("any_flagged"), cpu_ms_per_row=round(cpu_ms, 2),
        encoder=head.manifest.get("encoder", {}).get("file", "frozen base MiniLM"),
        cv5_frozen_same_folds=head.manifest.get("cv5_f1_frozen_same_folds", {}).get("any_flagged"))
    for j, (code, name) in enumerate(CATEGORIES.items()):
        lab = np.array([-1 if r[code] is None else r[code] for r in test])
        keep = lab >= 0
        p, r_, f = prf(lab[keep], P[keep, j] >= head.thresholds[j])
        add(f"test/{name}", "F1", f, int(keep.sum()), TARGET_F1, rate, precision=round(p, 4),
            recall=round(r_, 4), positives=int((lab[keep] == 1).sum()), cv5=cv.get(name))
    # Naive baselines on the same rows: flag everything, and a keyword list.
    kw = np.array([keyword_flag(r["text"]) for r in test])
    for name, pred in (("baseline: flag everything", np.ones(len(test), bool)), ("baseline: keyword list", kw)):
        p, r_, f = prf(y, pred)
        add("test/any_flagged", "F1", f, len(test), None, 0.0, evaluator=name, precision=round(p, 4),
            recall=round(r_, 4), balanced_accuracy=round(_bacc(y, pred), 4))
    p, r_, f = prf(y, head.unsafe(P) >= head.tau)
    out[0]["balanced_accuracy"] = round(_bacc(y, head.unsafe(P) >= head.tau), 4)
    out += _social(head)
    cases = [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines() if line.strip()]
    t0 = time.perf_counter()
    sig = refusal_signals([c["text"] for c in cases])
    rrate = len(cases) / (time.perf_counter() - t0)
    y = np.array([c["refusal"] for c in cases])
    pred = np.array([s["refused"] for s in sig])
    p, r_, f = prf(y.astype(int), pred)
    add("eval list", "refusal F1", f, len(cases), None, rrate, evaluator="refusal", dataset="refusal_cases (hand-written)",
        precision=round(p, 4), recall=round(r_, 4), accuracy=round(float((y == pred).mean()), 4))
    _save(out)
    return out


def _save(rows: list[dict[str, Any]]) -> None:
    """Every run leaves its figures in ``bench/results/agreement_safety.json`` (with the load average)."""
    path = ROOT / "bench" / "results" / "agreement_safety.json"
    path.write_text(json.dumps({"load_average": [round(x, 2) for x in os.getloadavg()], "rows": rows}, indent=1)
                    + "\n", encoding="utf-8")


def _social(head: Any) -> list[dict[str, Any]]:
    """Balanced accuracy / F1 on the Surge AI toxic social-media comments, with both baselines."""
    from tunegate.evaluators.training.safety_train import prf, social_half

    rows = [json.loads(line) for line in SOCIAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if social_half(r["id"]) == "proxy"]  # the other half trains the toxic head
    y = np.array([int(r["toxic"]) for r in rows])
    t0 = time.perf_counter()
    flagged = head.unsafe(head.predict(head.embed([r["text"] for r in rows]))) >= head.tau
    rate = len(rows) / (time.perf_counter() - t0)
    kw = np.array([keyword_flag(r["text"]) for r in rows])
    out = []
    for name, pred, target, r in (("content_safety", flagged, TARGET_BACC, rate),
                                  ("baseline: flag everything", np.ones(len(rows), bool), None, 0.0),
                                  ("baseline: keyword list", kw, None, 0.0)):
        p, r_, f = prf(y, pred)
        out.append({"evaluator": name, "dataset": "surge_toxicity (social media, proxy)", "slice": "proxy half",
                    "metric": "balanced accuracy", "value": round(_bacc(y, pred), 4), "target": target,
                    "n": len(rows), "rows_per_s": round(r, 1), "precision": round(p, 4), "recall": round(r_, 4),
                    "f1": round(f, 4)})
    return out


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="content_safety / refusal agreement (held-out test split)")
    for col in ("evaluator", "slice", "metric", "value", "P", "R", "CV5 mean±sd", "target", "n", "rows/s"):
        table.add_column(col)
    for r in results():
        cv = r.get("cv5")
        table.add_row(r["evaluator"], r["slice"], r["metric"], f"{r['value']:.3f}", str(r.get("precision", "")),
                      str(r.get("recall", "")), f"{cv['mean']:.3f}±{cv['sd']:.3f}" if cv else "",
                      str(r["target"] or ""), str(r["n"]), str(r["rows_per_s"]))
    Console().print(table)


if __name__ == "__main__":
    main()
