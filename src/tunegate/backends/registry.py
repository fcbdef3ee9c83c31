"""One registry of backend kinds: ``CandidateSpec.backend`` names → a builder of that backend.

Built-ins (``local``, ``openai``) are registered through the same entry-point group
(``tunegate.backends``) a plugin uses, exactly as evaluators are: each entry point is a callable
that receives the registry and calls ``registry.add(kind, builder)``. A builder takes the
validated :class:`~tunegate.core.candidate.CandidateSpec` and returns a
:class:`~tunegate.backends.base.Backend`; it imports its heavy library itself, when called.
"""

from __future__ import annotations

from collections.abc import Callable

from tunegate.backends.base import Backend
from tunegate.core.candidate import CandidateSpec
from tunegate.core.plugins import load_plugins
from tunegate.errors import UserError

__all__ = ["ENTRY_POINT_GROUP", "BackendBuilder", "BackendRegistry", "default_backends"]

ENTRY_POINT_GROUP = "tunegate.backends"

#: Builds a backend from a candidate spec (raises UserError naming ``spec.source`` on bad options).
BackendBuilder = Callable[[CandidateSpec], Backend]


class BackendRegistry:
    """Backend kind → builder."""

    def __init__(self) -> None:
        self._builders: dict[str, BackendBuilder] = {}

    def add(self, kind: str, builder: BackendBuilder) -> None:
        """Register ``builder`` for candidates with ``backend: <kind>``."""
        existing = self._builders.get(kind)
        if existing is not None and existing is not builder:
            raise ValueError(f"backend kind {kind!r} registered twice ({existing} and {builder})")
        self._builders[kind] = builder

    def names(self) -> list[str]:
        return sorted(self._builders)

    def create(self, spec: CandidateSpec) -> Backend:
        """The backend ``spec`` names; an unknown kind is the candidate file's error."""
        builder = self._builders.get(spec.backend)
        if builder is None:
            raise UserError(f"unknown backend {spec.backend!r}; known: {', '.join(self.names())} (plugins add "
                            f"more through the {ENTRY_POINT_GROUP!r} entry-point group)",
                            file=spec.source, line=_line_of(spec.source, "backend"), field="backend")
        return builder(spec)


def _line_of(source: str | None, key: str) -> int | None:
    """Line of ``key`` in the candidate file (errors point at it), when the file is readable YAML."""
    if source is None:
        return None
    from tunegate.core.loading import read_yaml, yaml_line

    try:
        text, _ = read_yaml(source)
    except UserError:
        return None
    return yaml_line(text, (key,))


_DEFAULT: BackendRegistry | None = None


def default_backends() -> BackendRegistry:
    """The registry with the built-ins and every installed plugin (built once, then reused)."""
    global _DEFAULT
    if _DEFAULT is None:
        reg = BackendRegistry()
        from tunegate.backends import builtin

        builtin.register(reg)  # also works from a source tree without installed entry points
        load_plugins(ENTRY_POINT_GROUP, reg)
        _DEFAULT = reg
    return _DEFAULT
