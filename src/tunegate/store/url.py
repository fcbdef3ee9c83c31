"""Where the store lives: a bare path, ``sqlite:///path`` or ``postgresql://…`` (``TUNEGATE_DB``, ``--db``).

One parser so that every entry point (CLI ``--db``, the Python API's ``db=``, ``tunegate db copy``)
reads a location the same way. SQLite URLs follow SQLAlchemy's convention — three slashes then the
path, so ``sqlite:////var/lib/tg.db`` is absolute and ``sqlite:///tg.db`` relative — and a bare path
stays the default, so nothing changes for a laptop user. Passwords never appear in messages.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tunegate.errors import UserError

__all__ = ["StoreURL", "default_db_path", "default_target", "parse_store_url", "store_exists", "tunegate_home"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def tunegate_home() -> Path:
    return Path(os.environ.get("TUNEGATE_HOME") or Path.home() / ".cache" / "tunegate")


def default_target() -> str:
    """``TUNEGATE_DB`` if set (a path or a URL), else ``$TUNEGATE_HOME/tunegate.db``."""
    return os.environ.get("TUNEGATE_DB") or str(tunegate_home() / "tunegate.db")


def default_db_path() -> Path:
    """The SQLite file the default target names (a PostgreSQL ``TUNEGATE_DB`` has no file: the
    home default is returned then, for callers that only print it)."""
    u = parse_store_url(default_target())
    return u.path if u.path is not None else tunegate_home() / "tunegate.db"


@dataclass(frozen=True)
class StoreURL:
    """A parsed store location: ``dialect`` is ``sqlite`` (with ``path``) or ``postgres`` (with ``dsn``)."""

    dialect: str
    path: Path | None = None
    dsn: str | None = None

    @property
    def display(self) -> str:
        """For messages: the path, or the URL with any password replaced by ``***``."""
        if self.path is not None:
            return str(self.path)
        assert self.dsn is not None
        parts = urlsplit(self.dsn)
        if parts.password is None:
            return self.dsn
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        # the dataclass repr would show the DSN's password (tracebacks, f"{url!r}", Ray payload errors)
        return f"StoreURL({self.dialect!r}, {self.display!r})"

    def exists(self) -> bool:
        """Whether opening would find a store rather than create one (see :func:`store_exists`)."""
        return store_exists(self)


def parse_store_url(target: str | Path | StoreURL | None) -> StoreURL:
    """Parse ``target`` (None → :func:`default_target`). Unknown schemes are a UserError."""
    if isinstance(target, StoreURL):
        return target
    if target is None:
        target = default_target()
    if isinstance(target, Path):
        return StoreURL("sqlite", path=target)
    m = _SCHEME.match(target)
    if m is None:
        return StoreURL("sqlite", path=Path(target))
    scheme = m.group(1).lower()
    if scheme == "sqlite":
        rest = target[m.end():]
        if not rest.startswith("/") or rest == "/":
            raise UserError("a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path",
                            field="TUNEGATE_DB")
        return StoreURL("sqlite", path=Path(rest[1:]))
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return StoreURL("postgres", dsn="postgresql://" + target[m.end():])
    raise UserError(f"unsupported store URL scheme {scheme!r} (a path, sqlite:///path or postgresql://...)",
                    field="TUNEGATE_DB")


def store_exists(target: str | Path | StoreURL | None) -> bool:
    """Whether opening ``target`` would find a store rather than create one.

    A SQLite store exists when its file does; a PostgreSQL database is created by its operator,
    never by tunegate, so a URL counts as existing (opening it then fails clearly if it does not).
    """
    u = parse_store_url(target)
    if u.path is None:
        return True
    return str(u.path) == ":memory:" or u.path.exists()
