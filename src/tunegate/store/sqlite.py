"""The SQLite store: datasets, candidates, runs, per-row outputs and scores, the model-call cache.

One file (``TUNEGATE_DB``, ``--db``, default ``$TUNEGATE_HOME/tunegate.db``), WAL journal so a
reader (``tunegate show``) never blocks the writer, and one transaction per finished row so a
run killed with SIGKILL loses at most the row in flight — never a committed one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunegate.core.dataset import Dataset
from tunegate.core.hashing import canonical_json
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.errors import StoreError, UserError
from tunegate.store.migrations import MIGRATIONS

__all__ = ["RowRecord", "RunRecord", "Store", "default_db_path", "now"]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def tunegate_home() -> Path:
    return Path(os.environ.get("TUNEGATE_HOME") or Path.home() / ".cache" / "tunegate")


def default_db_path() -> Path:
    """``TUNEGATE_DB`` if set, else ``$TUNEGATE_HOME/tunegate.db``."""
    env = os.environ.get("TUNEGATE_DB")
    return Path(env) if env else tunegate_home() / "tunegate.db"


@dataclass(frozen=True)
class RunRecord:
    """A run's header row."""

    id: str
    identity: str
    dataset_hash: str
    candidate_hash: str
    selection: dict[str, Any]
    evaluators: list[dict[str, Any]]
    n_rows: int
    status: str
    meta: dict[str, Any]
    model_calls: int
    cache_hits: int
    started_at: str
    finished_at: str | None
    rows_done: int = 0


@dataclass(frozen=True)
class RowRecord:
    """One finished row of a run: its outputs (one per sample) and scores per evaluator per sample."""

    row_id: str
    seq: int
    error: str | None
    outputs: list[ModelOutput | None]
    output_errors: list[str | None]
    scores: dict[str, list[EvalResult]]


class Store:
    """Thin, explicit access to the SQLite file. Not thread-safe: one Store per thread."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        if str(self.path) != ":memory:":
            if self.path.exists() and self.path.is_dir():
                raise UserError("is a directory, expected a database file", file=str(self.path))
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: not a usable tunegate database ({e})") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------
    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE so writers queue instead of failing late)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        done = {r[0] for r in self.db.execute("SELECT name FROM migrations")}
        known = {n for n, _ in MIGRATIONS}
        unknown = done - known
        if unknown:
            raise StoreError(f"{self.path} was written by a newer tunegate (migrations {sorted(unknown)})")
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            with self.tx() as db:
                for stmt in sql.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute("INSERT INTO migrations VALUES (?, ?)", (name, now()))

    def migrations(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM migrations ORDER BY name")]

    # -- datasets & candidates ----------------------------------------------
    def put_dataset(self, ds: Dataset) -> str:
        h = ds.hash
        if self.db.execute("SELECT 1 FROM datasets WHERE hash=?", (h,)).fetchone():
            return h
        with self.tx() as db:
            db.execute("INSERT INTO datasets VALUES (?,?,?,?,?)", (h, ds.name, ds.source, len(ds), now()))
            db.executemany(
                "INSERT INTO dataset_rows VALUES (?,?,?,?,?)",
                [(h, ex.id, ds.split_of(ex), json.dumps(ex.cohorts),
                  canonical_json(ex.model_dump(mode="json", exclude_none=True, by_alias=True)))
                 for ex in ds.examples],
            )
        return h

    def dataset_rows(self, dataset_hash: str) -> dict[str, dict[str, Any]]:
        """Row id → row JSON for a stored dataset."""
        rows = self.db.execute("SELECT row_id, data FROM dataset_rows WHERE dataset_hash=?", (dataset_hash,))
        return {rid: json.loads(data) for rid, data in rows}

    def put_candidate(self, h: str, name: str, kind: str, spec: dict[str, Any],
                      lineage: dict[str, Any] | None = None) -> str:
        with self.tx() as db:
            db.execute("INSERT OR IGNORE INTO candidates VALUES (?,?,?,?,?,?)",
                       (h, name, kind, canonical_json(spec), canonical_json(lineage or {}), now()))
            if lineage:
                # Lineage is not part of the identity: the same outputs may be reached by tuning after
                # a hand-written run stored the candidate. Record where it came from; never erase it.
                db.execute("UPDATE candidates SET lineage=? WHERE hash=? AND lineage='{}'",
                           (canonical_json(lineage), h))
        return h

    def candidate(self, h: str) -> dict[str, Any] | None:
        r = self.db.execute("SELECT hash, name, kind, spec, lineage, created_at FROM candidates WHERE hash=?",
                            (h,)).fetchone()
        if r is None:
            return None
        return {"hash": r[0], "name": r[1], "kind": r[2], "spec": json.loads(r[3]),
                "lineage": json.loads(r[4]), "created_at": r[5]}

    def candidates(self, limit: int = 100) -> list[dict[str, Any]]:
        """Stored candidates, newest first (spec and lineage decoded)."""
        rows = self.db.execute("SELECT hash FROM candidates ORDER BY created_at DESC, hash LIMIT ?", (limit,))
        return [c for (h,) in rows.fetchall() if (c := self.candidate(h)) is not None]

    # -- runs -----------------------------------------------------------------
    def create_run(self, *, identity: str, dataset_hash: str, candidate_hash: str, selection: dict[str, Any],
                   evaluators: list[dict[str, Any]], n_rows: int, meta: dict[str, Any]) -> str:
        run_id = "run-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        with self.tx() as db:
            db.execute(
                "INSERT INTO runs (id, identity, dataset_hash, candidate_hash, selection, evaluators, n_rows,"
                " status, meta, started_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (run_id, identity, dataset_hash, candidate_hash, canonical_json(selection),
                 canonical_json(evaluators), n_rows, "running", canonical_json(meta), now()),
            )
        return run_id

    def latest_unfinished(self, identity: str) -> str | None:
        r = self.db.execute("SELECT id FROM runs WHERE identity=? AND status='running' "
                            "ORDER BY started_at DESC LIMIT 1", (identity,)).fetchone()
        return r[0] if r else None

    def latest_finished(self, identity: str) -> str | None:
        r = self.db.execute("SELECT id FROM runs WHERE identity=? AND status='finished' "
                            "ORDER BY finished_at DESC LIMIT 1", (identity,)).fetchone()
        return r[0] if r else None

    def done_rows(self, run_id: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT row_id FROM run_rows WHERE run_id=?", (run_id,))}

    def write_row(self, run_id: str, row_id: str, seq: int, outputs: Sequence[ModelOutput | None],
                  output_errors: Sequence[str | None], scores: dict[str, Sequence[EvalResult]],
                  *, model_calls: int, cache_hits: int, error: str | None = None) -> None:
        """Commit one finished row atomically (outputs, scores, counters, done marker)."""
        with self.tx() as db:
            db.executemany("INSERT INTO outputs VALUES (?,?,?,?,?)", [
                (run_id, row_id, i, o.model_dump_json() if o is not None else None, err)
                for i, (o, err) in enumerate(zip(outputs, output_errors, strict=True))])
            db.executemany("INSERT INTO scores VALUES (?,?,?,?,?,?,?,?)", [
                (run_id, row_id, i, name, r.status, r.score, None if r.passed is None else int(r.passed),
                 r.model_dump_json())
                for name, results in scores.items() for i, r in enumerate(results)])
            db.execute("UPDATE runs SET model_calls = model_calls + ?, cache_hits = cache_hits + ? WHERE id=?",
                       (model_calls, cache_hits, run_id))
            db.execute("INSERT INTO run_rows VALUES (?,?,?,?,?)", (run_id, row_id, seq, error, now()))

    def finish_run(self, run_id: str, meta_update: dict[str, Any] | None = None) -> None:
        with self.tx() as db:
            if meta_update:
                meta = json.loads(db.execute("SELECT meta FROM runs WHERE id=?", (run_id,)).fetchone()[0])
                meta.update(meta_update)
                db.execute("UPDATE runs SET meta=? WHERE id=?", (canonical_json(meta), run_id))
            db.execute("UPDATE runs SET status='finished', finished_at=? WHERE id=?", (now(), run_id))

    def _run_from(self, r: tuple[Any, ...]) -> RunRecord:
        return RunRecord(id=r[0], identity=r[1], dataset_hash=r[2], candidate_hash=r[3],
                         selection=json.loads(r[4]), evaluators=json.loads(r[5]), n_rows=r[6], status=r[7],
                         meta=json.loads(r[8]), model_calls=r[9], cache_hits=r[10], started_at=r[11],
                         finished_at=r[12], rows_done=r[13])

    _RUN_COLS = ("r.id, r.identity, r.dataset_hash, r.candidate_hash, r.selection, r.evaluators, r.n_rows, "
                 "r.status, r.meta, r.model_calls, r.cache_hits, r.started_at, r.finished_at, "
                 "(SELECT COUNT(*) FROM run_rows x WHERE x.run_id = r.id)")

    def run(self, run_id: str) -> RunRecord:
        """A run by id or unique id prefix; ``latest`` is the newest run."""
        if run_id == "latest":
            q = self.db.execute(f"SELECT {self._RUN_COLS} FROM runs r ORDER BY started_at DESC LIMIT 1").fetchall()
        else:
            q = self.db.execute(f"SELECT {self._RUN_COLS} FROM runs r WHERE id = ? OR id LIKE ? "
                                "ORDER BY started_at DESC LIMIT 2", (run_id, run_id + "%")).fetchall()
            exact = [r for r in q if r[0] == run_id]
            q = exact or q
        if not q:
            raise UserError(f"no run {run_id!r} in {self.path}", field="run")
        if len(q) > 1:
            raise UserError(f"run id prefix {run_id!r} is ambiguous", field="run")
        return self._run_from(q[0])

    def runs(self, limit: int = 50) -> list[RunRecord]:
        q = self.db.execute(f"SELECT {self._RUN_COLS} FROM runs r ORDER BY started_at DESC LIMIT ?", (limit,))
        return [self._run_from(r) for r in q]

    def rows(self, run_id: str) -> list[RowRecord]:
        """Every finished row of a run, in run order, with outputs and scores."""
        outs: dict[str, dict[int, tuple[ModelOutput | None, str | None]]] = {}
        for rid, i, o, err in self.db.execute(
                "SELECT row_id, sample_index, output, error FROM outputs WHERE run_id=?", (run_id,)):
            outs.setdefault(rid, {})[i] = (ModelOutput.model_validate_json(o) if o else None, err)
        scs: dict[str, dict[str, dict[int, EvalResult]]] = {}
        for rid, i, name, res in self.db.execute(
                "SELECT row_id, sample_index, evaluator, result FROM scores WHERE run_id=?", (run_id,)):
            scs.setdefault(rid, {}).setdefault(name, {})[i] = EvalResult.model_validate_json(res)
        records = []
        for rid, seq, err in self.db.execute(
                "SELECT row_id, seq, error FROM run_rows WHERE run_id=? ORDER BY seq", (run_id,)):
            o = outs.get(rid, {})
            idx = sorted(o)
            records.append(RowRecord(
                row_id=rid, seq=seq, error=err,
                outputs=[o[i][0] for i in idx], output_errors=[o[i][1] for i in idx],
                scores={n: [v[i] for i in sorted(v)] for n, v in scs.get(rid, {}).items()},
            ))
        return records

    def count_rows(self, run_id: str) -> tuple[int, int]:
        """(rows in run_rows, distinct rows) — equal unless something wrote a duplicate."""
        n, d = self.db.execute("SELECT COUNT(*), COUNT(DISTINCT row_id) FROM run_rows WHERE run_id=?",
                               (run_id,)).fetchone()
        return int(n), int(d)

    # -- cache ------------------------------------------------------------------
    def cache_get(self, key: str) -> str | None:
        r = self.db.execute("SELECT output FROM cache WHERE key=?", (key,)).fetchone()
        return r[0] if r else None

    def cache_put(self, key: str, backend: str, request: str, output: str) -> None:
        with self.tx() as db:
            db.execute("INSERT OR IGNORE INTO cache VALUES (?,?,?,?,?)", (key, backend, request, output, now()))

    def cache_stats(self) -> dict[str, int]:
        n = self.db.execute("SELECT COUNT(*) FROM cache").fetchone()[0]
        return {"entries": int(n)}

    # -- verdicts ---------------------------------------------------------------
    def put_verdict(self, baseline_run: str, candidate_run: str, policy_hash: str, decision: str,
                    verdict_json: str) -> str:
        vid = "verdict-" + uuid.uuid4().hex[:12]
        with self.tx() as db:
            db.execute("INSERT INTO verdicts VALUES (?,?,?,?,?,?,?)",
                       (vid, baseline_run, candidate_run, policy_hash, decision, verdict_json, now()))
        return vid

    # -- prompts ------------------------------------------------------------------
    # Raw JSON access for ``tunegate.prompts`` (which validates names, labels, refs and templates).
    # Versions are append-only rows; label moves are append-only events and the newest event of a
    # label is where it points now, so the full history of every label is kept.
    _PROMPT_COLS = "name, version, template, hash, message, author, lineage, created_at"

    @staticmethod
    def _prompt_from(r: tuple[Any, ...]) -> dict[str, Any]:
        return {"name": r[0], "version": r[1], "template": json.loads(r[2]), "hash": r[3], "message": r[4],
                "author": r[5], "lineage": json.loads(r[6]), "created_at": r[7]}

    @staticmethod
    def _prompt_label(db: sqlite3.Connection, name: str, label: str, version: int) -> dict[str, Any] | None:
        """Append a move of ``label`` to ``version`` (inside an open transaction); None if already there."""
        cur = db.execute("SELECT version FROM prompt_label_events WHERE name=? AND label=? ORDER BY id DESC LIMIT 1",
                         (name, label)).fetchone()
        previous = cur[0] if cur else None
        if previous == version:
            return None
        head = db.execute("SELECT MAX(version) FROM prompt_versions WHERE name=?", (name,)).fetchone()[0]
        at = now()
        c = db.execute("INSERT INTO prompt_label_events (name, label, version, previous, head, moved_at) "
                       "VALUES (?,?,?,?,?,?)", (name, label, version, previous, head, at))
        return {"id": c.lastrowid, "name": name, "label": label, "version": version, "previous": previous,
                "head": head, "moved_at": at}

    def prompt_commit(self, name: str, template: dict[str, Any], content_hash: str, message: str,
                      author: str | None, lineage: dict[str, Any],
                      labels: Sequence[str] = ()) -> tuple[dict[str, Any], bool, list[dict[str, Any]]]:
        """Append version max+1 of ``name`` unless the latest has the same hash; then move ``labels`` to it.

        One write transaction, so concurrent committers get consecutive numbers and a label never
        points at a version that is not stored. Returns (version row, created, label moves).
        """
        with self.tx() as db:
            r = db.execute(f"SELECT {self._PROMPT_COLS} FROM prompt_versions WHERE name=? "
                           "ORDER BY version DESC LIMIT 1", (name,)).fetchone()
            if r is not None and r[3] == content_hash:
                row, created = self._prompt_from(r), False
            else:
                row = {"name": name, "version": (r[1] if r else 0) + 1, "template": template, "hash": content_hash,
                       "message": message, "author": author, "lineage": lineage, "created_at": now()}
                db.execute("INSERT INTO prompt_versions VALUES (?,?,?,?,?,?,?,?)",
                           (name, row["version"], canonical_json(template), content_hash, message, author,
                            canonical_json(lineage), row["created_at"]))
                created = True
            moves = [m for label in labels if (m := self._prompt_label(db, name, label, row["version"]))]
        return row, created, moves

    def prompt_move_label(self, name: str, label: str, version: int) -> dict[str, Any] | None:
        """Point ``label`` of ``name`` at ``version`` (must exist); the move event, or None if no change."""
        with self.tx() as db:
            return self._prompt_label(db, name, label, version)

    def prompt_version(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        """One stored version (``None`` = the latest), or None when there is no such version."""
        if version is None:
            r = self.db.execute(f"SELECT {self._PROMPT_COLS} FROM prompt_versions WHERE name=? "
                                "ORDER BY version DESC LIMIT 1", (name,)).fetchone()
        else:
            r = self.db.execute(f"SELECT {self._PROMPT_COLS} FROM prompt_versions WHERE name=? AND version=?",
                                (name, version)).fetchone()
        return self._prompt_from(r) if r else None

    def prompt_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``name``, oldest first."""
        q = self.db.execute(f"SELECT {self._PROMPT_COLS} FROM prompt_versions WHERE name=? ORDER BY version",
                            (name,))
        return [self._prompt_from(r) for r in q]

    def prompt_names(self) -> list[dict[str, Any]]:
        """One summary per prompt name: versions, latest version, last commit time."""
        q = self.db.execute("SELECT name, COUNT(*), MAX(version), MAX(created_at) FROM prompt_versions "
                            "GROUP BY name ORDER BY name")
        return [{"name": n, "versions": c, "latest": v, "updated_at": t} for n, c, v, t in q]

    def prompt_labels(self, name: str) -> dict[str, int]:
        """Where each label of ``name`` points now (its newest move)."""
        q = self.db.execute("SELECT label, version FROM prompt_label_events e WHERE name=? AND id = "
                            "(SELECT MAX(id) FROM prompt_label_events WHERE name=e.name AND label=e.label) "
                            "ORDER BY label", (name,))
        return {label: version for label, version in q}

    def prompt_label_events(self, name: str) -> list[dict[str, Any]]:
        """Every label move of ``name``, oldest first."""
        q = self.db.execute("SELECT id, name, label, version, previous, head, moved_at FROM prompt_label_events "
                            "WHERE name=? ORDER BY id", (name,))
        return [{"id": i, "name": n, "label": la, "version": v, "previous": p, "head": h, "moved_at": t}
                for i, n, la, v, p, h, t in q]
