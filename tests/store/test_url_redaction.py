"""A PostgreSQL store URL never shows its password: not in str(), not in repr() (tracebacks, logs)."""

from __future__ import annotations

from tunegate.store.url import parse_store_url


def test_password_in_neither_str_nor_repr() -> None:
    url = parse_store_url("postgresql://gate:pw-XYZ-123@db.internal:5432/tunegate")
    assert url.dsn is not None and "pw-XYZ-123" in url.dsn  # still usable to connect
    for text in (str(url), repr(url), f"{url}", f"{url!r}", repr([url])):
        assert "pw-XYZ-123" not in text and "***" in text


def test_sqlite_repr_shows_the_path() -> None:
    assert "tg.db" in repr(parse_store_url("sqlite:///tmp/tg.db"))
