"""Train the ``pii`` span head (``pii_span``) on the tune half of the presidio synthetic set.

Run: ``python -m tunegate.evaluators.pii_span_train [--split tune|train] [--out PATH]``.

Only rows whose template falls in the *tune* half are read (``bench/agreement_pii.py``'s
``template_half``); ``--split train`` leaves out its dev quarter too, so the head can be measured
on dev. Each PERSON / LOCATION / candidate span the detector proposes (everything before the
head) is labelled with the gold family covering at least half of its characters (PERSON,
LOCATION incl. street addresses, or NONE), the benchmark's matching rule. The regularisation C
and the decision margin are chosen by 5-fold cross-validation grouped by template, on the
training rows only, by the number of spans the head would fix minus those it would break; only
the kinds of change (``NONE>LOCATION``, ``PERSON>NONE``...) that fixed more than they broke in
that CV are allowed at inference.
Needs scikit-learn (dev extra); the shipped head is plain JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["collect", "fit", "main"]

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "datasets" / "presidio_synth_pii" / "data.jsonl"
_FAMILY = {"PERSON": "PERSON", "GPE": "LOCATION", "STREET_ADDRESS": "LOCATION", "ZIP_CODE": "LOCATION"}
_TYPES = ("PERSON", "LOCATION")


def _split(row: dict[str, Any]) -> str:
    """The benchmark's template split (kept identical to bench/agreement_pii.py)."""
    if int(hashlib.sha256(str(row["template_id"]).encode()).hexdigest(), 16) % 2:
        return "held-out"
    return "dev" if int(hashlib.sha256(f"dev:{row['template_id']}".encode()).hexdigest(), 16) % 4 == 0 else "train"


def collect(rows: list[dict[str, Any]]) -> list[tuple[list[str], str, str, int]]:
    """(features, current type, gold class, template id) for each span the detector proposes."""
    from presidio_analyzer import BatchAnalyzerEngine

    from tunegate.evaluators.pii import DEFAULT_THRESHOLD, _analyzer
    from tunegate.evaluators.pii_recognizers import FIRM, resolve_overlaps
    from tunegate.evaluators.pii_span import CANDIDATE, features

    ask = ["LOCATION", "PERSON", "STREET_ADDRESS", FIRM, CANDIDATE]
    engine = BatchAnalyzerEngine(_analyzer())
    texts = [r["text"] for r in rows]
    out = []
    for row, text, results in zip(rows, texts, engine.analyze_iterator(texts, language="en", batch_size=32,
                                                                       entities=ask, score_threshold=DEFAULT_THRESHOLD),
                                  strict=True):
        gold = [(_FAMILY[s["entity_type"]], s["start_position"], s["end_position"])
                for s in row["spans"] if s["entity_type"] in _FAMILY]
        for r in resolve_overlaps(list(results), text):
            if r.entity_type not in (*_TYPES, CANDIDATE):
                continue
            cover = Counter()
            for fam, a, b in gold:
                cover[fam] += max(0, min(b, r.end) - max(a, r.start))
            fam, chars = cover.most_common(1)[0] if cover else ("NONE", 0)
            label = fam if chars * 2 >= max(1, r.end - r.start) else "NONE"
            out.append((features(text, r.entity_type, r.start, r.end, r.score), r.entity_type, label,
                        int(row["template_id"])))
    return out


def _net(own: list[str], gold: list[str], proba: Any, classes: list[str], margin: float) -> Counter[str]:
    """Per change ("PERSON>NONE"...): spans the head would fix minus spans it would break."""
    net: Counter[str] = Counter()
    for i, cur in enumerate(own):
        cur = cur if cur in _TYPES else "NONE"
        p = dict(zip(classes, proba[i], strict=True))
        best = max(p, key=lambda c: p[c])
        if best != cur and p[best] - p[cur] >= margin:
            net[f"{cur}>{best}"] += (best == gold[i]) - (cur == gold[i])
    return net


def fit(spans: list[tuple[list[str], str, str, int]], min_count: int = 2,
        drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Fit the head; C and the margin by template-grouped 5-fold CV on these spans. Features whose
    name starts with one of ``drop`` are left out."""
    import numpy as np
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    counts = Counter(f for feats, *_ in spans for f in set(feats) if not f.startswith(drop) or not drop)
    vocab = {f: i for i, f in enumerate(sorted(f for f, n in counts.items() if n >= min_count))}

    def matrix(items: list[tuple[list[str], str, str, int]]) -> Any:
        rows, cols = [], []
        for k, (feats, *_) in enumerate(items):
            idx = sorted({vocab[f] for f in feats if f in vocab})
            rows += [k] * len(idx)
            cols += idx
        return csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(items), len(vocab)))

    x, y = matrix(spans), np.array([s[2] for s in spans])
    own, groups = [s[1] for s in spans], np.array([s[3] for s in spans])
    nets: dict[tuple[float, float], Counter[str]] = {}
    for tr, te in GroupKFold(n_splits=5).split(x, y, groups):
        for c in (0.1, 0.3, 1.0, 3.0):
            m = LogisticRegression(C=c, max_iter=2000).fit(x[tr], y[tr])
            proba = m.predict_proba(x[te])
            for margin in (0.0, 0.2, 0.4, 0.6, 0.8):
                nets.setdefault((c, margin), Counter()).update(
                    _net([own[i] for i in te], list(y[te]), proba, list(m.classes_), margin))
    # Only the kinds of change that fixed more spans than they broke in CV are allowed; the
    # setting is the one whose allowed changes fix the most.
    grid = {k: sum(v for v in n.values() if v > 0) for k, n in nets.items()}
    (c, margin), best = max(grid.items(), key=lambda kv: (kv[1], kv[0][1], -kv[0][0]))
    allowed = sorted(k for k, v in nets[(c, margin)].items() if v > 0)
    m = LogisticRegression(C=c, max_iter=2000).fit(x, y)
    classes = [str(k) for k in m.classes_]
    weights = {f: [round(float(m.coef_[k][i]), 5) for k in range(len(classes))] for f, i in vocab.items()
               if any(abs(m.coef_[k][i]) > 1e-6 for k in range(len(classes)))}
    return {"classes": classes, "intercept": [round(float(v), 5) for v in m.intercept_], "weights": weights,
            "threshold": margin, "allowed": allowed, "C": c, "cv_net_fixed": best,
            "cv_changes": dict(nets[(c, margin)]),
            "cv_grid": {f"C={k[0]},margin={k[1]}": v for k, v in sorted(grid.items())},
            "n_spans": len(spans), "labels": dict(Counter(y.tolist()))}


def main(argv: list[str] | None = None) -> None:
    from tunegate.evaluators.pii_span import HEAD_PATH

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("tune", "train"), default="tune")
    ap.add_argument("--out", type=Path, default=HEAD_PATH)
    ap.add_argument("--drop", default="", help="comma-separated feature-name prefixes to leave out")
    args = ap.parse_args(argv)
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    keep = ("train", "dev") if args.split == "tune" else ("train",)
    rows = [r for r in rows if _split(r) in keep]
    head = fit(collect(rows), drop=tuple(p for p in args.drop.split(",") if p))
    head["trained_on"] = f"presidio_synth_pii, {args.split} split ({len(rows)} rows; held-out templates never read)"
    args.out.write_text(json.dumps(head, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print({k: head[k] for k in ("C", "threshold", "allowed", "cv_changes", "cv_net_fixed", "n_spans", "labels")})


if __name__ == "__main__":
    main()
