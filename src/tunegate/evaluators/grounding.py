"""Grounding features and the calibrated head that turns them into P(grounded).

WHY a head over features instead of the raw entailment probability: the shipped cross-encoder is
small and was trained on sentence pairs, so alone it ranks SummEdits summaries barely above chance
and loses to plain word overlap on dialogue and short-answer QA. What a careful reader does is
combine several weak signals — does some window entail the claim, does one contradict it, are its
content words, numbers, dates and names in the source at all — and that is what the head does: a
logistic regression over those features, fitted by ``training/grounding_train.py`` on documents the
benchmarks never see, so its output is a probability: 0.5 means "as likely grounded as not".

Short answers ("Paris", "In 1998.") are judged together with the question they answer: the
hypothesis given to the entailment model is the question followed by the answer, and the lexical
checks look at the answer's own words only (the question's words are in the context by design).

Everything here is pure numpy/regex except :func:`nli_features`, which calls the entailment model.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from tunegate.evaluators.nli import NLIModel

__all__ = [
    "FEATURES",
    "ClaimFeatures",
    "GroundingHead",
    "RowEvidence",
    "claim_hypothesis",
    "featurize",
    "lexical_features",
    "load_grounding_head",
    "nli_features",
    "row_features",
]

#: Feature order of the head (the manifest stores it; loading checks it).
FEATURES: tuple[str, ...] = (
    "min_entail", "mean_entail", "max_contra", "mean_contra", "min_margin",
    "overlap", "content_overlap", "min_claim_content_overlap",
    "novel_numbers", "novel_names", "novel_content", "log_claims", "log_words",
)

#: An answer of at most this many words is checked as "question + answer".
SHORT_ANSWER_WORDS = 8

_TOKEN = re.compile(r"[a-z0-9]+")
#: An input that asks something (an instruction like "Summarize the document." is not prefixed).
_QUESTION = re.compile(r"\?\s*$|^\s*(?:who|what|when|where|which|why|how|whose|whom|is|are|was|were|do|does|did|"
                       r"can|could|should|will|would|has|have|name|list|tell)\b", re.I | re.M)
_NUMBER = re.compile(r"(?<![\w.])[-+]?\$?\d[\d,]*(?:\.\d+)?%?")
_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][a-zA-Z'’-]+(?:\s+[A-Z][a-zA-Z'’-]+)*")
_STOP = frozenset(re.findall(r"\S+",
    "a an the and or but if of to in on at by for with from as is are was were be been being am do does did "
    "has have had will would can could shall should may might must not no nor so than that this these those "
    "it its it's he she they them their his her him we us our you your i me my mine what which who whom whose "
    "when where why how all any each every some such there here then also just only very more most much many "
    "into onto over under about after before during while up down out off again further once both few other "
    "own same too s t don doesn didn isn aren wasn weren won yes ok okay"))
_MONTHS = frozenset(re.findall(r"\S+", "january february march april may june july august september october "
                                        "november december"))


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _num(s: str) -> str:
    """A number as written, normalised: no sign, currency, thousands separators or trailing .0."""
    t = s.strip("+-$%").replace(",", "")
    if "." in t:
        t = t.rstrip("0").rstrip(".")
    return t


def claim_hypothesis(claim: str, question: str | None) -> str:
    """What the entailment model checks: a short answer is prefixed by its question, so "Paris"
    becomes "What is the capital of France? Paris" and can be entailed or contradicted at all.
    Only when the input asks something (ends with "?" or starts like a question)."""
    q = (question or "").strip()
    if q and len(claim.split()) <= SHORT_ANSWER_WORDS and _QUESTION.search(q):
        return f"{q} {claim}"
    return claim


@dataclass(frozen=True)
class ClaimFeatures:
    """Entailment evidence for one claim: best window by P(entailment), and the worst contradiction."""

    claim: str
    entail: float
    contradict: float  #: max over windows
    window: str


def nli_features(model: NLIModel, sources: Sequence[str], hypotheses: Sequence[str],
                 top_k: int | None = None, batch_size: int = 32) -> list[ClaimFeatures]:
    """Each hypothesis against the top-k windows of its source: max P(e) and max P(c) over windows
    (a claim contradicted by one window and entailed by none is the typical changed number or name)."""
    flat_p: list[str] = []
    flat_h: list[str] = []
    owner: list[int] = []
    for i, (p, h) in enumerate(zip(sources, hypotheses, strict=True)):
        if not p.strip():
            continue
        for w in model.windows(p, h, top_k):
            flat_p.append(w)
            flat_h.append(h)
            owner.append(i)
    probs = model.pair_probs(flat_p, flat_h, batch_size) if flat_p else np.zeros((0, 3), np.float32)
    best_e: dict[int, int] = {}
    max_c: dict[int, float] = {}
    for j, i in enumerate(owner):
        if i not in best_e or probs[j, 0] > probs[best_e[i], 0]:
            best_e[i] = j
        max_c[i] = max(max_c.get(i, 0.0), float(probs[j, 2]))
    out = []
    for i, h in enumerate(hypotheses):
        if i not in best_e:
            out.append(ClaimFeatures(h, 0.0, 0.0, ""))
        else:
            out.append(ClaimFeatures(h, float(probs[best_e[i], 0]), max_c[i], flat_p[best_e[i]]))
    return out


def lexical_features(claims: Sequence[str], source: str) -> dict[str, float]:
    """Overlap of the claims' words with the source, and the numbers, names and content words the
    source does not contain at all (each a count, log-scaled)."""
    src_tokens = set(_tokens(source))
    src_nums = {_num(m) for m in _NUMBER.findall(source)}
    src_lower = source.lower()
    toks = [t for c in claims for t in _tokens(c)]
    content = [t for t in toks if t not in _STOP]
    overlap = sum(t in src_tokens for t in toks) / len(toks) if toks else 1.0
    c_overlap = sum(t in src_tokens for t in content) / len(content) if content else 1.0
    per_claim = []
    for c in claims:
        cw = [t for t in _tokens(c) if t not in _STOP]
        per_claim.append(sum(t in src_tokens for t in cw) / len(cw) if cw else 1.0)
    novel_nums = {_num(m) for c in claims for m in _NUMBER.findall(c)} - src_nums
    names = {m.lower() for c in claims for m in _NAME.findall(c)}
    novel_names = {n for n in names if n not in src_lower and n not in _MONTHS | _STOP
                   and not all(w in src_tokens for w in _tokens(n))}
    months = {t for t in toks if t in _MONTHS}
    novel_months = {m for m in months if m not in src_tokens}
    novel_content = {t for t in content if t not in src_tokens}
    return {
        "overlap": overlap, "content_overlap": c_overlap,
        "min_claim_content_overlap": min(per_claim) if per_claim else 1.0,
        "novel_numbers": math.log1p(len(novel_nums) + len(novel_months)),
        "novel_names": math.log1p(len(novel_names)),
        "novel_content": math.log1p(len(novel_content)),
        "log_words": math.log1p(len(toks)),
    }


def row_features(checks: Sequence[ClaimFeatures], claims: Sequence[str], source: str) -> dict[str, float]:
    """All features of one row (its claims' entailment evidence plus lexical checks)."""
    e = np.array([c.entail for c in checks]) if checks else np.ones(1)
    c = np.array([c.contradict for c in checks]) if checks else np.zeros(1)
    feats = {"min_entail": float(e.min()), "mean_entail": float(e.mean()), "max_contra": float(c.max()),
             "mean_contra": float(c.mean()), "min_margin": float((e - c).min()),
             "log_claims": math.log1p(len(claims))}
    feats.update(lexical_features(claims, source))
    return feats


class GroundingHead:
    """Standardise, then logistic regression: P(grounded) from a feature dict."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        feats = tuple(manifest["features"])
        if feats != FEATURES:
            raise ValueError(f"grounding head was fitted on features {feats}, code computes {FEATURES}")
        self.manifest = manifest
        self.mean = np.asarray(manifest["mean"], float)
        self.scale = np.asarray(manifest["scale"], float)
        self.coef = np.asarray(manifest["coef"], float)
        self.intercept = float(manifest["intercept"])
        self.inference: dict[str, Any] = dict(manifest.get("inference", {}))

    def matrix(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        return np.array([[r[f] for f in FEATURES] for r in rows], float).reshape(len(rows), len(FEATURES))

    def predict(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        """P(grounded) per row."""
        if not rows:
            return np.zeros(0)
        z = ((self.matrix(rows) - self.mean) / self.scale) @ self.coef + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    def contributions(self, row: dict[str, float]) -> dict[str, float]:
        """Each feature's share of the log-odds (what pushed this row up or down), largest first."""
        x = (self.matrix([row])[0] - self.mean) / self.scale * self.coef
        return dict(sorted(((f, round(float(v), 3)) for f, v in zip(FEATURES, x, strict=True)),
                           key=lambda kv: -abs(kv[1])))


@cache
def load_grounding_head() -> GroundingHead:
    """The shipped head, ``tunegate/data/grounding-head.json``."""
    text = (resources.files("tunegate") / "data" / "grounding-head.json").read_text(encoding="utf-8")
    return GroundingHead(json.loads(text))


@dataclass(frozen=True)
class RowEvidence:
    """One row's claims, their entailment evidence, and its feature dict."""

    claims: list[str]
    checks: list[ClaimFeatures]
    features: dict[str, float]


def featurize(model: NLIModel, rows: Sequence[tuple[str, list[str], str | None]],
              top_k: int | None = None, batch_size: int = 32) -> list[RowEvidence]:
    """Rows of (source, claims, question): one batched model call for every claim of every row."""
    todo = [(i, cl) for i, (_, claims, _) in enumerate(rows) for cl in claims]
    checks = nli_features(model, [rows[i][0] for i, _ in todo],
                          [claim_hypothesis(cl, rows[i][2]) for i, cl in todo], top_k, batch_size)
    per_row: list[list[ClaimFeatures]] = [[] for _ in rows]
    for (i, cl), chk in zip(todo, checks, strict=True):
        per_row[i].append(ClaimFeatures(cl, chk.entail, chk.contradict, chk.window))
    return [RowEvidence(list(claims), found, row_features(found, claims, src))
            for (src, claims, _), found in zip(rows, per_row, strict=True)]
