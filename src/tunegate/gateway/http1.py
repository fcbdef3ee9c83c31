"""A small pooled HTTP/1.1 client for upstream calls (keep-alive, chunked, TLS), on asyncio streams.

Why not httpx here: on this machine an ``httpx.AsyncClient`` POST costs ~2 ms of CPU (anyio,
httpcore and h11 layers) against ~0.06 ms for the same exchange on raw asyncio streams, and the
upstream call is the whole of the gateway's own latency budget (docs/decisions/0004). The gateway
needs only one thing from a client — POST a JSON body, read a JSON or SSE answer — so this module
does exactly that: a per-origin pool of idle keep-alive connections; ``Content-Length``, chunked and
close-delimited bodies; ``https`` through :mod:`ssl` with certificate verification. A request sent on
a reused connection that the server had already closed (nothing read back) is sent once more on a
fresh connection, as browsers and urllib3 do. No proxies, no HTTP/2, no redirects (an upstream is
a fixed ``base_url``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["HTTP1Pool", "Origin", "Response"]

_LIMIT = 1 << 20


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Origin:
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = u.port or (443 if u.scheme == "https" else 80)
        return cls(u.scheme, u.hostname, port, (u.path or "/") + (f"?{u.query}" if u.query else ""))

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


@dataclass
class Response:
    status: int
    headers: dict[str, str]  #: lower-cased names (last value wins)
    body: bytes


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already broken
            self.writer.close()


class _Stale(Exception):
    """A reused connection gave nothing back: resend on a fresh one."""


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP/1.x response: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return int(parts[1]), headers


class HTTP1Pool:
    """Idle keep-alive connections per origin (see the module docstring)."""

    def __init__(self, max_idle_per_origin: int = 256) -> None:
        self.max_idle = max_idle_per_origin
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def _open(self, o: Origin) -> _Conn:
        ctx = None
        if o.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        r, w = await asyncio.open_connection(o.host, o.port, ssl=ctx, server_hostname=o.host if ctx else None,
                                             limit=_LIMIT)
        return _Conn(r, w)

    def _release(self, o: Origin, conn: _Conn, headers: dict[str, str]) -> None:
        idle = self._idle.setdefault(o.key, [])
        if headers.get("connection", "").lower() == "close" or len(idle) >= self.max_idle \
                or conn.writer.is_closing():
            conn.close()
        else:
            idle.append(conn)

    def _request_bytes(self, o: Origin, headers: dict[str, str], body: bytes) -> bytes:
        head = [f"POST {o.path} HTTP/1.1", f"Host: {o.host_header}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body

    async def _send(self, o: Origin, data: bytes) -> tuple[_Conn, int, dict[str, str]]:
        """Send and read the response head, resending once when a reused connection was stale."""
        for _ in range(2):
            idle = self._idle.get(o.key)
            reused = bool(idle)
            conn = idle.pop() if idle else await self._open(o)
            try:
                conn.writer.write(data)
                try:
                    head = await conn.reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as e:
                    if reused and not e.partial:
                        raise _Stale from None
                    raise ConnectionResetError("connection closed before a complete response head") from None
                except ConnectionResetError:
                    if reused:
                        raise _Stale from None
                    raise
                status, headers = _parse_head(head[:-4])
                return conn, status, headers
            except _Stale:
                conn.close()
                continue
            except BaseException:
                conn.close()
                raise
        raise ConnectionResetError("upstream closed two connections in a row")

    async def _body(self, conn: _Conn, headers: dict[str, str]) -> AsyncIterator[bytes]:
        r = conn.reader
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int((await r.readline()).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while (await r.readline()) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                data = await r.readexactly(size + 2)
                yield data[:-2]
        elif "content-length" in headers:
            n = int(headers["content-length"])
            if n:
                yield await r.readexactly(n)
        else:  # close-delimited
            headers["connection"] = "close"
            while chunk := await r.read(65536):
                yield chunk

    async def post(self, url: Origin, headers: dict[str, str], body: bytes) -> Response:
        """POST and read the whole answer (wrap in ``asyncio.timeout`` for a deadline)."""
        conn, status, resp_headers = await self._send(url, self._request_bytes(url, headers, body))
        try:
            parts = [p async for p in self._body(conn, resp_headers)]
        except BaseException:
            conn.close()
            raise
        self._release(url, conn, resp_headers)
        return Response(status, resp_headers, b"".join(parts))

    async def post_stream(self, url: Origin, headers: dict[str, str], body: bytes
                          ) -> tuple[int, dict[str, str], AsyncIterator[bytes]]:
        """POST; returns (status, headers, body lines). Iterate the lines to the end (the connection
        goes back to the pool then) or stop early (it is closed)."""
        conn, status, resp_headers = await self._send(url, self._request_bytes(url, headers, body))

        async def lines() -> AsyncIterator[bytes]:
            done = False
            try:
                buf = b""
                async for part in self._body(conn, resp_headers):
                    buf += part
                    while (i := buf.find(b"\n")) >= 0:
                        yield buf[:i].rstrip(b"\r")
                        buf = buf[i + 1:]
                if buf:
                    yield buf
                done = True
            finally:
                if done:
                    self._release(url, conn, resp_headers)
                else:
                    conn.close()

        return status, resp_headers, lines()

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()
