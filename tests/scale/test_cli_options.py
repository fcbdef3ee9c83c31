"""``tunegate run --executor``: a bad choice is a usage error; ``ray`` without rows to score never starts Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunegate.cli.main import main


def _files(tmp_path: Path) -> tuple[Path, Path]:
    ds = tmp_path / "d.jsonl"
    ds.write_text("\n".join(json.dumps({"id": f"r{i}", "input": f"q{i}", "expected": f"a{i}"}) for i in range(3)))
    outs = tmp_path / "o.jsonl"
    outs.write_text("\n".join(json.dumps({"id": f"r{i}", "output": f"a{i}"}) for i in range(3)))
    return ds, outs


def test_unknown_executor_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds, outs = _files(tmp_path)
    code = main(["--db", str(tmp_path / "t.db"), "run", "--dataset", str(ds), "--outputs", str(outs),
                 "--executor", "spark"])
    assert code == 2 and "spark" in capsys.readouterr().err


def test_ray_resume_of_a_finished_selection_needs_no_cluster(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Rows already committed (here by the local executor) are never sent to Ray: resume is per row."""
    ds, outs = _files(tmp_path)
    db = str(tmp_path / "t.db")
    base = ["--db", db, "run", "--dataset", str(ds), "--outputs", str(outs), "--evaluators", "exact_match",
            "--json"]
    assert main(base) == 0
    local = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    from tunegate.store.sqlite import Store

    with Store(db) as s:  # reopen the finished run as if it had been interrupted after its last row
        s.db.execute("UPDATE runs SET status='running', finished_at=NULL WHERE id=?", (local["run_id"],))
    assert main([*base, "--resume", "--executor", "ray"]) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["run_id"] == local["run_id"] and resumed["resumed"] and resumed["rows_this_session"] == 0
    assert resumed["evaluators"] == local["evaluators"] and resumed["rows"] == 3
