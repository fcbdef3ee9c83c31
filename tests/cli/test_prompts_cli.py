"""``tunegate prompts ...`` and registry references in ``tunegate run`` / ``tunegate gate`` (real SQLite store)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes import FakeBackend
from tunegate.backends.base import GenerationRequest
from tunegate.cli.main import main
from tunegate.core import CandidateSpec

P1 = "system: You are a support agent for {{company}}.\nuser: \"{{input}}\"\n"
P2 = ("system: |-\n  You are a support agent for {{company}}.\n  Answer in one sentence.\n"
      "user: \"Question: {{input}}\"\nfew_shot:\n  - input: Where is my order?\n    output: Your order number?\n")


def tg(db: Path, *args: str | Path) -> int:
    return main(["--db", str(db), *[str(a) for a in args]])


def counts(db: Path) -> tuple[int, int]:
    con = sqlite3.connect(db)
    try:
        return (con.execute("SELECT COUNT(*) FROM prompt_versions").fetchone()[0],
                con.execute("SELECT COUNT(*) FROM prompt_label_events").fetchone()[0])
    finally:
        con.close()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A store with support-agent v1 (staging) and v2 (production)."""
    db = tmp_path / "t.db"
    (tmp_path / "p1.yaml").write_text(P1)
    (tmp_path / "p2.yaml").write_text(P2)
    assert tg(db, "prompts", "commit", "support-agent", "--file", tmp_path / "p1.yaml", "-m", "first",
              "--label", "staging") == 0
    assert tg(db, "prompts", "commit", "support-agent", "--file", tmp_path / "p2.yaml", "-m", "one sentence",
              "--label", "production", "--author", "ana") == 0
    return db


def test_commit_show_list_label_history(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert tg(repo, "prompts", "commit", "support-agent", "--file", tmp_path / "p2.yaml", "-m", "again") == 0
    assert "no change: content identical to support-agent@v2" in capsys.readouterr().out
    assert counts(repo) == (2, 2)
    assert tg(repo, "prompts", "show", "support-agent@production", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["ref"], shown["author"], shown["labels"]) == ("support-agent@v2", "ana", ["production"])
    assert shown["template"]["few_shot"] == [{"input": "Where is my order?", "output": "Your order number?"}]
    assert tg(repo, "prompts", "show", "support-agent@1") == 0
    out = capsys.readouterr().out
    assert "support-agent@v1  (staging)" in out and "You are a support agent for {{company}}." in out
    assert tg(repo, "prompts", "label", "support-agent", "staging", "v2") == 0
    assert "support-agent@staging: v1 → v2" in capsys.readouterr().out
    assert tg(repo, "prompts", "list", "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["latest"] == "support-agent@v2" and row["labels"] == {"production": 2, "staging": 2}
    assert tg(repo, "prompts", "list") == 0
    assert "support-agent" in capsys.readouterr().out
    assert tg(repo, "prompts", "history", "support-agent", "--json") == 0
    hist = [(e["kind"], e["version"], e.get("label")) for e in json.loads(capsys.readouterr().out)]
    assert hist == [("commit", 1, None), ("label", 1, "staging"), ("commit", 2, None), ("label", 2, "production"),
                    ("label", 2, "staging")]


def test_diff_and_compile(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert tg(repo, "prompts", "diff", "support-agent@staging", "support-agent@production") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "--- support-agent@v1" in lines and "+Answer in one sentence." in lines and "+Question: {{input}}" in lines
    assert tg(repo, "prompts", "diff", "support-agent@v2", "support-agent") == 0
    assert "no differences between support-agent@v2 and support-agent@v2" in capsys.readouterr().out
    assert tg(repo, "prompts", "compile", "support-agent@production", "--var", "company=Acme",
              "--var", "input=Where is it?", "--var", "tone=warm", "--json") == 0
    c = json.loads(capsys.readouterr().out)
    assert [m["content"] for m in c["messages"]] == [
        "You are a support agent for Acme.\nAnswer in one sentence.", "Where is my order?", "Your order number?",
        "Question: Where is it?"]
    assert c["unused"] == ["tone"]
    assert tg(repo, "prompts", "compile", "support-agent", "--var", "input=x") == 2
    assert "missing template variable {{company}}" in capsys.readouterr().err
    rows = tmp_path / "d.jsonl"
    rows.write_text(json.dumps({"id": "r1", "input": "Can I return it?", "context": "30-day returns.",
                                "metadata": {"company": "Acme"}}) + "\n")
    assert tg(repo, "prompts", "compile", "support-agent@v1", "--row-file", rows, "--row", "r1") == 0
    out = capsys.readouterr().out
    assert "You are a support agent for Acme." in out and "30-day returns." in out and "unused" not in out
    assert tg(repo, "prompts", "compile", "support-agent@v1", "--row-file", rows, "--row", "zz") == 2
    assert "d.jsonl: --row: no row 'zz'; ids: r1" in capsys.readouterr().err


@pytest.mark.parametrize("args", [
    ("show", "support-agent@prod"), ("show", "nosuch"), ("show", "support-agent@v9"),
    ("diff", "support-agent@v1", "support-agent@nope"), ("history", "nosuch"),
    ("label", "support-agent", "production", "9"), ("label", "support-agent", "latest", "1"),
    ("label", "nosuch", "production", "1"), ("compile", "support-agent@v7"),
])
def test_unknown_refs_exit_2_and_leave_the_store_untouched(repo: Path, args: tuple[str, ...],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    before = counts(repo)
    capsys.readouterr()
    assert tg(repo, "prompts", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    assert any(w in err for w in ("known: support-agent", "versions: v1..v2", "labels: production→v2",
                                  "reserved"))
    assert counts(repo) == before


@pytest.mark.parametrize(("text", "expected"), [
    ("system: hi\nuser: 5\n", "p.yaml:2: user: Input should be a valid string"),
    ("system: hi\nfew_shot:\n  - input: a\n    outptu: b\n", "p.yaml:3: few_shot[0].output: Field required"),
    ("system: hi\nref: x@v1\n", "p.yaml:2: ref: the registry assigns references"),
    ("system: hi\nsytem: typo\n", "p.yaml:2: sytem: unknown field"),
    ("system: 'Hello {{ name'\n", "p.yaml:1: system: malformed placeholder"),
    ("- a list\n", "p.yaml:1: a prompt file must be a mapping"),
    ("system: [unclosed\n", "p.yaml:2: invalid YAML"),
])
def test_bad_prompt_file_exit_2_nothing_stored(repo: Path, tmp_path: Path, text: str, expected: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(text)
    fresh = tmp_path / "fresh.db"
    before = counts(repo)
    capsys.readouterr()
    assert tg(repo, "prompts", "commit", "support-agent", "--file", bad, "-m", "x", "--label", "production") == 2
    assert tg(fresh, "prompts", "commit", "support-agent", "--file", bad, "-m", "x") == 2
    err = capsys.readouterr().err
    assert expected in err.replace(str(tmp_path) + "/", ""), err
    assert counts(repo) == before and not fresh.exists()


def test_read_commands_never_create_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "none.db"
    assert tg(db, "prompts", "list") == 0
    assert "no prompts yet" in capsys.readouterr().out
    assert tg(db, "prompts", "show", "x") == 2
    assert "no prompt registry at" in capsys.readouterr().err
    assert not db.exists()


def _echo_system(backends: list[FakeBackend]) -> Callable[[CandidateSpec], FakeBackend]:
    def factory(spec: CandidateSpec) -> FakeBackend:
        def script(req: GenerationRequest) -> str:
            first = req.messages[0]
            return first.content or "" if first.role == "system" else "no system"
        backends.append(FakeBackend(script))
        return backends[-1]
    return factory


def test_run_with_a_registry_reference(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import tunegate.cli.run_cmd as run_cmd

    backends: list[FakeBackend] = []
    monkeypatch.setattr(run_cmd, "make_backend", _echo_system(backends))
    ds = tmp_path / "d.jsonl"
    ds.write_text("".join(json.dumps({"id": f"r{i}", "input": f"q{i}", "metadata": {"company": "Acme"},
                                      "expected": "You are a support agent for Acme."}) + "\n" for i in range(4)))
    cand = tmp_path / "cand.yaml"
    cand.write_text("name: c\nmodel: fake\nprompt: support-agent@staging\n")
    assert tg(repo, "run", "--dataset", ds, "--candidate", cand, "--evaluators", "exact_match", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert {r.messages[0].content for r in backends[0].calls} == {"You are a support agent for Acme."}
    assert summary["evaluators"]["exact_match"]["mean"] == 1.0
    con = sqlite3.connect(repo)
    spec, lineage = con.execute("SELECT spec, lineage FROM candidates").fetchone()
    con.close()
    assert json.loads(spec)["prompt"]["ref"] == "support-agent@v1"
    assert json.loads(lineage)["prompt_ref"] == "support-agent@staging"
    cand.write_text("name: c\nmodel: fake\nprompt: support-agent@canary\n")
    assert tg(repo, "run", "--dataset", ds, "--candidate", cand, "--evaluators", "exact_match") == 2
    err = capsys.readouterr().err
    assert "cand.yaml: prompt: cannot resolve 'support-agent@canary'" in err and "labels: production→v2" in err
    assert len(backends) == 1, "an unresolved reference must never run"
    fresh = tmp_path / "fresh.db"
    assert tg(fresh, "run", "--dataset", ds, "--candidate", cand, "--evaluators", "exact_match") == 2
    assert "no prompt registry at" in capsys.readouterr().err and not fresh.exists()


def test_one_shot_gate_resolves_both_candidates(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import tunegate.api as api

    backends: list[FakeBackend] = []
    monkeypatch.setattr(api, "make_backend", _echo_system(backends))
    ds = tmp_path / "d.jsonl"
    target = "You are a support agent for Acme.\nAnswer in one sentence."
    ds.write_text("".join(json.dumps({"id": f"r{i}", "input": f"q{i}", "metadata": {"company": "Acme"},
                                      "expected": target}) + "\n" for i in range(30)))
    (tmp_path / "inc.yaml").write_text("name: inc\nmodel: fake\nprompt: support-agent@v1\n")
    (tmp_path / "cand.yaml").write_text("name: cand\nmodel: fake\nprompt: support-agent@production\n")
    (tmp_path / "policy.yaml").write_text("name: p\nheadline: {evaluator: exact_match, rule: improve}\n")
    rc = tg(repo, "gate", "--dataset", ds, "--baseline-candidate", tmp_path / "inc.yaml", "--candidate",
            tmp_path / "cand.yaml", "--policy", tmp_path / "policy.yaml", "--json")
    assert rc == 0, capsys.readouterr().err
    seen = [{r.messages[0].content for r in b.calls} for b in backends]
    assert seen == [{"You are a support agent for Acme."}, {target}]
