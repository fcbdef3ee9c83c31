"""Backend for any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, llama.cpp server).

Rules a user can rely on:

* **base_url.** Endpoints are joined to ``base_url`` as given (``{base_url}/chat/completions``,
  ``{base_url}/models``), because servers mount the API under different prefixes (``/v1``,
  ``/api/v1``, ``/openai/v1``). Only a URL with *no path at all* (``http://host:8000``) gets
  ``/v1`` appended, since every server named above serves there. Trailing slashes are dropped, so
  ``http://h:8000``, ``http://h:8000/`` and ``http://h:8000/v1/`` are the same backend (same
  ``identity()``). A query string is refused: endpoints could not be joined to it.
* **adapter.** When given, the request's ``model`` field is the adapter name; that is how vLLM
  serves ``--lora-modules name=path``. ``identity()`` records both model and adapter.
* **Retries.** 408, 409, 429, 5xx, timeouts and dropped/refused connections are retried up to
  ``max_retries`` times with exponential backoff (``backoff_s * 2**attempt``, equal jitter, capped
  at ``max_backoff_s``). A ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms`` header
  replaces the computed delay, also capped. Other 4xx fail at once with the server's message.
  A request that still fails is *returned* as ``BackendError(retryable=True)``, never raised.
* **Timeouts.** ``timeout_s`` bounds each attempt end to end (connect + wait + body), not only the
  gap between bytes, so a server that drips tokens cannot hold a slot forever.
* **Concurrency.** At most ``concurrency`` HTTP requests are in flight per backend, across all
  concurrent ``generate`` calls (one semaphore, one reused ``httpx.AsyncClient``). Backoff sleeps
  happen outside the semaphore so one throttled request does not idle a slot.
* **Tool-call arguments** arrive as a JSON string. Valid JSON objects become ``ToolCall.arguments``.
  An empty string means ``{}``. Anything else — invalid JSON, or JSON that is not an object — is
  kept verbatim as ``{"_raw": "<string>"}`` (:data:`RAW_ARGUMENTS_KEY`): the call stays visible
  (its name is evidence), the model's text is not altered, and the call can never match an
  expected call by accident (an evaluator sees an unexpected ``_raw`` argument). When such a call
  is sent back in a conversation, the raw string is replayed unchanged.
* **latency_s** is the duration of the successful HTTP attempt (excluding queueing and backoff),
  because that is what compares candidates; retries are infrastructure noise.
* **Malformed responses** (not JSON, no ``choices``, no message) are non-retryable
  ``BackendError``\\ s that say what was wrong and quote the start of the body.
* **API key** is sent only as ``Authorization: Bearer``; it is never logged nor shown in ``repr``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from tunegate.backends.base import GenerationRequest, GenerationResult
from tunegate.core.example import RAW_ARGUMENTS_KEY, Message, ToolCall
from tunegate.core.result import ModelOutput, Usage
from tunegate.errors import BackendError, UserError

__all__ = [
    "RAW_ARGUMENTS_KEY",
    "OpenAIBackend",
    "normalise_base_url",
    "parse_completion",
    "retry_after_s",
    "to_openai_messages",
    "to_openai_tools",
]

#: Key under which unparseable tool-call arguments are kept verbatim.

_log = logging.getLogger(__name__)
_RETRYABLE_STATUS = frozenset({408, 409, 429})


def normalise_base_url(url: str) -> str:
    """Canonical base URL (see the module docstring for the rule)."""
    text = url.strip().rstrip("/")
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as e:
        raise UserError(f"invalid base_url {url!r}: {e}", field="base_url") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UserError(f"base_url must be an http(s) URL with a host, got {url!r}", field="base_url")
    if parsed.query:
        raise UserError(f"base_url must not have a query string, got {url!r}", field="base_url")
    return text + "/v1" if parsed.path in ("", "/") else text


def to_openai_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Wrap bare function specs as ``{"type": "function", "function": spec}``; keep wrapped ones."""
    out: list[dict[str, Any]] = []
    for t in tools:
        if isinstance(t.get("function"), Mapping):
            out.append({**t, "type": t.get("type", "function")})
        elif "type" in t and "name" not in t:
            out.append(dict(t))  # another tool type the server may know; passed through
        else:
            out.append({"type": "function", "function": dict(t)})
    return out


def _arguments_json(call: ToolCall) -> str:
    args = call.arguments
    raw = args.get(RAW_ARGUMENTS_KEY)
    if len(args) == 1 and isinstance(raw, str):
        return raw
    return json.dumps(args, ensure_ascii=False)


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Chat messages in OpenAI wire format.

    OpenAI requires ids linking an assistant's calls to the ``tool`` messages answering them. A
    call's own ``id`` is used when it has one; otherwise ids are taken from the following tool
    messages' ``tool_call_id`` (in order) where present, else synthesised as ``call_<msg>_<k>``;
    tool messages without an id get the next unanswered id of the preceding assistant turn.
    """
    out: list[dict[str, Any]] = []
    pending: deque[str] = deque()
    for i, m in enumerate(messages):
        d: dict[str, Any] = {"role": m.role}
        if m.role == "assistant" and m.tool_calls:
            answers: list[str | None] = []
            for nxt in messages[i + 1:]:
                if nxt.role != "tool":
                    break
                answers.append(nxt.tool_call_id)
            ids = [tc.id or (answers[k] if k < len(answers) else None) or f"call_{i}_{k}"
                   for k, tc in enumerate(m.tool_calls)]
            d["content"] = m.content
            d["tool_calls"] = [
                {"id": cid, "type": "function", "function": {"name": tc.name, "arguments": _arguments_json(tc)}}
                for cid, tc in zip(ids, m.tool_calls, strict=True)
            ]
            pending = deque(ids)
        else:
            d["content"] = m.content if m.content is not None else ""
            if m.role == "tool":
                if m.tool_call_id is not None:
                    if m.tool_call_id in pending:
                        pending.remove(m.tool_call_id)
                    d["tool_call_id"] = m.tool_call_id
                elif pending:
                    d["tool_call_id"] = pending.popleft()
            else:
                pending.clear()
        if m.name:
            d["name"] = m.name
        out.append(d)
    return out


def _malformed(what: str, body: Any) -> BackendError:
    snippet = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, default=str)
    if len(snippet) > 300:
        snippet = snippet[:300] + "…"
    return BackendError(f"malformed chat-completions response: {what}; body starts: {snippet!r}")


def _parse_arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw  # some servers (Ollama's native shape) already send an object
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if not isinstance(raw, str):
        return {RAW_ARGUMENTS_KEY: json.dumps(raw, ensure_ascii=False)}
    try:
        value = json.loads(raw)
    except ValueError:
        return {RAW_ARGUMENTS_KEY: raw}
    return value if isinstance(value, dict) else {RAW_ARGUMENTS_KEY: raw}


def _function_call(fn: Any, data: Any, call_id: Any = None) -> ToolCall:
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise _malformed("a tool call has no function name", data)
    cid = call_id if isinstance(call_id, str) and call_id else None
    return ToolCall(name=fn["name"], arguments=_parse_arguments(fn.get("arguments")), id=cid)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _error_message(data: Any) -> str | None:
    """The server's error text in OpenAI, vLLM (``{"message"}``) or Ollama (``{"error": str}``) shape."""
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, str):
        return err
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    if data.get("object") == "error" and data.get("message"):
        return str(data["message"])
    return None


def parse_completion(data: Any, *, latency_s: float = 0.0, model: str | None = None) -> ModelOutput:
    """One ``ModelOutput`` from a decoded chat-completions response (first choice)."""
    if not isinstance(data, dict):
        raise _malformed("expected a JSON object", data)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        msg = _error_message(data)
        if msg is not None:
            raise BackendError(f"server returned an error: {msg}")
        raise _malformed("no choices", data)
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise _malformed("the first choice has no message", data)
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise _malformed("tool_calls is not a list", data)
    calls = [_function_call(tc.get("function"), data, tc.get("id")) if isinstance(tc, dict)
             else _function_call(None, data) for tc in raw_calls]
    if not calls and isinstance(message.get("function_call"), dict):  # legacy single-call shape
        calls = [_function_call(message["function_call"], data)]
    usage: dict[str, Any] = data["usage"] if isinstance(data.get("usage"), dict) else {}
    reported = data.get("model")
    return ModelOutput(
        text=_content_text(message.get("content")),
        tool_calls=calls,
        finish_reason=choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None,
        usage=Usage(prompt_tokens=_count(usage.get("prompt_tokens")),
                    completion_tokens=_count(usage.get("completion_tokens"))),
        latency_s=latency_s,
        model=reported if isinstance(reported, str) and reported else model,
    )


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Server-requested wait in seconds from ``retry-after-ms`` or ``Retry-After`` (delta-seconds or
    an HTTP date), if any. ``headers``: ``httpx.Headers`` or a dict with lower-case names (the
    gateway's HTTP/1.1 pool); the one parser for the backend's retries and the gateway's fallback."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAIBackend:
    """Chat completions over HTTP with bounded concurrency and retries (see the module docstring)."""

    kind = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        adapter: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 60,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
        extra_headers: Mapping[str, str] | None = None,
        *,
        max_backoff_s: float = 30.0,
    ) -> None:
        if concurrency < 1:
            raise UserError(f"concurrency must be >= 1, got {concurrency}", field="concurrency")
        if timeout_s <= 0:
            raise UserError(f"timeout_s must be > 0, got {timeout_s}", field="timeout_s")
        if max_retries < 0:
            raise UserError(f"max_retries must be >= 0, got {max_retries}", field="max_retries")
        self.base_url = normalise_base_url(base_url)
        self.model = model
        self.adapter = adapter
        self.concurrency = concurrency
        self.max_batch = concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self._transport = transport
        self._headers = {"Accept": "application/json", "User-Agent": "tunegate", **(extra_headers or {})}
        self._api_key = (api_key or "").strip()  # a key read from a file often ends with a newline
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._rng = random.Random()
        self._client: httpx.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:  # no headers: they hold the API key
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, adapter={self.adapter!r})"

    def identity(self) -> dict[str, Any]:
        """Kind, normalised URL, model and adapter name (never the key: it does not change outputs)."""
        return {"kind": self.kind, "base_url": self.base_url, "model": self.model, "adapter": self.adapter}

    @property
    def served_model(self) -> str:
        """The ``model`` field sent to the server: the adapter name when one is set."""
        return self.adapter or self.model

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body of ``POST /chat/completions`` for one request."""
        p = request.params
        body: dict[str, Any] = {
            "model": self.served_model,
            "messages": to_openai_messages(request.messages),
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
            "seed": request.seed,
        }
        if p.stop:
            body["stop"] = list(p.stop)
        if request.tools:
            body["tools"] = to_openai_tools(request.tools)
        return body

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Outputs in request order; a failed request yields its ``BackendError`` (never raised)."""
        if not requests:
            return []
        return list(await asyncio.gather(*(self._generate_one(r) for r in requests)))

    async def _generate_one(self, request: GenerationRequest) -> GenerationResult:
        try:
            data, latency = await self._call("POST", "/chat/completions", self.request_body(request))
            return parse_completion(data, latency_s=latency, model=self.served_model)
        except BackendError as e:
            return e

    async def list_models(self) -> list[dict[str, Any]]:
        """``GET /models``: the server's model entries (each has an ``id``; vLLM adds ``root``/``parent``
        for LoRA modules, so entries are returned whole). Raises ``BackendError`` on failure."""
        data, _ = await self._call("GET", "/models", None)
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise _malformed("GET /models has no 'data' list", data)
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]

    async def aclose(self) -> None:
        """Close the HTTP client; call it before the event loop ends. A later call makes a new client."""
        client, self._client, self._sem, self._loop = self._client, None, None, None
        if client is not None:
            await client.aclose()

    def _resources(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        # A client and a semaphore belong to the event loop they first ran on; a second
        # asyncio.run() (the CLI runs several) gets fresh ones instead of "attached to a different loop".
        loop = asyncio.get_running_loop()
        if self._client is None or self._sem is None or self._loop is not loop:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                headers=self._headers,
                timeout=httpx.Timeout(self.timeout_s),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=self.concurrency),
            )
            self._sem = asyncio.Semaphore(self.concurrency)
            self._loop = loop
        return self._client, self._sem

    def _backoff(self, attempt: int, server_wait: float | None) -> float:
        if server_wait is not None:
            return min(server_wait, self.max_backoff_s)
        delay: float = min(self.max_backoff_s, self.backoff_s * 2.0**attempt)
        return delay * self._rng.uniform(0.5, 1.0)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[Any, float]:
        """One logical call with retries: (decoded JSON, latency of the successful attempt)."""
        client, sem = self._resources()
        url = self.base_url + path
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            server_wait: float | None = None
            async with sem:
                t0 = time.perf_counter()
                try:
                    async with asyncio.timeout(self.timeout_s):
                        resp = await client.request(method, url, json=body)
                except (TimeoutError, httpx.TimeoutException):
                    err = BackendError(f"{method} {url} timed out after {self.timeout_s:g}s", retryable=True)
                except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as e:
                    raise BackendError(f"{method} {url} cannot be sent: {self._redact(e)}") from None
                except httpx.HTTPError as e:  # refused, reset, dropped connections
                    err = BackendError(f"{method} {url} failed: {type(e).__name__}: {self._redact(e)}",
                                       retryable=True)
                else:
                    latency = time.perf_counter() - t0
                    if 200 <= resp.status_code < 300:
                        try:
                            return resp.json(), latency
                        except ValueError:
                            raise _malformed("body is not JSON", resp.text) from None
                    err = self._status_error(method, url, resp)
                    server_wait = retry_after_s(resp.headers) if err.retryable else None
            if not err.retryable:
                raise err
            if attempt + 1 == attempts:
                if attempts > 1:
                    err = BackendError(f"{err} (gave up after {attempts} attempts)", retryable=True,
                                       status_code=err.status_code)
                raise err
            delay = self._backoff(attempt, server_wait)
            _log.debug("retrying %s %s in %.3fs after attempt %d: %s", method, url, delay, attempt + 1, err)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _redact(self, exc: Exception) -> str:
        """Exception text without the API key (h11 quotes offending header values verbatim)."""
        text = str(exc)
        if self._api_key:
            for form in (self._api_key, repr(self._api_key)[1:-1]):
                text = text.replace(form, "***")
        return re.sub(r"(?i)bearer\s+[^'\"]*", "Bearer ***", text)

    @staticmethod
    def _status_error(method: str, url: str, resp: httpx.Response) -> BackendError:
        status = resp.status_code
        try:
            message = _error_message(resp.json())
        except ValueError:
            message = None
        if message is None:
            message = resp.text.strip()[:300] or resp.reason_phrase
        retryable = status in _RETRYABLE_STATUS or status >= 500
        return BackendError(f"{method} {url} → HTTP {status}: {message}", retryable=retryable, status_code=status)
