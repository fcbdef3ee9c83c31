"""``tunegate db status|migrate|copy`` against real stores: a SQLite file copied into PostgreSQL
keeps every row of every table, continues identity counters, and refuses a non-empty destination."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.store.pgserver import PgServer
from tunegate.cli.main import main
from tunegate.core import Dataset, Example, PromptTemplate
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.prompts import PromptRegistry
from tunegate.store.copy import table_order
from tunegate.store.migrations import MIGRATIONS
from tunegate.store.sqlite import Store


def _fill(target: str) -> None:
    ds = Dataset.of([Example(id=f"r{i}", input=f"q{i}", cohorts=["a" if i % 2 else "b"]) for i in range(5)],
                    name="d")
    with Store(target) as s:
        s.put_dataset(ds)
        s.put_candidate("cand-1", "c", "spec", {"model": "m"}, {"method": "lora"})
        rid = s.create_run(identity="i", dataset_hash=ds.hash, candidate_hash="cand-1", selection={},
                           evaluators=[{"name": "e"}], n_rows=5, meta={"tunegate_version": "x"})
        for i in range(5):
            s.write_row(rid, f"r{i}", i, [ModelOutput(text=f"out {i} 100%")], [None],
                        {"e": [EvalResult.ok("e", "1", i / 7)]}, model_calls=1, cache_hits=0)
        s.finish_run(rid)
        s.cache_put("k1", "{}", "{}", '{"text": "x"}')
        s.put_verdict(rid, rid, "pol", "PROMOTE", "{}")
        reg = PromptRegistry(s)
        reg.commit("support", PromptTemplate(system="Be brief."), "v1", labels=["production"])
        reg.commit("support", PromptTemplate(system="Be briefer."), "v2", labels=["staging"])
        reg.label("support", "production", 2)


def _dump(target: str) -> dict[str, list[tuple[Any, ...]]]:
    with Store(target) as s:
        return {t: sorted(tuple(r) for r in s.db.execute(f"SELECT * FROM {t}").fetchall())
                for t in table_order()}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_and_migrate_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "t.db")
    code, _, err = _cli(capsys, "--db", db, "db", "status")
    assert code == 2 and "no store at" in err  # status never creates a store
    assert not Path(db).exists()
    code, out, _ = _cli(capsys, "--db", db, "db", "migrate", "--json")
    assert code == 0 and json.loads(out)["applied"] == [n for n, _ in MIGRATIONS]
    code, out, _ = _cli(capsys, "--db", "sqlite:///" + db, "db", "migrate", "--json")
    assert code == 0 and json.loads(out)["applied"] == []
    _fill(db)
    code, out, _ = _cli(capsys, "--db", db, "db", "status", "--json")
    st = json.loads(out)
    assert code == 0 and st["pending"] == [] and st["rows"]["run_rows"] == 5 and st["unfinished_runs"] == 0


def test_bad_store_url_is_an_input_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "--db", "mysql://x/y", "db", "status")
    assert code == 2 and "unsupported store URL scheme 'mysql'" in err


def test_copy_sqlite_into_postgres(tmp_path: Path, pg_server: PgServer, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(tmp_path / "laptop.db")
    _fill(src)
    dst = pg_server.new_database()
    code, out, err = _cli(capsys, "db", "copy", src, dst, "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["rows"]["run_rows"] == 5 and rep["rows"]["prompt_label_events"] == 3
    before, after = _dump(src), _dump(dst)
    assert after == before  # every row of every table, values and types alike
    code, out, _ = _cli(capsys, "--db", dst, "db", "status", "--json")
    assert code == 0 and json.loads(out)["dialect"] == "postgres" and json.loads(out)["rows"]["scores"] == 5
    with Store(dst) as s:  # identity counters continue after the copied ids
        PromptRegistry(s).label("support", "staging", 1)
        assert [e["id"] for e in s.prompt_label_events("support")] == [1, 2, 3, 4]
        rid = s.run("latest").id
        assert [r.scores["e"][0].score for r in s.rows(rid)] == [i / 7 for i in range(5)]
    code, _, err = _cli(capsys, "db", "copy", src, dst)
    assert code == 2 and "already holds data" in err


def test_copy_refuses_same_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(tmp_path / "a.db")
    _fill(src)
    code, _, err = _cli(capsys, "db", "copy", src, "sqlite:///" + src)
    assert code == 2 and "same store" in err
