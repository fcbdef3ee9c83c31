"""``tunegate tune prompt`` end to end over a real loopback HTTP server (task and reflection models).

The scripted server plays both models: the task model appends " ok" only when its system message
contains CONFIRM; the reflection model proposes an instruction containing CONFIRM. So the optimizer
must find and adopt it, commit it to the registry, and the final gate on the **test** split must
PROMOTE it (exit 0) — while no test row ever reaches the server before the gate starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.openai_server import OpenAIServer, RecordedRequest, Reply
from tunegate.cli.main import main

N = 80


def _dataset(path: Path) -> dict[str, str]:
    rows, splits = [], {}
    for i in range(N):
        split = "train" if i < 40 else ("dev" if i < 56 else "test")
        word = f"item{i} tag{i % 5}"
        rows.append({"id": f"r{i:03d}", "input": word, "expected": f"{word} ok", "split": split})
        splits[word] = split
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return splits


def _responder(req: RecordedRequest) -> Reply:
    body = req.body or {}
    msgs = body.get("messages", [])
    if body.get("model") == "refl-model":  # one reply that satisfies every optimizer's format
        new = "Answer with the input and then the word ok. CONFIRM."
        return Reply(text=f"<reason>The answers lack the final word ok.</reason>\n<critique>It must append ok."
                          f"</critique>\n<choice>1</choice>\n<identity>You are a careful copy editor.</identity>\n"
                          f"<keywords>copy, ok</keywords>\n<instruction>{new}</instruction>\n<prompt>{new}</prompt>\n"
                          f"```\n{new}\n```")
    system = next((m["content"] for m in msgs if m["role"] == "system"), "")
    user = [m["content"] for m in msgs if m["role"] == "user"][-1]
    return Reply(text=f"{user} ok" if "CONFIRM" in system else user)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gepa", "protegi", "promptwizard"])
def test_tune_prompt_optimises_commits_and_gates_on_test(tmp_path: Path, method: str) -> None:
    splits = _dataset(tmp_path / "d.jsonl")
    with OpenAIServer(default=_responder) as srv:
        for name, model in (("seed", "task-model"), ("refl", "refl-model")):
            (tmp_path / f"{name}.yaml").write_text(
                f"name: {name}\nbackend: openai\nmodel: {model}\nbase_url: {srv.base_url}\n"
                "prompt: {system: 'Answer the question.'}\nparams: {max_tokens: 32}\n")
        (tmp_path / "policy.yaml").write_text(
            "name: p\nversion: '1'\nheadline: {evaluator: exact_match, rule: improve}\n")
        out = tmp_path / "out"
        db = tmp_path / "t.db"
        code = main(["--db", str(db), "tune", "prompt", "--method", method, "--dataset", str(tmp_path / "d.jsonl"),
                     "--candidate", str(tmp_path / "seed.yaml"), "--reflection", str(tmp_path / "refl.yaml"),
                     "--policy", str(tmp_path / "policy.yaml"), "--budget", "120", "--prompt-name", "agent",
                     "--report-dir", str(out), "--json"])
        inputs = [[m["content"] for m in (r.body or {}).get("messages", []) if m["role"] == "user"]
                  for r in srv.requests if (r.body or {}).get("model") == "task-model"]
    assert code == 0  # PROMOTE on the test split
    hist = json.loads((out / "history.json").read_text())
    best = next(p for p in hist["proposals"] if p["id"] == hist["meta"]["best"])
    assert "CONFIRM" in (best["prompt"]["system"] or "") and best["dev_mean"] == 1.0
    assert hist["meta"]["spent"]["metric_calls"] <= 120
    assert (out / "score-vs-calls.png").stat().st_size > 5000
    assert (out / "gate" / "summary.md").exists() and (out / "candidate.yaml").exists()
    # the optimizer's requests (all before the gate's) never carried a test row
    test_words = {w for w, s in splits.items() if s == "test"}
    first_test = next(i for i, msgs in enumerate(inputs) if msgs and msgs[-1] in test_words)
    assert first_test > 0
    assert not any(m and m[-1] in test_words for m in inputs[:first_test])
    assert all(m[-1] in test_words for m in inputs[first_test:] if m)
    # every accepted proposal is a registry version; the best carries label "candidate"
    assert main(["--db", str(db), "prompts", "show", "agent@candidate", "--json"]) == 0


@pytest.mark.slow
def test_loop_stops_at_first_promote(tmp_path: Path) -> None:
    _dataset(tmp_path / "d.jsonl")
    with OpenAIServer(default=_responder) as srv:
        (tmp_path / "seed.yaml").write_text(
            f"name: seed\nbackend: openai\nmodel: task-model\nbase_url: {srv.base_url}\n"
            "prompt: {system: 'Answer the question.'}\nparams: {max_tokens: 32}\n")
        (tmp_path / "policy.yaml").write_text("name: p\nversion: '1'\nheadline: {evaluator: exact_match, rule: improve}\n")
        (tmp_path / "loop.yaml").write_text("dataset: d.jsonl\ncandidate: seed.yaml\npolicy: policy.yaml\nrounds: 3\n"
                                            "method: gepa\nbudget: 60\n")
        # the reflection model defaults to the task model; route its reflection prompts to the scripted rewriter
        def route(req: RecordedRequest) -> Reply:
            msgs = (req.body or {}).get("messages", [])
            if any("```" in (m.get("content") or "") for m in msgs):
                return _responder(RecordedRequest(req.method, req.path, req.headers,
                                                  {**req.body, "model": "refl-model"}, req.raw, req.received_at))
            return _responder(req)

        srv.default = route
        code = main(["--db", str(tmp_path / "t.db"), "loop", "--config", str(tmp_path / "loop.yaml"),
                     "--report-dir", str(tmp_path / "out")])
    loop = json.loads((tmp_path / "out" / "loop.json").read_text())
    assert code == 0 and loop["promoted"] and loop["best_round"] == 1 and len(loop["rounds"]) == 1
    r1 = loop["rounds"][0]
    assert r1["decision"] == "PROMOTE" and r1["dev_best"] == 1.0 and r1["alpha"] == pytest.approx(0.05 / 3)
    assert (tmp_path / "out" / "round-1" / "gate" / "summary.md").exists()
