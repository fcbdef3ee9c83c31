"""Translate the store's SQLite-flavoured SQL to PostgreSQL, so callers keep one SQL text.

Every query in tunegate (and in the gateway's and release controller's tables) is written once,
with ``?`` placeholders and portable SQL. For PostgreSQL we rewrite, outside string literals and
comments only:

* ``?`` → ``%s`` outside literals, and every ``%`` → ``%%`` (psycopg's placeholder syntax);
* ``INSERT OR IGNORE`` → ``INSERT … ON CONFLICT DO NOTHING``; ``INSERT OR REPLACE`` → an upsert
  on the table's primary key (the caller supplies the key and column names);
* ``LIKE`` → ``ILIKE`` (SQLite's LIKE ignores ASCII case; the store's prefix lookups rely on it);
* in DDL only: ``INTEGER PRIMARY KEY [AUTOINCREMENT]`` → an identity column, ``INTEGER`` →
  ``BIGINT`` (SQLite integers are 64-bit), ``REAL`` → ``DOUBLE PRECISION`` (PostgreSQL's REAL is
  32-bit and would round scores), ``BLOB`` → ``BYTEA``, ``TEXT`` → ``TEXT COLLATE "C"`` (byte
  order, as SQLite sorts, whatever the server's locale), ``WITHOUT ROWID``/``STRICT`` dropped,
  ``PRAGMA`` statements skipped.

Anything else SQLite-specific (``datetime('now')``, ``json_extract``) is not guessed at: a migration
that needs it gives per-dialect text (see :mod:`tunegate.store.migrations`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Segment", "is_table_ddl", "segments", "split_statements", "to_postgres", "to_postgres_ddl", "upsert_target"]


@dataclass(frozen=True)
class Segment:
    """A piece of SQL text: ``code`` (may be rewritten) or a quoted literal/identifier (never touched)."""

    text: str
    code: bool


def segments(sql: str) -> list[Segment]:
    """Split ``sql`` into code and quoted parts; ``--`` and ``/* */`` comments are dropped."""
    out: list[Segment] = []
    buf: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            if buf:
                out.append(Segment("".join(buf), True))
                buf = []
            j = i + 1
            while j < n:
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # doubled quote inside the literal
                        j += 2
                        continue
                    break
                j += 1
            out.append(Segment(sql[i:j + 1], False))
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            buf.append(ch)
            i += 1
    if buf:
        out.append(Segment("".join(buf), True))
    return out


def split_statements(sql: str) -> list[str]:
    """Statements of a script (``;`` outside literals and comments), comments removed, empty ones dropped."""
    stmts: list[str] = []
    cur: list[str] = []
    for seg in segments(sql):
        if not seg.code:
            cur.append(seg.text)
            continue
        parts = seg.text.split(";")
        for k, p in enumerate(parts):
            cur.append(p)
            if k < len(parts) - 1:
                stmts.append("".join(cur))
                cur = []
    stmts.append("".join(cur))
    return [s.strip() for s in stmts if s.strip()]


def _map_code(sql: str, fn: Callable[[str], str]) -> str:
    return "".join(fn(s.text) if s.code else s.text for s in segments(sql))


_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.I)
_OR_REPLACE = re.compile(r"^\s*(?:INSERT\s+OR\s+REPLACE|REPLACE)\s+INTO\s+([A-Za-z_][A-Za-z0-9_]*)\s*(\(([^)]*)\))?",
                         re.I)
_RETURNING = re.compile(r"\bRETURNING\b", re.I)
_LIKE = re.compile(r"(?<![A-Za-z_])LIKE\b", re.I)


def upsert_target(sql: str) -> tuple[str, list[str] | None] | None:
    """For ``INSERT OR REPLACE INTO t [(cols)]``: (table, column list or None); else None."""
    m = _OR_REPLACE.match(sql)
    if m is None:
        return None
    cols = [c.strip().strip('"') for c in m.group(3).split(",")] if m.group(3) else None
    return m.group(1), cols


def _code_params(text: str) -> str:
    text = text.replace("%", "%%").replace("?", "%s")
    return _LIKE.sub("ILIKE", text)


def _append_clause(sql: str, clause: str) -> str:
    """Put ``clause`` before a top-level RETURNING, else at the end (trailing ``;`` kept out)."""
    body = sql.rstrip().rstrip(";")
    segs = segments(body)
    pos, off = None, 0
    for s in segs:
        if s.code and (m := _RETURNING.search(s.text)):
            pos = off + m.start()
        off += len(s.text)
    flat = "".join(s.text for s in segs)
    if pos is None:
        return f"{flat} {clause}"
    return f"{flat[:pos]}{clause} {flat[pos:]}"


def to_postgres(sql: str, *, primary_key: Sequence[str] = (), columns: Sequence[str] = ()) -> str:
    """A DML/query statement in PostgreSQL syntax (``primary_key``/``columns`` only for INSERT OR REPLACE)."""
    if _OR_IGNORE.match(sql):
        sql = _OR_IGNORE.sub("INSERT INTO", sql, count=1)
        sql = _append_clause(sql, "ON CONFLICT DO NOTHING")
    elif (up := upsert_target(sql)) is not None:
        if not primary_key:
            raise ValueError(f"INSERT OR REPLACE into {up[0]}: the table has no primary key")
        sql = _OR_REPLACE.sub(lambda m: f"INSERT INTO {m.group(1)} " + (f"({m.group(3)})" if m.group(3) else ""),
                              sql, count=1)
        rest = [c for c in columns if c not in primary_key]
        action = ("DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in rest)) if rest else "DO NOTHING"
        sql = _append_clause(sql, f"ON CONFLICT ({', '.join(primary_key)}) {action}")
    # psycopg reads ``%`` anywhere in the text (literals included) once parameters are passed.
    return "".join(_code_params(s.text) if s.code else s.text.replace("%", "%%") for s in segments(sql))


_DDL_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY(\s+AUTOINCREMENT)?\b", re.I),
     "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
    (re.compile(r"\bTEXT\b", re.I), 'TEXT COLLATE "C"'),
    (re.compile(r"\)\s*(WITHOUT\s+ROWID|STRICT)(\s*,\s*(WITHOUT\s+ROWID|STRICT))*\s*$", re.I), ")"),
]
_IS_DDL = re.compile(r"^\s*(CREATE\s+TABLE|ALTER\s+TABLE)\b", re.I)
_PRAGMA = re.compile(r"^\s*PRAGMA\b", re.I)


def is_table_ddl(stmt: str) -> bool:
    """CREATE TABLE / ALTER TABLE: the statements whose column types are rewritten."""
    return _IS_DDL.match(stmt) is not None


def to_postgres_ddl(stmt: str) -> str | None:
    """One migration statement for PostgreSQL; None when it has no PostgreSQL meaning (PRAGMA)."""
    if _PRAGMA.match(stmt):
        return None
    if not is_table_ddl(stmt):
        return to_postgres(stmt)

    def rewrite(text: str) -> str:
        # BIGINT placeholders keep INTEGER → BIGINT from firing twice on the identity column.
        for pat, rep in _DDL_RULES:
            text = pat.sub(rep.replace("BIGINT GENERATED", "\0GENERATED"), text)
        return text.replace("\0GENERATED", "BIGINT GENERATED")

    return _map_code(stmt, rewrite)
