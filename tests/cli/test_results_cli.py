"""Truthful exit codes and reading results (issue 11): ``run`` exits 4 when model calls failed,
``show`` prints expected values and reasons, ``diff`` puts two runs side by side, run ids resolve by
any unique part, ``render`` prints what a row sends without writing anything."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest

from tests.support.openai_server import OpenAIServer, RecordedRequest, Reply
from tunegate.cli.main import main

SCHEMA = {"type": "object", "properties": {"product": {"type": "string"}, "priority": {"type": "integer"}},
          "required": ["product", "priority"]}
ROWS = [
    {"id": "m1", "input": "What is 2+2?", "expected": "4", "cohorts": ["math"]},
    {"id": "m2", "input": "What is 3+3?", "expected": "6", "cohorts": ["math"]},
    {"id": "t1", "input": "My ThinkPad X1 will not boot", "schema": SCHEMA,
     "expected": {"product": "ThinkPad X1", "priority": 2}, "cohorts": ["triage"]},
    {"id": "p1", "input": "How long is the refund window?", "expected": "30 days", "cohorts": ["policy"],
     "context": "Refunds are accepted within 30 days."},
]
ANSWERS = {"2+2": ("4", "4"), "3+3": ("5", "6"), "ThinkPad": ('{"product": "ThinkPad X1", "priority": 2}',) * 2,
           "refund": ("30 days", "")}


def _responder(req: RecordedRequest) -> Reply:
    msgs = (req.body or {}).get("messages", [])
    system = next((m["content"] for m in msgs if m["role"] == "system"), "")
    user = [m["content"] for m in msgs if m["role"] == "user"][-1]
    side = 1 if "careful" in system else 0
    return Reply(text=next(v[side] for k, v in ANSWERS.items() if k in user))


def _setup(tmp: Path, base_url: str) -> None:
    (tmp / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    for name, system in (("a", "Answer."), ("b", "Answer, careful.")):
        (tmp / f"{name}.yaml").write_text(
            f"name: {name}\nbackend: openai\nmodel: m\nbase_url: {base_url}\n"
            f"prompt: {{system: '{system}'}}\noptions: {{max_retries: 0, timeout_s: 5}}\n")


def _cli(tmp: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--db", str(tmp / "t.db"), *args])
    out, err = capsys.readouterr()
    return code, out, err


def _run(tmp: Path, capsys: pytest.CaptureFixture[str], cand: str, *extra: str) -> tuple[int, str, str]:
    return _cli(tmp, capsys, "run", "--dataset", str(tmp / "d.jsonl"), "--candidate", str(tmp / cand),
                "--evaluators", "numeric_match,exact_match,json_validation", *extra)


def _closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused
    return f"http://127.0.0.1:{port}/v1"


def test_run_against_unreachable_server_exits_4_naming_count_and_cause(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    _setup(tmp_path, _closed_port_url())
    code, out, err = _run(tmp_path, capsys, "a.yaml")
    assert code == 4, (out, err)
    assert "4 of 4 rows failed to generate" in err and "first error:" in err and "Traceback" not in err
    assert "--max-error-rate" in err
    code, _, err = _run(tmp_path, capsys, "a.yaml", "--max-error-rate", "1")
    assert code == 0, err  # the user accepted failures explicitly


def test_run_exit_code_respects_max_error_rate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with OpenAIServer(default=_responder) as srv:
        _setup(tmp_path, srv.base_url)
        srv.fail_first(1, status=400)  # not retryable: exactly one row fails
        code, _, err = _run(tmp_path, capsys, "a.yaml", "--no-cache")
        assert code == 4 and "1 of 4 rows failed" in err and "400" in err, err
        srv.fail_first(1, status=400)
        code, _, err = _run(tmp_path, capsys, "a.yaml", "--no-cache", "--max-error-rate", "0.25")
        assert code == 0, err


@pytest.fixture
def two_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str, str]:
    with OpenAIServer(default=_responder) as srv:
        _setup(tmp_path, srv.base_url)
        ids = []
        for cand in ("a.yaml", "b.yaml"):
            code, out, err = _run(tmp_path, capsys, cand, "--json")
            assert code == 0, err
            ids.append(json.loads(out)["run_id"])
    return tmp_path, ids[0], ids[1]


def test_show_prints_expected_and_reasons(two_runs: tuple[Path, str, str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    tmp, a, _ = two_runs
    code, out, _ = _cli(tmp, capsys, "show", a, "--failed")
    assert code == 0
    assert "m2" in out and "m1" not in out.replace(a, "")  # only the failed row
    assert "expected" in out and "6" in out and "extracted 5" in out  # expected value and the reason
    assert "skipped" in out and "row has no schema" in out  # why json_validation did not score the row
    code, out, _ = _cli(tmp, capsys, "show", a, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    t1 = next(r for r in rows if r["id"] == "t1")
    assert t1["expected"] == {"product": "ThinkPad X1", "priority": 2}
    assert t1["evaluators"]["numeric_match"]["status"] == "skipped"
    assert t1["evaluators"]["json_validation"]["score"] == 1.0


def test_run_ids_resolve_by_any_unique_part(two_runs: tuple[Path, str, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    tmp, a, b = two_runs
    suffix = a.rsplit("-", 1)[1]
    code, out, _ = _cli(tmp, capsys, "show", suffix, "--json")
    assert code == 0 and len(out.splitlines()) == 4
    code, _, err = _cli(tmp, capsys, "show", "run-", "--json")
    assert code == 2 and "matches 2 runs" in err and a in err and b in err
    code, _, err = _cli(tmp, capsys, "show", "zzzz-not-a-run")
    assert code == 2 and "no run" in err


def test_diff_side_by_side(two_runs: tuple[Path, str, str], capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    tmp, a, b = two_runs
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = _cli(tmp, capsys, "diff", a[-6:], b[-6:])
    assert code == 0
    assert "4 paired rows" in out and "1 broke" in out and "1 fixed" in out
    assert "m2" in out and "p1" in out and "t1" not in out  # unchanged rows are not shown
    assert max(len(line) for line in out.splitlines()) <= 80
    code, out, _ = _cli(tmp, capsys, "diff", a, b, "--broke", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == ["p1"] and rows[0]["broke"] == ["numeric_match", "exact_match"]
    assert rows[0]["b"]["evaluators"]["exact_match"]["reason"].startswith("empty output")
    code, out, _ = _cli(tmp, capsys, "diff", a, b, "--fixed", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["m2"]
    code, out, _ = _cli(tmp, capsys, "diff", a, b, "--cohort", "policy", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["p1"]
    code, _, err = _cli(tmp, capsys, "diff", a, b, "--evaluator", "nope")
    assert code == 2 and "nope" in err


def test_render_prints_exact_messages_and_writes_nothing(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    _setup(tmp_path, "http://127.0.0.1:9/v1")
    code, out, err = _cli(tmp_path, capsys, "render", "--candidate", str(tmp_path / "b.yaml"),
                          "--dataset", str(tmp_path / "d.jsonl"), "--row", "t1", "--row", "p1", "--json")
    assert code == 0, err
    bodies = {d["row"]: d["request"] for d in map(json.loads, out.splitlines())}
    t1 = bodies["t1"]["messages"]
    assert t1[0] == {"role": "system", "content": "Answer, careful."}
    assert "ThinkPad X1 will not boot" in t1[-1]["content"] and '"priority"' in t1[-1]["content"]  # schema
    assert "Refunds are accepted within 30 days." in bodies["p1"]["messages"][-1]["content"]  # context
    assert bodies["t1"]["model"] == "m" and bodies["t1"]["temperature"] == 0.0
    code, out, _ = _cli(tmp_path, capsys, "render", "--candidate", str(tmp_path / "b.yaml"),
                        "--dataset", str(tmp_path / "d.jsonl"), "--row", "t1")
    assert code == 0 and "system" in out and "user" in out and "ThinkPad" in out
    assert not (tmp_path / "t.db").exists()  # nothing committed: no store was even created
    code, _, err = _cli(tmp_path, capsys, "render", "--candidate", str(tmp_path / "b.yaml"),
                        "--dataset", str(tmp_path / "d.jsonl"), "--row", "t9")
    assert code == 2 and "no row 't9'" in err


def test_store_untouched_by_render_when_it_exists(two_runs: tuple[Path, str, str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    tmp, _, _ = two_runs
    before = sqlite3.connect(tmp / "t.db").execute("SELECT COUNT(*) FROM runs").fetchone()
    code, _, _ = _cli(tmp, capsys, "render", "--candidate", str(tmp / "a.yaml"), "--dataset",
                      str(tmp / "d.jsonl"), "--row", "m1")
    after = sqlite3.connect(tmp / "t.db").execute("SELECT COUNT(*) FROM runs").fetchone()
    assert code == 0 and before == after
