"""A span re-scorer for the ``pii`` detector: keep, drop or relabel PERSON / LOCATION spans.

Why: after the NER, the pattern recognizers and the gazetteer have proposed their spans, the
remaining PERSON/LOCATION errors are mostly *decisions* (a firm read as a place, a place read
as a person, a name the NER filed as an organisation) that a few cheap features settle better
than another hand-written rule: gazetteer hits, the word's shape and ending ("-ová", "-ville"),
the words around it ("says X", "in X"), and which recognizer proposed it (its score).

The model is a multinomial logistic regression (PERSON / LOCATION / NONE) over sparse binary
features, trained by ``python -m tunegate.evaluators.pii_span_train`` on the *tune* half of the
presidio synthetic set only (template-grouped CV for its regularisation), and shipped as JSON
(``tunegate/data/pii-span-head.json``); inference is a dot product, no scikit-learn needed.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["CANDIDATE", "HEAD_PATH", "SpanHead", "apply_head", "features", "span_head"]

HEAD_PATH = Path(__file__).resolve().parents[1] / "data" / "pii-span-head.json"
#: Internal type: a capitalised span the NER tagged as something else (or nothing), proposed so
#: the head can call it a PERSON or LOCATION; never reported as such.
CANDIDATE = "NAME_CANDIDATE"
_WORDS = re.compile(r"[^\W_]+(?:['’.-][^\W_]+)*|[^\w\s]")


def _bucket(score: float) -> str:
    return f"{round(score, 2):.2f}"


def features(text: str, etype: str, start: int, end: int, score: float) -> list[str]:
    """Binary feature names for one span (stable strings: the shipped head is keyed by them)."""
    from tunegate.evaluators.pii_gazetteer import gazetteer

    gaz = gazetteer()
    span = text[start:end]
    words = span.split()
    first, last = (words[0], words[-1]) if words else ("", "")
    f = [f"type={etype}", f"score={_bucket(score)}", f"type+score={etype}:{_bucket(score)}",
         f"nwords={min(len(words), 4)}"]
    if gaz.is_given(first):
        f.append("given_first")
    if len(words) > 1 and gaz.is_surname(last):
        f.append("surname_last")
    if len(words) == 1 and gaz.is_surname(first):
        f.append("surname_only")
    if gaz.is_place(span):
        f.append("place")
    if gaz.is_big_place(span):
        f.append("big_place")
    if len(words) > 1 and gaz.is_place(first):
        f.append("place_first")
    if span.isupper():
        f.append("upper")
    elif span.islower():
        f.append("lower")
    if any(c.isdigit() for c in span):
        f.append("digit")
    if "-" in span:
        f.append("hyphen")
    if "\n" in span:
        f.append("newline")
    low = last.casefold().strip(".,")
    f += [f"suf3={low[-3:]}", f"suf2={low[-2:]}"]
    before = _WORDS.findall(text[max(0, start - 60):start])
    after = _WORDS.findall(text[end:end + 60])
    b1 = before[-1].casefold() if before else "<s>"
    b2 = before[-2].casefold() if len(before) > 1 else "<s>"
    a1 = after[0].casefold() if after else "</s>"
    f += [f"b1={b1}", f"b2b1={b2}_{b1}", f"a1={a1}", f"a2={after[1].casefold() if len(after) > 1 else '</s>'}"]
    line_start = text.rfind("\n", 0, start) + 1
    if not text[line_start:start].strip():
        f.append("line_start")
    if start == 0 or re.search(r"[.!?]\s*$", text[max(0, start - 3):start]):
        f.append("sent_start")
    return f


class SpanHead:
    """The shipped logistic head: feature → per-class weights."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.classes: list[str] = data["classes"]
        self.intercept: list[float] = data["intercept"]
        self.weights: dict[str, list[float]] = data["weights"]
        self.threshold: float = data["threshold"]
        self.allowed: frozenset[str] = frozenset(data.get("allowed", []))

    def proba(self, feats: list[str]) -> dict[str, float]:
        z = list(self.intercept)
        for name in feats:
            w = self.weights.get(name)
            if w is not None:
                z = [a + b for a, b in zip(z, w, strict=True)]
        m = max(z)
        e = [math.exp(v - m) for v in z]
        s = sum(e)
        return {c: v / s for c, v in zip(self.classes, e, strict=True)}


@lru_cache(maxsize=1)
def span_head(path: Path = HEAD_PATH) -> SpanHead | None:
    """The shipped head, or None when the file is absent (then spans pass through unchanged)."""
    if not path.is_file():
        return None
    return SpanHead(json.loads(path.read_text(encoding="utf-8")))


def apply_head(results: list[Any], text: str, head: SpanHead | None = None) -> list[Any]:
    """Relabel or drop PERSON/LOCATION results and promote candidates the head is sure about.

    A result changes only when another class beats its own by the head's threshold margin and
    that kind of change is one the head's cross-validation allowed, so the head corrects
    confident mistakes of the kinds it is good at and leaves the rest to the recognizers.
    """
    head = head or span_head()
    out = []
    for r in results:
        if r.entity_type not in ("PERSON", "LOCATION", CANDIDATE):
            out.append(r)
            continue
        if head is None:
            if r.entity_type != CANDIDATE:
                out.append(r)
            continue
        p = head.proba(features(text, r.entity_type, r.start, r.end, r.score))
        own = r.entity_type if r.entity_type != CANDIDATE else "NONE"
        best = max(p, key=lambda c: p[c])
        if best != own and p[best] - p[own] >= head.threshold and f"{own}>{best}" in head.allowed:
            if best == "NONE":
                continue
            r.entity_type = best
        elif r.entity_type == CANDIDATE:
            continue
        out.append(r)
    return out
