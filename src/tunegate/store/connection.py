"""One connection interface over sqlite3 and psycopg 3, so the store and its callers write SQL once.

``Store.tx()`` yields a :class:`Connection`; its ``execute(sql, params)`` returns a cursor with
``fetchone()``, ``fetchall()``, iteration, ``rowcount`` and ``lastrowid`` on both backends. The
PostgreSQL side translates the SQLite-flavoured SQL (:mod:`tunegate.store.dialect`) and is opened
in autocommit mode so that, exactly as with SQLite's ``isolation_level=None``, a statement outside
``tx()`` is its own transaction.

Write transactions: SQLite's ``BEGIN IMMEDIATE`` lets one writer in at a time, and callers (prompt
version numbering, release state, ``finish_run``'s read-modify-write) rely on that. On PostgreSQL
the same guarantee is a transaction-scoped advisory lock taken right after ``BEGIN``. Appends that
cannot conflict (a run's rows, cache entries) may skip the lock (``serialize=False``) and then run
truly concurrently on PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from tunegate.errors import StoreError
from tunegate.store import dialect
from tunegate.store.url import StoreURL

__all__ = ["Connection", "Cursor", "PostgresConnection", "SqliteConnection", "connect", "database_errors",
           "integrity_errors", "transaction"]

#: Arbitrary constant key of the advisory lock that serialises write transactions on PostgreSQL.
WRITE_LOCK_KEY = 0x7475_6E65  # "tune"


class Cursor(Protocol):
    """What ``execute`` returns (a DB-API cursor subset common to sqlite3 and psycopg)."""

    @property
    def rowcount(self) -> int: ...
    @property
    def lastrowid(self) -> int | None: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchmany(self, size: int) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The store's connection: SQL with ``?`` placeholders, on either backend."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor: ...
    def execute_ddl(self, stmt: str) -> None: ...
    def begin(self, *, serialize: bool = True, read_only: bool = False) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def tables(self) -> list[str]: ...
    def columns(self, table: str) -> list[str]: ...
    def close(self) -> None: ...


class SqliteConnection:
    """sqlite3 in autocommit mode, WAL journal; ``execute`` passes SQL through unchanged."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.raw = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.raw.execute("PRAGMA journal_mode=WAL")
        self.raw.execute("PRAGMA synchronous=NORMAL")
        self.raw.execute("PRAGMA foreign_keys=ON")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.raw.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        return self.raw.executemany(sql, rows)

    def execute_ddl(self, stmt: str) -> None:
        self.raw.execute(stmt)

    def begin(self, *, serialize: bool = True, read_only: bool = False) -> None:
        # DEFERRED for a reader: a consistent WAL snapshot without taking the write lock.
        self.raw.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        self.raw.execute("ROLLBACK")

    def tables(self) -> list[str]:
        q = self.raw.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")
        return [r[0] for r in q]

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.raw.execute(f'PRAGMA table_info("{table}")')]

    def close(self) -> None:
        self.raw.close()


class _PgCursor:
    """psycopg's cursor with sqlite3's ``lastrowid`` (``lastval()``, asked only when read)."""

    def __init__(self, conn: PostgresConnection, cur: Any) -> None:
        self._conn, self._cur = conn, cur

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    @property
    def lastrowid(self) -> int | None:
        r = self._conn.raw.execute("SELECT lastval()").fetchone()
        return int(r[0]) if r else None

    def fetchone(self) -> Any:
        return self._cur.fetchone() if self._cur.description else None

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall()) if self._cur.description else []

    def fetchmany(self, size: int) -> list[Any]:
        return list(self._cur.fetchmany(size)) if self._cur.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


def _numeric_loader() -> type:
    """NUMERIC results as SQLite gives them: ``int`` when integral, else ``float`` — never ``Decimal``.

    PostgreSQL's ``SUM`` of a bigint column is NUMERIC; psycopg would return ``Decimal``, which
    ``json.dumps`` refuses and callers written against SQLite do not expect.
    """
    from psycopg.adapt import Loader

    class NumericLoader(Loader):
        def load(self, data: Any) -> int | float:
            text = bytes(data).decode()
            try:
                return int(text)
            except ValueError:
                return float(text)

    return NumericLoader


def _param(v: Any) -> Any:
    # SQLite stores a bool as 0/1 in an INTEGER column; PostgreSQL would refuse boolean → bigint.
    return int(v) if isinstance(v, bool) else v


class PostgresConnection:
    """psycopg 3 in autocommit mode; SQL is translated from the SQLite dialect once per text."""

    dialect = "postgres"

    def __init__(self, dsn: str) -> None:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - depends on the install
            raise StoreError("a postgresql:// store needs psycopg: pip install 'tunegate[postgres]'") from None
        try:
            self.raw = psycopg.connect(dsn, autocommit=True, connect_timeout=15)
        except psycopg.OperationalError as e:
            raise StoreError(f"cannot connect to the PostgreSQL store: {str(e).strip()}") from None
        self.raw.adapters.register_loader("numeric", _numeric_loader())
        self._sql: dict[str, str] = {}
        self._keys: dict[str, tuple[list[str], list[str]]] = {}

    def _translate(self, sql: str) -> str:
        t = self._sql.get(sql)
        if t is None:
            pk: Sequence[str] = ()
            cols: Sequence[str] = ()
            if (up := dialect.upsert_target(sql)) is not None:
                pk, all_cols = self._table_keys(up[0])
                cols = up[1] or all_cols
            t = self._sql[sql] = dialect.to_postgres(sql, primary_key=pk, columns=cols)
        return t

    def _table_keys(self, table: str) -> tuple[list[str], list[str]]:
        if table not in self._keys:
            pk = [r[0] for r in self.raw.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
                "ORDER BY array_position(i.indkey, a.attnum)", (table,)).fetchall()]
            self._keys[table] = (pk, self.columns(table))
        return self._keys[table]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cur = self.raw.execute(self._translate(sql), [_param(p) for p in params])
        return _PgCursor(self, cur)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        cur = self.raw.cursor()
        cur.executemany(self._translate(sql), [[_param(p) for p in r] for r in rows])
        return _PgCursor(self, cur)

    def execute_ddl(self, stmt: str) -> None:
        pg = dialect.to_postgres_ddl(stmt)
        if pg is None:
            return
        if dialect.is_table_ddl(stmt):
            self.raw.execute(pg)  # no parameters: psycopg leaves the text alone
        else:
            self.raw.execute(pg, [])  # translated like any statement (``%%`` escapes need parameters)

    def begin(self, *, serialize: bool = True, read_only: bool = False) -> None:
        if read_only:
            self.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return
        self.raw.execute("BEGIN")
        if serialize:
            self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))

    def commit(self) -> None:
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        self.raw.execute("ROLLBACK")

    def tables(self) -> list[str]:
        q = self.raw.execute("SELECT table_name FROM information_schema.tables "
                             "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
        return [r[0] for r in q.fetchall()]

    def columns(self, table: str) -> list[str]:
        q = self.raw.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                             "current_schema() AND table_name = %s ORDER BY ordinal_position", (table,))
        return [r[0] for r in q.fetchall()]

    def identity_columns(self) -> list[tuple[str, str]]:
        q = self.raw.execute("SELECT table_name, column_name FROM information_schema.columns "
                             "WHERE table_schema = current_schema() AND is_identity = 'YES'")
        return [(r[0], r[1]) for r in q.fetchall()]

    def close(self) -> None:
        self.raw.close()


def connect(url: StoreURL) -> Connection:
    """Open the connection ``url`` names (the SQLite file's folder is created if missing)."""
    if url.dialect == "postgres":
        assert url.dsn is not None
        return PostgresConnection(url.dsn)
    assert url.path is not None
    return SqliteConnection(str(url.path))


def _driver_errors(name: str) -> tuple[type[Exception], ...]:
    """``sqlite3.<name>`` and ``psycopg.<name>`` (the latter only when psycopg is installed)."""
    errs: list[type[Exception]] = [getattr(sqlite3, name)]
    try:
        import psycopg

        errs.append(getattr(psycopg, name))
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)


def database_errors() -> tuple[type[Exception], ...]:
    """Any driver error on either backend (sqlite3.DatabaseError, psycopg.DatabaseError)."""
    return _driver_errors("DatabaseError")


def integrity_errors() -> tuple[type[Exception], ...]:
    """Exception types a constraint violation raises on either backend."""
    return _driver_errors("IntegrityError")


@contextmanager
def transaction(conn: Connection, *, serialize: bool = True, read_only: bool = False) -> Iterator[Connection]:
    """``BEGIN`` … ``COMMIT`` (``ROLLBACK`` on any exception, including KeyboardInterrupt)."""
    conn.begin(serialize=serialize, read_only=read_only)
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    else:
        conn.commit()
