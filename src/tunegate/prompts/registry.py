"""The prompt registry: named, numbered, immutable prompt versions and movable labels.

Why a registry rather than prompt files in a repository: a gate verdict must point at the exact
text that was evaluated. ``support-agent@v7`` never changes; ``support-agent@production`` moves,
and every move is recorded, so "what was in production on Tuesday" has an answer. Committing
content identical to the latest version stores nothing (no empty commits) and says so through
``PromptVersion.reused``.

The registry talks to any object with the raw ``prompt_*`` store methods (see
:class:`~tunegate.prompts.models.PromptStore`); ``tunegate.store.sqlite.Store`` is the real one.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from tunegate.core.example import Example
from tunegate.core.prompt import PromptTemplate
from tunegate.errors import UserError
from tunegate.prompts.compiler import compile_template, diff_templates
from tunegate.prompts.models import (
    LATEST,
    CompiledPrompt,
    HistoryEvent,
    LabelMove,
    PromptStore,
    PromptVersion,
    check_label,
    check_name,
    parse_ref,
    parse_version,
    prompt_hash,
)

__all__ = ["PromptRegistry"]


def _labels_text(labels: Mapping[str, int], latest: int) -> str:
    parts = [f"{k}→v{v}" for k, v in sorted(labels.items())] + [f"{LATEST}→v{latest}"]
    return ", ".join(parts)


class PromptRegistry:
    """Versions, labels, history, diff and strict compile of named prompts, on top of a store."""

    def __init__(self, store: PromptStore) -> None:
        self.store = store

    # -- writing ---------------------------------------------------------------
    def commit(self, name: str, template: PromptTemplate, message: str, *, author: str | None = None,
               lineage: Mapping[str, Any] | None = None, labels: Iterable[str] = ()) -> PromptVersion:
        """Store ``template`` as the next version of ``name`` and point ``labels`` at it.

        When the content equals the latest version's, nothing new is stored: that version is
        returned with ``reused=True`` (the labels are still moved to it). ``template.ref`` is
        ignored: references are assigned here.
        """
        check_name(name)
        wanted = list(dict.fromkeys(check_label(label) for label in labels))
        if not isinstance(message, str) or not message.strip():
            raise UserError("a commit needs a message saying why this version exists", field="message")
        template.variables()  # malformed placeholders are refused before anything is stored
        lineage_dict = dict(lineage or {})
        try:
            json.dumps(lineage_dict, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise UserError(f"lineage must be plain JSON: {e}", field="lineage") from None
        content = template.model_dump(mode="json", exclude={"ref"})
        row, created, _ = self.store.prompt_commit(name, content, prompt_hash(template), message.strip(), author,
                                                   lineage_dict, wanted)
        return self._version(row, reused=not created)

    def label(self, name: str, label: str, version: int | str) -> LabelMove:
        """Point ``label`` at ``version`` of ``name``; the move is recorded in the history."""
        check_name(name)
        check_label(label)
        n = parse_version(version)
        if self.store.prompt_version(name, n) is None:
            self._unknown_version(name, n)
        before = self.store.prompt_labels(name).get(label)
        event = self.store.prompt_move_label(name, label, n)
        if event is None:
            return LabelMove(name=name, label=label, version=n, previous=before, moved=False)
        return LabelMove(name=name, label=label, version=n, previous=event["previous"], moved_at=event["moved_at"])

    # -- reading ---------------------------------------------------------------
    def get(self, ref: str) -> PromptVersion:
        """The version ``ref`` names: ``name``, ``name@latest``, ``name@vN``, ``name@N``, ``name@label``."""
        r = parse_ref(ref)
        if r.version is not None:
            row = self.store.prompt_version(r.name, r.version)
            if row is None:
                self._unknown_version(r.name, r.version)
            return self._version(row)
        latest = self.store.prompt_version(r.name)
        if latest is None:
            self._unknown_name(r.name)
        if r.label == LATEST:
            return self._version(latest)
        labels = self.store.prompt_labels(r.name)
        if r.label not in labels:
            raise UserError(f"prompt {r.name!r} has no label {r.label!r}; labels: "
                            f"{_labels_text(labels, latest['version'])}", field="prompt")
        row = self.store.prompt_version(r.name, labels[r.label])
        assert row is not None  # a label event references a stored version (foreign key)
        return self._version(row)

    def names(self) -> builtins.list[str]:
        """Every prompt name, sorted."""
        return [r["name"] for r in self.store.prompt_names()]

    def list(self) -> builtins.list[PromptVersion]:
        """The latest version of every prompt (with its current labels), sorted by name."""
        out = []
        for r in self.store.prompt_names():
            row = self.store.prompt_version(r["name"])
            assert row is not None
            out.append(self._version(row))
        return out

    def versions(self, name: str) -> builtins.list[PromptVersion]:
        """Every version of ``name``, oldest first."""
        check_name(name)
        rows = self.store.prompt_versions(name)
        if not rows:
            self._unknown_name(name)
        labels = self._labels_by_version(name)
        return [self._version(r, labels=labels) for r in rows]

    def labels(self, name: str) -> dict[str, int]:
        """Where each label of ``name`` points now (``latest`` not included)."""
        check_name(name)
        if self.store.prompt_version(name) is None:
            self._unknown_name(name)
        return self.store.prompt_labels(name)

    def history(self, name: str) -> builtins.list[HistoryEvent]:
        """Commits and label moves of ``name``, oldest first."""
        # Ordered by position, not clock: a move sorts after the commit that was the head when it
        # happened (two events in the same millisecond keep their true order).
        events: builtins.list[tuple[tuple[int, int, int], HistoryEvent]] = []
        for r in self.store.prompt_versions(check_name(name)):
            events.append(((r["version"], 0, 0), HistoryEvent(
                kind="commit", at=r["created_at"], version=r["version"], message=r["message"], author=r["author"],
                hash=r["hash"])))
        if not events:
            self._unknown_name(name)
        for e in self.store.prompt_label_events(name):
            events.append(((e["head"], 1, e["id"]), HistoryEvent(
                kind="label", at=e["moved_at"], version=e["version"], label=e["label"], previous=e["previous"])))
        return [ev for _, ev in sorted(events, key=lambda x: x[0])]

    def diff(self, ref_a: str, ref_b: str, *, context: int = 3) -> str:
        """Unified diff of two versions over system, user, few-shot and include flags ("" if equal)."""
        a, b = self.get(ref_a), self.get(ref_b)
        return diff_templates(a.template, b.template, a_name=a.ref, b_name=b.ref, context=context)

    def compile(self, ref_or_template: str | PromptTemplate | PromptVersion, variables: Mapping[str, Any],
                *, example: Example | None = None) -> CompiledPrompt:
        """Render strictly: a missing variable is a UserError naming it; unused ones are reported."""
        if isinstance(ref_or_template, str):
            ref_or_template = self.get(ref_or_template)
        if isinstance(ref_or_template, PromptVersion):
            return compile_template(ref_or_template.template, variables, ref=ref_or_template.ref, example=example)
        return compile_template(ref_or_template, variables, ref=ref_or_template.ref, example=example)

    # -- helpers -----------------------------------------------------------------
    def _labels_by_version(self, name: str) -> dict[int, builtins.list[str]]:
        out: dict[int, builtins.list[str]] = {}
        for label, v in sorted(self.store.prompt_labels(name).items()):
            out.setdefault(v, []).append(label)
        return out

    def _version(self, row: dict[str, Any] | None, *, reused: bool = False,
                 labels: dict[int, builtins.list[str]] | None = None) -> PromptVersion:
        assert row is not None
        if labels is None:
            labels = self._labels_by_version(row["name"])
        return PromptVersion(name=row["name"], version=row["version"],
                             template=PromptTemplate.model_validate(row["template"]), hash=row["hash"],
                             message=row["message"], author=row["author"], lineage=row["lineage"],
                             labels=labels.get(row["version"], []), created_at=row["created_at"], reused=reused)

    def _unknown_name(self, name: str) -> NoReturn:
        known = self.names()
        where = f"known: {', '.join(known)}" if known else "the registry is empty (commit one with `tunegate " \
            "prompts commit`)"
        raise UserError(f"no prompt named {name!r}; {where}", field="prompt")

    def _unknown_version(self, name: str, version: int) -> NoReturn:
        rows = self.store.prompt_versions(name)
        if not rows:
            self._unknown_name(name)
        raise UserError(f"prompt {name!r} has no version v{version}; versions: v1..v{rows[-1]['version']}",
                        field="prompt")
