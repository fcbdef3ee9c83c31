"""The store on both backends (SQLite file and a real PostgreSQL server): migrations, refusal of
newer databases, datasets, runs, rows, cache, prompts; plus the SQLite-only file checks."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from tunegate.core import Dataset, Example, PromptTemplate
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.errors import StoreError, UserError
from tunegate.prompts import PromptRegistry
from tunegate.store.migrations import MIGRATIONS
from tunegate.store.sqlite import Store


def test_migrations_apply_once_in_order(store_target: str) -> None:
    with Store(store_target) as s:
        assert s.migrations() == sorted(n for n, _ in MIGRATIONS)
        assert s.pending_migrations() == []
    with Store(store_target) as s:  # reopening applies nothing twice
        assert s.migrations() == sorted(n for n, _ in MIGRATIONS)


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as s:
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_database_is_refused(store_target: str) -> None:
    with Store(store_target) as s:
        s.db.execute("INSERT INTO migrations VALUES ('9999_future', 'x')")
    with pytest.raises(StoreError, match="newer tunegate"):
        Store(store_target)


def test_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable tunegate database"):
        Store(db)


def test_unreachable_postgres_is_a_clear_store_error() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StoreError, match="cannot connect to the PostgreSQL store"):
        Store("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_dataset_rows_roundtrip(store_target: str) -> None:
    ds = Dataset.of([Example(id="a", input="x", cohorts=["c1"]), Example(id="b", input="y")], name="d")
    with Store(store_target) as s:
        h = s.put_dataset(ds)
        assert s.put_dataset(ds) == h == ds.hash
        rows = s.dataset_rows(h)
        assert rows["a"]["cohorts"] == ["c1"] and rows["b"]["input"] == "y"


def test_run_lookup_by_prefix_and_latest(store_target: str) -> None:
    with Store(store_target) as s:
        rid = s.create_run(identity="i", dataset_hash="d", candidate_hash="c", selection={}, evaluators=[],
                           n_rows=0, meta={})
        assert s.run(rid[:-2]).id == rid
        assert s.run(rid[-6:]).id == rid  # any unique part of the id
        assert s.run("latest").id == rid
        with pytest.raises(UserError, match="no run"):
            s.run("run-nope")


def test_rows_scores_and_counters_roundtrip(store_target: str) -> None:
    ok = EvalResult.ok
    with Store(store_target) as s:
        rid = s.create_run(identity="i", dataset_hash="d", candidate_hash="c", selection={"split": None},
                           evaluators=[{"name": "e"}], n_rows=2, meta={"m": 1})
        score = 0.1 + 0.2  # not representable in 32 bits: PostgreSQL's REAL would round it
        s.write_row(rid, "b", 1, [ModelOutput(text="B"), None], [None, "boom"],
                    {"e": [ok("e", "1", score), EvalResult.error("e", "1", "generation failed")]},
                    model_calls=2, cache_hits=1, error="boom")
        s.write_row(rid, "a", 0, [ModelOutput(text="A")], [None], {"e": [ok("e", "1", 1.0, passed=False)]},
                    model_calls=1, cache_hits=0)
        s.finish_run(rid, {"extra": "x"})
        rec = s.run(rid)
        assert (rec.status, rec.rows_done, rec.model_calls, rec.cache_hits) == ("finished", 2, 3, 1)
        assert rec.meta == {"m": 1, "extra": "x"} and rec.selection == {"split": None}
        rows = s.rows(rid)
        assert [r.row_id for r in rows] == ["a", "b"]
        assert rows[1].outputs[0] is not None and rows[1].outputs[0].text == "B" and rows[1].outputs[1] is None
        assert rows[1].output_errors == [None, "boom"] and rows[1].error == "boom"
        assert rows[1].scores["e"][0].score == score
        assert s.db.execute("SELECT score FROM scores WHERE row_id='b' AND sample_index=0").fetchone()[0] == score
        assert s.count_rows(rid) == (2, 2)
        assert s.done_rows(rid) == {"a", "b"}
        assert s.latest_finished("i") == rid and s.latest_unfinished("i") is None


def test_cache_is_insert_once(store_target: str) -> None:
    with Store(store_target) as s:
        s.cache_put("k", "b", "req", "out-1")
        s.cache_put("k", "b", "req", "out-2")  # never overwritten
        assert s.cache_get("k") == "out-1" and s.cache_get("nope") is None
        assert s.cache_stats() == {"entries": 1}


def test_failed_transaction_leaves_nothing(store_target: str) -> None:
    with Store(store_target) as s:
        with pytest.raises(RuntimeError), s.tx() as db:
            db.execute("INSERT INTO verdicts VALUES (?,?,?,?,?,?,?)", ("v", "a", "b", "p", "PROMOTE", "{}", "t"))
            raise RuntimeError("half-way")
        assert s.db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0] == 0
        s.put_verdict("a", "b", "p", "PROMOTE", "{}")  # the connection is usable afterwards
        assert s.db.execute("SELECT decision FROM verdicts").fetchone()[0] == "PROMOTE"


def test_prompt_registry_on_both_backends(store_target: str) -> None:
    brief = PromptTemplate(system="Be brief.")
    longer = PromptTemplate(system="Be brief, 100% sure? It's {{tier}}.", user="Q: {{input}}")
    with Store(store_target) as s:
        reg = PromptRegistry(s)
        v1 = reg.commit("support", brief, "first", labels=["production"])
        v2 = reg.commit("support", longer, "second", labels=["staging"])
        reg.label("support", "production", 2)
        assert (v1.ref, v2.ref) == ("support@v1", "support@v2")
        assert reg.get("support@production").template == v2.template
        assert reg.get("support@v1").template == v1.template
        events = s.prompt_label_events("support")
        assert [(e["label"], e["version"], e["previous"]) for e in events] == [
            ("production", 1, None), ("staging", 2, None), ("production", 2, 1)]
        assert [e["id"] for e in events] == sorted(e["id"] for e in events)


def test_insert_or_replace_and_lastrowid_work_on_both(store_target: str) -> None:
    """Other modules' SQL (gateway, release) uses these SQLite forms through ``Store.tx()``."""
    with Store(store_target) as s:
        with s.tx() as db:
            db.execute("INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?,?)", ("v1", "a", "b", "p", "BLOCK",
                                                                                 "{}", "t"))
            db.execute("INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?,?)", ("v1", "a", "b", "p", "PROMOTE",
                                                                                 "{}", "t"))
            db.execute("INSERT INTO prompt_versions VALUES (?,?,?,?,?,?,?,?)",
                       ("n", 1, "{}", "h", "m", None, "{}", "t"))
            c = db.execute("INSERT INTO prompt_label_events (name, label, version, previous, head, moved_at) "
                           "VALUES (?,?,?,?,?,?)", ("n", "l", 1, None, 1, "t"))
            assert c.lastrowid == 1
        assert s.db.execute("SELECT decision FROM verdicts WHERE id = ?", ("v1",)).fetchall() == [("PROMOTE",)]
        assert s.db.execute("SELECT COUNT(*) FROM verdicts WHERE decision LIKE 'pro%'").fetchone()[0] == 1


def test_open_without_migrating_reports_pending(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db", migrate=False) as s:
        assert s.pending_migrations() == [n for n, _ in MIGRATIONS]
    con = sqlite3.connect(tmp_path / "s.db")
    assert con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
    con.close()


def test_lineage_is_recorded_on_a_candidate_stored_earlier_without_it(store_target: str) -> None:
    with Store(store_target) as s:
        s.put_candidate("cand-x", "x", "spec", {"model": "m"})
        assert s.candidate("cand-x")["lineage"] == {}  # type: ignore[index]
        s.put_candidate("cand-x", "x", "spec", {"model": "m"}, {"method": "prompt:gepa", "parent": "cand-a"})
        assert s.candidate("cand-x")["lineage"]["method"] == "prompt:gepa"  # type: ignore[index]
        s.put_candidate("cand-x", "x", "spec", {"model": "m"}, {"method": "lora"})  # never overwritten
        assert s.candidate("cand-x")["lineage"]["method"] == "prompt:gepa"  # type: ignore[index]


def test_a_row_written_twice_fails_whole_and_the_store_stays_usable(store_target: str) -> None:
    from tunegate.store.connection import integrity_errors

    with Store(store_target) as s:
        rid = s.create_run(identity="i", dataset_hash="d", candidate_hash="c", selection={}, evaluators=[],
                           n_rows=1, meta={})
        row: tuple[list[ModelOutput | None], list[str | None], dict[str, Sequence[EvalResult]]] = (
            [ModelOutput(text="A")], [None], {"e": [EvalResult.ok("e", "1", 1.0)]})
        s.write_row(rid, "a", 0, *row, model_calls=1, cache_hits=0)
        with pytest.raises(integrity_errors()):
            s.write_row(rid, "a", 0, *row, model_calls=5, cache_hits=5)
        assert s.count_rows(rid) == (1, 1) and s.run(rid).model_calls == 1  # nothing of the second write
        s.write_row(rid, "b", 1, *row, model_calls=1, cache_hits=0)
        assert s.count_rows(rid) == (2, 2)
