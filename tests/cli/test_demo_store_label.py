"""``tunegate demo`` prints the store it used: never a PostgreSQL password, and the real default
(``TUNEGATE_DB``) when ``--db`` is not given."""

from __future__ import annotations

import pytest

from tunegate.cli.demo_cmd import store_label


def test_postgres_password_is_redacted() -> None:
    label = store_label("postgresql://gate:s3cr3t-pw@db.example:5432/tunegate")
    assert "s3cr3t-pw" not in label
    assert label == "postgresql://gate:***@db.example:5432/tunegate"


def test_default_follows_tunegate_db(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEGATE_DB", "postgresql://gate:hunter2@localhost/tg")
    assert store_label(None) == "postgresql://gate:***@localhost/tg"
    monkeypatch.setenv("TUNEGATE_DB", "/tmp/x/tg.db")
    assert store_label(None) == "/tmp/x/tg.db"
