"""Decode attention for many rows at once, each row's result bit-identical to the row alone.

Why this exists: the first fast engine ran attention one row at a time (one SDPA call per row per
layer, ~8 small tensor ops around it). At batch 16 that was 480 calls and ~4,000 ops per decode
step, and op overhead — not arithmetic — was about a third of the step. Here every decode row of
a step is served by a few batched ops per *group*, and a group's shapes never depend on its
neighbours.

How a row's bits stay its own (``tests/backends/test_fast_attention.py`` checks it empirically):

* **Padding that depends on the row only.** A row of length ``n`` attends over ``width(n)`` =
  ``n`` rounded up to a multiple of :data:`BUCKET` key positions; positions ``>= n`` get ``-inf``
  added to their score (``exp(-inf)`` is exactly 0) and hold zeros in the cache (so ``0 * v`` is
  exactly 0, never NaN). Alone or in a batch, a row computes over the same width.
* **Groups are rows of one width, stored next to each other.** The KV cache is
  ``[rows, kv_heads, capacity, head_dim]``; rows are placed in it by prompt length, and since every
  live row grows by one token per step that order holds for the whole generation, so rows of one
  width occupy a contiguous range of cache rows: their keys are a strided *view*
  ``[G * kv_heads, width, head_dim]``, no gather. Rows inside the range that are not decoding
  (finished, or prefilling this step) get a zero query and their output is dropped.
* **Only per-matrix or per-row kernels.** Scores are one ``baddbmm`` and the weighted values one
  ``bmm``, both over ``G * kv_heads`` independent matrices whose shapes (3 queries x head_dim x
  width, 3 x width x head_dim) are fixed by the width alone; ATen picks the kernel path from those
  per-matrix sizes (``bmm_out_or_baddbmm_``: naive loop under 400 multiply-adds, else MKL's
  strided batch GEMM, which computes each matrix of the batch independently with one kernel for the
  common shape). The softmax is ATen's last-dimension kernel, which reduces each row's ``width``
  scores on their own. Nothing reduces across rows, so adding, removing or reordering other rows
  changes nothing in a row's output.

GQA: a query head ``h`` reads key/value head ``h // rep`` (HF ``repeat_kv``), so the ``rep`` query
heads of one kv head are treated as ``rep`` queries of a single-head attention (no causal mask in
decode: the new token sees every cached position).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["BUCKET", "DecodeGroup", "decode_attention", "plan_groups", "width"]

#: Key positions are padded to a multiple of this (a function of the row's own length only).
BUCKET = 32


def width(n: int) -> int:
    """The padded attention width of a row whose cache holds ``n`` positions."""
    return -(-n // BUCKET) * BUCKET


@dataclass(frozen=True)
class DecodeGroup:
    """Decode rows of one width in cache rows ``lo..hi-1``.

    ``dense``: every cache row in the range decodes this step and their tokens are ``t0..t0+G-1``;
    otherwise ``local`` (positions inside the range) and ``tokens`` (packed token indices) pick them.
    ``mask``: ``[G * kv_heads, 1, width]`` additive (0 / -inf), built once per step, used by every layer.
    """

    lo: int
    hi: int
    width: int
    mask: Any
    dense: bool
    t0: int
    local: Any
    tokens: Any


def plan_groups(rows: list[tuple[int, int, int]], kv_heads: int) -> list[DecodeGroup]:
    """Groups for decode rows given as (cache row, packed token index, length after this step),
    sorted by cache row."""
    import torch

    groups: list[DecodeGroup] = []
    i = 0
    while i < len(rows):
        w = width(rows[i][2])
        j = i
        while j + 1 < len(rows) and width(rows[j + 1][2]) == w:
            j += 1
        members = rows[i:j + 1]
        lo, hi = members[0][0], members[-1][0] + 1
        mask = torch.zeros(hi - lo, 1, 1, w)
        for crow, _, n in members:
            mask[crow - lo, :, :, n:] = float("-inf")
        mask = mask.expand(hi - lo, kv_heads, 1, w).reshape((hi - lo) * kv_heads, 1, w)
        dense = hi - lo == len(members) and all(m[1] == members[0][1] + k for k, m in enumerate(members))
        groups.append(DecodeGroup(
            lo=lo, hi=hi, width=w, mask=mask, dense=dense, t0=members[0][1],
            local=None if dense else torch.tensor([m[0] - lo for m in members]),
            tokens=None if dense else torch.tensor([m[1] for m in members])))
        i = j + 1
    return groups


def decode_attention(q: Any, kc: Any, vc: Any, groups: list[DecodeGroup], out: Any, scale: float) -> None:
    """Write into ``out`` [T, heads * head_dim] the attention of each group's decode tokens.

    ``q`` [T, heads, head_dim] (RoPE applied); ``kc`` [rows, kv_heads, head_dim, capacity] (keys
    transposed: the score GEMM reads them row-major, ~2x faster than a transposed operand);
    ``vc`` [rows, kv_heads, capacity, head_dim].
    """
    import torch

    kv_heads, dim = vc.shape[1], vc.shape[3]
    rep = q.shape[1] // kv_heads
    for g in groups:
        n = g.hi - g.lo
        if g.dense:
            qg = q[g.t0:g.t0 + n].reshape(n * kv_heads, rep, dim)
        else:
            full = q.new_zeros(n, q.shape[1], dim)
            full[g.local] = q[g.tokens]
            qg = full.view(n * kv_heads, rep, dim)
        keys_t = kc[g.lo:g.hi, :, :, :g.width].reshape(n * kv_heads, dim, g.width)
        values = vc[g.lo:g.hi, :, :g.width].reshape(n * kv_heads, g.width, dim)
        scores = torch.baddbmm(g.mask, qg, keys_t, alpha=scale)
        o = torch.bmm(torch.softmax(scores, dim=-1), values).view(n, -1)
        if g.dense:
            out[g.t0:g.t0 + n] = o
        else:
            out[g.tokens] = o[g.local]
