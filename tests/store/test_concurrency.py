"""Concurrent writers lose nothing, on SQLite and on PostgreSQL.

Four processes write at once — two runs committing rows, and two gate-side writers that commit
prompt versions of the same name (max+1: a read-modify-write that needs serialised writers), record
verdicts and append cache entries (standing in for the gateway's log) — while this process keeps
reading the runs. Every row a reader sees is whole (outputs and scores),
and at the end every write is there exactly once with consecutive version numbers.
"""

from __future__ import annotations

import multiprocessing as mp

import pytest

from tunegate.core import PromptTemplate
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.prompts import PromptRegistry
from tunegate.store.sqlite import Store

ROWS = 120
COMMITS = 40
LOG = 3


def _run_writer(target: str, run_id: str, start: int) -> None:
    with Store(target) as s:
        for i in range(ROWS):
            s.write_row(run_id, f"r{i:04d}", i, [ModelOutput(text=f"{start}-{i}"), ModelOutput(text="b")],
                        [None, None], {"e": [EvalResult.ok("e", "1", 0.5), EvalResult.ok("e", "1", 1.0)],
                                       "f": [EvalResult.ok("f", "1", 0.0), EvalResult.ok("f", "1", 0.25)]},
                        model_calls=1, cache_hits=1)


def _gate_writer(target: str, w: int) -> None:
    with Store(target) as s:
        reg = PromptRegistry(s)
        for k in range(COMMITS):
            reg.commit("support", PromptTemplate(system=f"Answer briefly, writer {w} variant {k}."), f"v{k}",
                       labels=["staging"])
            s.put_verdict("a", "b", "p", "PROMOTE", "{}")
            for j in range(LOG):
                s.cache_put(f"key-{w}-{k}-{j}", "{}", "{}", "{}")


@pytest.mark.slow
def test_four_concurrent_writers_lose_nothing(store_target: str) -> None:
    with Store(store_target) as s:
        runs = [s.create_run(identity=f"i{k}", dataset_hash="d", candidate_hash="c", selection={},
                             evaluators=[], n_rows=ROWS, meta={}) for k in range(2)]
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_run_writer, args=(store_target, runs[0], 0)),
             ctx.Process(target=_run_writer, args=(store_target, runs[1], 1)),
             ctx.Process(target=_gate_writer, args=(store_target, 0)),
             ctx.Process(target=_gate_writer, args=(store_target, 1))]
    for p in procs:
        p.start()
    seen = 0
    with Store(store_target) as reader:
        while any(p.is_alive() for p in procs):
            for rid in runs:
                for row in reader.rows(rid):  # never a row without all its outputs and scores
                    assert len(row.outputs) == 2 and all(len(v) == 2 for v in row.scores.values()), row
                    assert set(row.scores) == {"e", "f"}
                    seen += 1
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Store(store_target) as s:
        for rid in runs:
            assert s.count_rows(rid) == (ROWS, ROWS)
            rec = s.run(rid)
            assert (rec.model_calls, rec.cache_hits) == (ROWS, ROWS)
            assert s.db.execute("SELECT COUNT(*) FROM scores WHERE run_id=?", (rid,)).fetchone()[0] == ROWS * 4
        versions = s.prompt_versions("support")
        assert [v["version"] for v in versions] == list(range(1, 2 * COMMITS + 1))
        assert len({v["hash"] for v in versions}) == 2 * COMMITS
        assert s.prompt_labels("support") == {"staging": 2 * COMMITS}
        assert len(s.prompt_label_events("support")) == 2 * COMMITS
        assert s.cache_stats()["entries"] == 2 * COMMITS * LOG
        assert s.db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0] == 2 * COMMITS
    assert seen > 0
