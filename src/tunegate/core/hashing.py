"""Content hashing: every dataset, candidate, evaluator and policy is identified by what it contains.

Canonical JSON (sorted keys, no whitespace, UTF-8, floats that are integral written as ints) makes
the hash independent of key order and of the file format the object was read from.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["canonical_json", "content_hash", "file_digest", "short"]


def _normalise(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _normalise(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_normalise(v) for v in obj]
    if isinstance(obj, float):
        if math.isfinite(obj) and obj.is_integer():
            return int(obj)
        return obj
    if hasattr(obj, "model_dump"):
        return _normalise(obj.model_dump(mode="json", exclude_none=True, by_alias=True))
    return obj


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text for hashing: sorted keys, compact separators, integral floats as ints."""
    return json.dumps(_normalise(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(obj: Any, *, prefix: str = "") -> str:
    """SHA-256 of the canonical JSON of ``obj``, hex, optionally prefixed (``ds-``, ``cand-``...)."""
    return prefix + hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder (relative paths and contents of every file, sorted)."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(str(f.relative_to(p)).encode("utf-8") + b"\0")
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
    else:
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def short(h: str, n: int = 12) -> str:
    """Shorten a (possibly prefixed) hash for display."""
    if "-" in h[:6]:
        pre, _, rest = h.partition("-")
        return f"{pre}-{rest[:n]}"
    return h[:n]
