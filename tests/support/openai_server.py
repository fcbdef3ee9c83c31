"""A real OpenAI-compatible HTTP server on 127.0.0.1 (ephemeral port, background thread) for tests.

Tests of the ``openai`` backend, the gateway and the run engine talk to it over real sockets, so
retries, timeouts, keep-alive and concurrency are exercised as in production — no mocked transport.

Usage::

    with OpenAIServer() as srv:                      # or the ``openai_server`` fixture
        backend = OpenAIBackend(srv.base_url, "test-model")
        srv.fail_first(2, status=429, retry_after=0.1)  # next 2 chat requests get 429
        srv.push(Reply(tool_calls=[("get_weather", {"city": "Paris"})]))  # then this one
        ...                                           # later requests: srv.default (Echo())
        assert srv.attempts == 4 and srv.bodies[-1]["seed"] == 0
        assert srv.max_in_flight <= 8

Each ``POST /v1/chat/completions`` takes the next behaviour from the queue (``push``/``fail_first``),
else ``default`` — a behaviour, or a function ``RecordedRequest -> behaviour`` for routing by model or
message. Behaviours: :class:`Echo` (deterministic text from the request), :class:`Reply` (fixed text
and/or tool calls), :class:`Fail` (error status, optional Retry-After), :class:`Raw` (any status and
body, e.g. malformed JSON) and :class:`Drop` (close the connection without answering). Every
behaviour has ``delay_s``. ``stream: true`` requests to Echo/Reply are answered as SSE chunks.
``GET /v1/models`` lists ``models``. Every request is recorded (``requests``, ``bodies``).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = [
    "Behaviour",
    "Drop",
    "Echo",
    "Fail",
    "OpenAIServer",
    "Raw",
    "RecordedRequest",
    "Reply",
    "openai_server",
]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  #: lower-cased names
    body: Any  #: decoded JSON, or None when absent or not JSON
    raw: bytes
    received_at: float

    @property
    def bearer(self) -> str | None:
        """The token of an ``Authorization: Bearer`` header, if any."""
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None


@dataclass(frozen=True)
class Echo:
    """Answer ``template`` formatted with fields of the request: ``user`` (last user message),
    ``system``, ``model``, ``seed``, ``temperature``, ``n_messages``. Deterministic by design."""

    template: str = "echo: {user}"
    finish_reason: str = "stop"
    delay_s: float = 0.0


@dataclass(frozen=True)
class Reply:
    """A fixed answer: ``text`` (None → JSON null content) and/or ``tool_calls`` as (name, arguments)
    pairs; a ``str`` argument is sent verbatim (use it for invalid JSON). ``finish_reason`` defaults to
    ``tool_calls`` when there are calls, else ``stop``; ``usage`` defaults to word counts."""

    text: str | None = ""
    tool_calls: Sequence[tuple[str, dict[str, Any] | str]] = ()
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    model: str | None = None
    delay_s: float = 0.0


@dataclass(frozen=True)
class Fail:
    """An error in OpenAI's shape ``{"error": {"message", "type", "code"}}``."""

    status: int = 500
    message: str = "simulated failure"
    retry_after: float | None = None  #: sent as the ``Retry-After`` header (seconds)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Raw:
    """Any status, body and headers (malformed JSON, odd shapes, HTML error pages...)."""

    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b"this is not json"
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Drop:
    """Close the connection without any response (the client sees a dropped connection)."""

    delay_s: float = 0.0


Behaviour = Echo | Reply | Fail | Raw | Drop
Responder = Callable[[RecordedRequest], Behaviour]


def _words(text: str | None) -> int:
    return len((text or "").split())


def _echo_text(b: Echo, body: dict[str, Any]) -> str:
    msgs = [m for m in body.get("messages") or [] if isinstance(m, dict)]

    def last(role: str) -> str:
        return next((str(m.get("content") or "") for m in reversed(msgs) if m.get("role") == role), "")

    return b.template.format(user=last("user"), system=last("system"), model=body.get("model"),
                             seed=body.get("seed"), temperature=body.get("temperature"), n_messages=len(msgs))


class OpenAIServer:
    """Scriptable OpenAI-compatible server; see the module docstring."""

    def __init__(self, *, models: Sequence[str] = ("test-model",), api_key: str | None = None,
                 default: Behaviour | Responder | None = None, strict_models: bool = False) -> None:
        self.models = list(models)
        self.api_key = api_key  #: when set, requests without this bearer token get 401
        self.strict_models = strict_models  #: when set, an unknown ``model`` gets 404 (like vLLM)
        self.default: Behaviour | Responder = default if default is not None else Echo()
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._ids = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -----------------------------------------------------------------------------------
    def start(self) -> OpenAIServer:
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"openai-test-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Root URL without ``/v1`` (``http://127.0.0.1:<port>``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL (``http://127.0.0.1:<port>/v1``)."""
        return self.url + "/v1"

    # scripting -----------------------------------------------------------------------------------
    def push(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next chat requests, one per request, in order."""
        with self._lock:
            self._queue.extend(behaviours)

    def fail_first(self, k: int, status: int = 429, retry_after: float | None = None,
                   message: str | None = None) -> None:
        """Queue ``k`` failures with ``status`` (and ``Retry-After`` when given)."""
        self.push(*[Fail(status, message or f"simulated {status}", retry_after) for _ in range(k)])

    def reset(self) -> None:
        """Forget recorded requests, queued behaviours and the in-flight maximum (keeps ``default``)."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._max_in_flight = self._in_flight

    # observations --------------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received (any path), in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == CHAT_PATH]

    @property
    def bodies(self) -> list[Any]:
        """JSON bodies of the chat-completions requests, in arrival order."""
        return [r.body for r in self.chat_requests]

    @property
    def attempts(self) -> int:
        """Number of chat-completions requests received (retries included)."""
        return len(self.chat_requests)

    @property
    def max_in_flight(self) -> int:
        """Most chat requests being handled at the same time since start/reset."""
        with self._lock:
            return self._max_in_flight

    # internals used by the handler ------------------------------------------------------------------
    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(req)

    def _next_behaviour(self, req: RecordedRequest) -> Behaviour:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return self.default(req) if callable(self.default) else self.default

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _next_id(self) -> str:
        with self._lock:
            self._ids += 1
            return f"chatcmpl-test-{self._ids}"

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _completion(self, b: Echo | Reply, body: dict[str, Any]) -> dict[str, Any]:
        """The non-streamed response object for Echo / Reply."""
        model = (b.model if isinstance(b, Reply) else None) or body.get("model") or self.models[0]
        message: dict[str, Any] = {"role": "assistant"}
        if isinstance(b, Echo):
            message["content"], finish, usage = _echo_text(b, body), b.finish_reason, None
        else:
            message["content"], usage = b.text, b.usage
            finish = b.finish_reason or ("tool_calls" if b.tool_calls else "stop")
            if b.tool_calls:
                message["tool_calls"] = [
                    {"id": f"call_{i}", "type": "function",
                     "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
                    for i, (name, args) in enumerate(b.tool_calls)]
        if usage is None:
            prompt = sum(_words(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict))
            usage = {"prompt_tokens": prompt, "completion_tokens": _words(message["content"])}
        usage = {**usage, "total_tokens": usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)}
        return {"id": self._next_id(), "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": usage}


def _stream_events(completion: dict[str, Any], include_usage: bool) -> Iterator[dict[str, Any]]:
    """SSE chunks equivalent to ``completion`` (content word by word, then tool calls, then finish)."""
    base = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    choice = completion["choices"][0]
    msg = choice["message"]
    yield base | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    for piece in (msg.get("content") or "").split(" ") if msg.get("content") else []:
        yield base | {"choices": [{"index": 0, "delta": {"content": piece + " "}, "finish_reason": None}]}
    for i, tc in enumerate(msg.get("tool_calls") or []):
        yield base | {"choices": [{"index": 0, "delta": {"tool_calls": [tc | {"index": i}]}, "finish_reason": None}]}
    yield base | {"choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]}
    if include_usage:
        yield base | {"choices": [], "usage": completion["usage"]}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: OpenAIServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers
    timeout = 30  # idle keep-alive connections do not pin threads forever
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        owner = self.server.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        req = RecordedRequest(self.command, path, {k.lower(): v for k, v in self.headers.items()}, body, raw,
                              time.time())
        owner._record(req)
        try:
            if owner.api_key is not None and req.bearer != owner.api_key:
                return self._error(401, "Incorrect API key provided.", "invalid_api_key")
            if self.command == "GET" and path == MODELS_PATH:
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "tunegate-test"} for m in owner.models]
                return self._json(200, {"object": "list", "data": data})
            if self.command == "POST" and path == CHAT_PATH:
                return self._chat(owner, req)
            return self._error(404, f"no route for {self.command} {path}", "not_found")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout); nothing to do
            self.close_connection = True

    def _chat(self, owner: OpenAIServer, req: RecordedRequest) -> None:
        owner._enter()
        try:
            body = req.body
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                return self._error(400, "request body must be a JSON object with 'messages'", "invalid_request_error")
            if owner.strict_models and body.get("model") not in owner.models:
                return self._error(404, f"The model `{body.get('model')}` does not exist.", "model_not_found")
            b = owner._next_behaviour(req)
            owner._sleep(b.delay_s)
            if isinstance(b, Drop):
                self.close_connection = True
                return None
            if isinstance(b, Fail):
                extra = {"Retry-After": f"{b.retry_after:g}"} if b.retry_after is not None else {}
                return self._error(b.status, b.message, "simulated", extra)
            if isinstance(b, Raw):
                data = b.body if isinstance(b.body, bytes) else (
                    b.body.encode() if isinstance(b.body, str) else json.dumps(b.body).encode())
                return self._send(b.status, data, b.content_type, b.headers)
            completion = owner._completion(b, body)
            if body.get("stream"):
                opts = body.get("stream_options") or {}
                return self._sse(_stream_events(completion, bool(opts.get("include_usage"))))
            return self._json(200, completion)
        finally:
            owner._leave()

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _error(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
        err = {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
               "param": None, "code": code}
        self._json(status, {"error": err}, headers)

    def _sse(self, events: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for payload in [*(f"data: {json.dumps(e)}\n\n" for e in events), "data: [DONE]\n\n"]:
            data = payload.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A started :class:`OpenAIServer` (echo by default), stopped after the test."""
    with OpenAIServer() as srv:
        yield srv
