"""Store fixtures: a real PostgreSQL server for the session, and ``store_target`` over both backends.

The server starts once per test process (initdb + pg_ctl in a temp dir, as the unprivileged
``postgres`` user when we are root) and each test gets its own fresh database on it. Tests are
skipped with a reason only when the PostgreSQL binaries or psycopg are absent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.pgserver import PgServer, find_bindir


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql; .ci/run does it)")
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'tunegate[postgres]')")
    with PgServer() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store location: a SQLite file path, or a new database on the test server."""
    if request.param == "sqlite":
        return str(tmp_path / "s.db")
    pg: PgServer = request.getfixturevalue("pg_server")
    return pg.new_database()
