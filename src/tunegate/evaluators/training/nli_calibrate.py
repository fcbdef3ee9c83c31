"""Threshold calibration of the raw NLI model on SummEdits dev documents, and the metrics it uses.

The evaluators no longer read these thresholds (they use the grounding head fitted by
``grounding_train``); the calibration stays in the model manifest as a record of what the bare
cross-encoder achieves, the baseline the head is compared with.

SummEdits (shared/datasets/summedits) is split by document: ``dev`` = even ``sha256(doc)``,
``test`` = odd. Thresholds (and any inference setting) are chosen on a fixed sample of the dev
documents only; ``bench/agreement_groundedness.py`` and the tests report on test documents only,
so no figure we publish was seen by the calibration.

The target of calibration is the row label (1 = the summary is consistent with the document),
and a row passes only when every claim passes, so each evaluator's threshold is the one that
maximises the balanced accuracy of ``min over claims >= threshold`` on the dev sample.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from tunegate.evaluators.training.nli_train import sha256_file

__all__ = ["balanced_accuracy", "best_threshold", "calibrate", "calibration_sample", "load_summedits", "roc_auc"]


def roc_auc(scores: Any, positive: Any) -> float:
    """ROC-AUC by the rank-sum formula (ties get average ranks); nan when a class is absent."""
    from scipy.stats import rankdata

    s, y = np.asarray(scores, float), np.asarray(positive, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def load_summedits(path: Path, part: str) -> list[dict[str, Any]]:
    """SummEdits rows of one document-level half: ``dev`` (even sha256 of the doc) or ``test`` (odd)."""
    want = 0 if part == "dev" else 1
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if int(hashlib.sha256(r["doc"].encode()).hexdigest()[:8], 16) % 2 == want]


def balanced_accuracy(pred: Any, positive: Any) -> float:
    p, y = np.asarray(pred, bool), np.asarray(positive, bool)
    return float(((p & y).sum() / max(1, y.sum()) + (~p & ~y).sum() / max(1, (~y).sum())) / 2)


def best_threshold(scores: Any, positive: Any) -> tuple[float, float]:
    """(threshold, balanced accuracy) of ``score >= threshold`` maximising balanced accuracy; the
    threshold is the midpoint between neighbouring observed scores (ties → the lowest)."""
    s = np.asarray(scores, float)
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    accs = [balanced_accuracy(s >= t, positive) for t in cands]
    i = int(np.argmax(accs))
    return float(round(cands[i], 4)), float(accs[i])


def calibration_sample(rows: list[dict[str, Any]], per_domain: int) -> list[dict[str, Any]]:
    """A fixed subsample: per domain, the ``per_domain`` rows with the smallest sha256(id)."""
    out: list[dict[str, Any]] = []
    for d in sorted({r["domain"] for r in rows}):
        rs = sorted((r for r in rows if r["domain"] == d), key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
        out += rs[:per_domain]
    return out


def calibrate(out: Path, summedits: Path, per_domain: int = 25) -> dict[str, Any]:
    """Fit each evaluator's threshold on a fixed sample of SummEdits dev documents (label 1 =
    consistent) and store it, with the dev figures, in the manifest's ``calibration``."""
    from tunegate.evaluators.nli import NLIModel, split_claims

    t0 = time.time()
    model = NLIModel(out)
    rows = calibration_sample(load_summedits(summedits, "dev"), per_domain)
    claims = [split_claims(r["summary"]) or [r["summary"]] for r in rows]
    flat = [(i, c) for i, cs in enumerate(claims) for c in cs]
    checks = model.check([rows[i]["doc"] for i, _ in flat], [c for _, c in flat])
    ent_min = np.ones(len(rows))
    faith_min = np.ones(len(rows))
    for (i, _), chk in zip(flat, checks, strict=True):
        ent_min[i] = min(ent_min[i], chk.entail)
        faith_min[i] = min(faith_min[i], min(1.0, max(0.0, (1.0 + chk.entail - chk.contradict) / 2.0)))
    y = np.array([r["label"] == 1 for r in rows])
    cal: dict[str, Any] = {"data": f"summedits dev documents (even sha256(doc)), {per_domain} rows per domain "
                                   "(smallest sha256(id)); label 1 = consistent = every claim must pass",
                           "summedits_sha256": sha256_file(summedits), "n": len(rows),
                           "seconds": round(time.time() - t0, 1)}
    for key, score in (("groundedness", ent_min), ("faithfulness", faith_min)):
        t, acc = best_threshold(score, y)
        cal[key] = {"threshold": t, "dev_balanced_accuracy": round(acc, 4), "dev_auc": round(roc_auc(score, y), 4)}
    cal["hallucination"] = dict(cal["groundedness"], note="same claim threshold as groundedness")
    f = out / "tunegate-nli.json"
    manifest = json.loads(f.read_text(encoding="utf-8"))
    manifest["calibration"] = cal
    manifest.setdefault("inference", {"max_length": model.max_length, "window_words": model.window_words,
                                      "top_k": model.top_k})
    f.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return cal
