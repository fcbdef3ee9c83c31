"""Run executor: caching, resume, samples, errors, outputs files — with the scripted fake backend."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import ClassVar

import pytest

from tests.fakes import FakeBackend
from tunegate.backends.base import GenerationRequest
from tunegate.core import CandidateSpec, Dataset, DecodingParams, Example, PromptTemplate
from tunegate.core.outputs import load_outputs
from tunegate.core.result import EvalResult
from tunegate.engine.run.executor import execute, run_plan
from tunegate.engine.run.plan import plan_run
from tunegate.errors import BackendError, UserError
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.store.sqlite import Store


class Upper(Evaluator):
    """1 when the output equals the upper-cased expected text."""

    name: ClassVar[str] = "upper"
    requires: ClassVar[tuple[str, ...]] = ("expected",)

    def score(self, ctx: EvalContext) -> EvalResult:
        return self.ok(float(ctx.output.text.split(" #")[0] == str(ctx.example.expected).upper()), "cmp")


def dataset(n: int = 10) -> Dataset:
    rows = [Example(id=f"r{i}", input=f"hello {i}", expected=f"hello {i}" if i % 3 else None,
                    cohorts=["a" if i % 2 else "b"]) for i in range(n)]
    return Dataset.of(rows, name="t")


def cand(**kw: object) -> CandidateSpec:
    kw.setdefault("prompt", PromptTemplate())
    return CandidateSpec(name="c", backend="local", model="fake", **kw)  # type: ignore[arg-type]


def test_run_then_rerun_makes_zero_model_calls(tmp_path: Path) -> None:
    ds = dataset(10)
    plan = plan_run(ds, [Upper()], candidate=cand())
    with Store(tmp_path / "t.db") as store:
        fb = FakeBackend()
        s1 = run_plan(plan, store, fb)
        assert (s1.rows, s1.model_calls, s1.cache_hits) == (10, 10, 0)
        assert s1.evaluators["upper"] == {"mean": 1.0, "pass_rate": 1.0, "n_ok": 6, "n_error": 0, "n_skipped": 4}
        fb2 = FakeBackend()
        s2 = run_plan(plan, store, fb2)
        assert s2.run_id != s1.run_id
        assert (s2.model_calls, s2.cache_hits, len(fb2.calls)) == (0, 10, 0)
        s3 = run_plan(plan, store, FakeBackend(), use_cache=False)
        assert (s3.model_calls, s3.cache_hits) == (10, 0)


def test_samples_are_seeded_and_averaged(tmp_path: Path) -> None:
    ds = dataset(6)
    c = cand(params=DecodingParams(temperature=0.7, n=3, seed=5))
    fb = FakeBackend()
    with Store(tmp_path / "t.db") as store:
        s = run_plan(plan_run(ds, [Upper()], candidate=c), store, fb)
        assert s.model_calls == 18
        assert sorted({r.seed for r in fb.calls}) == [5, 6, 7]
        rows = store.rows(s.run_id)
        assert all(len(r.outputs) == 3 for r in rows)
        s2 = run_plan(plan_run(ds, [Upper()], candidate=c), store, FakeBackend())
        assert (s2.model_calls, s2.cache_hits) == (0, 18)


def test_generation_errors_are_errors_not_zeros(tmp_path: Path) -> None:
    def script(req: GenerationRequest) -> str | BackendError:
        text = req.messages[-1].content or ""
        return BackendError("boom", retryable=True) if text.endswith("4") else text.upper()

    with Store(tmp_path / "t.db") as store:
        s = run_plan(plan_run(dataset(6), [Upper()], candidate=cand()), store, FakeBackend(script))
        assert s.errors == 1
        assert s.evaluators["upper"]["n_error"] == 1
        row = next(r for r in store.rows(s.run_id) if r.row_id == "r4")
        assert row.scores["upper"][0].status == "error" and "boom" in row.scores["upper"][0].reason
        assert row.scores["upper"][0].score is None
        # a failed call is not cached: the next run retries it
        s2 = run_plan(plan_run(dataset(6), [Upper()], candidate=cand()), store, FakeBackend())
        assert s2.model_calls == 1


class Crash(Exception):
    pass


def test_resume_after_crash_completes_exactly_n_rows(tmp_path: Path) -> None:
    ds = dataset(20)
    plan = plan_run(ds, [Upper()], candidate=cand())
    calls = {"n": 0}

    def script(req: GenerationRequest) -> str:
        calls["n"] += 1
        if calls["n"] == 9:
            raise Crash()
        return (req.messages[-1].content or "").upper()

    with Store(tmp_path / "t.db") as store:
        with pytest.raises(Crash):
            run_plan(plan, store, FakeBackend(script, max_batch=4))
        partial = store.runs()[0]
        assert partial.status == "running" and partial.rows_done == 8
        s = run_plan(plan, store, FakeBackend(max_batch=4), resume=True)
        assert s.resumed and s.run_id == partial.id and s.rows == 20 and s.rows_this_session == 12
        assert store.count_rows(s.run_id) == (20, 20)
        # resume with nothing unfinished starts a fresh (fully cached) run
        s2 = run_plan(plan, store, FakeBackend(), resume=True)
        assert not s2.resumed and s2.model_calls == 0


def test_outputs_file_is_scored_like_a_run(tmp_path: Path) -> None:
    ds = dataset(4)
    f = tmp_path / "out.jsonl"
    f.write_text("\n".join(json.dumps({"id": f"r{i}", "output": f"HELLO {i}"}) for i in range(3)) + "\n")
    outs = load_outputs(f)
    with Store(tmp_path / "t.db") as store:
        s = run_plan(plan_run(ds, [Upper()], outputs=outs), store)
        assert s.rows == 4 and s.model_calls == 0
        assert s.extra["candidate_hash"] == "out-" + outs.digest
        row3 = next(r for r in store.rows(s.run_id) if r.row_id == "r3")
        assert row3.error and "no output" in row3.error


def test_outputs_with_unknown_id_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "out.jsonl"
    f.write_text('{"id": "zzz", "output": "x"}\n')
    with pytest.raises(UserError, match="not in the dataset"):
        plan_run(dataset(3), [Upper()], outputs=load_outputs(f))


def test_missing_template_variable_names_row_line(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"id": "a", "input": "x", "metadata": {"tier": "gold"}}\n{"id": "b", "input": "y"}\n')
    from tunegate.core import load_dataset

    c = cand(prompt=PromptTemplate(system="Tier {{tier}}"))
    with pytest.raises(UserError) as ei:
        plan_run(load_dataset(f), [Upper()], candidate=c)
    assert str(ei.value).startswith(f"{f}:2: tier:")


def test_split_and_cohort_selection() -> None:
    ds = dataset(50)
    p = plan_run(ds, [Upper()], candidate=cand(), split="test", cohorts=["a"])
    assert all(ds.split_of(ex) == "test" and "a" in ex.cohorts for ex in p.rows)
    with pytest.raises(UserError, match="no rows have cohort"):
        plan_run(ds, [Upper()], candidate=cand(), cohorts=["zzz"])


def test_event_loop_runs_to_completion_with_concurrent_chunks(tmp_path: Path) -> None:
    ds = dataset(12)
    with Store(tmp_path / "t.db") as store:
        s = asyncio.run(execute(plan_run(ds, [Upper()], candidate=cand()), store,
                                FakeBackend(max_batch=5, delay_s=0.01)))
        assert s.rows == 12
        assert [r.row_id for r in store.rows(s.run_id)] == [f"r{i}" for i in range(12)]
