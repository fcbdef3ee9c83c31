"""Checks on a chat-completions request body, with OpenAI-style error details.

Hand-written rather than a pydantic model on the hot path: the body is forwarded as the client
sent it (unknown fields pass through to the upstream), so only what the gateway relies on is
checked, and each problem names its ``param`` as OpenAI's errors do.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BadRequest", "check_chat_body", "error_body"]

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 code: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


def error_body(message: str, *, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _num(body: dict[str, Any], name: str, lo: float, hi: float, *, integer: bool = False) -> None:
    v = body.get(name)
    if v is None:
        return
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok:
        raise BadRequest(f"'{name}' must be {'an integer' if integer else 'a number'}", name)
    if not lo <= v <= hi:
        raise BadRequest(f"'{name}' must be between {lo:g} and {hi:g}, got {v}", name)


def check_chat_body(body: Any) -> dict[str, Any]:
    """``body`` if it is a usable chat request; raises BadRequest naming the first problem."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required: the name of a route (GET /v1/models lists them)", "model")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("'messages' must be a non-empty list", "messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}] must be an object", f"messages.{i}")
        role = m.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise BadRequest(f"messages[{i}].role must be one of {', '.join(sorted(_ROLES))}", f"messages.{i}.role")
        c = m.get("content")
        if c is not None and not isinstance(c, str | list):
            raise BadRequest(f"messages[{i}].content must be a string, a list of parts or null",
                             f"messages.{i}.content")
        if c is None and not m.get("tool_calls") and m.get("role") != "assistant":
            raise BadRequest(f"messages[{i}].content is required for role {role}", f"messages.{i}.content")
    for flag in ("stream",):
        if flag in body and not isinstance(body[flag], bool):
            raise BadRequest(f"'{flag}' must be a boolean", flag)
    so = body.get("stream_options")
    if so is not None and not isinstance(so, dict):
        raise BadRequest("'stream_options' must be an object", "stream_options")
    _num(body, "n", 1, 16, integer=True)
    _num(body, "max_tokens", 1, 1_000_000, integer=True)
    _num(body, "max_completion_tokens", 1, 1_000_000, integer=True)
    _num(body, "temperature", 0, 2)
    _num(body, "top_p", 0, 1)
    _num(body, "seed", -(2**63), 2**63 - 1, integer=True)
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 4
                                                          and all(isinstance(s, str) for s in stop))):
        raise BadRequest("'stop' must be a string or a list of at most 4 strings", "stop")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise BadRequest("'tools' must be a list", "tools")
        for i, t in enumerate(tools):
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise BadRequest(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}",
                                 f"tools.{i}")
    meta = body.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise BadRequest("'metadata' must be an object", "metadata")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise BadRequest("'user' must be a string", "user")
    return body
