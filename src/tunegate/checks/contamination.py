"""Contamination check: which eval rows overlap the tuning (train) rows, by which method, how much.

A candidate tuned on rows that also gate it is graded on memorised answers, so the gate's verdict
says nothing about new traffic. Three detectors on normalised text (NFKC, lower case, punctuation
stripped, whitespace collapsed — :func:`tunegate.checks.textrows.normalise`), strongest first:

``exact``    the whole normalised row text is identical (score 1.0);
``ngram``    a shared word n-gram (n = 13, the GPT-3 / LLaMA rule), or a whole field of 8..12 words
             found inside the other row (score = share of the eval row's words in shared n-grams);
``minhash``  estimated Jaccard of character 5-shingle sets >= ``jaccard`` (0.8), via 128-permutation
             MinHash and LSH banding (score = the estimate) — catches edits dense enough to break
             every n-gram: words changed, clauses reordered.

Every method that fired on a pair is listed; the row's ``method`` is the strongest one.

Anchored on the input (default): an overlap counts only when it involves the eval row's *input*
(a shared n-gram covering an input word; for MinHash, the input's shingles contained in the train
row at the same threshold). A reference answer shared by many rows — a canned refusal, a fixed
JSON reply — is a policy the model is meant to learn, not a leaked eval item; without the anchor a
gate would drop its whole safety cohort. ``anchor_input=False`` (CLI ``--any-field``) counts any
overlap. Rows with no input text in the chosen fields are never anchored.

Boilerplate is not a leak: a golden set whose rows all start with the same task instruction ("Classify
this bank customer message. Reply with JSON only: ...") shares that instruction's 13-grams with every
train row. An n-gram window that at least ``template_share`` (10 %) of the eval rows -- and at least 5
of them -- share is the dataset's own template: a shared window that touches it counts only when at
least half of its words are the row's own text (the customer's message). ``template_share=None`` turns
this off. MinHash compares the rows without their template words (a short message behind a long
shared instruction would otherwise reach the Jaccard threshold on the instruction alone).
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunegate._version import __version__
from tunegate.checks.minhash import MinHasher, lsh_pairs, lsh_params
from tunegate.checks.ngrams import encode_words, frequent_windows, ngram_overlap, window_mask
from tunegate.checks.textrows import (
    DEFAULT_FIELDS,
    TextRow,
    TextRows,
    load_text_rows,
    normalise,
    rows_from_dataset,
    rows_from_dicts,
)
from tunegate.core.dataset import Dataset
from tunegate.core.example import Example
from tunegate.errors import UserError

__all__ = ["METHODS", "ContaminatedRow", "ContaminationReport", "Match", "SourceSummary", "as_text_rows",
           "check_contamination"]

METHODS: tuple[str, ...] = ("exact", "ngram", "minhash")
#: A window counts as the dataset's boilerplate only when at least this many eval rows share it
#: (and ``template_share`` of them): two or three rows sharing a passage may be one leaked item.
_TEMPLATE_MIN_ROWS = 5
_RANK = {m: i for i, m in enumerate(METHODS)}

Progress = Callable[[str, int, int], None]
RowsLike = TextRows | Dataset | str | Path | Sequence[Any]


@dataclass(frozen=True)
class Match:
    """One train row an eval row overlaps."""

    train_id: str
    train_source: str
    method: str
    score: float
    span: str
    methods: dict[str, float] = field(default_factory=dict)


@dataclass
class ContaminatedRow:
    """An eval row that overlaps at least one train row; ``matches`` strongest first (capped)."""

    eval_id: str
    eval_source: str
    eval_split: str | None
    eval_line: int | None
    method: str
    score: float
    span: str
    n_matches: int
    matches: list[Match]

    @property
    def train_ids(self) -> list[str]:
        return [m.train_id for m in self.matches]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train_ids"] = self.train_ids
        return d


@dataclass
class SourceSummary:
    """Counts for one eval file (and split, for golden datasets)."""

    source: str
    split: str | None
    rows: int
    contaminated: int
    by_method: dict[str, int]
    empty: int  #: rows with no text in the chosen fields (not checked)
    fields: list[str]


@dataclass
class ContaminationReport:
    """Result of :func:`check_contamination`; ``to_dict`` is the ``--json`` form."""

    rows: list[ContaminatedRow]
    summary: list[SourceSummary]
    train: list[dict[str, Any]]
    params: dict[str, Any]
    elapsed_s: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.rows

    def ids(self, source: str | None = None) -> list[str]:
        """Contaminated eval row ids (of one source when given)."""
        return [r.eval_id for r in self.rows if source is None or r.eval_source == source]

    def to_dict(self) -> dict[str, Any]:
        return {"clean": self.clean, "contaminated": len(self.rows), "params": self.params, "train": self.train,
                "summary": [asdict(s) for s in self.summary], "rows": [r.to_dict() for r in self.rows],
                "elapsed_s": round(self.elapsed_s, 3)}


def as_text_rows(obj: RowsLike, fields: Sequence[str] = DEFAULT_FIELDS) -> list[TextRows]:
    """Any supported input as a list of sources: TextRows, a Dataset, a file path, a list of
    Examples / TextRows / plain dicts, or a list of any of those (several files)."""
    if isinstance(obj, TextRows):
        return [obj]
    if isinstance(obj, Dataset):
        return [rows_from_dataset(obj, fields)]
    if isinstance(obj, str | Path):
        return [load_text_rows(obj, fields)]
    items = list(obj)
    if not items:
        return [TextRows("rows", [], list(fields))]
    if all(isinstance(x, Example) for x in items):
        return [rows_from_dataset(items, fields)]
    if all(isinstance(x, TextRow) for x in items):
        return [TextRows(items[0].source, items, list(fields))]
    if all(isinstance(x, dict) for x in items):
        return [rows_from_dicts([(None, x) for x in items], fields)]
    out: list[TextRows] = []
    for x in items:
        if isinstance(x, TextRows | Dataset | str | Path):
            out += as_text_rows(x, fields)
        else:
            raise UserError(f"cannot read rows from {type(x).__name__}; give a Dataset, a file path or a list "
                            "of Examples / dicts", field="rows")
    return out


def _first_shared_span(a: str, b: str, n: int, min_k: int = 3) -> str:
    """The first word k-gram of ``a`` also in ``b`` (largest k from n down to ``min_k``), or ''."""
    aw, bw = a.split(), b.split()
    for k in range(min(n, len(aw), len(bw)), min_k - 1, -1):
        grams = {tuple(bw[i:i + k]) for i in range(len(bw) - k + 1)}
        for i in range(len(aw) - k + 1):
            if tuple(aw[i:i + k]) in grams:
                return " ".join(aw[i:i + k])
    return ""


def check_contamination(train_rows: RowsLike, eval_rows: RowsLike, *, ngram: int = 13, min_ngram: int = 8,
                        jaccard: float = 0.8, fields: Sequence[str] = DEFAULT_FIELDS,
                        methods: Sequence[str] = METHODS, anchor_input: bool = True,
                        template_share: float | None = 0.1, num_perm: int = 128,
                        shingle: int = 5, seed: int = 1, max_listed: int = 20,
                        progress: Progress | None = None) -> ContaminationReport:
    """Find every eval row that overlaps a train row (see the module docstring for the methods)."""
    t0 = time.perf_counter()
    bad = set(methods) - set(METHODS)
    if bad or not methods:
        raise UserError(f"unknown method(s) {sorted(bad)}; use {', '.join(METHODS)}", field="methods")
    if not 1 <= min_ngram <= ngram:
        raise UserError(f"need 1 <= min_ngram <= ngram, got {min_ngram} and {ngram}", field="ngram")
    if not 0.0 < jaccard <= 1.0:
        raise UserError(f"jaccard threshold must be in (0, 1], got {jaccard}", field="jaccard")
    if template_share is not None and not 0.0 < template_share <= 1.0:
        raise UserError(f"template share must be in (0, 1], got {template_share}", field="template_share")
    hook = progress or (lambda stage, done, total: None)
    tsrc, esrc = as_text_rows(train_rows, fields), as_text_rows(eval_rows, fields)
    trows = [r for s in tsrc for r in s.rows]
    erows = [r for s in esrc for r in s.rows]
    hook("normalising", 0, 1)
    tsegs = [[normalise(s).split() for s in r.segments] for r in trows]
    esegs = [[normalise(s).split() for s in r.segments] for r in erows]
    ttext = [" ".join(w for s in segs for w in s) for segs in tsegs]
    etext = [" ".join(w for s in segs for w in s) for segs in esegs]
    hook("normalising", 1, 1)
    tc = ec = None
    e_tpl: np.ndarray | None = None
    t_own, e_own = ttext, etext  # what MinHash compares: the rows without the dataset's template
    if template_share is not None and ("ngram" in methods or "minhash" in methods):
        tc, ec = encode_words(tsegs, seed=seed), encode_words(esegs, seed=seed)
        lengths = sorted({ngram} | {int(x) for x in np.concatenate([tc.seg_len, ec.seg_len])
                                    if min_ngram <= x < ngram})
        found = frequent_windows(ec, lengths, max(_TEMPLATE_MIN_ROWS, math.ceil(template_share * len(erows))))
        if found:
            e_tpl, t_tpl = window_mask(ec, found), window_mask(tc, found)
            e_own, t_own = _without(esegs, e_tpl), _without(tsegs, t_tpl)
    hits: dict[tuple[int, int], dict[str, float]] = defaultdict(dict)
    spans: dict[tuple[int, int], str] = {}
    if "exact" in methods:
        hook("exact match", 0, 1)
        index: dict[str, list[int]] = defaultdict(list)
        for i, text in enumerate(ttext):
            if text:
                index[text].append(i)
        for e, text in enumerate(etext):
            for ti in index.get(text, []) if text else []:
                hits[(e, ti)]["exact"] = 1.0
        hook("exact match", 1, 1)
    if "ngram" in methods:
        hook("n-grams", 0, 1)
        tc = tc if tc is not None else encode_words(tsegs, seed=seed)
        ec = ec if ec is not None else encode_words(esegs, seed=seed)
        ng = ngram_overlap(tc, ec, ngram, min_ngram, anchor=_anchor(erows, ec) if anchor_input else None,
                           template=e_tpl)
        for e, t, p, ln, cov in zip(ng.eval_idx.tolist(), ng.train_idx.tolist(), ng.first_pos.tolist(),
                                    ng.first_len.tolist(), ng.coverage.tolist(), strict=True):
            hits[(e, t)]["ngram"] = round(float(cov), 4)
            spans[(e, t)] = " ".join(etext[e].split()[p:p + ln])
        hook("n-grams", 1, 1)
    bands_rows: tuple[int, int] | None = None
    if "minhash" in methods:
        hook("minhash", 0, 2)
        hasher = MinHasher(num_perm=num_perm, seed=seed)
        tsig, esig = hasher.sign(t_own, shingle), hasher.sign(e_own, shingle)
        hook("minhash", 1, 2)
        bands_rows = lsh_params(jaccard, num_perm)
        e_i, t_i, jac = lsh_pairs(tsig, esig, jaccard, seed=seed, valid_train=np.array([bool(t) for t in t_own]),
                                  valid_eval=np.array([bool(t) for t in e_own]))
        for e, t, j in zip(e_i.tolist(), t_i.tolist(), jac.tolist(), strict=True):
            if (e, t) in hits or not anchor_input or _input_contained(erows[e], t_own[t], shingle, jaccard):
                hits[(e, t)]["minhash"] = round(float(j), 4)
        hook("minhash", 2, 2)
    per_eval: dict[int, list[Match]] = defaultdict(list)
    for (e, t), ms in hits.items():
        best = min(ms, key=lambda m: _RANK[m])
        if best == "exact":
            span = " ".join(etext[e].split()[:ngram])
        else:
            span = spans.get((e, t)) or _first_shared_span(etext[e], ttext[t], min(ngram, min_ngram))
        per_eval[e].append(Match(trows[t].id, trows[t].source, best, ms[best], span, dict(ms)))
    out: list[ContaminatedRow] = []
    for e in sorted(per_eval):
        ranked = sorted(per_eval[e], key=lambda m: (_RANK[m.method], -m.score, m.train_id))
        r = erows[e]
        out.append(ContaminatedRow(r.id, r.source, r.split, r.line, ranked[0].method, ranked[0].score,
                                   ranked[0].span, len(ranked), ranked[:max_listed]))
    summary = _summarise(esrc, erows, etext, out)
    params = {"ngram": ngram, "min_ngram": min_ngram, "jaccard": jaccard, "methods": list(methods),
              "anchor_input": anchor_input, "template_share": template_share,
              "num_perm": num_perm, "shingle_chars": shingle, "seed": seed, "fields": list(fields),
              "lsh_bands_rows": list(bands_rows) if bands_rows else None, "tunegate_version": __version__}
    train = [{"source": s.source, "rows": len(s.rows), "fields": s.fields, "hash": s.hash, "kind": s.kind,
              **({"file_sha256": s.extra["file_sha256"]} if "file_sha256" in s.extra else {})} for s in tsrc]
    return ContaminationReport(out, summary, train, params, time.perf_counter() - t0)


def _without(rows: list[list[list[str]]], template: np.ndarray) -> list[str]:
    """Each row's normalised text with its template words left out (``template``: one flag per word,
    in the order ``encode_words`` read the rows' segments)."""
    out, k = [], 0
    for segs in rows:
        words = [w for seg in segs for w in seg]
        out.append(" ".join(w for w, tpl in zip(words, template[k:k + len(words)], strict=True) if not tpl))
        k += len(words)
    return out


def _anchor(rows: list[TextRow], corpus: Any) -> np.ndarray:
    """One bool per eval word: inside an input segment, or the row has no input segment at all."""
    flags = np.array([r.role_of(i) == "input" for r in rows for i in range(len(r.segments))], bool)
    has_input = np.zeros(corpus.n_rows, bool)
    np.logical_or.at(has_input, corpus.seg_row, flags)
    return np.repeat(flags | ~has_input[corpus.seg_row], corpus.seg_len)


def _input_contained(row: TextRow, train_text: str, k: int, threshold: float) -> bool:
    """MinHash hits on rows with an answer: do the input's shingles appear in the train row too?"""
    inputs = [normalise(s) for i, s in enumerate(row.segments) if row.role_of(i) == "input"]
    if not inputs or len(inputs) == len(row.segments):
        return True
    text = " ".join(inputs)
    have = {train_text[i:i + k] for i in range(max(1, len(train_text) - k + 1))}
    mine = {text[i:i + k] for i in range(max(1, len(text) - k + 1))}
    return len(mine & have) / len(mine) >= threshold


def _summarise(esrc: list[TextRows], erows: list[TextRow], etext: list[str],
               out: list[ContaminatedRow]) -> list[SourceSummary]:
    fields = {s.source: s.fields for s in esrc}
    total: Counter[tuple[str, str | None]] = Counter((r.source, r.split) for r in erows)
    empty: Counter[tuple[str, str | None]] = Counter((r.source, r.split) for r, t in zip(erows, etext, strict=True)
                                                     if not t)
    hit: dict[tuple[str, str | None], Counter[str]] = defaultdict(Counter)
    for c in out:
        hit[(c.eval_source, c.eval_split)][c.method] += 1
    order = {"train": 0, "dev": 1, "test": 2, None: 3}
    keys = sorted(total, key=lambda k: (k[0], order.get(k[1], 4)))
    return [SourceSummary(src, sp, total[(src, sp)], sum(hit[(src, sp)].values()),
                          {m: hit[(src, sp)][m] for m in METHODS if hit[(src, sp)][m]}, empty[(src, sp)],
                          fields.get(src, [])) for src, sp in keys]
