"""Build the backend a candidate names. Heavy backends are imported only when used."""

from __future__ import annotations

import os
from typing import Any

from tunegate.backends.base import Backend
from tunegate.core.candidate import CandidateSpec
from tunegate.errors import UserError

__all__ = ["install_judge_factory", "make_backend", "make_judge_backend"]


def _opt(spec: CandidateSpec, key: str, typ: type | tuple[type, ...], default: object) -> object:
    v = spec.options.get(key, default)
    if v is not None and (not isinstance(v, typ) or isinstance(v, bool)):
        name = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise UserError(f"must be {name}", file=spec.source, field=f"options.{key}")
    return v


def make_backend(spec: CandidateSpec) -> Backend:
    """The backend for ``spec`` (local transformers or an OpenAI-compatible server)."""
    known = {"threads", "batch_size", "concurrency", "timeout_s", "max_retries", "dtype"}
    unknown = set(spec.options) - known
    if unknown:
        raise UserError(f"unknown option(s) {sorted(unknown)}; known: {sorted(known)}",
                        file=spec.source, field="options")
    if spec.backend == "local":
        from tunegate.backends.local import LocalBackend

        threads = _opt(spec, "threads", int, None) or (int(os.environ["TUNEGATE_THREADS"])
                                                        if os.environ.get("TUNEGATE_THREADS") else None)
        return LocalBackend(spec.model, adapter=spec.adapter, threads=threads,  # type: ignore[arg-type]
                            batch_size=_opt(spec, "batch_size", int, 8),  # type: ignore[arg-type]
                            dtype=_opt(spec, "dtype", str, "auto"))  # type: ignore[arg-type]
    from tunegate.backends.openai_compat import OpenAIBackend

    key = None
    if spec.api_key_env:
        key = os.environ.get(spec.api_key_env)
        if not key:
            raise UserError(f"environment variable {spec.api_key_env} is not set", file=spec.source,
                            field="api_key_env")
    assert spec.base_url is not None
    return OpenAIBackend(spec.base_url, spec.model, api_key=key, adapter=spec.adapter,
                         concurrency=_opt(spec, "concurrency", int, 8),  # type: ignore[arg-type]
                         timeout_s=float(_opt(spec, "timeout_s", (int, float), 60)),  # type: ignore[arg-type]
                         max_retries=_opt(spec, "max_retries", int, 4))  # type: ignore[arg-type]


def make_judge_backend(spec: dict[str, Any]) -> Backend:
    """The backend an LLM-judge evaluator's ``judge:`` config names (same factory as candidates)."""
    return make_backend(CandidateSpec(name="judge", backend=spec["backend"], model=spec["model"],
                                      base_url=spec.get("base_url"), api_key_env=spec.get("api_key_env"),
                                      adapter=spec.get("adapter"), options=spec.get("options") or {}))


def install_judge_factory() -> None:
    """Let judge evaluators build backends. Evaluators may not import backend implementations
    (layering), so the engine hands them this factory; called by the CLI and the Python API."""
    from tunegate.evaluators.judge import set_backend_factory

    set_backend_factory(make_judge_backend)
