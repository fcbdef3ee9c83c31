"""One registry of evaluator classes. Built-ins register through the same entry-point group
(``tunegate.evaluators``) that third-party plugins use; each entry point is a callable that
receives the registry and calls ``registry.add(cls)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunegate.core.plugins import load_plugins
from tunegate.errors import UserError
from tunegate.evaluators.base import Evaluator

if TYPE_CHECKING:
    from tunegate.evaluators.judge import BackendFactory

__all__ = ["ENTRY_POINT_GROUP", "Registry", "default_registry", "load_suite"]

ENTRY_POINT_GROUP = "tunegate.evaluators"


class Registry:
    """Name → evaluator class."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Evaluator]] = {}

    def add(self, cls: type[Evaluator]) -> type[Evaluator]:
        """Register ``cls`` under ``cls.name`` (usable as a decorator)."""
        existing = self._classes.get(cls.name)
        if existing is not None and existing is not cls:
            raise ValueError(f"evaluator name {cls.name!r} registered twice ({existing} and {cls})")
        self._classes[cls.name] = cls
        return cls

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> type[Evaluator]:
        try:
            return self._classes[name]
        except KeyError:
            raise UserError(f"unknown evaluator {name!r}; known: {', '.join(self.names())}",
                            field="evaluators") from None

    def create(self, name: str, *, judge_backends: BackendFactory | None = None, **config: Any) -> Evaluator:
        """An evaluator from its config. ``judge_backends`` (how a ``judge:`` mapping becomes a
        backend) is injected into classes that declare ``uses_judge_backends = True``; others never
        see it, so it cannot collide with their options."""
        cls = self.get(name)
        try:
            if getattr(cls, "uses_judge_backends", False):
                return cls(judge_backends=judge_backends, **config)
            return cls(**config)
        except UserError:
            raise
        except (TypeError, ValueError) as e:
            raise UserError(f"bad config for evaluator {name!r}: {e}", field=f"evaluators.{name}") from None

    def load_plugins(self) -> Registry:
        """Run every ``tunegate.evaluators`` entry point (built-ins included)."""
        load_plugins(ENTRY_POINT_GROUP, self, include_builtin=True)
        return self


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The registry with built-ins and installed plugins (built once, then reused)."""
    global _DEFAULT
    if _DEFAULT is None:
        reg = Registry()
        from tunegate.evaluators import builtin

        builtin.register(reg)  # also works from a source tree without installed entry points
        load_plugins(ENTRY_POINT_GROUP, reg)
        _DEFAULT = reg
    return _DEFAULT


def load_suite(spec: str | Iterable[str] | None, *, registry: Registry | None = None,
               default: Iterable[str] = (), judge_backends: BackendFactory | None = None) -> list[Evaluator]:
    """Build evaluators from ``"a,b,c"``, a YAML file, or a list of names.

    The YAML form is a mapping ``name: {option: value}`` or a list of names / ``{name: options}``.
    ``judge_backends`` is handed to judge evaluators (see :meth:`Registry.create`).
    """
    reg = registry or default_registry()
    if spec is None:
        return [reg.create(n, judge_backends=judge_backends) for n in default]
    items: list[tuple[str, dict[str, Any]]] = []
    file: str | None = None
    if isinstance(spec, str) and (spec.endswith((".yaml", ".yml")) or Path(spec).is_file()):
        file = spec
        from tunegate.core.loading import read_yaml

        _, data = read_yaml(spec)
        if isinstance(data, dict) and "evaluators" in data:
            data = data["evaluators"]
        if isinstance(data, dict):
            data = [{k: v} for k, v in data.items()]
        if not isinstance(data, list) or not data:
            raise UserError("an evaluator file lists evaluators (names, or name: {options})", file=file)
        for i, it in enumerate(data):
            if isinstance(it, str):
                items.append((it, {}))
            elif isinstance(it, dict) and len(it) == 1:
                (n, cfg), = it.items()
                if cfg is not None and not isinstance(cfg, dict):
                    raise UserError("options must be a mapping", file=file, field=f"evaluators.{n}")
                items.append((str(n), cfg or {}))
            else:
                raise UserError(f"entry {i} must be a name or {{name: options}}", file=file)
    else:
        names = spec.split(",") if isinstance(spec, str) else list(spec)
        items = [(n.strip(), {}) for n in names if n.strip()]
        if not items:
            raise UserError("no evaluators named", field="evaluators")
    out: list[Evaluator] = []
    seen: set[str] = set()
    for n, cfg in items:
        if n in seen:
            raise UserError(f"evaluator {n!r} listed twice", file=file, field="evaluators")
        seen.add(n)
        try:
            out.append(reg.create(n, judge_backends=judge_backends, **cfg))
        except UserError as e:
            raise e.located(file=file) from None
    return out
