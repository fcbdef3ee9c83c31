"""A scripted fake backend. For unit tests only — never used by the demo or benchmarks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from tunegate.backends.base import GenerationRequest, GenerationResult
from tunegate.core.example import ToolCall
from tunegate.core.result import ModelOutput, Usage
from tunegate.errors import BackendError

__all__ = ["FakeBackend", "echo_script"]

Script = Callable[[GenerationRequest], "str | ModelOutput | BackendError"]


def echo_script(req: GenerationRequest) -> str:
    """Answer with the last user message, upper-cased (deterministic, seed-aware when sampling)."""
    last = next(m.content for m in reversed(req.messages) if m.role == "user")
    suffix = f" #{req.seed}" if req.params.temperature > 0 else ""
    return (last or "").upper() + suffix


class FakeBackend:
    """Returns whatever ``script(request)`` says; counts calls; optional per-call delay."""

    kind = "fake"

    def __init__(self, script: Script = echo_script, *, name: str = "fake-model", max_batch: int = 4,
                 delay_s: float = 0.0) -> None:
        self.script = script
        self.name = name
        self.max_batch = max_batch
        self.delay_s = delay_s
        self.calls: list[GenerationRequest] = []

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.name}

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        out: list[GenerationResult] = []
        for r in requests:
            self.calls.append(r)
            res = self.script(r)
            if isinstance(res, str):
                res = ModelOutput(text=res, model=self.name, finish_reason="stop",
                                  usage=Usage(prompt_tokens=10, completion_tokens=len(res.split())))
            out.append(res)
        return out

    async def aclose(self) -> None:
        return None


def tool_script(calls: list[dict[str, Any]]) -> Script:
    """A script that always answers with the given tool calls."""
    def script(req: GenerationRequest) -> ModelOutput:
        return ModelOutput(text="", tool_calls=[ToolCall(**c) for c in calls])
    return script
