"""The store: datasets, candidates, runs, per-row outputs and scores, the model-call cache, verdicts.

One location (``TUNEGATE_DB``, ``--db``; default ``$TUNEGATE_HOME/tunegate.db``): a SQLite file
(WAL journal, so a reader never blocks the writer) or a PostgreSQL database by URL, with the same
named migrations and the same semantics. One transaction per finished row, so a run killed with
SIGKILL loses at most the rows in flight — never a committed one — and readers of a run's rows
see them through one snapshot, so never a row whose outputs are committed but scores are not.
"""

from __future__ import annotations

import json
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
from tunegate.store.clock import now
from tunegate.store.connection import Connection, connect, database_errors, transaction
from tunegate.store.migrate import apply_migrations, pending_migrations
from tunegate.store.prompt_rows import PromptRows
from tunegate.store.url import StoreURL, parse_store_url

__all__ = ["RowRecord", "RunRecord", "Store"]


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


class Store(PromptRows):
    """Thin, explicit access to the store. Not thread-safe: one Store per thread (or process).

    ``target`` is a path, ``sqlite:///path`` or ``postgresql://…`` (None: ``TUNEGATE_DB`` or the
    default file). ``migrate=False`` opens without applying pending migrations (``tunegate db
    status``); everything else expects a migrated store.
    """

    def __init__(self, target: str | Path | StoreURL | None = None, *, migrate: bool = True) -> None:
        self.url = parse_store_url(target)
        self.dialect = self.url.dialect
        #: The SQLite file, or the PostgreSQL URL without its password (for messages).
        self.path: Path | str = self.url.path if self.url.path is not None else self.url.display
        if self.url.path is not None and str(self.url.path) != ":memory:":
            if self.url.path.exists() and self.url.path.is_dir():
                raise UserError("is a directory, expected a database file", file=str(self.url.path))
            self.url.path.parent.mkdir(parents=True, exist_ok=True)
        self._in_tx = False
        try:
            self.db: Connection = connect(self.url)
            if migrate:
                apply_migrations(self.db, self.url.display)
        except database_errors() as e:
            raise StoreError(f"{self.url.display}: not a usable tunegate database ({str(e).strip()})") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------
    @contextmanager
    def tx(self, *, serialize: bool = True) -> Iterator[Connection]:
        """One write transaction; writers queue instead of failing late.

        SQLite: ``BEGIN IMMEDIATE``. PostgreSQL: ``BEGIN`` plus an advisory lock, so a
        read-modify-write inside (next version number, a counter) sees no concurrent writer —
        unless ``serialize=False``, for pure appends that cannot conflict.
        """
        self._in_tx = True
        try:
            with transaction(self.db, serialize=serialize) as db:
                yield db
        finally:
            self._in_tx = False

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """Several reads that must agree with each other (one snapshot; never blocks writers)."""
        if self._in_tx:
            yield self.db
            return
        self._in_tx = True
        try:
            with transaction(self.db, read_only=True) as db:
                yield db
        finally:
            self._in_tx = False

    def migrations(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM migrations ORDER BY name")]

    def pending_migrations(self) -> list[str]:
        """Known migrations not yet applied to this store."""
        return pending_migrations(self.db)

    # -- datasets & candidates ----------------------------------------------
    def put_dataset(self, ds: Dataset) -> str:
        h = ds.hash
        if self.db.execute("SELECT 1 FROM datasets WHERE hash=?", (h,)).fetchone():
            return h
        with self.tx() as db:  # checked again inside: two runs may store the same dataset at once
            if db.execute("SELECT 1 FROM datasets WHERE hash=?", (h,)).fetchone():
                return h
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
        with self.tx(serialize=False) as db:
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
        """Commit one finished row atomically (outputs, scores, counters, done marker).

        Appends only (plus an atomic counter increment), so on PostgreSQL rows of different runs —
        or of one run sharded across workers — commit concurrently without the write lock.
        """
        with self.tx(serialize=False) as db:
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
                         selection=json.loads(r[4]), evaluators=json.loads(r[5]), n_rows=int(r[6]), status=r[7],
                         meta=json.loads(r[8]), model_calls=int(r[9]), cache_hits=int(r[10]), started_at=r[11],
                         finished_at=r[12], rows_done=int(r[13]))

    _RUN_COLS = ("r.id, r.identity, r.dataset_hash, r.candidate_hash, r.selection, r.evaluators, r.n_rows, "
                 "r.status, r.meta, r.model_calls, r.cache_hits, r.started_at, r.finished_at, "
                 "(SELECT COUNT(*) FROM run_rows x WHERE x.run_id = r.id)")

    def run(self, run_id: str) -> RunRecord:
        """A run by id, ``latest`` (the newest run), or any unique part of its id.

        The part a person remembers is often the random suffix (``run-20261207-010203-3fa9c1`` →
        ``3fa9c1``), so a unique substring resolves as well as a prefix; an exact id, then a unique
        prefix, wins over substring matches. Ambiguity is a usage error listing the matches.
        """
        if run_id == "latest":
            q = self.db.execute(f"SELECT {self._RUN_COLS} FROM runs r ORDER BY started_at DESC LIMIT 1").fetchall()
            if not q:
                raise UserError(f"no runs in {self.path}", field="run")
            return self._run_from(q[0])
        ids = [r[0] for r in self.db.execute("SELECT id FROM runs ORDER BY started_at DESC").fetchall()]
        hits = [i for i in ids if i == run_id] or [i for i in ids if i.startswith(run_id)] or \
            [i for i in ids if run_id and run_id in i]
        if not hits:
            raise UserError(f"no run {run_id!r} in {self.path}", field="run")
        if len(hits) > 1:
            shown = ", ".join(hits[:10]) + (f" (+{len(hits) - 10} more)" if len(hits) > 10 else "")
            raise UserError(f"{run_id!r} matches {len(hits)} runs: {shown}; give more of the id", field="run")
        q = self.db.execute(f"SELECT {self._RUN_COLS} FROM runs r WHERE id = ?", (hits[0],)).fetchall()
        return self._run_from(q[0])

    def runs(self, limit: int = 50) -> list[RunRecord]:
        q = self.db.execute(f"SELECT {self._RUN_COLS} FROM runs r ORDER BY started_at DESC LIMIT ?", (limit,))
        return [self._run_from(r) for r in q]

    def rows(self, run_id: str) -> list[RowRecord]:
        """Every finished row of a run, in run order, with outputs and scores (one consistent snapshot)."""
        outs: dict[str, dict[int, tuple[ModelOutput | None, str | None]]] = {}
        scs: dict[str, dict[str, dict[int, EvalResult]]] = {}
        with self._snapshot() as db:
            for rid, i, o, err in db.execute(
                    "SELECT row_id, sample_index, output, error FROM outputs WHERE run_id=?", (run_id,)):
                outs.setdefault(rid, {})[i] = (ModelOutput.model_validate_json(o) if o else None, err)
            for rid, i, name, res in db.execute(
                    "SELECT row_id, sample_index, evaluator, result FROM scores WHERE run_id=?", (run_id,)):
                scs.setdefault(rid, {}).setdefault(name, {})[i] = EvalResult.model_validate_json(res)
            done = db.execute("SELECT row_id, seq, error FROM run_rows WHERE run_id=? ORDER BY seq",
                              (run_id,)).fetchall()
        records = []
        for rid, seq, err in done:
            o = outs.get(rid, {})
            idx = sorted(o)
            records.append(RowRecord(
                row_id=rid, seq=int(seq), error=err,
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
        with self.tx(serialize=False) as db:
            db.execute("INSERT OR IGNORE INTO cache VALUES (?,?,?,?,?)", (key, backend, request, output, now()))

    def cache_stats(self) -> dict[str, int]:
        n = self.db.execute("SELECT COUNT(*) FROM cache").fetchone()[0]
        return {"entries": int(n)}

    # -- verdicts ---------------------------------------------------------------
    def put_verdict(self, baseline_run: str, candidate_run: str, policy_hash: str, decision: str,
                    verdict_json: str) -> str:
        vid = "verdict-" + uuid.uuid4().hex[:12]
        with self.tx(serialize=False) as db:
            db.execute("INSERT INTO verdicts VALUES (?,?,?,?,?,?,?)",
                       (vid, baseline_run, candidate_run, policy_hash, decision, verdict_json, now()))
        return vid
