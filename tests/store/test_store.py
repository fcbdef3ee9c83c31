"""The SQLite store: migrations, WAL, refusal of newer databases, dataset rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tunegate.core import Dataset, Example
from tunegate.errors import StoreError
from tunegate.store.migrations import MIGRATIONS
from tunegate.store.sqlite import Store


def test_migrations_apply_once_in_order(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store(db) as s:
        assert s.migrations() == [n for n, _ in MIGRATIONS]
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Store(db) as s:  # reopening applies nothing twice
        assert s.migrations() == [n for n, _ in MIGRATIONS]


def test_newer_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    Store(db).close()
    con = sqlite3.connect(db)
    con.execute("INSERT INTO migrations VALUES ('9999_future', 'x')")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer tunegate"):
        Store(db)


def test_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable tunegate database"):
        Store(db)


def test_dataset_rows_roundtrip(tmp_path: Path) -> None:
    ds = Dataset.of([Example(id="a", input="x", cohorts=["c1"]), Example(id="b", input="y")], name="d")
    with Store(tmp_path / "s.db") as s:
        h = s.put_dataset(ds)
        assert s.put_dataset(ds) == h == ds.hash
        rows = s.dataset_rows(h)
        assert rows["a"]["cohorts"] == ["c1"] and rows["b"]["input"] == "y"


def test_run_lookup_by_prefix_and_latest(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as s:
        rid = s.create_run(identity="i", dataset_hash="d", candidate_hash="c", selection={}, evaluators=[],
                           n_rows=0, meta={})
        assert s.run(rid[:-2]).id == rid
        assert s.run("latest").id == rid


def test_lineage_is_recorded_on_a_candidate_stored_earlier_without_it(tmp_path):
    from tunegate.store.sqlite import Store

    with Store(tmp_path / "s.db") as s:
        s.put_candidate("cand-x", "x", "spec", {"model": "m"})
        assert s.candidate("cand-x")["lineage"] == {}
        s.put_candidate("cand-x", "x", "spec", {"model": "m"}, {"method": "prompt:gepa", "parent": "cand-a"})
        assert s.candidate("cand-x")["lineage"]["method"] == "prompt:gepa"
        s.put_candidate("cand-x", "x", "spec", {"model": "m"}, {"method": "lora"})  # never overwritten
        assert s.candidate("cand-x")["lineage"]["method"] == "prompt:gepa"
