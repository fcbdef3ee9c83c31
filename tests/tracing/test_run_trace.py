"""``tunegate run --trace``: one span per row in the gateway's vocabulary, read back by ``tunegate traces``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="tracing tests need the otel extra")

from tests.fakes import FakeBackend
from tunegate.cli.main import main
from tunegate.store import online as q
from tunegate.store.sqlite import Store

ROWS = [
    {"id": "a1", "input": "What is 2+2?", "expected": "4", "cohorts": ["math"]},
    {"id": "a2", "input": "What is 3+3?", "expected": "6", "cohorts": ["math"]},
    {"id": "b1", "input": "Capital of France?", "expected": "Paris", "cohorts": ["geo"]},
]
ANSWERS = {"2+2": "4", "3+3": "5", "France": "Paris"}


def script(req: Any) -> str:
    user = [m.content for m in req.messages if m.role == "user"][-1]
    return next(v for k, v in ANSWERS.items() if k in user)


def test_run_trace_writes_one_span_per_row_readable_by_tunegate_traces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tunegate.cli import run_cmd

    monkeypatch.setattr(run_cmd, "make_backend", lambda spec: FakeBackend(script, name="fake-model"))
    monkeypatch.delenv("TUNEGATE_OTLP_ENDPOINT", raising=False)
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "c.yaml").write_text("name: c\nbackend: openai\nmodel: m\nbase_url: http://127.0.0.1:9/v1\n"
                                     "prompt: {system: 'Answer.'}\n")
    db = str(tmp_path / "t.db")
    assert main(["--db", db, "run", "--dataset", str(tmp_path / "d.jsonl"), "--candidate", str(tmp_path / "c.yaml"),
                 "--evaluators", "exact_match", "--trace", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    with Store(db) as store:
        spans = q.span_rows(store)
    assert len(spans) == 3 and {s["source"] for s in spans} == {"offline"}
    assert {s["cohort"] for s in spans} == {"math", "geo"} and {s["model"] for s in spans} == {"m"}
    attrs = [json.loads(s["attributes"]) for s in spans]
    assert all(a["tunegate.run.id"] == run_id and a["gen_ai.request.model"] == "m" for a in attrs)
    assert {a["tunegate.row.id"] for a in attrs} == {"a1", "a2", "b1"}
    assert all(a["openinference.span.kind"] == "LLM" and "tunegate.candidate.id" in a for a in attrs)
    assert all('"gen_ai.evaluation.result"' in s["events"] for s in spans)
    assert sorted(s["eval_failed"] for s in spans) == [0, 0, 1]      # 3+3 answered 5
    # read back through the CLI, grouped like live traffic
    assert main(["--db", db, "traces", "--by", "source", "--by", "cohort", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    groups = {(g["source"], g["cohort"]): g for g in out["groups"]}
    assert groups[("offline", "math")]["traces"] == 2 and groups[("offline", "math")]["evaluated"] == 2
    assert groups[("offline", "geo")]["traces"] == 1
    # without --trace nothing is exported
    assert main(["--db", db, "run", "--dataset", str(tmp_path / "d.jsonl"), "--candidate", str(tmp_path / "c.yaml"),
                 "--evaluators", "exact_match", "--no-cache", "--json"]) == 0
    with Store(db) as store:
        assert len(q.span_rows(store)) == 3


def test_run_trace_refuses_the_ray_executor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "d.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    (tmp_path / "c.yaml").write_text("name: c\nbackend: openai\nmodel: m\nbase_url: http://127.0.0.1:9/v1\n")
    code = main(["--db", str(tmp_path / "t.db"), "run", "--dataset", str(tmp_path / "d.jsonl"), "--candidate",
                 str(tmp_path / "c.yaml"), "--trace", "--executor", "ray"])
    assert code == 2 and "--trace" in capsys.readouterr().err
