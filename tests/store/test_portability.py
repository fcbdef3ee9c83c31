"""Every table the migrations create — including the gateway's and release controller's — keeps
values exactly on both backends, and those modules' queries (written once, with ``?`` placeholders,
through ``Store.tx()``) return the same results on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tunegate.store.copy import table_order
from tunegate.store.sqlite import Store

_TEXT = "it's 100% sure? \"quoted\" ünïcode"
_INT = 2**40 + 7        # beyond 32 bits: PostgreSQL INTEGER would overflow
_REAL = 0.1 + 0.2       # not representable in 32 bits: PostgreSQL REAL would round it


def _value(declared: str) -> Any:
    t = declared.upper()
    if "INT" in t:
        return _INT
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return _REAL
    if "BLOB" in t:
        return b"\x00\x01\xff"
    return _TEXT


def _types(table: str, reference: Store) -> dict[str, str]:
    return {r[1]: r[2] for r in reference.db.execute(f'PRAGMA table_info("{table}")').fetchall()}


def test_every_table_round_trips_values(store_target: str, tmp_path: Any) -> None:
    with Store(tmp_path / "reference.db") as ref, Store(store_target) as s:
        for table in table_order():
            types = _types(table, ref)
            row = {c: _value(t) for c, t in types.items()}
            cols = list(row)
            with s.tx() as db:
                db.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                           tuple(row[c] for c in cols))
            got = s.db.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
            assert [tuple(r) for r in got] == [tuple(row[c] for c in cols)], table
            assert [type(v) for v in got[0]] == [type(row[c]) for c in cols], table


def test_aggregates_come_back_as_sqlite_gives_them(store_target: str) -> None:
    """SUM over integers is an int (PostgreSQL's NUMERIC would otherwise arrive as Decimal)."""
    with Store(store_target) as s:
        for i in range(3):
            s.create_run(identity=f"i{i}", dataset_hash="d", candidate_hash="c", selection={}, evaluators=[],
                         n_rows=i + 1, meta={})
        total, mean, n = s.db.execute("SELECT SUM(n_rows), AVG(n_rows), COUNT(*) FROM runs").fetchone()
        assert (total, n) == (6, 3) and type(total) is int and type(n) is int
        assert mean == 2.0


def test_release_and_online_queries_on_both_backends(store_target: str) -> None:
    from tunegate.store import online, release

    with Store(store_target) as s:
        ev = release.record_share(s, route="chat", arm="cand", percent=5.0, action="promote", actor="me",
                                  reason="gate PROMOTE", candidate_hash="cand-1", verdict_hash="v1",
                                  evidence={"n": 1})
        release.record_share(s, route="chat", arm="cand", percent=25.0, action="set", actor="me", reason="ramp",
                             candidate_hash="cand-1", verdict_hash="v1", evidence={})
        assert ev["seq"] == 1 and release.latest_seq(s) == 2
        assert [(r["arm"], r["percent"], r["seq"]) for r in release.rollout_shares(s)] == [("cand", 25.0, 2)]
        assert [e["to_percent"] for e in release.rollout_events(s, "chat")] == [25.0, 5.0]
        base = {"route": "chat", "arm": "cand", "chosen_arm": "cand", "candidate_hash": "cand-1",
                "prompt_version": None, "cohort": "en", "api_key": "team-a", "http_status": 200, "error": None,
                "latency_ms": 12.5, "tokens_in": 10, "tokens_out": 5, "cost": 0.25, "cached": 0,
                "attempts": "[]", "guardrails": "[]", "created_at": "2026-12-07T00:00:00.000+00:00"}
        release.log_requests(s, [{**base, "request_id": f"r{i}", "status": "ok" if i else "error"}
                                 for i in range(4)])
        summary = release.request_summary(s, "chat")
        assert summary == [{"route": "chat", "arm": "cand", "requests": 4, "not_ok": 1, "mean_latency_ms": 12.5,
                            "tokens_in": 40, "tokens_out": 20, "cost": 1.0}]
        assert online.request_row(s, "r1") == {"route": "chat", "arm": "cand", "cohort": "en"}
        fb = online.insert_feedback(s, request_id="r1", route="chat", arm="cand", cohort="en", thumbs=1,
                                    score=None, comment="100% right")
        assert [f["comment"] for f in online.feedback_rows(s, "chat")] == ["100% right"] and fb["thumbs"] == 1
        online.insert_decision(s, route="chat", arm="cand", action="ramp", from_percent=5.0, to_percent=25.0,
                               cohorts=None, reason="anytime-valid", evidence=[{"e": 1}], policy_hash="p",
                               candidate_hash="cand-1")
        assert [d["to_percent"] for d in online.list_decisions(s, "chat")] == [25.0]
