"""Copy a whole store to another location (``tunegate db copy SRC DST``): SQLite → PostgreSQL, or any pair.

The destination is migrated first, must hold no rows, and receives everything in one transaction:
a copy interrupted half-way leaves the destination empty, never a store with half of a run. Tables
are copied in the order the migrations create them (so foreign keys always find their parent),
columns by name (a destination column the source lacks keeps its default), and identity counters
(``prompt_label_events.id``) are moved past the copied ids so new rows continue the sequence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tunegate.errors import UserError
from tunegate.store.base import Store
from tunegate.store.connection import PostgresConnection, transaction
from tunegate.store.migrations import MIGRATIONS

__all__ = ["CopyReport", "copy_store", "table_order"]

_CREATE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?\"?([A-Za-z_][A-Za-z0-9_]*)", re.I)
BATCH = 2000


def table_order() -> list[str]:
    """Tables in the order the migrations create them (parents before children)."""
    seen: list[str] = []
    for _, sql in MIGRATIONS:
        for name in _CREATE.findall(sql):
            if name not in seen:
                seen.append(name)
    return seen


@dataclass
class CopyReport:
    """Rows copied per table (and tables only one side has, which were not copied)."""

    source: str
    destination: str
    rows: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "destination": self.destination, "rows": self.rows,
                "total_rows": sum(self.rows.values()), "skipped_tables": self.skipped}


def copy_store(src: Store, dst: Store, *, progress: Callable[[str, int], None] | None = None) -> CopyReport:
    """Copy every known table of ``src`` into the empty, migrated ``dst``; verifies row counts."""
    same_file = src.url.path is not None and dst.url.path is not None and \
        src.url.path.resolve() == dst.url.path.resolve()
    if src.url == dst.url or same_file:
        raise UserError("SRC and DST are the same store", field="DST")
    if src.pending_migrations():
        raise UserError(f"{src.url.display} is not migrated to this tunegate's schema: "
                        "run `tunegate db migrate` on it first", field="SRC")
    src_tables, dst_tables = set(src.db.tables()), set(dst.db.tables())
    order = [t for t in table_order() if t in src_tables and t in dst_tables]
    report = CopyReport(src.url.display, dst.url.display,
                        skipped=sorted((src_tables ^ dst_tables) - {"migrations"}))
    nonempty = [t for t in order if dst.db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
    if nonempty:
        raise UserError(f"{dst.url.display} already holds data (tables {', '.join(nonempty)}): "
                        "copy only into a new, empty store", field="DST")
    with transaction(dst.db) as out, transaction(src.db, read_only=True) as inp:
        for t in order:
            cols = [c for c in src.db.columns(t) if c in set(dst.db.columns(t))]
            col_list = ", ".join(cols)
            insert = f"INSERT INTO {t} ({col_list}) VALUES ({', '.join('?' * len(cols))})"
            cur = inp.execute(f"SELECT {col_list} FROM {t}")
            n = 0
            while batch := cur.fetchmany(BATCH):
                out.executemany(insert, batch)
                n += len(batch)
                if progress:
                    progress(t, n)
            report.rows[t] = n
        if isinstance(dst.db, PostgresConnection):
            for t, c in dst.db.identity_columns():
                out.execute(f"SELECT setval(pg_get_serial_sequence('{t}', '{c}'), "
                            f"COALESCE((SELECT MAX({c}) FROM {t}), 0) + 1, false)")
    for t, n in report.rows.items():
        got = int(dst.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
        if got != n:  # pragma: no cover - would mean a lost write
            raise RuntimeError(f"copy check failed: {t} has {got} rows in {dst.url.display}, copied {n}")
    return report

