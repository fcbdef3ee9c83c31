"""Queries for release control: rollout shares, their audit events, and the gateway request log.

Plain SQL with ``?`` placeholders through :meth:`Store.tx` only (portable to PostgreSQL: no
SQLite-only functions, ids are uuids, the event order ``seq`` is max + 1 inside the write
transaction). The rules about *who may set what* live in :mod:`tunegate.gateway.release`; this
module only reads and writes rows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from tunegate.store.sqlite import Store, now

__all__ = [
    "ROLLOUT_EVENT_COLUMNS",
    "latest_seq",
    "log_requests",
    "record_share",
    "request_summary",
    "rollout_events",
    "rollout_shares",
    "stored_verdicts",
]

ROLLOUT_EVENT_COLUMNS = ("id", "seq", "route", "arm", "action", "from_percent", "to_percent", "candidate_hash",
                         "verdict_hash", "actor", "reason", "evidence", "created_at")
_SHARE_COLUMNS = ("route", "arm", "percent", "candidate_hash", "verdict_hash", "seq", "updated_at")


def record_share(store: Store, *, route: str, arm: str, percent: float, action: str, actor: str, reason: str,
                 candidate_hash: str | None, verdict_hash: str | None, evidence: dict[str, Any]) -> dict[str, Any]:
    """Set one arm's share and append the audit event, in one transaction. Returns the event."""
    with store.tx() as db:
        row = db.execute("SELECT percent FROM gateway_rollout WHERE route = ? AND arm = ?", (route, arm)).fetchone()
        before = float(row[0]) if row is not None else 0.0
        top = db.execute("SELECT MAX(seq) FROM gateway_rollout_events").fetchone()
        seq = int(top[0] or 0) + 1 if top is not None else 1
        at = now()
        event = {"id": str(uuid.uuid4()), "seq": seq, "route": route, "arm": arm, "action": action,
                 "from_percent": before, "to_percent": float(percent), "candidate_hash": candidate_hash,
                 "verdict_hash": verdict_hash, "actor": actor, "reason": reason,
                 "evidence": json.dumps(evidence, sort_keys=True, default=str), "created_at": at}
        db.execute(f"INSERT INTO gateway_rollout_events ({', '.join(ROLLOUT_EVENT_COLUMNS)}) "
                   f"VALUES ({', '.join('?' * len(ROLLOUT_EVENT_COLUMNS))})",
                   tuple(event[c] for c in ROLLOUT_EVENT_COLUMNS))
        if row is None:
            db.execute("INSERT INTO gateway_rollout (route, arm, percent, candidate_hash, verdict_hash, seq, updated_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (route, arm, float(percent), candidate_hash, verdict_hash, seq, at))
        else:
            db.execute("UPDATE gateway_rollout SET percent = ?, candidate_hash = ?, verdict_hash = ?, seq = ?, "
                       "updated_at = ? WHERE route = ? AND arm = ?",
                       (float(percent), candidate_hash, verdict_hash, seq, at, route, arm))
    return event | {"evidence": evidence}


def latest_seq(store: Store) -> int:
    """The newest rollout event's ``seq`` (0 when none): a cheap "did anything change?" probe."""
    with store.tx() as db:
        row = db.execute("SELECT MAX(seq) FROM gateway_rollout_events").fetchone()
    return int(row[0] or 0) if row is not None else 0


def rollout_shares(store: Store, route: str | None = None) -> list[dict[str, Any]]:
    """Current share rows (all routes, or one)."""
    sql = f"SELECT {', '.join(_SHARE_COLUMNS)} FROM gateway_rollout"
    args: tuple[Any, ...] = ()
    if route is not None:
        sql, args = sql + " WHERE route = ?", (route,)
    with store.tx() as db:
        rows = db.execute(sql + " ORDER BY route, arm", args).fetchall()
    return [dict(zip(_SHARE_COLUMNS, r, strict=True)) for r in rows]


def rollout_events(store: Store, route: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Audit events, newest first."""
    sql = f"SELECT {', '.join(ROLLOUT_EVENT_COLUMNS)} FROM gateway_rollout_events"
    args: tuple[Any, ...] = ()
    if route is not None:
        sql, args = sql + " WHERE route = ?", (route,)
    with store.tx() as db:
        rows = db.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, int(limit))).fetchall()
    out = []
    for r in rows:
        ev = dict(zip(ROLLOUT_EVENT_COLUMNS, r, strict=True))
        ev["evidence"] = json.loads(ev["evidence"])
        out.append(ev)
    return out


_REQUEST_COLUMNS = ("request_id", "route", "arm", "chosen_arm", "candidate_hash", "prompt_version", "cohort",
                    "api_key", "status", "http_status", "error", "latency_ms", "tokens_in", "tokens_out", "cost",
                    "cached", "attempts", "guardrails", "created_at")


def log_requests(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    """Append request-log rows (one transaction per batch); keys are the table's columns."""
    if not rows:
        return
    sql = (f"INSERT INTO gateway_requests ({', '.join(_REQUEST_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(_REQUEST_COLUMNS))})")
    with store.tx() as db:
        for r in rows:
            db.execute(sql, tuple(r.get(c) for c in _REQUEST_COLUMNS))


def request_summary(store: Store, route: str | None = None) -> list[dict[str, Any]]:
    """Per route and arm: requests, errors, mean latency, tokens, cost (for status and the dashboard)."""
    sql = ("SELECT route, arm, COUNT(*), SUM(CASE WHEN status = 'ok' THEN 0 ELSE 1 END), AVG(latency_ms), "
           "SUM(tokens_in), SUM(tokens_out), SUM(cost) FROM gateway_requests")
    args: tuple[Any, ...] = ()
    if route is not None:
        sql, args = sql + " WHERE route = ?", (route,)
    with store.tx() as db:
        rows = db.execute(sql + " GROUP BY route, arm ORDER BY route, arm", args).fetchall()
    keys = ("route", "arm", "requests", "not_ok", "mean_latency_ms", "tokens_in", "tokens_out", "cost")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def stored_verdicts(store: Store, baseline_run: str, candidate_run: str) -> list[dict[str, Any]]:
    """Verdicts the gate recorded for this pair of runs, newest first (``verdict`` decoded)."""
    with store.tx() as db:
        rows = db.execute("SELECT id, policy_hash, decision, verdict, created_at FROM verdicts "
                          "WHERE baseline_run = ? AND candidate_run = ? ORDER BY created_at DESC",
                          (baseline_run, candidate_run)).fetchall()
    return [{"id": r[0], "policy_hash": r[1], "decision": r[2], "verdict": json.loads(r[3]), "created_at": r[4]}
            for r in rows]
