"""The Ray executor on a real two-node local Ray cluster.

A 500-row run with a model-based evaluator (``answer_relevancy``: all-MiniLM embeddings, loaded
once per actor) gives exactly the stored result of the local executor — same outputs, same scores
to the last bit, same dataset/candidate/evaluator identities — while the endpoint never sees more
requests in flight than the candidate's ``concurrency``; and that holds although the second node is
removed mid-run (its raylet and its worker die): no row is lost, none is written twice.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.openai_server import Echo, OpenAIServer
from tunegate.core.candidate import load_candidate
from tunegate.core.loading import load_dataset
from tunegate.engine.run.executor import RunSummary, run_plan
from tunegate.engine.run.factory import make_backend
from tunegate.engine.run.plan import RunPlan, plan_run
from tunegate.engine.run.ray_executor import RayOptions, run_plan_ray
from tunegate.engine.run.suite import resolve_suite
from tunegate.store.sqlite import Store

pytest.importorskip("sentence_transformers", reason="model-based evaluator needs the evals extra")
pytest.importorskip("ray", reason="Ray not installed (pip install 'tunegate[ray]')")

N_ROWS = 500
CONCURRENCY = 4


def _plan(tmp_path: Path, base_url: str) -> RunPlan:
    rows = [{"id": f"q{i:03d}", "input": f"What is item {i}?" + " Please be precise." * (i % 5),
             "expected": f"echo: What is item {i}?", "cohorts": ["a" if i % 3 else "b"]} for i in range(N_ROWS)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "c.yaml").write_text(f"name: echo\nbackend: openai\nmodel: test-model\nbase_url: {base_url}\n"
                                     f"options: {{concurrency: {CONCURRENCY}, max_retries: 1}}\n")
    ds = load_dataset(tmp_path / "d.jsonl")
    cand = load_candidate(tmp_path / "c.yaml")
    return plan_run(ds, resolve_suite("exact_match,answer_relevancy", ds), candidate=cand)


def _stored(db: Path, summary: RunSummary) -> dict[str, Any]:
    with Store(db) as s:
        rec = s.run(summary.run_id)
        rows = s.rows(summary.run_id)
        return {"identity": rec.identity, "dataset": rec.dataset_hash, "candidate": rec.candidate_hash,
                "evaluators": rec.evaluators, "n": s.count_rows(summary.run_id), "status": rec.status,
                "rows": {r.row_id: ([o.text if o else None for o in r.outputs],
                                    {k: [(x.status, x.score, x.passed) for x in v] for k, v in r.scores.items()})
                         for r in rows}}


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_ray_run_equals_local_even_when_a_worker_node_dies(ray_cluster: Any, tmp_path: Path) -> None:
    """One Ray run checks both promises (actor start-up dominates the time, so it is done once)."""
    with OpenAIServer() as srv:
        srv.default = Echo(delay_s=0.03)  # slow enough for the node removal to land mid-run
        plan = _plan(tmp_path, srv.base_url)
        with Store(tmp_path / "local.db") as s:
            local_summary = run_plan(plan, s, make_backend(plan.candidate))  # type: ignore[arg-type]
        local = _stored(tmp_path / "local.db", local_summary)
        srv.reset()
        db = tmp_path / "ray.db"
        result: dict[str, Any] = {}

        def go() -> None:
            try:
                with Store(db) as s:
                    result["summary"] = run_plan_ray(plan, s, options=RayOptions(workers=2))
            except BaseException as e:  # surfaced by the assertion below
                result["error"] = e

        t = threading.Thread(target=go)
        t.start()
        committed = 0
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and t.is_alive():
            if db.exists():
                with Store(db) as s:
                    committed = int(s.db.execute("SELECT COUNT(*) FROM run_rows").fetchone()[0])
            if committed >= 40:
                break
            time.sleep(0.2)
        assert 0 < committed < N_ROWS, committed  # the node goes away while the run is under way
        ray_cluster.remove_node(ray_cluster.list_all_nodes()[1], allow_graceful=False)
        t.join(900)
        assert "error" not in result, result.get("error")
        max_in_flight = srv.max_in_flight
    summary: RunSummary = result["summary"]
    got = _stored(db, summary)
    assert got["n"] == (N_ROWS, N_ROWS) and got["status"] == "finished"  # every row, each once
    assert got == local  # same outputs, scores to the last bit, hashes and evaluator identities
    assert summary.evaluators == local_summary.evaluators
    assert max_in_flight <= CONCURRENCY  # the endpoint's limit holds across actors
