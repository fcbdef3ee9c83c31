"""A plugin backend kind (entry-point group ``tunegate.backends``) is served through the backend
registry, never sent over HTTP; its ``generate`` runs on a loop of its own, so a plugin that blocks
does not stall the gateway's event loop; an unknown kind is the candidate file's ``backend`` error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tunegate.backends.registry import default_backends
from tunegate.core.candidate import CandidateSpec
from tunegate.core.request import GenerationRequest
from tunegate.core.result import ModelOutput, Usage
from tunegate.errors import UserError
from tunegate.gateway.upstream import HTTPUpstream, LocalUpstream, UpstreamError, make_upstream


class BlockingEcho:
    """A plugin backend that blocks its thread (time.sleep) like a synchronous SDK would."""

    kind = "blockingecho"
    max_batch = 4

    def __init__(self, spec: CandidateSpec) -> None:
        self.delay = float(spec.options.get("delay", 0.3))
        self.closed = False

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind}

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[ModelOutput]:
        time.sleep(self.delay)
        return [ModelOutput(text="echo: " + str(r.messages[-1].content), finish_reason="stop",
                            usage=Usage(prompt_tokens=3, completion_tokens=2)) for r in requests]

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def plugin_kind() -> Iterator[str]:
    reg = default_backends()
    reg.add("blockingecho", BlockingEcho)
    yield "blockingecho"
    reg._builders.pop("blockingecho", None)


def test_plugin_kind_is_built_through_the_registry_off_the_event_loop(plugin_kind: str) -> None:
    spec = CandidateSpec(name="p", backend=plugin_kind, model="echo", options={"delay": 0.3})
    up = make_upstream("tuned", spec, pool=None)  # type: ignore[arg-type]  # no HTTP pool is needed
    assert isinstance(up, LocalUpstream) and not isinstance(up, HTTPUpstream)
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}

    async def scenario() -> tuple[dict[str, Any], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        t = asyncio.create_task(ticker())
        out = await up.complete(body, timeout_s=5)
        t.cancel()
        with pytest.raises(UpstreamError) as e:  # the route's timeout still applies across the thread
            await up.complete(body, timeout_s=0.05)
        assert e.value.outcome == "timeout"
        await up.aclose()
        return out, ticks

    out, ticks = asyncio.run(scenario())
    assert out["choices"][0]["message"]["content"] == "echo: hi"
    assert out["usage"]["total_tokens"] == 5
    assert ticks >= 5, "the gateway's loop was blocked while the plugin generated"
    assert up._backend.closed  # type: ignore[attr-defined]


def test_unknown_backend_kind_is_the_candidate_files_error() -> None:
    spec = CandidateSpec(name="p", backend="nosuchkind", model="m")
    with pytest.raises(UserError, match="unknown backend 'nosuchkind'"):
        make_upstream("tuned", spec, pool=None)  # type: ignore[arg-type]
