"""The shipped entailment model: loading, batched pair inference, long-context chunking, claim splitting.

``NLIModel`` wraps the cross-encoder trained by ``nli_train`` (``tunegate/data/nli-minilm-l6``,
path overridable by ``TUNEGATE_NLI_MODEL`` or an evaluator's ``model_path`` option). WHY the
pieces look the way they do:

* The model was trained on sentence-length premises with a 128-token window, so a context longer
  than that is cut into overlapping windows of whole sentences and a claim's entailment is the
  **max over windows** (SummaC zero-shot): one window that states the fact is enough, and no window
  is ever truncated mid-evidence. Windows are ranked by word overlap with the claim and only the
  best ``top_k`` are scored, which keeps a 1,000-word document affordable on 2 CPU cores.
* Pairs are deduplicated and run by the packed W8A8 engine (:mod:`tunegate.evaluators.nli_engine`:
  no padding, int8 matmuls with a per-token scale, ~2x the fp32 rate on 2 CPU cores), whose
  output for a pair does not depend on the other pairs in the call. ``TUNEGATE_NLI_QUANTIZE=none``
  runs the plain fp32 HF model instead (length-sorted, dynamically padded batches), for reference.
* Models are cached per process, keyed by path (no other global state); torch and transformers are
  imported only when a model is first used, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MODEL_DIR",
    "ClaimCheck",
    "NLIModel",
    "chunk_context",
    "load_manifest",
    "packed_pair_probs",
    "pair_probs",
    "split_claims",
    "split_sentences",
]

#: The weights shipped inside the package.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "data" / "nli-minilm-l6"
MANIFEST = "tunegate-nli.json"
ENV_VAR = "TUNEGATE_NLI_MODEL"
QUANTIZE_ENV_VAR = "TUNEGATE_NLI_QUANTIZE"


# -- text splitting -----------------------------------------------------------------------------
_ABBREV = ("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "inc", "ltd", "co", "corp",
           "no", "fig", "e.g", "i.e", "u.s", "u.k", "approx", "dept", "est", "jan", "feb", "mar", "apr",
           "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mt", "gen", "gov", "sen", "rep")
_SENT_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)")
_ABBR_TAIL = re.compile(r"(?:^|\s)(" + "|".join(re.escape(a) for a in _ABBREV) + r")\.$", re.I)
_INITIAL_TAIL = re.compile(r"(?:^|\s)[A-Z]\.$")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split after . ! ? before a capital/digit, at blank lines and list items;
    abbreviations (Dr., U.S., e.g.) and initials (J. Smith) do not end a sentence."""
    out: list[str] = []
    start = 0
    for m in _SENT_END.finditer(text):
        piece = text[start:m.start()].strip()
        if piece and (_ABBR_TAIL.search(piece) or _INITIAL_TAIL.search(piece)) and "\n" not in m.group(0):
            continue
        if piece:
            out.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    merged: list[str] = []
    for s in (" ".join(p.split()) for p in out):
        if merged and len(s.split()) < 2:  # a lone "Yes." or list number joins its neighbour
            merged[-1] += " " + s
        else:
            merged.append(s)
    return merged


# A clause boundary: "; " or ", and/but/while/whereas/so/yet ..." or " but/whereas " (no comma).
_CLAUSE_CUT = re.compile(r";\s+|,\s+(?=(?:and|but|while|whereas|so|yet|although|though)\s)|\s+(?=(?:but|whereas)\s)",
                         re.I)
_LEADING_CONJ = re.compile(r"^(?:and|but|while|whereas|so|yet|although|though)\s+", re.I)
_VERBISH = re.compile(
    r"\b(?:is|are|was|were|be|been|am|has|have|had|do|does|did|will|would|can|could|shall|should|"
    r"may|might|must|won't|can't|isn't|aren't|wasn't|weren't|didn't|doesn't|don't|hasn't|haven't|"
    r"said|made|went|took|got|gave|came|saw|knew|thought|told|found|became|left|felt|brought|began|kept|"
    r"held|wrote|stood|heard|meant|met|ran|paid|sat|spoke|led|grew|lost|fell|sent|built|drew|broke|spent|"
    r"rose|drove|bought|chose|won|sold|fought|taught|caught|hit|put|cut|set|let|shut|spread)\b"
    r"|\b[a-z]{2,}ed\b|\b[a-z]{3,}(?<!s)s\b", re.I)
_LONG_CLAUSE_WORDS = 18


def _has_verb(text: str) -> bool:
    return bool(_VERBISH.search(text))


def _clause_ok(left: str, right: str, cut: str) -> bool:
    """Both sides are clauses of ≥ 4 words with a verb-like word, and a comma cut does not end a
    serial list ("A, B, and C ...": a comma among the left side's last six words)."""
    right = _LEADING_CONJ.sub("", right)
    if len(left.split()) < 4 or len(right.split()) < 4 or not (_has_verb(left) and _has_verb(right)):
        return False
    return not (cut.startswith(",") and "," in " ".join(left.split()[-6:]))


def split_claims(text: str) -> list[str]:
    """Atomic-ish claims of ``text``: its sentences, and a long sentence (≥ 18 words) cut at ``;`` and
    before a conjunction (", and" / ", but" / "while" ...) when both sides look like clauses.

    Deterministic and regex-only (no tokenizer download). The leading conjunction is dropped from the
    right-hand clause ("while EPS rose" → "EPS rose"), since each claim is checked on its own.
    """
    claims: list[str] = []
    for sent in split_sentences(text):
        if len(sent.split()) < _LONG_CLAUSE_WORDS:
            claims.append(sent)
            continue
        parts: list[str] = []
        start = 0
        for m in _CLAUSE_CUT.finditer(sent):
            left, right = sent[start:m.start()].strip(), sent[m.end():].strip()
            if _clause_ok(left, right, m.group(0).strip() or " "):
                parts.append(left)
                start = m.end()
        parts.append(sent[start:].strip())
        for part in parts:
            part = _LEADING_CONJ.sub("", part.strip(" ,;"))
            if part:
                claims.append(part[0].upper() + part[1:])
    return [c for c in claims if re.search(r"\w", c)]


# -- context windows ----------------------------------------------------------------------------
_WORD = re.compile(r"[A-Za-z0-9]+(?:[.,'][A-Za-z0-9]+)*")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def chunk_context(text: str, max_words: int = 60, stride_sentences: int | None = None) -> list[str]:
    """Overlapping windows of whole sentences of at most ``max_words`` words (a longer sentence is its
    own window, cut into word windows): each window starts one sentence after the previous one's start
    (or ``stride_sentences``), so every pair of neighbouring sentences shares a window."""
    sents = split_sentences(text)
    if not sents:
        return []
    if len(" ".join(sents).split()) <= max_words:
        return [" ".join(sents)]
    pieces: list[str] = []
    for s in sents:
        w = s.split()
        if len(w) <= max_words:
            pieces.append(s)
        else:
            step = max(1, max_words // 2)
            pieces += [" ".join(w[i:i + max_words]) for i in range(0, max(1, len(w) - step), step)]
    windows: list[str] = []
    i = 0
    while i < len(pieces):
        j, n = i, 0
        while j < len(pieces) and (j == i or n + len(pieces[j].split()) <= max_words):
            n += len(pieces[j].split())
            j += 1
        windows.append(" ".join(pieces[i:j]))
        if j >= len(pieces):
            break
        i = i + stride_sentences if stride_sentences else max(i + 1, j - 1)
    return windows


# -- inference ----------------------------------------------------------------------------------
def pair_probs(model: Any, tokenizer: Any, premises: Sequence[str], hypotheses: Sequence[str], *,
               max_length: int = 256, batch_size: int = 32) -> np.ndarray:
    """Softmax (n, 3) [entailment, neutral, contradiction] for each pair, batched by length."""
    import torch

    n = len(premises)
    out = np.zeros((n, 3), dtype=np.float32)
    if n == 0:
        return out
    order = sorted(range(n), key=lambda i: len(premises[i]) + len(hypotheses[i]))
    with torch.inference_mode():
        for b in range(0, n, batch_size):
            idx = order[b:b + batch_size]
            enc = tokenizer([premises[i] for i in idx], [hypotheses[i] for i in idx], truncation="only_first",
                            max_length=max_length, padding=True, return_tensors="pt")
            logits = model(**enc).logits.float()
            out[idx] = torch.softmax(logits, -1).numpy()
    return out


def packed_pair_probs(engine: Any, tokenizer: Any, premises: Sequence[str], hypotheses: Sequence[str], *,
                      max_length: int = 256) -> np.ndarray:
    """Softmax (n, 3) from the packed engine: pairs tokenized without padding, premise truncated."""
    import torch

    if not premises:
        return np.zeros((0, 3), dtype=np.float32)
    enc = tokenizer(list(premises), list(hypotheses), truncation="only_first", max_length=max_length)
    logits = engine.logits(enc["input_ids"], enc["token_type_ids"])
    return np.asarray(torch.softmax(logits, -1).numpy(), dtype=np.float32)


def load_manifest(path: Path) -> dict[str, Any]:
    """The model folder's ``tunegate-nli.json`` ({} when absent: a user-supplied model)."""
    f = path / MANIFEST
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}


@dataclass(frozen=True)
class ClaimCheck:
    """One claim against one source: probabilities of its best window and which window that was."""

    claim: str
    entail: float
    neutral: float
    contradict: float
    window: str


_CACHE: dict[str, NLIModel] = {}
_MEMO_SIZE = 100_000  #: (window, claim) probabilities remembered per model
_LOCK = threading.Lock()


class NLIModel:
    """The entailment cross-encoder (weights loaded lazily, once per process and path)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path or os.environ.get(ENV_VAR) or DEFAULT_MODEL_DIR).expanduser().resolve()
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"no entailment model at {self.path} (set {ENV_VAR} or model_path)")
        self.manifest = load_manifest(self.path)
        infer = self.manifest.get("inference", {})
        self.max_length: int = int(infer.get("max_length", 256))
        self.window_words: int = int(infer.get("window_words", 60))
        self.top_k: int = int(infer.get("top_k", 6))
        #: "w8a8" (the shipped manifest's choice): the packed engine, int8 weights and per-token int8
        #: activations (exact int32 matmuls), so a pair's probabilities do not depend on its batch.
        #: "none": the fp32 HF model (also batch-independent up to ~2e-7; the head was not fitted on it).
        #: "int8" is read as "w8a8": before evaluator v4 it meant torch's dynamic int8 with one activation
        #: scale per *batch* (scores moved with the batch neighbours), which is retired.
        quantize = os.environ.get(QUANTIZE_ENV_VAR) or str(infer.get("quantize", "none"))
        self.quantize: str = "w8a8" if quantize == "int8" else quantize
        if self.quantize not in ("w8a8", "none"):
            raise ValueError(f"{QUANTIZE_ENV_VAR} / inference.quantize must be 'w8a8' or 'none', got {quantize!r}")
        self._model: Any = None
        self._tok: Any = None
        self.loads = 0  #: how many times the weights were read (tests check it stays 1)
        self._memo: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def clear_memo(self) -> None:
        """Forget remembered (window, claim) probabilities (benchmarks that time repeated passes)."""
        with _LOCK:
            self._memo.clear()

    @classmethod
    def load(cls, path: str | Path | None = None) -> NLIModel:
        """The process-wide instance for ``path`` (default: env var, else the shipped weights)."""
        key = str(Path(path or os.environ.get(ENV_VAR) or DEFAULT_MODEL_DIR).expanduser().resolve())
        with _LOCK:
            if key not in _CACHE:
                _CACHE[key] = cls(key)
            return _CACHE[key]

    def _ensure(self) -> tuple[Any, Any]:
        """(model, tokenizer), loaded once: a :class:`~tunegate.evaluators.nli_engine.PackedBert`
        for "w8a8", the HF ``AutoModelForSequenceClassification`` for "none"."""
        with _LOCK:
            if self._model is None:
                from transformers import AutoTokenizer
                from transformers.utils import logging as hf_logging

                hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
                self._tok = AutoTokenizer.from_pretrained(str(self.path))
                if self.quantize == "w8a8":
                    from tunegate.evaluators.nli_engine import load_packed_bert

                    self._model = load_packed_bert(self.path)
                else:
                    import torch
                    from transformers import AutoModelForSequenceClassification

                    model = AutoModelForSequenceClassification.from_pretrained(str(self.path), dtype=torch.float32)
                    self._model = model.eval()
                self.loads += 1
        return self._model, self._tok

    def pair_probs(self, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(n, 3) probabilities for raw pairs (premise truncated to the window). Duplicates run once,
        and recent pairs are remembered, so groundedness, faithfulness and hallucination in one suite
        share the model calls."""
        if len(premises) != len(hypotheses):
            raise ValueError("premises and hypotheses differ in length")
        keys = list(zip(premises, hypotheses, strict=True))
        todo = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if todo:
            model, tok = self._ensure()
            if self.quantize == "w8a8":
                probs = packed_pair_probs(model, tok, [k[0] for k in todo], [k[1] for k in todo],
                                          max_length=self.max_length)
            else:
                probs = pair_probs(model, tok, [k[0] for k in todo], [k[1] for k in todo],
                                   max_length=self.max_length, batch_size=batch_size)
            with _LOCK:
                for k, row in zip(todo, probs, strict=True):
                    self._memo[k] = row
                while len(self._memo) > _MEMO_SIZE:
                    self._memo.popitem(last=False)
        out = np.zeros((len(keys), 3), dtype=np.float32)
        for i, k in enumerate(keys):
            row = self._memo.get(k)
            if row is None:  # evicted by a concurrent call: recompute this one pair
                row = self.pair_probs([k[0]], [k[1]], batch_size)[0]
            out[i] = row
        return out

    def windows(self, premise: str, hypothesis: str, top_k: int | None = None) -> list[str]:
        """The context windows a hypothesis is checked against: all when ``top_k`` is 0, else the
        ``top_k`` sharing most (rare-weighted) words with it, in document order."""
        wins = chunk_context(premise, self.window_words) or [premise]
        k = self.top_k if top_k is None else top_k
        if k <= 0 or len(wins) <= k:
            return wins
        hyp = set(_words(hypothesis))
        counts: dict[str, int] = {}
        sets = [set(_words(w)) for w in wins]
        for s in sets:
            for w in s:
                counts[w] = counts.get(w, 0) + 1
        # math.fsum: a set's iteration order follows PYTHONHASHSEED, and a plain float sum in that
        # order made near-tied windows rank differently from one process to the next (the same
        # row scored differently per run); fsum is exactly rounded, so the order cannot matter.
        score = [math.fsum(1.0 / counts[w] for w in hyp & s) for s in sets]
        best = sorted(range(len(wins)), key=lambda i: (-score[i], i))[:k]
        return [wins[i] for i in sorted(best)]

    def check(self, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int = 32,
              top_k: int | None = None) -> list[ClaimCheck]:
        """Each hypothesis against its (possibly long) premise: the window with the highest
        entailment probability wins (SummaC-style max over windows)."""
        flat_p: list[str] = []
        flat_h: list[str] = []
        owner: list[int] = []
        for i, (p, h) in enumerate(zip(premises, hypotheses, strict=True)):
            for w in self.windows(p, h, top_k):
                flat_p.append(w)
                flat_h.append(h)
                owner.append(i)
        probs = self.pair_probs(flat_p, flat_h, batch_size)
        best: dict[int, int] = {}
        for j, i in enumerate(owner):
            if i not in best or probs[j, 0] > probs[best[i], 0]:
                best[i] = j
        out = []
        for i, h in enumerate(hypotheses):
            if i not in best:  # empty premise: nothing entails the claim
                out.append(ClaimCheck(h, 0.0, 1.0, 0.0, ""))
                continue
            e, n, c = (float(x) for x in probs[best[i]])
            out.append(ClaimCheck(h, e, n, c, flat_p[best[i]]))
        return out

    def entail_probs(self, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """P(premise entails hypothesis) for each pair; long premises are chunked (max over windows)."""
        return np.array([c.entail for c in self.check(premises, hypotheses, batch_size)], dtype=np.float64)
