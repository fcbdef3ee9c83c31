"""Word n-gram overlap between two row sets, vectorised with numpy (the GPT-3 / LLaMA 13-gram rule).

Rule: an eval row overlaps a train row when they share any word n-gram (n = 13 by default) of the
normalised text. A field value shorter than n words but at least ``min_n`` (8) words long counts
as overlapping when it appears *whole* inside the other row — so a leaked 9-word question is
found even though it has no 13-gram. Shorter values are left to exact match and MinHash.

How: every word gets a 64-bit value (its string hash, mixed); the hash of the window ``w[s:s+L]`` is the polynomial
``sum v[w[s+j]] * P**(L-1-j) mod 2**64`` computed for all windows with L shifted vector adds. Train
window hashes are sorted once; eval windows are looked up with ``np.searchsorted``. The score of a
pair is its *coverage*: the share of the eval row's words inside shared windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tunegate.checks.minhash import rolling_windows, splitmix64

__all__ = ["NgramHits", "WordCorpus", "encode_words", "frequent_windows", "ngram_overlap", "template_words",
           "window_mask"]

_P = np.uint64(0x100000001B3)


@dataclass
class WordCorpus:
    """Rows of word ids, concatenated; plus each segment (field value) as (row, start, length)."""

    vals: np.ndarray  #: uint64 hash-derived value of each word (concatenated over rows)
    offsets: np.ndarray  #: row i owns vals[offsets[i]:offsets[i+1]]
    seg_row: np.ndarray
    seg_start: np.ndarray  #: absolute start in vals
    seg_len: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def encode_words(rows: Sequence[Sequence[Sequence[str]]], seed: int = 13) -> WordCorpus:
    """Encode rows (each a list of segments, each a list of words).

    A word's value is its Python string hash, mixed with ``seed`` by splitmix64: equal words get
    equal values within one process, which is all one check needs (no vocabulary dict to build).
    """
    words: list[str] = []
    offsets = [0]
    seg_row: list[int] = []
    seg_start: list[int] = []
    seg_len: list[int] = []
    for r, segs in enumerate(rows):
        for seg in segs:
            seg_row.append(r)
            seg_start.append(len(words))
            seg_len.append(len(seg))
            words.extend(seg)
        offsets.append(len(words))
    raw = np.fromiter((hash(w) for w in words), dtype=np.int64, count=len(words)).view(np.uint64)
    vals = splitmix64(raw ^ np.uint64(seed)) | np.uint64(1)
    return WordCorpus(vals, np.asarray(offsets, np.int64), np.asarray(seg_row, np.int64),
                      np.asarray(seg_start, np.int64), np.asarray(seg_len, np.int64))


def _windows(c: WordCorpus, L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash, row, position in row) of every length-L window that stays inside its row."""
    counts = np.maximum(c.lengths - L + 1, 0)
    row = np.repeat(np.arange(c.n_rows, dtype=np.int64), counts)
    pos = np.arange(row.size, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return rolling_windows(c.vals, c.lengths, L, _P), row, pos


def _unit_hashes(c: WordCorpus, L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash, row, position) of each segment of exactly L words (hashed as one window)."""
    sel = np.flatnonzero(c.seg_len == L)
    if sel.size == 0:
        z = np.zeros(0, np.int64)
        return np.zeros(0, np.uint64), z, z
    idx = c.seg_start[sel][:, None] + np.arange(L)[None, :]
    block = c.vals[idx]
    h = np.zeros(sel.size, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(L):
            h = h * _P + block[:, j]
    rows = c.seg_row[sel]
    return h, rows, c.seg_start[sel] - c.offsets[rows]


def _join(keys_h: np.ndarray, keys_row: np.ndarray, probe_h: np.ndarray, probe_row: np.ndarray,
          probe_pos: np.ndarray, max_bucket: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probe row, key row, probe position) for every probe hash found among the keys."""
    if keys_h.size == 0 or probe_h.size == 0:
        z = np.zeros(0, np.int64)
        return z, z, z
    order = np.argsort(keys_h, kind="stable")  # a window repeated inside one row only repeats events
    kh, kr = keys_h[order], keys_row[order]
    # almost every probe misses: a bitmap on the top hash bits drops most of them before the
    # binary search, whose random access is the slow part (5.8 s → 0.8 s for 3.6M probes)
    bits = int(min(26, max(16, np.ceil(np.log2(4 * kh.size + 1)))))
    shift = np.uint64(64 - bits)
    table = np.zeros(1 << bits, bool)
    table[(kh >> shift).astype(np.intp)] = True
    sel = np.flatnonzero(table[(probe_h >> shift).astype(np.intp)])
    probe_h, probe_row, probe_pos = probe_h[sel], probe_row[sel], probe_pos[sel]
    lo = np.searchsorted(kh, probe_h, "left")
    hi = np.minimum(np.searchsorted(kh, probe_h, "right"), lo + max_bucket)
    cnt = hi - lo
    hit = np.flatnonzero(cnt > 0)
    if hit.size == 0:
        z = np.zeros(0, np.int64)
        return z, z, z
    c = cnt[hit]
    rep = np.repeat(hit, c)
    within = np.arange(rep.size) - np.repeat(np.cumsum(c) - c, c)
    return probe_row[rep], kr[np.repeat(lo[hit], c) + within], probe_pos[rep]


@dataclass
class NgramHits:
    """One entry per overlapping (eval row, train row) pair."""

    eval_idx: np.ndarray
    train_idx: np.ndarray
    first_pos: np.ndarray  #: eval word position of the first shared window
    first_len: np.ndarray  #: its length in words (n, or a short field's length)
    coverage: np.ndarray  #: share of the eval row's words inside shared windows


def _coverage(key: np.ndarray, pos: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct pair key: (key, first position, covered words) for same-length windows."""
    order = np.lexsort((pos, key))
    k, p = key[order], pos[order]
    last = np.ones(k.size, bool)
    last[:-1] = k[1:] != k[:-1]
    gap = np.empty(k.size, np.int64)
    gap[:-1] = np.minimum(p[1:] - p[:-1], L)
    gap[last] = L
    first = np.ones(k.size, bool)
    first[1:] = k[1:] != k[:-1]
    starts = np.flatnonzero(first)
    return k[starts], p[starts], np.add.reduceat(gap, starts)


def frequent_windows(ev: WordCorpus, lengths: Sequence[int], min_rows: int) -> dict[int, np.ndarray]:
    """Per window length: the hashes of windows that ``min_rows`` or more distinct eval rows share --
    the dataset's own boilerplate (a task instruction every row of a cohort starts with)."""
    out: dict[int, np.ndarray] = {}
    if ev.n_rows < min_rows:
        return out
    for L in lengths:
        h, r, _ = _windows(ev, L)
        if h.size == 0:
            continue
        order = np.lexsort((r, h))
        hs, rs = h[order], r[order]
        new_pair = np.concatenate([[True], (hs[1:] != hs[:-1]) | (rs[1:] != rs[:-1])])
        uh, rows = np.unique(hs[new_pair], return_counts=True)
        if (rows >= min_rows).any():
            out[L] = uh[rows >= min_rows]
    return out


def window_mask(c: WordCorpus, windows: dict[int, np.ndarray]) -> np.ndarray:
    """One bool per word of ``c``: inside a window whose hash is among ``windows[L]``."""
    mask = np.zeros(c.vals.size + 1, np.int64)
    for L, hashes in windows.items():
        h, r, p = _windows(c, L)
        sel = np.isin(h, hashes)
        start = c.offsets[r[sel]] + p[sel]
        np.add.at(mask, start, 1)
        np.add.at(mask, start + L, -1)
    return np.cumsum(mask[:-1]) > 0


def template_words(ev: WordCorpus, lengths: Sequence[int], min_rows: int) -> np.ndarray:
    """One bool per eval word: inside a window that ``min_rows`` or more eval rows share."""
    return window_mask(ev, frequent_windows(ev, lengths, min_rows))


def ngram_overlap(train: WordCorpus, ev: WordCorpus, n: int = 13, min_n: int = 8, *,
                  anchor: np.ndarray | None = None, template: np.ndarray | None = None, max_bucket: int = 1000,
                  eval_chunk: int = 20000) -> NgramHits:
    """Every (eval, train) pair sharing an n-gram, or a whole short field of ``min_n``..n-1 words.

    ``anchor`` (one bool per eval word): a shared window counts only if it covers an anchored word
    (the eval row's input), so an answer shared by many rows — a canned refusal — is not a leak.
    ``template`` (one bool per eval word, e.g. :func:`template_words`): the dataset's boilerplate; a shared window that touches the template counts only when at least
    half its words are the row's own (anchored, non-template), so a shared instruction does not
    flag every row that carries it, while the row's own text copied into a train row still does.
    """
    n_train = np.int64(max(train.n_rows, 1))
    boiler = template if template is not None and template.any() else None
    passes: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []
    th, tr, _ = _windows(train, n)
    for r0 in range(0, ev.n_rows, eval_chunk):
        sub = _slice(ev, r0, min(ev.n_rows, r0 + eval_chunk))
        eh, er, ep = _windows(sub, n)
        e, t, p = _join(th, tr, eh, er + r0, ep, max_bucket)
        if e.size:
            passes.append((e, t, p, n))
    short = sorted({int(x) for x in np.concatenate([train.seg_len, ev.seg_len]) if min_n <= x < n})
    for L in short:
        uh, ur, _ = _unit_hashes(train, L)
        if uh.size:  # a short train field found whole inside an eval row
            eh, er, ep = _windows(ev, L)
            e, t, p = _join(uh, ur, eh, er, ep, max_bucket)
            if e.size:
                passes.append((e, t, p, L))
        vh, vr, vp = _unit_hashes(ev, L)
        if vh.size:  # a short eval field found whole inside a train row
            wh, wr, _ = _windows(train, L)
            e, t, p = _join(wh, wr, vh, vr, vp, max_bucket)
            if e.size:
                passes.append((e, t, p, L))
    if anchor is not None or boiler is not None:
        own = np.ones(ev.vals.size, bool) if anchor is None else anchor.astype(bool)
        if boiler is not None:
            own = own & ~boiler
            cb = np.concatenate([[0], np.cumsum(boiler, dtype=np.int64)])
        cs = np.concatenate([[0], np.cumsum(own, dtype=np.int64)])
        kept = []
        for e, t, p, L in passes:
            at = ev.offsets[e] + p
            mine = cs[at + L] - cs[at]
            # a window with template words must be at least half the row's own (anchored) words:
            # twelve words of a shared instruction plus "I" is the template, not this row leaking
            need = np.where(cb[at + L] - cb[at] > 0, (L + 1) // 2, 1) if boiler is not None else 1
            ok = mine >= need
            if ok.any():
                kept.append((e[ok], t[ok], p[ok], L))
        passes = kept
    if not passes:
        z = np.zeros(0, np.int64)
        return NgramHits(z, z, z, z, np.zeros(0, float))
    parts = [(*_coverage(e * n_train + t, p, L), L) for e, t, p, L in passes]
    k = np.concatenate([x[0] for x in parts])
    f = np.concatenate([x[1] for x in parts])
    c = np.concatenate([x[2] for x in parts])
    ln = np.concatenate([np.full(x[0].size, x[3], np.int64) for x in parts])
    order = np.lexsort((f, k))
    k, f, c, ln = k[order], f[order], c[order], ln[order]
    starts = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    keys = k[starts]
    covered = np.maximum.reduceat(c, starts)  # union across window lengths is approximated by the max
    e_idx, t_idx = keys // n_train, keys % n_train
    cov = np.minimum(covered / np.maximum(ev.lengths[e_idx], 1), 1.0)
    return NgramHits(e_idx, t_idx, f[starts], ln[starts], cov)


def _slice(c: WordCorpus, r0: int, r1: int) -> WordCorpus:
    """Rows r0..r1 as their own corpus (positions re-based; rows re-numbered from 0)."""
    a, b = int(c.offsets[r0]), int(c.offsets[r1])
    m = (c.seg_row >= r0) & (c.seg_row < r1)
    return WordCorpus(c.vals[a:b], c.offsets[r0:r1 + 1] - a, c.seg_row[m] - r0, c.seg_start[m] - a, c.seg_len[m])
