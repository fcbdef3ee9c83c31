"""Shared CLI helpers: store opening, consoles, progress, JSON printing."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tunegate.store.sqlite import Store

__all__ = ["Context", "err_console", "escape", "out_console", "print_json", "progress_bar"]


@dataclass
class Context:
    db: str | None = None

    def store(self) -> Store:
        """Open the store. Called only after all input has been validated."""
        return Store(self.db)


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def out_console() -> Console:
    return Console(highlight=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Any]:
    """A rich progress bar on stderr; yields a ``(done, total) -> None`` hook."""
    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console(), transient=False)
    with prog:
        task = prog.add_task(label, total=total)

        def hook(done: int, tot: int) -> None:
            prog.update(task, completed=done, total=tot)

        yield hook
