"""Upstreams: where the gateway sends a chat request — an OpenAI-compatible server or the local model.

An :class:`Upstream` takes an OpenAI chat-completions request body that is already *prepared* for
its candidate (prompt version applied, ``model`` set to the served name, decoding defaults filled)
and returns the OpenAI response body, or streams OpenAI chunk dicts. Every failure is an
:class:`UpstreamError` whose ``outcome`` says what happened (``http_503``, ``timeout``,
``connection``, ``invalid_json``) so the fallback policy and the attempt log can act on it.

:class:`HTTPUpstream` passes bodies through unchanged over the gateway's keep-alive pool
(:mod:`tunegate.gateway.http1`: the upstream call is most of the gateway's own latency budget). :class:`LocalUpstream` runs the embedded model in-process through
:class:`tunegate.backends.local.LocalBackend`, whose generation runs on its own worker thread so
the event loop keeps serving other requests. Any other backend kind (a plugin registered in the
``tunegate.backends`` entry-point group) is built through the same registry and runs on a private
event loop on its own thread: a plugin that blocks stalls its arm, never the gateway. A shadow request (mirroring) is simply another
``complete`` call on an upstream: the release controller gets them from ``Gateway.upstreams``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tunegate.core.candidate import CandidateSpec
from tunegate.errors import UserError

if TYPE_CHECKING:
    from tunegate.gateway.http1 import HTTP1Pool

__all__ = ["HTTPUpstream", "LocalUpstream", "Upstream", "UpstreamError", "make_upstream"]


class UpstreamError(Exception):
    """One failed upstream attempt. ``retryable`` (5xx, 408/409/429, timeout, reset) allows a retry of
    the same upstream (a malformed body is not retried: the same server would likely send it again); any
    error allows a fallback to the next arm."""

    def __init__(self, outcome: str, message: str, *, status: int | None = None, retry_after: float | None = None,
                 retryable: bool = True) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.retryable = retryable


@runtime_checkable
class Upstream(Protocol):
    """One arm's upstream (see the module docstring)."""

    arm: str
    candidate: CandidateSpec
    candidate_hash: str
    model: str  #: the ``model`` sent upstream (served adapter name or model)

    async def complete(self, body: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """The OpenAI ``chat.completion`` object for ``body``; raises :class:`UpstreamError`."""
        ...

    def stream(self, body: dict[str, Any], *, timeout_s: float) -> AsyncIterator[dict[str, Any]]:
        """OpenAI ``chat.completion.chunk`` dicts; raises :class:`UpstreamError` (before or during)."""
        ...

    async def aclose(self) -> None:
        ...


_RETRYABLE = frozenset({408, 409, 429})


def _error_text(raw: bytes | str) -> str:
    try:
        data = json.loads(raw)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:300]
    except ValueError:
        pass
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    return text[:300].strip()


class HTTPUpstream:
    """An OpenAI-compatible server reached through the gateway's shared keep-alive pool (:mod:`.http1`).

    The API key comes from the environment variable the candidate names (``api_key_env``), read
    once at start-up; it is sent as a header and appears in no log, record or error message.
    """

    def __init__(self, arm: str, candidate: CandidateSpec, pool: HTTP1Pool) -> None:
        assert candidate.base_url is not None
        from tunegate.backends.openai_compat import normalise_base_url
        from tunegate.gateway.http1 import Origin

        self.arm = arm
        self.candidate = candidate
        self.candidate_hash = candidate.hash
        self.model = candidate.adapter or candidate.model
        self.url = normalise_base_url(candidate.base_url) + "/chat/completions"
        try:
            self._origin = Origin.parse(self.url)
        except ValueError as e:
            raise UserError(str(e), file=candidate.source, field="base_url") from None
        self._pool = pool
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "tunegate"}
        if candidate.api_key_env:
            key = os.environ.get(candidate.api_key_env, "").strip()
            if not key:
                raise UserError(f"environment variable {candidate.api_key_env} is not set",
                                file=candidate.source, field="api_key_env")
            self._headers["Authorization"] = f"Bearer {key}"

    def __repr__(self) -> str:  # never the headers: they hold the key
        return f"HTTPUpstream(arm={self.arm!r}, url={self.url!r}, model={self.model!r})"

    def _status_error(self, status: int, raw: bytes, headers: dict[str, str]) -> UpstreamError:
        from tunegate.backends.openai_compat import retry_after_s

        return UpstreamError(f"http_{status}", f"upstream {self.arm} answered {status}: {_error_text(raw)}",
                             status=status, retry_after=retry_after_s(headers),
                             retryable=status in _RETRYABLE or status >= 500)

    def _failure(self, e: BaseException, timeout_s: float) -> UpstreamError:
        if isinstance(e, TimeoutError):
            return UpstreamError("timeout", f"upstream {self.arm} timed out after {timeout_s:g}s")
        return UpstreamError("connection", f"upstream {self.arm} connection failed: {type(e).__name__}")

    async def complete(self, body: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        import asyncio

        try:
            async with asyncio.timeout(timeout_s):
                resp = await self._pool.post(self._origin, self._headers, json.dumps(body).encode())
        except (TimeoutError, OSError, EOFError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as e:
            raise self._failure(e, timeout_s) from None
        if resp.status >= 300:
            raise self._status_error(resp.status, resp.body, resp.headers)
        try:
            data = json.loads(resp.body)
        except ValueError:
            raise UpstreamError("invalid_json", f"upstream {self.arm} sent a body that is not JSON",
                                retryable=False) from None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamError("invalid_json", f"upstream {self.arm} sent no 'choices' list", retryable=False)
        return data

    async def stream(self, body: dict[str, Any], *, timeout_s: float) -> AsyncIterator[dict[str, Any]]:
        """Chunks as they arrive; ``timeout_s`` bounds the wait for the response head and for each line."""
        import asyncio

        errors = (TimeoutError, OSError, EOFError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)
        try:
            async with asyncio.timeout(timeout_s):
                status, headers, lines = await self._pool.post_stream(self._origin, self._headers,
                                                                      json.dumps(body).encode())
                if status >= 300:
                    raw = b"\n".join([line async for line in lines])
                    raise self._status_error(status, raw, headers)
        except errors as e:
            raise self._failure(e, timeout_s) from None
        it = lines.__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout(timeout_s):
                        line = await it.__anext__()
                except StopAsyncIteration:
                    return
                except errors as e:
                    raise self._failure(e, timeout_s) from None
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    async for _ in it:  # read to the end so the connection is reused
                        pass
                    return
                try:
                    chunk = json.loads(payload)
                except ValueError:
                    raise UpstreamError("invalid_json", f"upstream {self.arm} sent a chunk that is not JSON",
                                        retryable=False) from None
                if isinstance(chunk, dict):
                    if "error" in chunk and "choices" not in chunk:
                        raise UpstreamError("stream_error", f"upstream {self.arm} failed mid-stream: "
                                            f"{_error_text(payload)}")
                    yield chunk
        finally:
            await it.aclose()  # type: ignore[attr-defined]

    async def aclose(self) -> None:  # the pool is shared and closed by the gateway
        return None


class LocalUpstream:
    """A registry-built backend: the embedded local model (its own worker thread) or a plugin kind (own loop)."""

    def __init__(self, arm: str, candidate: CandidateSpec, *, own_loop: bool = False) -> None:
        from tunegate.engine.run.factory import make_backend

        self.arm = arm
        self.candidate = candidate
        self.candidate_hash = candidate.hash
        self.model = candidate.adapter or candidate.model
        self._backend = make_backend(candidate)
        self._loop = _LoopThread(f"tunegate-backend-{candidate.backend}") if own_loop else None

    async def _generate(self, reqs: list[Any]) -> list[Any]:
        if self._loop is None:
            return await self._backend.generate(reqs)
        return list(await self._loop.run(self._backend.generate(reqs)))

    async def complete(self, body: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        import asyncio

        from tunegate.core.candidate import DecodingParams
        from tunegate.core.example import Message
        from tunegate.core.request import GenerationRequest
        from tunegate.errors import BackendError

        try:
            messages = tuple(Message.model_validate(_local_message(m)) for m in body["messages"])
            params = DecodingParams(temperature=body.get("temperature", 0.0), top_p=body.get("top_p", 1.0),
                                    max_tokens=body.get("max_tokens") or 256, seed=body.get("seed") or 0,
                                    stop=_stops(body.get("stop")))
        except (ValueError, TypeError, KeyError) as e:
            raise UpstreamError("bad_request", f"local model cannot take this request: {e}", retryable=False) \
                from None
        tools = tuple(body["tools"]) if body.get("tools") else None
        n = int(body.get("n") or 1)
        reqs = [GenerationRequest(messages, params, tools, sample_index=i) for i in range(n)]
        try:
            outs = await asyncio.wait_for(self._generate(reqs), timeout_s)
        except TimeoutError:
            raise UpstreamError("timeout", f"local model took longer than {timeout_s:g}s") from None
        choices: list[dict[str, Any]] = []
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        for i, out in enumerate(outs):
            if isinstance(out, BackendError):
                raise UpstreamError("local_error", f"local model failed: {out}")
            msg: dict[str, Any] = {"role": "assistant", "content": out.text if not out.tool_calls else (out.text or None)}
            if out.tool_calls:
                msg["tool_calls"] = [{"id": c.id or f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                                      "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                                     for c in out.tool_calls]
            finish = "tool_calls" if out.tool_calls else (out.finish_reason or "stop")
            choices.append({"index": i, "message": msg, "finish_reason": finish, "logprobs": None})
            usage["prompt_tokens"] = out.usage.prompt_tokens
            usage["completion_tokens"] += out.usage.completion_tokens
        return {"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion", "created": int(time.time()),
                "model": self.model, "choices": choices,
                "usage": usage | {"total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}}

    async def stream(self, body: dict[str, Any], *, timeout_s: float) -> AsyncIterator[dict[str, Any]]:
        """The whole answer is generated, then sent as chunks (the local backend does not stream)."""
        from tunegate.gateway.sse import completion_to_chunks

        done = await self.complete(body, timeout_s=timeout_s)
        for chunk in completion_to_chunks(done, include_usage=True):
            yield chunk

    async def aclose(self) -> None:
        if self._loop is None:
            await self._backend.aclose()
            return
        try:
            await self._loop.run(self._backend.aclose())
        finally:
            await self._loop.stop()


class _LoopThread:
    """An event loop of its own on a daemon thread, for a plugin backend whose ``generate`` may block.

    Cancelling the awaiting side (the route's timeout) cancels the task on this loop too
    (``run_coroutine_threadsafe`` futures forward cancellation).
    """

    def __init__(self, name: str) -> None:
        import asyncio
        import threading

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    async def run(self, coro: Any) -> Any:
        import asyncio

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def stop(self) -> None:
        import asyncio

        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 10)
        if not self._thread.is_alive():
            self._loop.close()


def _stops(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    return [stop] if isinstance(stop, str) else [str(s) for s in stop]


def _local_message(m: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI message as tunegate's ``Message`` (content parts joined, tool-call arguments parsed)."""
    content = m.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    out: dict[str, Any] = {"role": m["role"], "content": content}
    if m.get("name"):
        out["name"] = m["name"]
    if m.get("tool_call_id"):
        out["tool_call_id"] = m["tool_call_id"]
    if m.get("tool_calls"):
        calls = []
        for c in m["tool_calls"]:
            fn = c.get("function") or {}
            args = fn.get("arguments") or "{}"
            calls.append({"id": c.get("id"), "name": fn.get("name", ""),
                          "arguments": json.loads(args) if isinstance(args, str) else args})
        out["tool_calls"] = calls
    return out


def make_upstream(arm: str, candidate: CandidateSpec, pool: HTTP1Pool) -> Upstream:
    """The upstream for one arm's candidate.

    ``openai`` goes over the gateway's HTTP pool; ``local`` and every plugin kind are built through
    the backend registry (an unknown kind is the candidate file's ``backend`` error), plugins on a
    loop of their own.
    """
    if candidate.backend == "openai":
        return HTTPUpstream(arm, candidate, pool)
    return LocalUpstream(arm, candidate, own_loop=candidate.backend != "local")
