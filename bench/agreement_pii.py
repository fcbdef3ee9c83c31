"""Agreement of the ``pii`` evaluator's detector with the presidio-research synthetic PII set.

Matching (entity level, documented in docs/evaluators/safety-pii.md):
  * types are mapped to one family on both sides: dataset GPE / STREET_ADDRESS / ZIP_CODE and our
    LOCATION / STREET_ADDRESS are all "LOCATION" (presidio-research's own convention); other types
    keep their names; dataset types that are not personal data here (ORGANIZATION, DATE_TIME, TITLE,
    AGE, NRP, DOMAIN_NAME) are not scored;
  * a gold span is found (recall) when predictions of its family cover >= 50 % of its characters;
    a predicted span is right (precision) when >= 50 % of its characters lie in gold spans of its
    family. Coverage, not one-to-one pairing, because a detector may split an address in parts.
Also reported: row-level "has PII" (what the evaluator's pass/fail uses) and exact-span F1.

The set is split by a hash of ``template_id`` (``template_half``, fixed): the recognizers in
``pii_recognizers`` were written looking at the *tune* half only, its *dev* quarter
(``template_split``: sha256("dev:" + template_id) % 4 == 0) for the choices of issue 16; the
*held-out* half (unseen templates, never looked at) is the headline figure. The Presidio-defaults
baseline runs on the held-out half only (it is unbatched and slow).
Run: ``python bench/agreement_pii.py`` (writes ``bench/results/agreement_pii.json``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["GOLD_MAP", "main", "match_counts", "presidio_default", "results", "template_half", "template_split"]

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "presidio_synth_pii" / "data.jsonl"
GOLD_MAP = {"PERSON": "PERSON", "GPE": "LOCATION", "STREET_ADDRESS": "LOCATION", "ZIP_CODE": "LOCATION",
            "EMAIL_ADDRESS": "EMAIL_ADDRESS", "PHONE_NUMBER": "PHONE_NUMBER", "CREDIT_CARD": "CREDIT_CARD",
            "IBAN_CODE": "IBAN_CODE", "US_SSN": "US_SSN", "IP_ADDRESS": "IP_ADDRESS",
            "US_DRIVER_LICENSE": "US_DRIVER_LICENSE"}
PRED_MAP = {"STREET_ADDRESS": "LOCATION"}
ENTITIES = sorted(set(GOLD_MAP.values()) | {"STREET_ADDRESS"})
TARGET_F1 = 0.85


def template_half(row: dict[str, Any]) -> str:
    """``tune`` or ``held-out`` from a hash of the template id (stable, independent of row order)."""
    h = int(hashlib.sha256(str(row["template_id"]).encode()).hexdigest(), 16) % 2
    return "tune" if h == 0 else "held-out"


def template_split(row: dict[str, Any]) -> str:
    """``held-out``, or the tune half cut into ``dev`` (1/4 of its templates) and ``train``."""
    if template_half(row) == "held-out":
        return "held-out"
    h = int(hashlib.sha256(f"dev:{row['template_id']}".encode()).hexdigest(), 16) % 4
    return "dev" if h == 0 else "train"


def _coverage(a: int, b: int, spans: list[tuple[int, int]]) -> float:
    covered = sum(1 for i in range(a, b) if any(s <= i < e for s, e in spans))
    return covered / max(1, b - a)


def match_counts(rows: list[dict[str, Any]], preds: list[list[dict[str, Any]]]) -> dict[str, dict[str, int]]:
    """Per family: gold, gold found, predicted, predicted right, exact-span hits."""
    c: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row, pred in zip(rows, preds, strict=True):
        gold = [(GOLD_MAP[s["entity_type"]], s["start_position"], s["end_position"])
                for s in row["spans"] if s["entity_type"] in GOLD_MAP]
        pr = [(PRED_MAP.get(p["type"], p["type"]), p["start"], p["end"]) for p in pred]
        exact = {(t, a, b) for t, a, b in pr}
        for t, a, b in gold:
            c[t]["gold"] += 1
            c[t]["found"] += _coverage(a, b, [(x, y) for tt, x, y in pr if tt == t]) >= 0.5
            c[t]["exact"] += (t, a, b) in exact
        for t, a, b in pr:
            c[t]["pred"] += 1
            c[t]["right"] += _coverage(a, b, [(x, y) for tt, x, y in gold if tt == t]) >= 0.5
    return c


def _prf(found: int, gold: int, right: int, pred: int) -> tuple[float, float, float]:
    r = found / gold if gold else float("nan")
    p = right / pred if pred else float("nan")
    f = 2 * p * r / (p + r) if gold and pred and p + r else 0.0
    return p, r, f


def presidio_default(texts: list[str]) -> list[list[dict[str, Any]]]:
    """Presidio's defaults as a user would get them: ``AnalyzerEngine`` on en_core_web_sm, default
    recognizers and score threshold, no overlap resolution (email made offline, see build_analyzer)."""
    from tunegate.evaluators.pii_recognizers import SPACY_MODEL, build_analyzer

    engine = build_analyzer(extras=False, model=SPACY_MODEL)
    ask = sorted(set(ENTITIES) | {"LOCATION"})
    return [[{"type": r.entity_type, "start": r.start, "end": r.end, "score": r.score}
             for r in engine.analyze(t, language="en", entities=ask)] for t in texts]


def results() -> list[dict[str, Any]]:
    """Rows for the aggregate table (held-out half first, then the tuning half for reference)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tunegate.evaluators.pii import DEFAULT_ENTITIES, DEFAULT_THRESHOLD, analyze

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    analyze(["warm-up, load the model"], ENTITIES)
    t0, c0 = time.perf_counter(), time.process_time()
    preds = analyze([r["text"] for r in rows], ENTITIES, DEFAULT_THRESHOLD)
    rate = len(rows) / (time.perf_counter() - t0)
    cpu_rate = len(rows) / (time.process_time() - c0)  # less sensitive to the machine's load
    out: list[dict[str, Any]] = []

    def add(slice_: str, metric: str, value: float, n: int, target: float | None = None) -> None:
        out.append({"evaluator": "pii", "dataset": "presidio_synth_pii", "slice": slice_, "metric": metric,
                    "value": round(value, 4), "target": target, "n": n, "rows_per_s": round(rate, 1),
                    "rows_per_cpu_s": round(cpu_rate, 1)})

    default = set(DEFAULT_ENTITIES)
    # Naive baseline: Presidio's defaults (small spaCy model, default recognizers, threshold 0).
    idx = [i for i, r in enumerate(rows) if template_half(r) == "held-out"]
    cb = match_counts([rows[i] for i in idx], presidio_default([rows[i]["text"] for i in idx]))
    tb = {k: sum(cb[t][k] for t in cb) for k in ("gold", "found", "pred", "right")}
    out.append({"evaluator": "baseline: Presidio defaults", "dataset": "presidio_synth_pii",
                "slice": "held-out/all types", "metric": "entity F1 (50% overlap)",
                "value": round(_prf(tb["found"], tb["gold"], tb["right"], tb["pred"])[2], 4), "target": None,
                "n": tb["gold"], "rows_per_s": None})
    for t in sorted(cb):
        if cb[t]["gold"]:
            p, r, f = _prf(cb[t]["found"], cb[t]["gold"], cb[t]["right"], cb[t]["pred"])
            out.append({"evaluator": "baseline: Presidio defaults", "dataset": "presidio_synth_pii",
                        "slice": f"held-out/{t}", "metric": "entity P/R/F1", "value": round(f, 4), "target": None,
                        "n": cb[t]["gold"], "rows_per_s": None, "precision": round(p, 4), "recall": round(r, 4)})
    for half in ("held-out", "dev", "tune"):
        idx = [i for i, r in enumerate(rows) if template_half(r) == half or template_split(r) == half]
        c = match_counts([rows[i] for i in idx], [preds[i] for i in idx])
        tot = {k: sum(c[t][k] for t in c) for k in ("gold", "found", "pred", "right", "exact")}
        p, r, f = _prf(tot["found"], tot["gold"], tot["right"], tot["pred"])
        add(f"{half}/all types", "entity precision", p, tot["pred"])
        add(f"{half}/all types", "entity recall", r, tot["gold"])
        add(f"{half}/all types", "entity F1 (50% overlap)", f, tot["gold"], TARGET_F1)
        pe = tot["exact"] / tot["pred"] if tot["pred"] else 0.0
        re_ = tot["exact"] / tot["gold"] if tot["gold"] else 0.0
        add(f"{half}/all types", "entity F1 (exact span)", 2 * pe * re_ / (pe + re_) if pe + re_ else 0.0,
            tot["gold"])
        no_loc = {k: sum(c[t][k] for t in c if t != "LOCATION") for k in ("gold", "found", "pred", "right")}
        add(f"{half}/all but LOCATION", "entity F1 (50% overlap)",
            _prf(no_loc["found"], no_loc["gold"], no_loc["right"], no_loc["pred"])[2], no_loc["gold"], TARGET_F1)
        for t in sorted(c):
            p, r, f = _prf(c[t]["found"], c[t]["gold"], c[t]["right"], c[t]["pred"])
            if c[t]["gold"]:
                add(f"{half}/{t}", "entity P/R/F1", f, c[t]["gold"])
                out[-1]["precision"], out[-1]["recall"] = round(p, 4), round(r, 4)
        # Row level with the evaluator's default entity set: what pass/fail depends on.
        tp = fp = fn = 0
        for i in idx:
            has_gold = any(s["entity_type"] in GOLD_MAP and s["entity_type"] != "GPE" for s in rows[i]["spans"])
            has_pred = any(p_["type"] in default for p_ in preds[i])
            tp += has_gold and has_pred
            fp += has_pred and not has_gold
            fn += has_gold and not has_pred
        p, r = tp / max(1, tp + fp), tp / max(1, tp + fn)
        add(f"{half}/rows (default entities)", "has-PII F1", 2 * p * r / max(1e-9, p + r), len(idx))
        out[-1]["precision"], out[-1]["recall"] = round(p, 4), round(r, 4)
    path = Path(__file__).resolve().parent / "results" / "agreement_pii.json"  # every run leaves its figures
    path.write_text(json.dumps({"load_average": [round(x, 2) for x in os.getloadavg()], "rows": out}, indent=1)
                    + "\n", encoding="utf-8")
    return out


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pii agreement (presidio synthetic v2)")
    for col in ("slice", "metric", "value", "P", "R", "target", "n", "rows/s"):
        table.add_column(col)
    for r in results():
        table.add_row(("" if r["evaluator"] == "pii" else "baseline ") + r["slice"], r["metric"], f"{r['value']:.3f}", str(r.get("precision", "")),
                      str(r.get("recall", "")), str(r["target"] or ""), str(r["n"]), str(r["rows_per_s"] or ""))
    Console().print(table)


if __name__ == "__main__":
    main()
