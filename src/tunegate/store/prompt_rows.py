"""Prompt registry rows: append-only versions and label-move events (raw JSON for ``tunegate.prompts``).

A mixin of :class:`tunegate.store.base.Store`, kept apart so the store's main module stays small.
Versions are numbered max+1 inside a serialised write transaction (``Store.tx``), on SQLite and
PostgreSQL alike, so concurrent committers get consecutive numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from tunegate.core.hashing import canonical_json
from tunegate.store.clock import now
from tunegate.store.connection import Connection

__all__ = ["PromptRows"]


class PromptRows:
    """Prompt methods of the store; needs ``db`` and ``tx()`` from :class:`~tunegate.store.base.Store`."""

    db: Connection

    def tx(self) -> AbstractContextManager[Connection]:  # pragma: no cover - provided by Store
        raise NotImplementedError

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
    def _prompt_label(db: Connection, name: str, label: str, version: int) -> dict[str, Any] | None:
        """Append a move of ``label`` to ``version`` (inside an open transaction); None if already there."""
        cur = db.execute("SELECT version FROM prompt_label_events WHERE name=? AND label=? ORDER BY id DESC LIMIT 1",
                         (name, label)).fetchone()
        previous = cur[0] if cur else None
        if previous == version:
            return None
        head = db.execute("SELECT MAX(version) FROM prompt_versions WHERE name=?", (name,)).fetchone()[0]
        at = now()
        c = db.execute("INSERT INTO prompt_label_events (name, label, version, previous, head, moved_at) "
                       "VALUES (?,?,?,?,?,?) RETURNING id", (name, label, version, previous, head, at))
        return {"id": int(c.fetchone()[0]), "name": name, "label": label, "version": version, "previous": previous,
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
