"""Registration of the built-in backends (``local`` and ``openai``).

Declared in pyproject as the ``builtin`` entry point of ``tunegate.backends``, the group a plugin
uses; :func:`tunegate.backends.registry.default_backends` also calls :func:`register` directly so
a source tree without installed metadata has them. The heavy libraries (torch, httpx) are
imported by the builders, when a candidate of that kind is built.
"""

from __future__ import annotations

import os

from tunegate.backends.base import Backend
from tunegate.backends.registry import BackendRegistry
from tunegate.core.candidate import CandidateSpec
from tunegate.errors import UserError

__all__ = ["KNOWN_OPTIONS", "build_local", "build_openai", "register"]

#: Backend options a candidate's ``options`` may carry (not part of its identity).
KNOWN_OPTIONS = frozenset({"threads", "batch_size", "concurrency", "timeout_s", "max_retries", "dtype",
                           "engine", "workers"})


def _check_options(spec: CandidateSpec) -> None:
    unknown = set(spec.options) - KNOWN_OPTIONS
    if unknown:
        raise UserError(f"unknown option(s) {sorted(unknown)}; known: {sorted(KNOWN_OPTIONS)}",
                        file=spec.source, field="options")


def _int(spec: CandidateSpec, key: str, default: int | None) -> int | None:
    v = spec.options.get(key, default)
    if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
        raise UserError("must be int", file=spec.source, field=f"options.{key}")
    return v


def _float(spec: CandidateSpec, key: str, default: float) -> float:
    v = spec.options.get(key, default)
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise UserError("must be int or float", file=spec.source, field=f"options.{key}")
    return float(v)


def _str(spec: CandidateSpec, key: str, default: str) -> str:
    v = spec.options.get(key, default)
    if not isinstance(v, str):
        raise UserError("must be str", file=spec.source, field=f"options.{key}")
    return v


def build_local(spec: CandidateSpec) -> Backend:
    """A model on this machine (``engine``, ``threads``, ``batch_size``, ``dtype``, ``workers``;
    ``TUNEGATE_THREADS``, ``TUNEGATE_WORKERS``)."""
    _check_options(spec)
    from tunegate.backends.local import ENGINES, LocalBackend

    threads = _int(spec, "threads", None)
    if threads is None and os.environ.get("TUNEGATE_THREADS"):
        threads = int(os.environ["TUNEGATE_THREADS"])
    engine = _str(spec, "engine", "fast")
    if engine not in ENGINES:
        raise UserError(f"must be one of {', '.join(ENGINES)}, got {engine!r}", file=spec.source,
                        field="options.engine")
    try:
        return LocalBackend(spec.model, adapter=spec.adapter, threads=threads, batch_size=_int(spec, "batch_size", None),
                            dtype=_str(spec, "dtype", "auto"), engine=engine, workers=_int(spec, "workers", None))
    except UserError as e:
        if e.file is None and e.field in ("dtype", "engine", "batch_size", "threads", "workers"):
            raise UserError(e.message, file=spec.source, field=f"options.{e.field}") from None
        raise


def build_openai(spec: CandidateSpec) -> Backend:
    """Any OpenAI-compatible server (``concurrency``, ``timeout_s``, ``max_retries``; key from ``api_key_env``)."""
    _check_options(spec)
    from tunegate.backends.openai_compat import OpenAIBackend

    key = None
    if spec.api_key_env:
        key = os.environ.get(spec.api_key_env)
        if not key:
            raise UserError(f"environment variable {spec.api_key_env} is not set", file=spec.source,
                            field="api_key_env")
    if spec.base_url is None:
        raise UserError("backend openai needs base_url", file=spec.source, field="base_url")
    concurrency = _int(spec, "concurrency", 8)
    retries = _int(spec, "max_retries", 4)
    return OpenAIBackend(spec.base_url, spec.model, api_key=key, adapter=spec.adapter,
                         concurrency=8 if concurrency is None else concurrency,
                         timeout_s=_float(spec, "timeout_s", 60), max_retries=4 if retries is None else retries)


def register(registry: BackendRegistry) -> None:
    """Entry point ``tunegate.backends:builtin``."""
    registry.add("local", build_local)
    registry.add("openai", build_openai)
