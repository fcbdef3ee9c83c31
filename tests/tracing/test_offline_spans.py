"""Offline run rows become spans in the gateway's vocabulary (executor ``row_hook``)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk", reason="tracing tests need the otel extra")

from tests.engine.run.test_executor import Upper, cand, dataset
from tests.fakes import FakeBackend
from tunegate.engine.run.executor import run_plan
from tunegate.engine.run.plan import plan_run
from tunegate.store import online as q
from tunegate.store.sqlite import Store
from tunegate.tracing import Tracing, TracingConfig, summarize
from tunegate.tracing.offline import run_row_hook


def test_each_run_row_is_one_span_with_evaluations(tmp_path: Path) -> None:
    with Store(tmp_path / "db.sqlite") as store:
        c = cand()
        tr = Tracing(TracingConfig(batch=False), sink=lambda rows: q.insert_spans(store, rows))
        s = run_plan(plan_run(dataset(6), [Upper()], candidate=c), store, FakeBackend(),
                     row_hook=run_row_hook(tr, c))
        tr.shutdown()
        spans = q.span_rows(store)
    assert len(spans) == 6 and {sp["source"] for sp in spans} == {"offline"}
    assert {sp["model"] for sp in spans} == {"fake"} and {sp["candidate"] for sp in spans} == {c.hash}
    assert {sp["cohort"] for sp in spans} == {"a", "b"}
    assert all(s.run_id in sp["attributes"] and "tunegate.row.id" in sp["attributes"] for sp in spans)
    evaluated = [sp for sp in spans if sp["eval_failed"] is not None]   # rows without expected are skipped
    assert len(evaluated) == 4 and '"gen_ai.evaluation.result"' in evaluated[0]["events"]
    g = summarize(spans, ["source"])[0]
    assert g["traces"] == 6 and g["evaluated"] == 4
