"""Sync-over-async in one place: run a coroutine from synchronous code, whatever the caller's thread.

Evaluators are synchronous (``score_batch``) but some of them call async backends (an LLM judge, an
embedding endpoint). ``asyncio.run`` fails inside a running loop, so a caller that is itself async
gets the coroutine run in a helper thread with its own loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``make()`` to completion: ``asyncio.run`` here, or in a helper thread when this thread
    already runs an event loop. ``make`` builds the coroutine in the thread that runs it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()
