"""One model call as data: rendered messages, offered tools, decoding params, sample index.

It lives in ``core`` because backends execute it and evaluators that call a model (LLM judges,
generated-question relevancy) build it, and evaluators may not import backends (layering).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunegate.core.candidate import DecodingParams
from tunegate.core.example import Message

__all__ = ["GenerationRequest"]


@dataclass(frozen=True)
class GenerationRequest:
    """One model call: rendered messages, offered tools, decoding params and the sample index."""

    messages: tuple[Message, ...]
    params: DecodingParams
    tools: tuple[dict[str, Any], ...] | None = None
    sample_index: int = 0

    @property
    def seed(self) -> int:
        """Per-sample seed: sample ``i`` of a row uses ``params.seed + i``."""
        return self.params.seed + self.sample_index

    def payload(self) -> dict[str, Any]:
        """Everything about the request that determines the output (used in cache keys)."""
        params = self.params.model_dump(mode="json", exclude={"n"})
        return {
            "messages": [m.model_dump(mode="json", exclude_none=True) for m in self.messages],
            "tools": list(self.tools) if self.tools else None,
            "params": params,
            "sample_index": self.sample_index,
        }
