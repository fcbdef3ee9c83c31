"""The store's timestamp format: UTC ISO-8601 with milliseconds (sorts as text on both backends)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["now"]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
