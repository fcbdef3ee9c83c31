"""Plugin discovery in one place: evaluators, backends and optimizers are all registered the same way.

Each registry has an entry-point group (``tunegate.evaluators``, ``tunegate.backends``,
``tunegate.optimizers``). An entry point is a callable that receives the registry and adds to it;
the built-ins are the group's ``builtin`` entry point, which each registry also calls directly
(so a source tree without installed metadata still has them) — hence it is skipped here.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

__all__ = ["BUILTIN", "load_plugins"]

#: Name of the entry point that registers a group's built-ins.
BUILTIN = "builtin"


def load_plugins(group: str, registry: Any, *, include_builtin: bool = False) -> None:
    """Call every entry point of ``group`` with ``registry`` (the built-in one only if asked)."""
    for ep in entry_points(group=group):
        if include_builtin or ep.name != BUILTIN:
            ep.load()(registry)
