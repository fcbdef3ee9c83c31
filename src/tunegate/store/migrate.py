"""Apply the named migrations to either backend, safely when several processes open a new store at once.

Each migration runs in its own serialised write transaction and is re-checked inside it, so two
``tunegate run``s starting together on an empty PostgreSQL database do not both create the tables
(PostgreSQL DDL is transactional: a migration is applied whole or not at all; SQLite likewise).
"""

from __future__ import annotations

from tunegate.errors import StoreError
from tunegate.store import dialect
from tunegate.store.clock import now
from tunegate.store.connection import Connection, transaction
from tunegate.store.migrations import MIGRATIONS, migration_sql

__all__ = ["applied_migrations", "apply_migrations", "pending_migrations"]

_CREATE = "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"


def applied_migrations(db: Connection) -> list[str]:
    """Names recorded in the ``migrations`` table ([] for an empty database)."""
    if "migrations" not in db.tables():
        return []
    return sorted(r[0] for r in db.execute("SELECT name FROM migrations").fetchall())


def pending_migrations(db: Connection) -> list[str]:
    done = set(applied_migrations(db))
    return [n for n, _ in MIGRATIONS if n not in done]


def apply_migrations(db: Connection, where: str) -> list[str]:
    """Bring ``db`` up to date; returns the names applied now. Refuses a newer database."""
    if "migrations" not in db.tables():
        with transaction(db) as tx:
            tx.execute_ddl(_CREATE)
    done = set(applied_migrations(db))
    unknown = done - {n for n, _ in MIGRATIONS}
    if unknown:
        raise StoreError(f"{where} was written by a newer tunegate (migrations {sorted(unknown)})")
    applied: list[str] = []
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        with transaction(db) as tx:
            if tx.execute("SELECT 1 FROM migrations WHERE name=?", (name,)).fetchone():
                continue  # another process applied it while we waited for the lock
            for stmt in dialect.split_statements(migration_sql(name, sql, db.dialect)):
                tx.execute_ddl(stmt)
            tx.execute("INSERT INTO migrations VALUES (?, ?)", (name, now()))
        applied.append(name)
    return applied
