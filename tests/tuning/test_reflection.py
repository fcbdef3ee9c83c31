"""Reflection output is adopted only when complete and well-formed; rejections say why."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes import FakeBackend
from tunegate.core.result import ModelOutput, Usage
from tunegate.store.sqlite import Store
from tunegate.tuning import (
    Budget,
    BudgetMeter,
    Reflector,
    check_instruction,
    fenced_block,
    numbered_items,
    tagged_block,
)


def _reflector(store: Store, reply: str, finish: str = "stop") -> tuple[Reflector, FakeBackend]:
    be = FakeBackend(lambda r: ModelOutput(text=reply, finish_reason=finish, usage=Usage(prompt_tokens=7,
                                                                                      completion_tokens=9)))
    return Reflector(be, store, BudgetMeter(Budget(metric_calls=10))), be


@pytest.mark.parametrize(("reply", "finish", "why"), [
    ("Here is the new prompt:\n```\nBe concise and answer in JSON.", "length", "truncated"),
    ("```\nBe concise and answer in JSON.\n```", "length", "truncated"),
    ("   ", "stop", "empty"),
    ("Be concise and answer in JSON.", "stop", "no ``` fenced block"),
    ("```\nBe concise and answer in JSON.", "stop", "unterminated"),
])
def test_rejections(tmp_path, reply, finish, why):
    with Store(tmp_path / "s.db") as store:
        r, _ = _reflector(store, reply, finish)
        out = asyncio.run(r.ask("improve", fenced_block))
        assert not out.ok and why in (out.rejected or "")
        assert r.rejections == 1


def test_accepts_complete_block_and_counts(tmp_path):
    with Store(tmp_path / "s.db") as store:
        r, be = _reflector(store, "Thoughts...\n```text\nAnswer in JSON only.\n```\n")
        a = asyncio.run(r.ask("improve", fenced_block))
        assert a.ok and a.payload == "Answer in JSON only." and not a.cached
        b = asyncio.run(r.ask("improve", fenced_block))  # second draw: new sample index, not a cache hit
        assert b.meta["sample_index"] == 1 and len(be.calls) == 2
        assert r.meter.reflection_calls == 2 and r.meter.tokens == 32 and r.meter.metric_calls == 0
        r2, be2 = _reflector(store, "unused")
        c = asyncio.run(r2.ask("improve", fenced_block))  # same prompt, same index: from the cache
        assert c.cached and c.payload == "Answer in JSON only." and be2.calls == []


def test_parsers():
    assert tagged_block("p")("x <p>one</p> y <P> two </P>") == "two"
    with pytest.raises(ValueError, match="not closed"):
        tagged_block("p")("<p>half")
    assert numbered_items("Reasons:\n1. too long\n   and vague\n2) wrong tool\n- misses a field") == [
        "too long and vague", "wrong tool", "misses a field"]
    with pytest.raises(ValueError):
        numbered_items("no list here")


def test_check_instruction():
    parent = "Answer the question."
    assert check_instruction("Answer the question.  ", parent) == "identical to the parent"
    assert "too short" in (check_instruction("Hi", parent) or "")
    assert "lost placeholder" in (check_instruction("Reply to the user politely, briefly.", "Q: {{input}}",
                                                    required=("input",)) or "")
    assert "introduces placeholder" in (check_instruction("Use {{secret}} when you answer the user.", parent) or "")
    assert "malformed" in (check_instruction("Use {{ bad when you answer the user.", parent) or "")
    assert check_instruction("Answer in one short sentence, in English.", parent) is None
