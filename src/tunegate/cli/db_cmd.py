"""``tunegate db status|migrate|copy``: where the store is, its schema, and moving it to PostgreSQL.

The store is the global ``--db`` / ``TUNEGATE_DB``: a path, ``sqlite:///path`` or
``postgresql://user@host/db``. ``status`` never creates or migrates anything; ``migrate`` applies
the named migrations still pending; ``copy SRC DST`` moves a whole store (typically the laptop's
SQLite file into a team's PostgreSQL database) in one transaction and checks the row counts.
"""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from tunegate.cli import common
from tunegate.errors import UserError
from tunegate.store.base import Store
from tunegate.store.copy import copy_store, table_order
from tunegate.store.migrate import applied_migrations
from tunegate.store.url import parse_store_url, store_exists

__all__ = ["db_group", "register"]

_COUNTED = ("datasets", "candidates", "runs", "run_rows", "scores", "cache", "verdicts", "prompt_versions")


def _open_existing(target: str | None, field: str) -> Store:
    url = parse_store_url(target)
    if not store_exists(url):
        raise UserError(f"no store at {url.display}", field=field)
    return Store(url, migrate=False)


def status_of(store: Store) -> dict[str, Any]:
    """Location, dialect, applied and pending migrations, row counts of the main tables."""
    tables = set(store.db.tables())
    counts = {t: int(store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
              for t in (*_COUNTED, *[t for t in table_order() if t not in _COUNTED]) if t in tables}
    running = int(store.db.execute("SELECT COUNT(*) FROM runs WHERE status='running'").fetchone()[0]) \
        if "runs" in tables else 0
    return {"store": store.url.display, "dialect": store.dialect, "applied": applied_migrations(store.db),
            "pending": store.pending_migrations(), "rows": counts, "unfinished_runs": running}


@click.group("db")
def db_group() -> None:
    """The store: status, migrations, copy to PostgreSQL.

    \b
    Locations (--db or TUNEGATE_DB):
      ~/.cache/tunegate/tunegate.db          a SQLite file (the default)
      sqlite:////abs/path.db                 the same, as a URL (SQLAlchemy's three slashes + path)
      postgresql://user:pw@host:5432/dbname  PostgreSQL (pip install 'tunegate[postgres]')
    """


@db_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def status_command(obj: common.Context, as_json: bool) -> int:
    """Where the store is, which migrations ran or are pending, how many rows it holds (changes nothing)."""
    with _open_existing(obj.db, "--db") as store:
        st = status_of(store)
    if as_json:
        common.print_json(st)
        return 0
    con = common.out_console()
    con.print(f"[bold]{common.escape(st['store'])}[/] ({st['dialect']})")
    con.print(f"migrations applied: {', '.join(st['applied']) or '—'}")
    con.print(f"pending: {', '.join(st['pending']) or 'none'} · unfinished runs: {st['unfinished_runs']}")
    t = Table(show_edge=False, header_style="bold")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for k, v in st["rows"].items():
        t.add_row(k, str(v))
    con.print(t)
    return 0


@db_group.command("migrate")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def migrate_command(obj: common.Context, as_json: bool) -> int:
    """Apply pending migrations (creates the SQLite file or the tables in an empty PostgreSQL database)."""
    with Store(obj.db, migrate=False) as store:
        before = store.pending_migrations()
    with Store(obj.db) as store:
        after = store.pending_migrations()
        applied = [n for n in before if n not in after]
        where = store.url.display
    if as_json:
        common.print_json({"store": where, "applied": applied})
    else:
        common.out_console().print(f"{common.escape(where)}: " +
                                   (f"applied {', '.join(applied)}" if applied else "up to date"))
    return 0


@db_group.command("copy")
@click.argument("src")
@click.argument("dst")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def copy_command(src: str, dst: str, as_json: bool) -> int:
    """Copy the whole store SRC into the new, empty store DST (e.g. a SQLite file into PostgreSQL).

    \b
    tunegate db copy ~/.cache/tunegate/tunegate.db postgresql://tg@db.internal/tunegate
    One transaction: an interrupted copy leaves DST empty. Row counts are checked afterwards.
    """
    with _open_existing(src, "SRC") as s, Store(dst) as d:
        con = common.err_console()
        report = copy_store(s, d, progress=None if as_json else
                            (lambda t, n: con.print(f"  {t}: {n} rows", end="\r")))
    if as_json:
        common.print_json(report.to_dict())
        return 0
    out = common.out_console()
    out.print(f"copied {sum(report.rows.values())} rows from {common.escape(report.source)} "
              f"to {common.escape(report.destination)}")
    for t, n in report.rows.items():
        out.print(f"  {t}: {n}")
    if report.skipped:
        out.print(f"not copied (only on one side): {', '.join(report.skipped)}")
    return 0


def register(group: click.Group) -> None:
    group.add_command(db_group)
