"""Queries for the release controller: span rows, mirrored pairs, controller decisions, feedback.

Plain SQL with ``?`` placeholders through :meth:`Store.tx` (portable to PostgreSQL). The tables
come from migration ``0005_release_controller``. Callers pass plain dicts/values; nothing here
knows about OpenTelemetry or the gateway.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from tunegate.store.sqlite import Store, now

__all__ = [
    "DECISION_COLUMNS",
    "FEEDBACK_COLUMNS",
    "PAIR_COLUMNS",
    "SPAN_ROW_COLUMNS",
    "feedback_rows",
    "insert_decision",
    "insert_feedback",
    "insert_pairs",
    "insert_spans",
    "list_decisions",
    "pair_rows",
    "request_row",
    "span_rows",
]

SPAN_ROW_COLUMNS = ("trace_id", "span_id", "parent_id", "name", "kind", "start_ns", "end_ns", "duration_ms",
                    "status", "source", "route", "arm", "cohort", "model", "response_model", "prompt_version",
                    "candidate", "request_id", "input_tokens", "output_tokens", "cost", "eval_failed",
                    "attributes", "events")
PAIR_COLUMNS = ("request_id", "route", "cohort", "base_arm", "candidate_arm", "base_hash", "candidate_hash",
                "base_prompt", "candidate_prompt", "evaluators", "base_scores", "candidate_scores", "base_failed",
                "candidate_failed", "candidate_error", "example", "base_output", "candidate_output", "created_at")
DECISION_COLUMNS = ("id", "route", "arm", "action", "from_percent", "to_percent", "cohorts", "reason", "evidence",
                    "policy_hash", "candidate_hash", "created_at")
FEEDBACK_COLUMNS = ("id", "request_id", "route", "arm", "cohort", "thumbs", "score", "comment", "created_at")
_JSON_PAIR = ("evaluators", "base_scores", "candidate_scores", "example")


def _insert(table: str, cols: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


def insert_spans(store: Store, rows: Sequence[dict[str, Any]]) -> int:
    """Write span rows (dicts keyed by SPAN_ROW_COLUMNS); a span already stored is skipped."""
    if not rows:
        return 0
    with store.tx() as db:
        ids = {(r["trace_id"], r["span_id"]) for r in rows}
        have = set()
        for tid in {t for t, _ in ids}:
            have |= {(tid, r[0]) for r in db.execute("SELECT span_id FROM spans WHERE trace_id = ?", (tid,)).fetchall()}
        fresh = [r for r in rows if (r["trace_id"], r["span_id"]) not in have]
        db.executemany(_insert("spans", SPAN_ROW_COLUMNS), [tuple(r.get(c) for c in SPAN_ROW_COLUMNS) for r in fresh])
    return len(fresh)


def span_rows(store: Store, *, since_ns: int | None = None, until_ns: int | None = None,
              kind: str | None = None, route: str | None = None) -> list[dict[str, Any]]:
    """Span rows in a time window (start time), oldest first."""
    where, args = [], []
    for cond, val in (("start_ns >= ?", since_ns), ("start_ns < ?", until_ns), ("kind = ?", kind),
                      ("route = ?", route)):
        if val is not None:
            where.append(cond)
            args.append(val)
    sql = f"SELECT {', '.join(SPAN_ROW_COLUMNS)} FROM spans"
    if where:
        sql += " WHERE " + " AND ".join(where)
    with store.tx() as db:
        rows = db.execute(sql + " ORDER BY start_ns", tuple(args)).fetchall()
    return [dict(zip(SPAN_ROW_COLUMNS, r, strict=True)) for r in rows]


def insert_pairs(store: Store, pairs: Sequence[dict[str, Any]]) -> None:
    """Store scored mirrored pairs (keyed by request id; a repeated id replaces nothing)."""
    if not pairs:
        return
    rows = []
    for p in pairs:
        p = {**p, "created_at": p.get("created_at") or now()}
        rows.append(tuple(json.dumps(p[c], sort_keys=True, default=str) if c in _JSON_PAIR else p.get(c)
                          for c in PAIR_COLUMNS))
    with store.tx() as db:
        for row in rows:
            if db.execute("SELECT 1 FROM online_pairs WHERE request_id = ?", (row[0],)).fetchone() is None:
                db.execute(_insert("online_pairs", PAIR_COLUMNS), row)


def pair_rows(store: Store, route: str, *, since: str | None = None) -> list[dict[str, Any]]:
    """A route's mirrored pairs, oldest first (JSON columns decoded)."""
    sql = f"SELECT {', '.join(PAIR_COLUMNS)} FROM online_pairs WHERE route = ?"
    args: tuple[Any, ...] = (route,)
    if since is not None:
        sql, args = sql + " AND created_at >= ?", (route, since)
    with store.tx() as db:
        rows = db.execute(sql + " ORDER BY created_at, request_id", args).fetchall()
    out = []
    for r in rows:
        d = dict(zip(PAIR_COLUMNS, r, strict=True))
        for c in _JSON_PAIR:
            d[c] = json.loads(d[c])
        out.append(d)
    return out


def insert_decision(store: Store, *, route: str, arm: str, action: str, from_percent: float, to_percent: float,
                    cohorts: list[str] | None, reason: str, evidence: list[dict[str, Any]], policy_hash: str,
                    candidate_hash: str | None) -> dict[str, Any]:
    row = {"id": str(uuid.uuid4()), "route": route, "arm": arm, "action": action, "from_percent": from_percent,
           "to_percent": to_percent, "cohorts": json.dumps(cohorts) if cohorts is not None else None,
           "reason": reason, "evidence": json.dumps(evidence, sort_keys=True), "policy_hash": policy_hash,
           "candidate_hash": candidate_hash, "created_at": now()}
    with store.tx() as db:
        db.execute(_insert("release_decisions", DECISION_COLUMNS), tuple(row[c] for c in DECISION_COLUMNS))
    return row


def list_decisions(store: Store, route: str | None = None) -> list[dict[str, Any]]:
    """Controller decisions, oldest first (JSON decoded)."""
    sql = f"SELECT {', '.join(DECISION_COLUMNS)} FROM release_decisions"
    args: tuple[Any, ...] = ()
    if route is not None:
        sql, args = sql + " WHERE route = ?", (route,)
    with store.tx() as db:
        rows = db.execute(sql + " ORDER BY created_at, id", args).fetchall()
    out = []
    for r in rows:
        d = dict(zip(DECISION_COLUMNS, r, strict=True))
        d["cohorts"] = json.loads(d["cohorts"]) if d["cohorts"] else None
        d["evidence"] = json.loads(d["evidence"])
        out.append(d)
    return out


def request_row(store: Store, request_id: str) -> dict[str, Any] | None:
    """Route, arm and cohort of a logged gateway request (None when not logged)."""
    with store.tx() as db:
        r = db.execute("SELECT route, arm, cohort FROM gateway_requests WHERE request_id = ?", (request_id,)).fetchone()
    return None if r is None else {"route": r[0], "arm": r[1], "cohort": r[2]}


def insert_feedback(store: Store, *, request_id: str, route: str | None, arm: str | None, cohort: str | None,
                    thumbs: int | None, score: float | None, comment: str | None) -> dict[str, Any]:
    row = {"id": str(uuid.uuid4()), "request_id": request_id, "route": route, "arm": arm, "cohort": cohort,
           "thumbs": thumbs, "score": score, "comment": comment, "created_at": now()}
    with store.tx() as db:
        db.execute(_insert("gateway_feedback", FEEDBACK_COLUMNS), tuple(row[c] for c in FEEDBACK_COLUMNS))
    return row


def feedback_rows(store: Store, route: str | None = None) -> list[dict[str, Any]]:
    sql = f"SELECT {', '.join(FEEDBACK_COLUMNS)} FROM gateway_feedback"
    args: tuple[Any, ...] = ()
    if route is not None:
        sql, args = sql + " WHERE route = ?", (route,)
    with store.tx() as db:
        rows = db.execute(sql + " ORDER BY created_at", args).fetchall()
    return [dict(zip(FEEDBACK_COLUMNS, r, strict=True)) for r in rows]
