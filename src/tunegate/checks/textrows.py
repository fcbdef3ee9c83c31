"""Rows as plain text for overlap checks: golden datasets and arbitrary benchmark JSONL files.

A contamination check compares *text*, not schemas, so every source is reduced to
:class:`TextRow` (id, split, file line, one text segment per field value). Two kinds of input:

* a tunegate golden dataset (JSONL/CSV/YAML read by :func:`~tunegate.core.loading.load_dataset`):
  fields ``input`` (the input, or the user messages of a conversation), ``expected`` (text, or the
  leaf values of a JSON answer — keys repeat on every row and would look like overlap) and
  ``context``;
* any other JSONL file (a public benchmark, a DPO preference file): the logical names expand to
  whichever known keys the file has (``input`` → prompt/question/instruction/text..., ``expected``
  → answer/solution/chosen/rejected..., ``context`` → context/passage...), and any other name is
  taken literally. The fields actually used are recorded on the :class:`TextRows` so a report can
  say what was compared.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunegate.core.dataset import Dataset
from tunegate.core.example import Example
from tunegate.core.hashing import content_hash, file_digest
from tunegate.core.jsonl import jsonl_objects
from tunegate.core.loading import load_dataset, read_text
from tunegate.errors import UserError

__all__ = [
    "DEFAULT_FIELDS",
    "FIELD_ALIASES",
    "TextRow",
    "TextRows",
    "load_text_rows",
    "normalise",
    "rows_from_dataset",
    "rows_from_dicts",
    "value_text",
]

#: What a row's text is made of unless told otherwise: the request and the reference answer.
DEFAULT_FIELDS: tuple[str, ...] = ("input", "expected")

#: Logical field → keys looked for in a plain JSONL file, in this order.
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "input": ("input", "prompt", "question", "instruction", "query", "problem", "text", "messages"),
    "expected": ("expected", "answer", "solution", "output", "response", "completion", "expected_response",
                 "best_answer", "target", "chosen", "rejected"),
    "context": ("context", "passage", "document", "documents", "contexts"),
}

_ROLE = {k: role for role, keys in FIELD_ALIASES.items() for k in keys}
_APOSTROPHES = re.compile(r"['\u2019\u2018`]")
_PUNCT = re.compile(r"[^\w\s]|_")
_ASCII = {c: (None if chr(c) in "'`" else " ") for c in range(128) if not chr(c).isalnum() and not chr(c).isspace()}


def normalise(text: str) -> str:
    """NFKC, lower case, apostrophes dropped, other punctuation → space, whitespace collapsed.

    Apostrophes are dropped rather than spaced so ``Janet's`` and ``Janet’s`` and ``Janets`` agree;
    every other punctuation mark separates words, so ``$86.40`` and ``86 40`` agree too.
    """
    if text.isascii():  # fast path, same result: str.translate instead of two regex passes
        return " ".join(text.lower().translate(_ASCII).split())
    t = unicodedata.normalize("NFKC", text).lower()
    t = _APOSTROPHES.sub("", t)
    t = _PUNCT.sub(" ", t)
    return " ".join(t.split())


@dataclass(frozen=True)
class TextRow:
    """One row reduced to text segments (one per field value), with where it came from.

    ``roles`` names each segment's part of the row: ``input`` (the request, or a literal key),
    ``expected`` (a reference answer) or ``context``. Overlap confined to the answer is not a
    leak of the eval item (see :mod:`tunegate.checks.contamination`).
    """

    id: str
    segments: tuple[str, ...]
    source: str = "rows"
    split: str | None = None
    line: int | None = None
    roles: tuple[str, ...] = ()

    def role_of(self, i: int) -> str:
        return self.roles[i] if i < len(self.roles) else "input"

    @property
    def text(self) -> str:
        return "\n".join(self.segments)


@dataclass
class TextRows:
    """The rows of one source (file or in-memory set), the fields they were built from, its hash."""

    source: str
    rows: list[TextRow]
    fields: list[str]
    hash: str | None = None
    kind: str = "rows"  #: golden | jsonl | rows
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)


def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield str(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _leaves(v)


def value_text(value: Any, *, roles: Sequence[str] | None = None) -> str:
    """Text of a field value: strings as is; message lists → their contents (only ``roles`` when
    given); JSON objects → their leaf values, not their keys."""
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return "\n".join(str(m.get("content") or "") for m in value
                         if roles is None or m.get("role") in roles).strip()
    return " ".join(_leaves(value)).strip()


def _example_segments(ex: Example, fields: Sequence[str]) -> list[tuple[str, str]]:
    segs: list[tuple[str, str]] = []
    for f in fields:
        if f == "input":
            if ex.input is not None:
                segs.append(("input", ex.input))
            else:
                segs += [("input", m.content) for m in ex.messages or [] if m.role == "user" and m.content]
        elif f == "expected":
            if ex.expected is not None:
                segs.append(("expected", ex.expected if isinstance(ex.expected, str) else value_text(ex.expected)))
        elif f == "context":
            segs += [("context", c) for c in ([ex.context] if isinstance(ex.context, str) else list(ex.context or []))]
        elif f == "messages":
            segs += [("input" if m.role == "user" else "expected", m.content) for m in ex.messages or [] if m.content]
        else:
            raise UserError(f"unknown field {f!r} for a golden dataset; use input, expected, context or "
                            "messages", field="fields")
    return [(r, t) for r, t in segs if t and t.strip()]


def _row(rid: str, segs: Sequence[tuple[str, str]], source: str, split: str | None, line: int | None) -> TextRow:
    return TextRow(rid, tuple(t for _, t in segs), source, split, line, tuple(r for r, _ in segs))


def rows_from_dataset(ds: Dataset | Sequence[Example], fields: Sequence[str] = DEFAULT_FIELDS, *,
                      source: str | None = None) -> TextRows:
    """Text rows of a golden dataset (or a list of examples), with each row's split."""
    if isinstance(ds, Dataset):
        rows = [_row(ex.id, _example_segments(ex, fields), source or ds.source or ds.name, ds.split_of(ex),
                     ds.line_of(ex.id)) for ex in ds]
        return TextRows(source or ds.source or ds.name, rows, list(fields), ds.hash, "golden")
    exs = list(ds)
    name = source or "rows"
    return TextRows(name, [_row(ex.id, _example_segments(ex, fields), name, ex.split, None) for ex in exs],
                    list(fields), None, "golden")


def _resolve_plain(fields: Sequence[str], keys: set[str], file: str) -> list[str]:
    out: list[str] = []
    for f in fields:
        if f in FIELD_ALIASES:
            out += [k for k in FIELD_ALIASES[f] if k in keys and k not in out]
        elif f in keys:
            out.append(f)
        else:
            raise UserError(f"no row has field {f!r}; fields in this file: {', '.join(sorted(keys))}",
                            file=file, field="fields")
    if not out:
        raise UserError(f"none of the text fields {list(fields)} (or their aliases) is in this file; fields "
                        f"found: {', '.join(sorted(keys))}; choose some with --fields", file=file, field="fields")
    return out


def rows_from_dicts(records: Sequence[tuple[int | None, dict[str, Any]]], fields: Sequence[str] = DEFAULT_FIELDS,
                    *, source: str = "rows") -> TextRows:
    """Text rows of plain JSON objects (line, object); ids from ``id`` (else ``line-N``)."""
    keys = {k for _, r in records for k in r}
    used = _resolve_plain(fields, keys, source)
    rows: list[TextRow] = []
    for i, (line, r) in enumerate(records):
        rid = r.get("id")
        rid = str(rid) if isinstance(rid, str | int) and not isinstance(rid, bool) else f"line-{line or i + 1}"
        segs: list[tuple[str, str]] = []
        for k in used:
            if k in r and r[k] is not None:
                text = value_text(r[k], roles=("user",) if k == "messages" else None)
                if text.strip():
                    segs.append((_ROLE.get(k, "input"), text))
        split = r.get("split") if r.get("split") in ("train", "dev", "test") else None
        rows.append(_row(rid, segs, source, split, line))
    return TextRows(source, rows, used, None, "jsonl")


def _is_golden(path: Path, text: str) -> bool:
    if path.suffix.lower() not in (".jsonl", ".ndjson", ".json"):
        return True
    for line in text.splitlines():
        if line.strip():
            try:
                first = json.loads(line)
            except json.JSONDecodeError:
                return path.suffix.lower() == ".json"  # a .json list spans lines; let the loader judge
            return isinstance(first, dict) and ("input" in first or "messages" in first)
    return True


def _plain_records(text: str, file: str) -> list[tuple[int | None, dict[str, Any]]]:
    return list(jsonl_objects(file, text=text, empty="file has no rows"))


def load_text_rows(path: str | Path, fields: Sequence[str] = DEFAULT_FIELDS, *,
                   splits: Sequence[str] | None = None) -> TextRows:
    """Read a golden dataset or a plain JSONL file as text rows.

    ``splits`` keeps only rows of those splits (golden datasets: the dataset's split of each row;
    plain files: rows whose ``split`` key says so — a plain file without splits cannot be split).
    The hash is the golden dataset's content hash, or for a plain file the content hash of its rows.
    """
    p = Path(path)
    file = str(path)
    text = read_text(p)
    if not text.strip():
        raise UserError("file is empty", file=file)
    if _is_golden(p, text):
        ds = load_dataset(p)
        out = rows_from_dataset(ds, fields, source=file)
        out.extra = {"file_sha256": file_digest(p), "split_hashes": {}}
    else:
        recs = _plain_records(text, file)
        out = rows_from_dicts(recs, fields, source=file)
        out.hash = content_hash([r for _, r in recs], prefix="ds-")
        out.extra = {"file_sha256": file_digest(p)}
    if splits:
        bad = set(splits) - {"train", "dev", "test"}
        if bad:
            raise UserError(f"unknown split {sorted(bad)}; use train, dev or test", field="split")
        if out.kind == "jsonl" and not any(r.split for r in out.rows):
            raise UserError("this file is not a golden dataset and its rows carry no 'split'; it cannot be "
                            "split", file=file, field="split")
        if out.kind == "golden":
            out.extra["split_hashes"] = {"+".join(sorted(splits)): ds.split(list(splits)).hash}  # type: ignore[arg-type]
        out.rows = [r for r in out.rows if r.split in splits]
        if not out.rows:
            raise UserError(f"no rows in split(s) {sorted(splits)}", file=file, field="split")
    return out
