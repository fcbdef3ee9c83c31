"""Batch invariance of the fast engine under ragged batches: a row's logits never depend on its neighbours.

Rows of very different prompt lengths (a one-token prompt next to one of several hundred tokens),
rows that finish after one or two tokens and leave the batch, greedy and sampled rows: every
next-token distribution of every row must be bit-identical to that row generated alone. This
fails if any kernel's reduction order came to depend on the batch (its size, the other rows'
lengths, or rows leaving it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tunegate.backends.base import GenerationRequest
from tunegate.backends.local import LocalBackend
from tunegate.core.candidate import DecodingParams
from tunegate.core.example import Message

pytestmark = pytest.mark.xdist_group("local_model")


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
    assert len(specs[1].prompt) > 300

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
