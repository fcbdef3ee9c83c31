"""The prompt-tuning workflow as a library call (``tunegate.tune_prompt``) and its users.

Over a real loopback HTTP server playing task and reflection model (the scripted models of
``tests/cli/test_tune_prompt_cli.py``): the optimizer must find the instruction that makes the task
model answer, commit versions with lineage, write the records and gate the best on test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tunegate
from tests.cli.test_tune_prompt_cli import _dataset, _responder
from tests.support.openai_server import OpenAIServer, RecordedRequest, Reply
from tunegate.cli.main import main
from tunegate.core.policy import GatePolicy
from tunegate.errors import UserError
from tunegate.prompts import PromptRegistry
from tunegate.store.sqlite import Store
from tunegate.tuning.workflow import default_objective, plan_prompt_tune

HEADLINE = "name: p\nversion: '1'\nheadline: {evaluator: exact_match, rule: improve}\n"
GUARDS_ONLY = "name: p\nversion: '1'\nguards:\n  - {evaluator: exact_match, rule: non_inferior, margin: 0.05}\n"


def _route(req: RecordedRequest) -> Reply:
    """The reflection model defaults to the task model: send reflection prompts to the rewriter."""
    msgs = (req.body or {}).get("messages", [])
    if any("```" in (m.get("content") or "") for m in msgs):
        return _responder(RecordedRequest(req.method, req.path, req.headers, {**(req.body or {}), "model": "refl-model"},
                                          req.raw, req.received_at))
    return _responder(req)


def _files(tmp: Path, url: str, policy: str) -> None:
    _dataset(tmp / "d.jsonl")
    (tmp / "seed.yaml").write_text(f"name: seed\nbackend: openai\nmodel: task-model\nbase_url: {url}\n"
                                   "prompt: {system: 'Answer the question.'}\nparams: {max_tokens: 32}\n")
    (tmp / "policy.yaml").write_text(policy)


def test_default_objective_without_headline() -> None:
    head = GatePolicy.model_validate({"name": "p", "version": "1",
                                      "headline": {"evaluator": "exact_match", "rule": "improve"}})
    guards = GatePolicy.model_validate({"name": "p", "version": "1", "guards": [
        {"evaluator": "token_f1", "rule": "non_inferior", "margin": 0.05},
        {"evaluator": "exact_match", "rule": "floor", "min": 0.1}]})
    assert default_objective(head) == "exact_match"
    assert default_objective(guards) == "token_f1,exact_match"


def test_plan_validates_before_anything_runs(tmp_path: Path) -> None:
    _files(tmp_path, "http://127.0.0.1:9/v1", HEADLINE)
    common = {"dataset": tmp_path / "d.jsonl", "candidate": tmp_path / "seed.yaml", "policy": tmp_path / "policy.yaml",
              "out": tmp_path / "out"}
    with pytest.raises(UserError, match="unknown method"):
        plan_prompt_tune(method="nosuch", budget=10, **common)
    with pytest.raises(UserError, match="at least 1"):
        plan_prompt_tune(method="gepa", budget=0, **common)
    plan = plan_prompt_tune(method="gepa", budget=10, **common)
    assert plan.objective.evaluators == ["exact_match"] and [e.name for e in plan.suite] == ["exact_match"]
    assert not (tmp_path / "out").exists()  # planning writes nothing


@pytest.mark.slow
def test_tune_prompt_api_optimises_commits_and_gates(tmp_path: Path) -> None:
    with OpenAIServer(default=_route) as srv:
        _files(tmp_path, srv.base_url, HEADLINE)
        res = tunegate.tune_prompt(dataset=tmp_path / "d.jsonl", candidate=tmp_path / "seed.yaml",
                                   policy=tmp_path / "policy.yaml", method="gepa", budget=60,
                                   out_dir=tmp_path / "out", prompt_name="agent", db=tmp_path / "t.db")
    assert res.decision == "PROMOTE" and res.exit_code == 0 and res.outcome.improved
    assert "CONFIRM" in (res.candidate.prompt.system or "")
    for name in ("history.json", "score-vs-calls.png", "candidate.yaml", "gate/summary.md"):
        assert (tmp_path / "out" / name).exists(), name
    with Store(tmp_path / "t.db") as store:
        best = PromptRegistry(store).get("agent@candidate")
    assert res.candidate.lineage["prompt_version"] == best.ref == res.versions[-1]
    assert best.lineage["optimizer"] == "gepa" and best.lineage["parent_version"] == "agent@v1"


@pytest.mark.slow
def test_loop_with_a_guards_only_policy_runs(tmp_path: Path) -> None:
    """Issue 11 point 4: no headline used to crash the loop (``policy.headline.evaluator``)."""
    with OpenAIServer(default=_route) as srv:
        _files(tmp_path, srv.base_url, GUARDS_ONLY)
        (tmp_path / "loop.yaml").write_text("dataset: d.jsonl\ncandidate: seed.yaml\npolicy: policy.yaml\n"
                                            "rounds: 2\nmethod: gepa\nbudget: 60\n")
        code = main(["--db", str(tmp_path / "t.db"), "loop", "--config", str(tmp_path / "loop.yaml"),
                     "--report-dir", str(tmp_path / "out")])
    loop = json.loads((tmp_path / "out" / "loop.json").read_text())
    r1 = loop["rounds"][0]
    assert code == 0 and loop["promoted"] and r1["decision"] == "PROMOTE"
    assert r1["dev_seed"] == 0.0 and r1["dev_best"] == 1.0  # the objective was the guard's evaluator
    assert (tmp_path / "out" / "round-1" / "gate" / "summary.md").exists()
