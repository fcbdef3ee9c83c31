"""``tunegate init``: the scaffold loads, every rule applies to the rows it names, ``policy explain``
accepts it, and a gate over it decides on the candidate's behaviour (end to end over HTTP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.openai_server import OpenAIServer, RecordedRequest, Reply
from tunegate.cli.main import main
from tunegate.core.candidate import load_candidate
from tunegate.core.example import Example
from tunegate.core.loading import load_dataset
from tunegate.core.policy import load_policy
from tunegate.core.result import ModelOutput
from tunegate.evaluators.base import EvalContext
from tunegate.evaluators.registry import default_registry


def _init(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["init", str(tmp_path / "starter"), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def _perfect(ex: Example) -> ModelOutput:
    if ex.expected_tool_calls is not None:
        if not ex.expected_tool_calls:
            return ModelOutput(text="Could you tell me the order number?")
        from tunegate.core.example import ToolCall

        return ModelOutput(tool_calls=[ToolCall(name=c.name, arguments={k: v for k, v in c.arguments.items()})
                                       for c in ex.expected_tool_calls])
    exp = ex.expected
    return ModelOutput(text=exp if isinstance(exp, str) else json.dumps(exp))


def test_init_writes_files_prints_commands_and_never_overwrites(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _init(tmp_path, capsys)
    d = tmp_path / "starter"
    assert code == 0 and sorted(p.name for p in d.iterdir()) == ["candidate.yaml", "dataset.jsonl",
                                                                "incumbent.yaml", "policy.yaml"]
    assert "tunegate policy explain" in out and "tunegate gate --dataset" in out
    (d / "policy.yaml").write_text("# mine\n")
    code, _, err = _init(tmp_path, capsys)
    assert code == 2 and "would overwrite" in err and (d / "policy.yaml").read_text() == "# mine\n"
    assert _init(tmp_path, capsys, "--force")[0] == 0 and "headline" in (d / "policy.yaml").read_text()


def test_scaffold_loads_and_each_rule_applies_to_its_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _init(tmp_path, capsys)[0] == 0
    d = tmp_path / "starter"
    ds = load_dataset(d / "dataset.jsonl")
    policy = load_policy(d / "policy.yaml")
    inc, cand = load_candidate(d / "incumbent.yaml"), load_candidate(d / "candidate.yaml")
    assert inc.hash != cand.hash and inc.model == cand.model
    assert ds.cohort_counts() == {"triage": 20, "tools": 20, "policy": 20, "math": 20}
    rows = list(ds)
    assert any(ex.json_schema for ex in rows) and any(ex.tools for ex in rows) and any(ex.context for ex in rows)
    reg = default_registry()
    for rule in [policy.headline, *policy.guards]:
        assert rule is not None
        ev = reg.create(rule.evaluator)
        scope = [ex for ex in rows if rule.cohorts is None or set(ex.cohorts) & set(rule.cohorts)]
        results = ev.evaluate_batch([EvalContext(ex, _perfect(ex)) for ex in scope])
        assert all(r.status == "ok" and r.score == 1.0 for r in results), \
            (rule.evaluator, [r.reason for r in results if r.score != 1.0][:3])


def test_scaffold_passes_policy_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _init(tmp_path, capsys)[0] == 0
    d = tmp_path / "starter"
    code = main(["policy", "explain", str(d / "policy.yaml"), "--dataset", str(d / "dataset.jsonl"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["never_decided"] == []


def test_scaffold_gates_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The incumbent misses 10 policy/math rows; the candidate answers every row: PROMOTE (exit 0)."""
    assert _init(tmp_path, capsys)[0] == 0
    d = tmp_path / "starter"
    ds = load_dataset(d / "dataset.jsonl")
    by_input = sorted(((ex.prompt_text(), ex) for ex in ds), key=lambda t: -len(t[0]))
    weak = {ex.id for ex in ds if ex.id in {f"policy-{i:02d}" for i in range(1, 6)} | {f"math-{i:02d}" for i in
                                                                                       range(1, 6)}}

    def responder(req: RecordedRequest) -> Reply:
        msgs = (req.body or {}).get("messages", [])
        system = next((m["content"] for m in msgs if m["role"] == "system"), "")
        user = [m["content"] for m in msgs if m["role"] == "user"][-1]
        ex = next(ex for text, ex in by_input if text in user)
        out = _perfect(ex)
        if "precise" not in system and ex.id in weak:
            return Reply(text="I am not sure.")
        calls: list[tuple[str, dict[str, Any] | str]] = [(c.name, c.arguments) for c in out.tool_calls]
        return Reply(text=out.text, tool_calls=calls)

    with OpenAIServer(default=responder) as srv:
        for name in ("incumbent", "candidate"):
            spec = yaml.safe_load((d / f"{name}.yaml").read_text())
            spec.update(backend="openai", base_url=srv.base_url, model="m")
            (d / f"{name}.yaml").write_text(yaml.safe_dump(spec))
        capsys.readouterr()
        code = main(["--db", str(tmp_path / "t.db"), "gate", "--dataset", str(d / "dataset.jsonl"),
                     "--baseline-candidate", str(d / "incumbent.yaml"), "--candidate", str(d / "candidate.yaml"),
                     "--policy", str(d / "policy.yaml"), "--report-dir", str(tmp_path / "report"), "--json"])
    verdict = json.loads((tmp_path / "report" / "verdict.json").read_text())
    assert code == 0 and verdict["decision"] == "PROMOTE", verdict.get("reasons")
