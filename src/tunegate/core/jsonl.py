"""The one JSONL reader: every line-oriented file (datasets, outputs, preference pairs, plain text
rows) is parsed here, so blank lines, bad JSON and non-object lines get the same treatment and the
same ``file:line`` message everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunegate.errors import UserError

__all__ = ["jsonl_objects", "read_jsonl"]


def read_jsonl(text: str, file: str) -> list[tuple[int, Any]]:
    """(line number, parsed value) of every non-blank line; invalid JSON names ``file:line``."""
    rows: list[tuple[int, Any]] = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((i, json.loads(line)))
        except json.JSONDecodeError as e:
            raise UserError(f"invalid JSON: {e.msg} (column {e.colno})", file=file, line=i) from None
    return rows


def jsonl_objects(source: str | Path, *, text: str | None = None, what: str = "a row",
                  empty: str | None = None) -> list[tuple[int, dict[str, Any]]]:
    """(line, object) of every non-blank line of ``source``; a line that is not a JSON object is a
    UserError (``<what> must be an object, got list``). With ``empty``, a file without rows raises
    that message. ``text`` is the already-read content (``source`` then only names the file)."""
    file = str(source)
    if text is None:
        from tunegate.core.loading import read_text

        text = read_text(Path(source))
    out: list[tuple[int, dict[str, Any]]] = []
    for i, obj in read_jsonl(text, file):
        if not isinstance(obj, dict):
            raise UserError(f"{what} must be an object, got {type(obj).__name__}", file=file, line=i)
        out.append((i, obj))
    if not out and empty is not None:
        raise UserError(empty, file=file)
    return out
