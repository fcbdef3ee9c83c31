"""The one row executor: order, chunking, error statuses, progress — and that tuning uses it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fakes import FakeBackend
from tunegate.backends.cache import CachedBackend
from tunegate.core.candidate import CandidateSpec, DecodingParams
from tunegate.core.example import Example
from tunegate.core.prompt import PromptTemplate
from tunegate.core.request import GenerationRequest
from tunegate.core.result import ModelOutput
from tunegate.engine.run import rows as rows_mod
from tunegate.engine.run.rows import score_rows
from tunegate.errors import BackendError
from tunegate.evaluators.registry import default_registry
from tunegate.store.sqlite import Store


def _rows(n: int) -> list[Example]:
    # input lengths vary so the length sort reorders them
    # input lengths vary so the length sort reorders them; the fake echoes the input upper-cased
    return [Example(id=f"r{i}", input="x" * ((i * 7) % 5 + 1), expected="X" * ((i * 7) % 5 + 1)) for i in range(n)]


def _cand(n: int = 1) -> CandidateSpec:
    return CandidateSpec(name="c", model="fake", prompt=PromptTemplate(user="{{input}}"),
                         params=DecodingParams(max_tokens=8, n=n, temperature=0.7 if n > 1 else 0.0))


class _Failing(FakeBackend):
    """Fails every request whose prompt is exactly ``xxx`` (a BackendError is returned, not raised)."""

    async def generate(self, requests):  # type: ignore[no-untyped-def]
        out = await super().generate(requests)
        return [BackendError("boom") if r.messages[-1].content == "xxx" else o for r, o in zip(requests, out, strict=True)]


def test_rows_come_back_in_order_with_error_statuses_and_progress(tmp_path: Path) -> None:
    rows = _rows(11)
    evs = [default_registry().create("exact_match")]
    seen: list[tuple[int, int]] = []
    chunks: list[int] = []
    with Store(tmp_path / "s.db") as store:
        backend = CachedBackend(_Failing(max_batch=4), store)
        got = asyncio.run(score_rows(rows, evs, candidate=_cand(), backend=backend,
                                     on_chunk=lambda part, calls, hits: chunks.append(len(part)),
                                     progress=lambda d, t: seen.append((d, t))))
    assert [r.example.id for r in got] == [ex.id for ex in rows]
    assert chunks == [4, 4, 3] and seen[0] == (0, 11) and seen[-1] == (11, 11)
    for r in got:
        res = r.scores["exact_match"][0]
        if r.example.input == "xxx":  # failed generation: an error result naming the cause, never a 0
            assert r.outputs == [None] and r.error == "boom"
            assert res.status == "error" and "generation failed: boom" in res.reason
        else:
            assert r.error is None and res.status == "ok" and res.score == 1.0
            assert r.messages[-1].content == r.example.input


def test_cache_second_pass_makes_no_calls_and_counts_no_tokens(tmp_path: Path) -> None:
    rows = _rows(6)
    evs = [default_registry().create("exact_match")]
    with Store(tmp_path / "s.db") as store:
        inner = FakeBackend(lambda r: ModelOutput(text="y", finish_reason="stop"), max_batch=8)
        first = asyncio.run(score_rows(rows, evs, candidate=_cand(2), backend=CachedBackend(inner, store)))
        again = asyncio.run(score_rows(rows, evs, candidate=_cand(2), backend=CachedBackend(inner, store)))
    assert len(inner.calls) == 12 and all(len(r.outputs) == 2 for r in first)
    assert not any(r.cached for r in first) and all(r.cached for r in again)
    assert all(r.tokens == 0 for r in again)


def test_needs_exactly_one_source() -> None:
    evs = [default_registry().create("exact_match")]
    with pytest.raises(ValueError, match="exactly one"):
        asyncio.run(score_rows(_rows(1), evs))
    with pytest.raises(ValueError, match="backend is required"):
        asyncio.run(score_rows(_rows(1), evs, candidate=_cand()))


def test_tuning_harness_scores_through_the_engine_executor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One executor: the harness reaches the model only through ``engine.run.rows.score_rows``."""
    from tunegate.core.dataset import Dataset
    from tunegate.tuning import harness as harness_mod
    from tunegate.tuning.budget import Budget, BudgetMeter
    from tunegate.tuning.objective import Objective

    calls: list[int] = []
    real = rows_mod.score_rows

    async def spy(rows, evaluators, **kw):  # type: ignore[no-untyped-def]
        calls.append(len(rows))
        return await real(rows, evaluators, **kw)

    monkeypatch.setattr(harness_mod, "score_rows", spy)
    ds = Dataset.of([Example(id=f"d{i}", input=f"w{i}", expected=f"W{i}", split="dev") for i in range(5)],
                    name="d", source="d.jsonl")
    with Store(tmp_path / "s.db") as store:
        h = harness_mod.TaskHarness(ds, _cand(), FakeBackend(), store, [default_registry().create("exact_match")],
                                    Objective.parse("exact_match"), BudgetMeter(Budget(metric_calls=10)))
        batch = asyncio.run(h.evaluate(_cand().prompt, h.rows("dev")))
    assert calls == [5] and batch.mean == 1.0 and batch.metric_calls == 5


def test_requests_for_renders_once_per_sample() -> None:
    reqs = rows_mod.requests_for(_cand(3), Example(id="a", input="hi"))
    assert [r.sample_index for r in reqs] == [0, 1, 2]
    assert all(isinstance(r, GenerationRequest) and r.messages[-1].content == "hi" for r in reqs)
