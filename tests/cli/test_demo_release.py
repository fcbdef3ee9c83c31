"""``tunegate demo`` on a tiny release example, end to end, with every real part but the model.

The model is a scripted OpenAI-compatible server on loopback (unit tests only: the demo itself
runs the embedded model). Everything else is real: the prompt optimizer, the stored runs, the
per-cohort gate and report, ``tunegate serve`` as a child process with the release controller,
the real promote check on the verdict file, the replay with the ``openai`` SDK and references,
mirrored pairs scored by the evaluator pool, the audited rollout history and ``GET /dashboard``.

The script makes the outcome mixed on purpose: the task model answers cohorts ``alpha`` and
``beta`` right only with the magic word in its system prompt, and cohort ``gamma`` right only
without it. So tuning adopts the word, the gate must BLOCK overall yet allow alpha and beta, the
promotion must cover exactly those, and gamma must stay on the incumbent and be mirrored.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("openai")

from tests.support.openai_server import OpenAIServer, RecordedRequest, Reply
from tunegate.cli.main import main
from tunegate.store.online import pair_rows
from tunegate.store.release import rollout_events
from tunegate.store.sqlite import Store

COHORTS = ("alpha", "beta", "gamma")
MAGIC = "CONFIRM"


def _dataset(path: Path) -> None:
    rows = []
    for c in COHORTS:
        for i in range(40):
            split = "train" if i < 12 else ("dev" if i < 20 else "test")
            word = f"{c} item{i}"
            rows.append({"id": f"{c}-{i:02d}", "input": word, "expected": f"{word} ok", "split": split,
                         "cohorts": [c]})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def _responder(req: RecordedRequest) -> Reply:
    body = req.body or {}
    msgs = body.get("messages", [])
    if any("```" in (m.get("content") or "") for m in msgs):   # a reflection prompt: propose the magic word
        new = f"Answer with the input and then the word ok. {MAGIC}."
        return Reply(text=f"<reason>The answers lack ok.</reason>\n<critique>Append ok.</critique>\n<choice>1</choice>\n"
                          f"<identity>You are a careful copy editor.</identity>\n<keywords>ok</keywords>\n"
                          f"<instruction>{new}</instruction>\n<prompt>{new}</prompt>\n```\n{new}\n```")
    system = next((m["content"] for m in msgs if m["role"] == "system"), "")
    user = [m["content"] for m in msgs if m["role"] == "user"][-1]
    good = (MAGIC in system) != user.startswith("gamma")
    return Reply(text=f"{user} ok" if good else user)


def _example(folder: Path, base_url: str) -> None:
    folder.mkdir()
    _dataset(folder / "dataset.jsonl")
    for name in ("incumbent", "candidate"):
        (folder / f"{name}.yaml").write_text(
            f"name: {name}\nbackend: openai\nmodel: task-model\nbase_url: {base_url}\n"
            "prompt: {system: 'Answer the question.', user: '{{input}}'}\nparams: {temperature: 0, max_tokens: 32}\n")
    (folder / "evaluators.yaml").write_text("exact_match: {}\n")
    (folder / "policy.yaml").write_text(
        "name: p\nversion: '1'\nheadline: {evaluator: exact_match, rule: improve}\n"
        "cohorts: {rule: no_drop, margin: 0.3, min_rows: 10}\n")
    (folder / "gateway.yaml").write_text(
        "version: 1\nreload_s: 0.2\nroutes:\n  - name: release\n    baseline: incumbent\n"
        "    arms:\n      incumbent: {candidate: incumbent.yaml}\n      candidate: {candidate: candidate.yaml}\n"
        "    cohorts: [alpha, beta, gamma]\n    sticky_key: [header.x-tunegate-user]\n"
        "    evidence: {evaluators: [exact_match]}\n")
    (folder / "release-policy.yaml").write_text(
        "name: r\nversion: '1'\nalpha: 0.05\nsteps:\n  - {percent: 10, min_pairs: 5, min_requests: 1, min_duration_s: 1}\n"
        "  - 100\ndefaults: {min_pairs: 5, min_requests: 1, min_duration_s: 1}\n"
        "ramp_when:\n  fail_rate: {max_increase: 0.5}\n  error_rate: {max_increase: 0.5}\n"
        "rollback_when:\n  fail_rate: {max_increase: 0.0, per_cohort: true}\n  error_rate: {max_increase: 0.5}\n")
    (folder / "release.yaml").write_text(
        "routes:\n  - route: release\n    arm: candidate\n    policy: release-policy.yaml\n"
        "    evaluators: evaluators.yaml\n    mirror: {share: 1.0, queue: 200, concurrency: 2, timeout_s: 10}\n"
        "    score_live: true\n    references: metadata\ntick_s: 0.2\nscorer_workers: 1\n")


@pytest.mark.slow
def test_demo_runs_the_whole_release_story(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    out = tmp_path / "out"
    with OpenAIServer(default=_responder) as srv:
        _example(tmp_path / "ex", srv.base_url)
        code = main(["--db", str(db), "demo", "--dir", str(tmp_path / "ex"), "--report-dir", str(out),
                     "--method", "gepa", "--budget", "80", "--replay-rows", "36", "--rate", "30"])
        task_inputs = [[m["content"] for m in (r.body or {}).get("messages", []) if m["role"] == "user"][-1]
                       for r in srv.chat_requests if "```" not in json.dumps((r.body or {}).get("messages"))]
        # a second run on the same store: tuning and the gate's runs come from the cache
        code2 = main(["--db", str(db), "demo", "--dir", str(tmp_path / "ex"), "--report-dir", str(tmp_path / "out2"),
                      "--method", "gepa", "--budget", "80", "--replay-rows", "12", "--rate", "30"])
    assert code == 0 and code2 == 0
    again = json.loads((tmp_path / "out2" / "demo.json").read_text())
    assert again["tune"]["cached_rows"] > 0 and again["gate"]["decision"] == "BLOCK"
    # its replay counts only its own pairs and controller events, not the first run's
    assert again["replay"]["sent"] == 12 and again["replay"]["pairs"]["stored"] <= 12
    res = json.loads((out / "demo.json").read_text())
    # 1 tune: the optimizer found the word; 2 gate: BLOCK overall (gamma drops) but alpha and beta released
    assert res["tune"]["improved"] and res["tune"]["candidate"].endswith("tune/candidate.yaml")
    assert res["gate"]["decision"] == "BLOCK" and res["gate"]["allowed_cohorts"] == ["alpha", "beta"]
    verdict = json.loads((out / "gate" / "verdict.json").read_text())
    assert verdict["decision"] == "BLOCK" and (out / "gate" / "report.html").stat().st_size > 5000
    # 3 serve: the served config releases the candidate for alpha and beta only, promoted by the verdict
    served = (out / "serve" / "gateway.yaml").read_text()
    assert "- alpha\n" in served and "- gamma\n" not in served
    assert res["rollout"]["percent"] == 10 and "refused" not in res["rollout"]
    # 4 replay: only train/dev rows went through the gateway, every one answered, pairs scored
    test_inputs = {f"{c} item{i}" for c in COHORTS for i in range(20, 40)}
    replayed = res["replay"]
    assert replayed["sent"] == replayed["ok"] == 36 and replayed["errors"] == 0
    assert set(replayed["cohorts"]) == set(COHORTS)
    with Store(db) as store:
        pairs = pair_rows(store, "release")
        events = rollout_events(store, "release")
    assert pairs and all(p["example"]["input"] not in test_inputs for p in pairs if "input" in p["example"])
    # mirrored gamma pairs: the incumbent passes, the candidate fails (the scorer saw the references)
    gamma = [p for p in pairs if p["cohort"] == "gamma" and p["candidate_failed"] is not None]
    assert gamma and all(p["candidate_failed"] and not p["base_failed"] for p in gamma)
    promote = [e for e in reversed(events) if e["action"] == "promote"]   # one per run, oldest first
    assert len(promote) == 2 and all(e["to_percent"] == 10 and e["actor"] == "tunegate demo" for e in promote)
    first_run = [e for e in reversed(events) if e["seq"] < promote[1]["seq"]]
    assert res["replay"]["controller"] == [{"action": e["action"], "from": e["from_percent"], "to": e["to_percent"],
                                            "reason": e["reason"]} for e in first_run
                                           if e["actor"] == "release-controller"]
    # the controller's own view at the end of the replay: evidence at the step and its latest decision
    live = res["replay"]["controller_status"]
    assert live["route"] == "release" and live["needs"]["min_pairs"] > 0
    assert live["last_decision"]["action"] in ("hold", "ramp", "rollback") and live["last_decision"]["reason"]
    # the gate's test rows reached the model only through the gate, never through the replay
    assert sum(1 for u in task_inputs if u in test_inputs) <= 2 * len(test_inputs)
    # 5 report: the dashboard the gateway served, saved as a file
    dash = (out / "dashboard.html").read_text()
    assert "release" in dash and "candidate" in dash and "<script" not in dash
    assert set(res["wall_s"]) >= {"tune", "gate", "serve", "replay", "report", "total"}


def test_demo_refuses_a_folder_without_data(tmp_path: Path) -> None:
    (tmp_path / "gateway.yaml").write_text("version: 1\nroutes: []\n")
    (tmp_path / "release.yaml").write_text("routes: []\n")
    assert main(["--db", str(tmp_path / "t.db"), "demo", "--dir", str(tmp_path), "--report-dir",
                 str(tmp_path / "o")]) == 2


@pytest.mark.slow
def test_an_example_without_release_yaml_runs_the_tune_and_gate_demo(tmp_path: Path) -> None:
    """``--dir examples/support`` (no release.yaml): tune and gate only, no gateway is started."""
    out = tmp_path / "out"
    with OpenAIServer(default=_responder) as srv:
        _example(tmp_path / "ex", srv.base_url)
        (tmp_path / "ex" / "release.yaml").unlink()
        code = main(["--db", str(tmp_path / "t.db"), "demo", "--dir", str(tmp_path / "ex"), "--report-dir", str(out),
                     "--method", "gepa", "--budget", "80"])
    assert code == 0
    assert (out / "gate" / "verdict.json").exists() and (out / "history.json").exists()
    assert not (out / "serve").exists() and not (out / "demo.json").exists()


@pytest.mark.slow
def test_a_gate_that_cannot_decide_stops_the_story_there(tmp_path: Path) -> None:
    """No verdict (here: a headline scoped to a cohort no test row has): said so, nothing served, exit 1."""
    out = tmp_path / "out"
    with OpenAIServer(default=_responder) as srv:
        _example(tmp_path / "ex", srv.base_url)
        (tmp_path / "ex" / "policy.yaml").write_text(
            "name: p\nversion: '1'\nheadline: {evaluator: exact_match, rule: improve, cohorts: [delta]}\n")
        code = main(["--db", str(tmp_path / "t.db"), "demo", "--dir", str(tmp_path / "ex"), "--report-dir", str(out),
                     "--method", "gepa", "--budget", "80"])
    assert code == 1
    res = json.loads((out / "demo.json").read_text())
    assert res["gate"]["decision"] is None and "delta" in res["gate"]["error"]
    assert not (out / "serve").exists() and "replay" not in res


@pytest.mark.slow
def test_demo_gates_a_given_candidate_without_tuning(tmp_path: Path) -> None:
    """``--candidate FILE``: step 1 skipped, the model never sees a reflection prompt, FILE is what is served."""
    out = tmp_path / "out"
    with OpenAIServer(default=_responder) as srv:
        _example(tmp_path / "ex", srv.base_url)
        given = tmp_path / "given.yaml"
        given.write_text(f"name: given\nbackend: openai\nmodel: task-model\nbase_url: {srv.base_url}\n"
                         f"prompt: {{system: 'Answer. {MAGIC}', user: '{{{{input}}}}'}}\n"
                         "params: {temperature: 0, max_tokens: 32}\n")
        code = main(["--db", str(tmp_path / "t.db"), "demo", "--dir", str(tmp_path / "ex"), "--report-dir", str(out),
                     "--candidate", str(given), "--replay-rows", "9", "--rate", "30"])
        reflections = [r for r in srv.chat_requests if "```" in json.dumps((r.body or {}).get("messages"))]
    assert code == 0 and not reflections
    res = json.loads((out / "demo.json").read_text())
    assert res["tune"] == {"skipped": True, "candidate": str(given)} and "tune" not in res["wall_s"]
    assert res["gate"]["allowed_cohorts"] == ["alpha", "beta"] and str(given) in (out / "serve" / "gateway.yaml").read_text()
    assert res["replay"]["ok"] == 9


def test_tree_cpu_counts_live_and_reaped_children() -> None:
    import subprocess
    import sys

    from tunegate.cli.demo_release import tree_cpu_s

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"
    before = tree_cpu_s()
    live = subprocess.Popen([sys.executable, "-c", burn + "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        from tests.support.polling import poll

        assert poll(lambda: tree_cpu_s() - before >= 0.5, tries=2400)   # a live child's CPU is counted ...
    finally:
        live.communicate(b"")
    assert tree_cpu_s() - before >= 0.5                      # ... and still counted once it was reaped
