"""Batched decode attention (``fastlm_attn``): a row's output bits never depend on its neighbours.

Model-free checks on random tensors (fast), then the real SmolLM2 engine with rows of very
different lengths, rows that finish early, a one-token prompt and sampled rows: every next-token
distribution of every row must be bit-identical alone and in the batch. Either fails if a kernel's
reduction order came to depend on the batch (its size, the other rows' lengths, or holes left by
finished rows).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest

from tunegate.backends.base import GenerationRequest
from tunegate.backends.fastlm_attn import BUCKET, decode_attention, plan_groups, width
from tunegate.backends.local import LocalBackend
from tunegate.core.candidate import DecodingParams
from tunegate.core.example import Message

pytestmark = pytest.mark.xdist_group("local_model")

KV_HEADS, REP, DIM = 3, 3, 64


def _cache(lengths: list[int], seed: int = 0) -> tuple[Any, Any, Any]:
    """Random (q [rows, heads, dim], keys^T [rows, kv, dim, cap], values [rows, kv, cap, dim]); zeros past each length."""
    import torch

    g = torch.Generator().manual_seed(seed)
    cap = width(max(lengths))
    q = torch.randn(len(lengths), KV_HEADS * REP, DIM, generator=g)
    kc = torch.zeros(len(lengths), KV_HEADS, DIM, cap)
    vc = torch.zeros(len(lengths), KV_HEADS, cap, DIM)
    for r, n in enumerate(lengths):
        kc[r, :, :, :n] = torch.randn(KV_HEADS, DIM, n, generator=g)
        vc[r, :, :n] = torch.randn(KV_HEADS, n, DIM, generator=g)
    return q, kc, vc


def _attend(q: Any, kc: Any, vc: Any, members: list[tuple[int, int, int]]) -> Any:
    import torch

    out = torch.full((q.shape[0], q.shape[1] * DIM), float("nan"))
    decode_attention(q, kc, vc, plan_groups(members, KV_HEADS), out, 1 / math.sqrt(DIM))
    return out


def test_width_depends_on_the_row_only() -> None:
    assert [width(n) for n in (1, BUCKET, BUCKET + 1, 3 * BUCKET)] == [BUCKET, BUCKET, 2 * BUCKET, 3 * BUCKET]


def test_rows_are_bit_identical_alone_in_groups_and_next_to_holes() -> None:
    import torch

    # very different lengths, several in one width, one at a bucket edge; rows sorted by length as
    # the engine stores them
    lengths = [1, 7, BUCKET - 1, BUCKET, BUCKET + 1, 100, 131, 250, 700]
    q, kc, vc = _cache(lengths)
    together = _attend(q, kc, vc, [(r, r, n) for r, n in enumerate(lengths)])
    for r, n in enumerate(lengths):
        alone = _attend(q[r:r + 1], kc[r:r + 1], vc[r:r + 1], [(0, 0, n)])
        assert torch.equal(together[r], alone[0]), r
        # the reference: plain softmax attention over the row's n positions, GQA by repeat
        keys = kc[r, :, :, :n].transpose(1, 2).repeat_interleave(REP, 0)
        vals = vc[r, :, :n].repeat_interleave(REP, 0)
        ref = torch.softmax(q[r][:, None, :] @ keys.transpose(1, 2) / math.sqrt(DIM), -1) @ vals
        torch.testing.assert_close(together[r], ref.reshape(-1), rtol=1e-5, atol=1e-5)
    # rows 2 and 5 finished (holes inside their groups), row 3 prefills this step: the others keep their bits
    live = [r for r in range(len(lengths)) if r not in (2, 3, 5)]
    sparse = _attend(q[live], kc, vc, [(r, k, lengths[r]) for k, r in enumerate(live)])
    for k, r in enumerate(live):
        assert torch.equal(sparse[k], together[r]), r
    # garbage in a hole row's cache and query does not leak into its neighbours
    kc[2].normal_(0, 1e6)
    q2 = q.clone()
    q2[2] = 1e6
    noisy = _attend(q2, kc, vc, [(r, r, n) for r, n in enumerate(lengths) if r != 2])
    for r in range(len(lengths)):
        if r != 2:
            assert torch.equal(noisy[r], together[r]), r


def test_groups_are_contiguous_rows_of_one_width() -> None:
    b = BUCKET
    groups = plan_groups([(0, 0, 5), (1, 1, b), (3, 2, b + 1), (4, 3, 2 * b - 1)], KV_HEADS)
    assert [(g.lo, g.hi, g.width, g.dense) for g in groups] == [(0, 2, b, True), (3, 5, 2 * b, True)]
    holes = plan_groups([(0, 0, 5), (2, 1, 9)], KV_HEADS)
    assert [(g.lo, g.hi, g.dense) for g in holes] == [(0, 3, False)] and holes[0].local.tolist() == [0, 2]
    assert holes[0].mask.shape == (3 * KV_HEADS, 1, BUCKET)


@pytest.fixture(scope="module")
def fast() -> Iterator[LocalBackend]:
    b = LocalBackend(engine="fast", batch_size=16, threads=1)
    b.load()
    yield b
    asyncio.run(b.aclose())


@pytest.mark.slow
def test_engine_logits_alone_and_batched_with_ragged_rows(fast: LocalBackend) -> None:
    """Rows of 1 to several hundred prompt tokens, different max lengths (some end after one or two
    tokens and leave holes), greedy and sampled: every step's logits of every row are bit-identical
    to that row generated alone."""
    import torch

    from tunegate.backends.fastlm import FastLlama, RowSpec

    engine: FastLlama = fast._fast
    tok = fast._tokenizer

    def ids(text: str) -> list[int]:
        request = GenerationRequest(messages=(Message(role="user", content=text),), params=DecodingParams())
        return list(tok(fast.render_prompt(request), add_special_tokens=False)["input_ids"])

    long_text = " ".join(f"Item {i}: the {i}th entry of a long inventory list." for i in range(40))
    specs = [RowSpec(ids("Hi!"), 6), RowSpec(ids(long_text + " Which item is 17?"), 5),
             RowSpec([ids("Hi!")[0]], 4),  # a one-token prompt: attends like a decode row from the start
             RowSpec(ids("Name a fruit."), 1), RowSpec(ids("Count to five."), 2),
             RowSpec(ids("Tell me a story."), 6, temperature=1.0, top_p=0.9, seed=3),
             RowSpec(ids("What is 2 + 2?"), 6)]
    assert len(specs[1].prompt) > 2 * BUCKET

    def trace(rows: list[RowSpec]) -> dict[int, list[Any]]:
        seen: dict[int, list[Any]] = {}
        engine.generate(rows, fast._eos, trace=lambda j, x: seen.setdefault(j, []).append(x.clone()))
        return seen

    together = trace(specs)
    assert len(together[3]) == 1 and len(together[0]) > 2  # row 3 left after one step
    for r, spec in enumerate(specs):
        alone = trace([spec])[0]
        assert len(alone) == len(together[r]), r
        for step, x in enumerate(alone):
            assert torch.equal(together[r][step], x), (r, step)
