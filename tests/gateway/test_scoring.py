"""The batched online scorer on its own: real worker process, real SQLite store."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tests.gateway.conftest import poll
from tunegate.gateway.scoring import OnlineScorer
from tunegate.store import online as q
from tunegate.store.sqlite import Store

SCHEMA = {"type": "object", "required": ["answer"]}


def pair_job(i: int, shadow_text: str | None) -> dict[str, Any]:
    completion = None if shadow_text is None else {
        "model": "m", "choices": [{"message": {"content": shadow_text}, "finish_reason": "stop"}]}
    return {"kind": "pair", "request_id": f"r{i}", "request": {"messages": [{"role": "user", "content": f"q{i}"}]},
            "cohort": "faq", "schema": SCHEMA, "references": False, "text": json.dumps({"answer": "ok"}),
            "tool_calls": [], "finish_reason": "stop", "want_scores": False, "completion": completion,
            "route": "support", "base_arm": "base", "candidate_arm": "tuned", "base_hash": "b", "candidate_hash": "c",
            "base_prompt": None, "candidate_prompt": None,
            "candidate_error": None if shadow_text is not None else "timeout after 1s"}


def test_a_batch_is_scored_and_its_pairs_stored_and_a_bad_job_fails_alone(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    Store(db).close()   # migrated before the worker opens it
    scorer = OnlineScorer(["json_validation"], db=db, use_store=True, interval_s=0.05)
    results: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def keep(name: str) -> Any:
        def done(res: dict[str, Any]) -> None:
            with lock:
                results[name] = res
        return done

    try:
        scorer.warm()
        jobs = {"good": pair_job(1, '{"answer": "fine"}'), "broken": pair_job(2, "not json"),
                "shadow_failed": pair_job(3, None), "bad_job": {"kind": "pair", "request_id": "r4"},
                # JSON, but not the route's schema: the schema (checked once per worker) still applies
                "wrong_shape": pair_job(5, '{"x": 1}'), "bad_schema": pair_job(6, "{}") | {"schema": {"type": 12}}}
        for name, job in jobs.items():
            assert scorer.submit(job, keep(name))
        assert poll(lambda: len(results) == 6)
    finally:
        scorer.close()
    assert results["good"]["base_failed"] is False and results["good"]["candidate_failed"] is False
    assert results["broken"]["candidate_failed"] is True
    assert results["shadow_failed"]["candidate_failed"] is None
    assert "KeyError" in results["bad_job"]["error"]
    assert results["wrong_shape"]["candidate_failed"] is True and results["wrong_shape"]["base_failed"] is False
    assert "not a valid JSON Schema" in results["bad_schema"]["error"]
    assert not any("store_error" in r for r in results.values())
    with Store(db) as store:
        pairs = {p["request_id"]: p for p in q.pair_rows(store, "support")}
    assert set(pairs) == {"r1", "r2", "r3", "r5"}
    assert pairs["r2"]["candidate_failed"] == 1 and pairs["r3"]["candidate_error"] == "timeout after 1s"
    assert pairs["r1"]["evaluators"][0]["name"] == "json_validation" and pairs["r1"]["example"]["cohorts"] == ["faq"]
    # closed: nothing is accepted any more and the worker is gone
    assert not scorer.submit(pair_job(5, "x"), keep("late"))
    assert all(f.proc is None or not f.proc.is_alive() for f in scorer._feeders)
