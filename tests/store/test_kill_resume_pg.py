"""The kill -9 resume test on PostgreSQL: a real `tunegate run` subprocess with
``--db postgresql://…``, SIGKILLed once a random number of rows is committed, then resumed —
every trial ends with exactly N rows, no duplicates, all scored, no run left half done.
(The SQLite twin is tests/cli/test_kill_resume.py.)"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.store.pgserver import PgServer
from tests.support.openai_server import Echo, OpenAIServer

N_ROWS = 60
TRIALS = 3


def _done(url: str) -> int:
    """Rows committed so far (0 before the tables exist)."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as con:
            return int(con.execute("SELECT COUNT(*) FROM run_rows").fetchone()[0])  # type: ignore[index]
    except psycopg.errors.UndefinedTable:
        return 0


def _kill_at(proc: subprocess.Popen[str], url: str, target: int) -> bool:
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if _done(url) >= target:
            proc.kill()  # SIGKILL: the server rolls back the open transaction of the dead connection
            proc.communicate()
            return True
        time.sleep(0.01)
    return False


@pytest.mark.slow
@pytest.mark.xdist_group("subprocess")
def test_sigkill_at_random_points_then_resume_on_postgres(tmp_path: Path, pg_server: PgServer) -> None:
    rows = [{"id": f"q{i:03d}", "input": f"question {i}", "expected": f"echo: question {i}",
             "cohorts": ["even" if i % 2 == 0 else "odd"]} for i in range(N_ROWS)]
    ds = tmp_path / "d.jsonl"
    ds.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    rng = random.Random(4321)
    partial_kills = 0
    with OpenAIServer() as srv:
        srv.default = Echo(delay_s=0.03)
        for trial in range(TRIALS):
            cand = tmp_path / f"c{trial}.yaml"
            cand.write_text(f"name: t{trial}\nbackend: openai\nmodel: test-model\nbase_url: {srv.base_url}\n"
                            f"prompt: {{system: 'trial {trial}'}}\noptions: {{concurrency: 3, max_retries: 1}}\n")
            url = pg_server.new_database()
            cmd = [sys.executable, "-m", "tunegate.cli.main", "--db", url, "run", "--dataset", str(ds),
                   "--candidate", str(cand), "--evaluators", "exact_match,contains", "--resume", "--json"]
            attempts = 0
            while True:
                attempts += 1
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                target = rng.randint(1, N_ROWS - 1) if attempts <= 2 else None
                if target is not None and _kill_at(proc, url, target):
                    partial_kills += 0 < _done(url) < N_ROWS
                    continue
                out, err = proc.communicate(timeout=120)
                assert proc.returncode == 0, err
                summary = json.loads(out.strip().splitlines()[-1])
                break
            assert summary["rows"] == N_ROWS
            import psycopg

            with psycopg.connect(url) as con:
                total, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT row_id) FROM run_rows "
                                              "WHERE run_id=%s", (summary["run_id"],)).fetchone()  # type: ignore[misc]
                assert (total, distinct) == (N_ROWS, N_ROWS)
                n_scores = con.execute("SELECT COUNT(*) FROM scores WHERE run_id=%s",
                                       (summary["run_id"],)).fetchone()[0]  # type: ignore[index]
                assert n_scores == N_ROWS * 2
                for rid, status in con.execute("SELECT id, status FROM runs").fetchall():
                    n, d = con.execute("SELECT COUNT(*), COUNT(DISTINCT row_id) FROM run_rows WHERE run_id=%s",
                                       (rid,)).fetchone()  # type: ignore[misc]
                    assert (status, n, d) == ("finished", N_ROWS, N_ROWS)
            assert summary["evaluators"]["exact_match"]["mean"] == 1.0
    assert partial_kills >= 3, partial_kills
