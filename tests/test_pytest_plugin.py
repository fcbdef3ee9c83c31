"""The pytest plugin (``pytest11`` entry point): a team asserts a gate verdict in its own suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunegate.cli.main import main
from tunegate.pytest_plugin import assert_not_blocked, assert_promote, load_verdict

pytest_plugins = ["pytester"]

N = 30


@pytest.fixture
def runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str, str]:
    """Two stored runs scored from output files: the baseline misses 10 of 30 answers."""
    tmp = tmp_path
    (tmp / "d.jsonl").write_text("".join(json.dumps({"id": f"r{i}", "input": f"{i}+1?", "expected": str(i + 1)})
                                         + "\n" for i in range(N)))
    (tmp / "base.jsonl").write_text("".join(json.dumps({"id": f"r{i}", "output": str(i + 1 if i >= 10 else 0)})
                                            + "\n" for i in range(N)))
    (tmp / "cand.jsonl").write_text("".join(json.dumps({"id": f"r{i}", "output": str(i + 1)}) + "\n"
                                            for i in range(N)))
    (tmp / "policy.yaml").write_text("name: p\nversion: '1'\nheadline: {evaluator: exact_match, rule: improve}\n")
    db = str(tmp / "t.db")
    ids = []
    for outs in ("base.jsonl", "cand.jsonl"):
        capsys.readouterr()
        assert main(["--db", db, "run", "--dataset", str(tmp / "d.jsonl"), "--outputs", str(tmp / outs),
                     "--evaluators", "exact_match", "--json"]) == 0
        ids.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"])
    return db, ids[0], ids[1]


def test_plugin_is_loaded_by_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_fixture(tunegate_gate):\n    assert callable(tunegate_gate)\n")
    res = pytester.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    assert "--tunegate-db" in pytester.runpytest("--help").stdout.str()


def test_fixture_gates_stored_runs_by_id_suffix(pytester: pytest.Pytester, runs: tuple[str, str, str],
                                                tmp_path: Path) -> None:
    db, base, cand = runs
    pytester.makepyfile(f"""
        from tunegate.pytest_plugin import assert_promote

        def test_may_ship(tunegate_gate):
            assert_promote(tunegate_gate(baseline={base[-6:]!r}, candidate={cand[-6:]!r},
                                         policy={str(tmp_path / 'policy.yaml')!r}))

        def test_reverse_is_not_promote(tunegate_gate):
            assert_promote(tunegate_gate(baseline={cand!r}, candidate={base!r},
                                         policy={str(tmp_path / 'policy.yaml')!r}))
    """)
    res = pytester.runpytest("-p", "no:cacheprovider", f"--tunegate-db={db}")
    res.assert_outcomes(passed=1, failed=1)
    out = res.stdout.str()
    assert "expected PROMOTE" in out and "tunegate gate: BLOCK" in out and "headline [fail]" in out


def test_assert_helpers_on_verdict_files(tmp_path: Path) -> None:
    v = {"decision": "INCONCLUSIVE", "reasons": ["guard 1 undecided"], "policy_name": "p", "policy_version": "1",
         "rules": [{"name": "guard 1", "status": "undecided", "evaluator": "numeric_match", "rule": "non_inferior",
                    "evidence": "CI [-0.10, 0.08] straddles -0.05", "rows_needed": 240}]}
    (tmp_path / "verdict.json").write_text(json.dumps(v))
    with pytest.raises(AssertionError, match=r"(?s)expected PROMOTE.*INCONCLUSIVE.*guard 1 \[undecided\].*240"):
        assert_promote(tmp_path)  # an undecided gate is never green
    assert assert_not_blocked(tmp_path / "verdict.json")["decision"] == "INCONCLUSIVE"
    assert load_verdict({"verdict": v})["decision"] == "INCONCLUSIVE"
    with pytest.raises(FileNotFoundError, match="tunegate gate --report-dir"):
        load_verdict(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a tunegate verdict"):
        load_verdict({"x": 1})
