"""Waiting for an event in a test, never timing it (speed belongs in bench/)."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["poll"]


def poll(cond: Callable[[], object], *, tries: int = 600, step_s: float = 0.05) -> bool:
    """Re-check ``cond`` up to ``tries`` times, ``step_s`` apart; True as soon as it holds.

    A bounded number of looks rather than a wall-clock deadline: tests wait for an event, they never
    measure or assert how long it took."""
    for _ in range(tries):
        if cond():
            return True
        time.sleep(step_s)
    return bool(cond())
