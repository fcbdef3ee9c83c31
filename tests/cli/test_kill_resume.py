"""A real `tunegate run` subprocess, talking to a real HTTP server on loopback, killed with SIGKILL
at random points and resumed: every trial ends with exactly N rows, no duplicates, all scored."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.openai_server import Echo, OpenAIServer

N_ROWS = 60
TRIALS = 10


def _done(db: Path) -> int:
    """Rows committed so far (0 before the store or its tables exist)."""
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(db, timeout=1)
        try:
            return int(con.execute("SELECT COUNT(*) FROM run_rows").fetchone()[0])
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def _kill_at(proc: subprocess.Popen[str], db: Path, target: int) -> bool:
    """SIGKILL ``proc`` once ``target`` rows are committed; False if it finished first."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if _done(db) >= target:
            proc.kill()  # SIGKILL
            proc.communicate()
            return True
        time.sleep(0.005)
    return False


@pytest.mark.slow
@pytest.mark.xdist_group("subprocess")
def test_sigkill_at_random_points_then_resume(tmp_path: Path) -> None:
    rows = [{"id": f"q{i:03d}", "input": f"question {i}", "expected": f"echo: question {i}",
             "cohorts": ["even" if i % 2 == 0 else "odd"]} for i in range(N_ROWS)]
    ds = tmp_path / "d.jsonl"
    ds.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    rng = random.Random(1234)
    partial_kills = 0
    with OpenAIServer() as srv:
        srv.default = Echo(delay_s=0.03)
        for trial in range(TRIALS):
            cand = tmp_path / f"c{trial}.yaml"
            # a distinct prompt per trial so each trial really calls the server (no cache carry-over)
            cand.write_text(f"name: t{trial}\nbackend: openai\nmodel: test-model\nbase_url: {srv.base_url}\n"
                            f"prompt: {{system: 'trial {trial}'}}\noptions: {{concurrency: 3, max_retries: 1}}\n")
            db = tmp_path / f"t{trial}.db"
            cmd = [sys.executable, "-m", "tunegate.cli.main", "--db", str(db), "run", "--dataset", str(ds),
                   "--candidate", str(cand), "--evaluators", "exact_match,contains", "--resume", "--json"]
            attempts = 0
            while True:
                attempts += 1
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                # Kill once a random number of rows is committed (not after a random time: start-up
                # time varies with machine load, and the kill must land mid-run to test anything).
                target = rng.randint(1, N_ROWS - 1) if attempts <= 4 else None
                if target is not None and _kill_at(proc, db, target):
                    partial_kills += 0 < _done(db) < N_ROWS
                    continue
                out, err = proc.communicate(timeout=120)
                assert proc.returncode == 0, err
                summary = json.loads(out.strip().splitlines()[-1])
                break
            assert summary["rows"] == N_ROWS
            con = sqlite3.connect(db)
            total, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT row_id) FROM run_rows "
                                          "WHERE run_id=?", (summary["run_id"],)).fetchone()
            assert (total, distinct) == (N_ROWS, N_ROWS)
            n_scores = con.execute("SELECT COUNT(*) FROM scores WHERE run_id=?", (summary["run_id"],)).fetchone()[0]
            assert n_scores == N_ROWS * 2
            # resume continues the unfinished run; a second run appears only when a kill landed after the
            # first had already finished (it is then fully cached). Either way no run is left half done.
            for rid, status in con.execute("SELECT id, status FROM runs").fetchall():
                n, d = con.execute("SELECT COUNT(*), COUNT(DISTINCT row_id) FROM run_rows WHERE run_id=?",
                                   (rid,)).fetchone()
                assert (status, n, d) == ("finished", N_ROWS, N_ROWS)
            con.close()
            assert summary["evaluators"]["exact_match"]["mean"] == 1.0
    # the random kills must really have interrupted runs part-way, not only before start or after end
    assert partial_kills >= 5, partial_kills
