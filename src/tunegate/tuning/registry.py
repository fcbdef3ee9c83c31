"""One registry of prompt optimizers: ``--method`` names → optimizer classes, imported when chosen.

Registered the way evaluators and backends are: each entry point of the ``tunegate.optimizers``
group is a callable that receives the registry and calls ``registry.add(name, target)``, where
``target`` is the class or a ``"module:Class"`` path (imported only when that method is used). The
built-ins go through the same group (``builtin``). An optimizer class follows the
:class:`tunegate.tuning.base.Optimizer` protocol: a ``Settings`` pydantic model, a constructor
taking the validated settings, and ``async optimize(ctx)``.
"""

from __future__ import annotations

import importlib

from tunegate.core.plugins import load_plugins
from tunegate.errors import UserError

__all__ = ["ENTRY_POINT_GROUP", "OPTIMIZERS", "OptimizerRegistry", "default_optimizers", "register_builtins"]

ENTRY_POINT_GROUP = "tunegate.optimizers"

#: Built-in optimizers, imported only when chosen.
OPTIMIZERS: dict[str, str] = {
    "gepa": "tunegate.tuning.gepa:GEPA",
    "protegi": "tunegate.tuning.protegi:ProTeGi",
    "promptwizard": "tunegate.tuning.promptwizard:PromptWizard",
}


class OptimizerRegistry:
    """Method name → optimizer class (or its import path until first use)."""

    def __init__(self) -> None:
        self._targets: dict[str, str | type] = {}

    def add(self, name: str, target: str | type) -> None:
        existing = self._targets.get(name)
        if existing is not None and existing != target:
            raise ValueError(f"optimizer {name!r} registered twice ({existing} and {target})")
        self._targets[name] = target

    def names(self) -> list[str]:
        return sorted(self._targets)

    def get(self, name: str) -> type:
        """The class of ``name`` (imported now); an unknown name is the user's ``method`` error."""
        target = self._targets.get(name)
        if target is None:
            raise UserError(f"unknown method {name!r}; choose from {self.names()}", field="method")
        if isinstance(target, str):
            mod, _, attr = target.partition(":")
            cls = getattr(importlib.import_module(mod), attr)
            if not isinstance(cls, type):
                raise TypeError(f"optimizer {name!r} target {target!r} is not a class")
            self._targets[name] = target = cls
        return target


def register_builtins(registry: OptimizerRegistry) -> None:
    """Entry point ``tunegate.optimizers:builtin``."""
    for name, target in OPTIMIZERS.items():
        registry.add(name, target)


_DEFAULT: OptimizerRegistry | None = None


def default_optimizers() -> OptimizerRegistry:
    """Built-ins plus installed plugins (built once, then reused)."""
    global _DEFAULT
    if _DEFAULT is None:
        reg = OptimizerRegistry()
        register_builtins(reg)  # also works from a source tree without installed entry points
        load_plugins(ENTRY_POINT_GROUP, reg)
        _DEFAULT = reg
    return _DEFAULT
