"""The one seam between tunegate and a model: ``Backend.generate(requests)``.

A backend receives a batch of fully rendered requests and returns, for each, a ``ModelOutput`` or
the ``BackendError`` that request ended with (returned, not raised, so one bad row does not sink
its batch). Backends do no caching; :mod:`tunegate.backends.cache` wraps any backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from tunegate.core.request import GenerationRequest
from tunegate.core.result import ModelOutput
from tunegate.errors import BackendError

__all__ = ["Backend", "GenerationRequest", "GenerationResult"]

GenerationResult = ModelOutput | BackendError


@runtime_checkable
class Backend(Protocol):
    """A model server or in-process model."""

    #: Short kind name (``local``, ``openai``, ``fake``).
    kind: str
    #: How many requests the engine should hand over per call (local: batch size; remote: concurrency).
    max_batch: int

    def identity(self) -> dict[str, Any]:
        """What makes two backends produce the same outputs: kind, model, adapter digest, URL."""
        ...

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Outputs in request order; a failed request yields its ``BackendError``."""
        ...

    async def aclose(self) -> None:
        """Release connections / memory."""
        ...
