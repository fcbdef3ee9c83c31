"""Build the backend a candidate (or a judge config) names, through the backend registry.

Backend kinds are registered like evaluators (entry-point group ``tunegate.backends``; the
built-ins ``local`` and ``openai`` the same way), so a plugin adds one without touching the
engine. Heavy backends are imported only when built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunegate.backends.base import Backend
from tunegate.backends.registry import default_backends
from tunegate.core.candidate import CandidateSpec

__all__ = ["make_backend", "make_judge_backend"]


def make_backend(spec: CandidateSpec) -> Backend:
    """The backend for ``spec`` (``spec.backend`` names a registered kind)."""
    return default_backends().create(spec)


def make_judge_backend(spec: Mapping[str, Any]) -> Backend:
    """The backend an LLM-judge evaluator's ``judge:`` config names (same registry as candidates).

    The engine hands this to the evaluators it builds (:func:`tunegate.engine.run.resolve_suite`):
    evaluators may not import backend implementations, so they receive the factory by injection.
    """
    return make_backend(CandidateSpec(name="judge", backend=spec["backend"], model=spec["model"],
                                      base_url=spec.get("base_url"), api_key_env=spec.get("api_key_env"),
                                      adapter=spec.get("adapter"), options=spec.get("options") or {}))
