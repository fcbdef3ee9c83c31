"""Server-sent events for chat completions: chunks from a whole completion, and a completion from chunks.

``completion_to_chunks`` streams an answer that was produced whole (the local model, a cache hit,
an answer held back for a post-check); ``Accumulator`` rebuilds the whole answer from upstream
chunks so the request log, post-call guardrails and the release controller see the same text the
client got. The usage chunk (``choices: []``) is sent only when the client asked for it with
``stream_options.include_usage``, as OpenAI does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

__all__ = ["DONE", "Accumulator", "completion_to_chunks", "encode"]

DONE = b"data: [DONE]\n\n"


def encode(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def completion_to_chunks(completion: dict[str, Any], *, include_usage: bool) -> Iterator[dict[str, Any]]:
    """Chunks equivalent to a ``chat.completion`` object (one content delta per choice)."""
    base = {"id": completion.get("id"), "object": "chat.completion.chunk", "created": completion.get("created"),
            "model": completion.get("model")}
    for choice in completion.get("choices") or []:
        i = choice.get("index", 0)
        msg = choice.get("message") or {}
        yield base | {"choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                   "finish_reason": None}]}
        if msg.get("content"):
            yield base | {"choices": [{"index": i, "delta": {"content": msg["content"]}, "finish_reason": None}]}
        for k, tc in enumerate(msg.get("tool_calls") or []):
            yield base | {"choices": [{"index": i, "delta": {"tool_calls": [tc | {"index": k}]},
                                       "finish_reason": None}]}
        yield base | {"choices": [{"index": i, "delta": {}, "finish_reason": choice.get("finish_reason")}]}
    if include_usage and completion.get("usage") is not None:
        yield base | {"choices": [], "usage": completion["usage"]}


class Accumulator:
    """Rebuilds a ``chat.completion`` from streamed chunks."""

    def __init__(self) -> None:
        self.meta: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None

    def add(self, chunk: dict[str, Any]) -> None:
        if not self.meta:
            self.meta = {k: chunk.get(k) for k in ("id", "created", "model")}
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for ch in chunk.get("choices") or []:
            i = int(ch.get("index", 0))
            cur = self.choices.setdefault(i, {"content": [], "tool_calls": {}, "finish_reason": None})
            delta = ch.get("delta") or {}
            if delta.get("content"):
                cur["content"].append(delta["content"])
            for tc in delta.get("tool_calls") or []:
                k = int(tc.get("index", 0))
                slot = cur["tool_calls"].setdefault(k, {"id": None, "type": "function",
                                                        "function": {"name": "", "arguments": ""}})
                if tc.get("id"):
                    slot["id"] = tc["id"]
                fn = tc.get("function") or {}
                if fn.get("name"):
                    slot["function"]["name"] += fn["name"]
                if fn.get("arguments"):
                    slot["function"]["arguments"] += fn["arguments"]
            if ch.get("finish_reason"):
                cur["finish_reason"] = ch["finish_reason"]

    def completion(self) -> dict[str, Any]:
        choices = []
        for i in sorted(self.choices):
            c = self.choices[i]
            msg: dict[str, Any] = {"role": "assistant", "content": "".join(c["content"]) or None}
            if c["tool_calls"]:
                msg["tool_calls"] = [c["tool_calls"][k] for k in sorted(c["tool_calls"])]
            elif msg["content"] is None:
                msg["content"] = ""
            choices.append({"index": i, "message": msg, "finish_reason": c["finish_reason"]})
        return {**self.meta, "object": "chat.completion", "choices": choices, "usage": self.usage}
