"""Open-loop HTTP load on raw keep-alive sockets and process CPU time, shared by bench/gateway.py and bench/mirror_overhead.py.

Why raw sockets: an httpx client used more CPU than the gateway it measured. Why open loop: request
i is due at t0 + i/rate whatever the earlier ones are doing, and its latency counts from that due
time, so queueing (in the server or in this generator) is never hidden. Timed with
``time.perf_counter`` (uvloop's ``loop.time()`` steps in milliseconds, coarser than 5% of a 35 ms p99).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["children", "cpu_seconds", "open_loop", "post_request"]


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (a gateway's scoring workers)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of processes: the load-independent cost measure of the gateway benches."""
    total = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def post_request(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """The raw bytes of one keep-alive ``POST`` with a JSON body."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def open_loop(port: int, req: bytes, rate: float, seconds: float, timeout: float = 30.0) -> dict[str, Any]:
    """Send ``req`` ``rate`` times a second for ``seconds``; latency percentiles of the 200s, errors by
    kind, keep-alive reconnects and the generator's own lag (how late it sent)."""
    pool: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    lat: list[float] = []
    lag: list[float] = []
    errors: dict[str, int] = {}
    stale = [0]
    clock = time.perf_counter

    async def one(at: float) -> None:
        lag.append(clock() - at)
        conn = pool.pop() if pool else None
        try:
            async with asyncio.timeout(timeout):
                head = b""
                for _ in range(2):  # a keep-alive connection the server closed while idle: reconnect once
                    reused = conn is not None
                    if conn is None:
                        conn = await asyncio.open_connection("127.0.0.1", port)
                    r, w = conn
                    w.write(req)
                    try:
                        head = await r.readuntil(b"\r\n\r\n")
                        break
                    except (asyncio.IncompleteReadError, ConnectionResetError) as e:
                        if not reused or (isinstance(e, asyncio.IncompleteReadError) and e.partial):
                            raise
                        w.close()
                        conn = None
                        stale[0] += 1
                status = int(head.split(b" ", 2)[1])
                low = head.lower()
                j = low.find(b"content-length:")
                if j >= 0:
                    await r.readexactly(int(low[j + 15:].split(b"\r\n", 1)[0]))
                else:  # chunked (streaming is not used here) or close-delimited
                    await r.read()
                    conn = None
            if status == 200:
                lat.append(clock() - at)
            else:
                errors[f"http_{status}"] = errors.get(f"http_{status}", 0) + 1
            if conn is not None:
                pool.append(conn)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            if conn is not None:
                conn[1].close()

    n = int(rate * seconds)
    t0 = clock() + 0.05
    tasks = []
    for i in range(n):
        at = t0 + i / rate
        delay = at - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(at)))
    await asyncio.gather(*tasks)
    elapsed = clock() - t0
    for _, w in pool:
        w.close()
    lat.sort()
    lag.sort()

    def pct(xs: list[float], p: float) -> float | None:
        return round(xs[min(len(xs) - 1, int(p * len(xs)))] * 1000, 3) if xs else None

    return {"sent": n, "ok": len(lat), "errors": errors, "stale_reconnects": stale[0],
            "achieved_rps": round(len(lat) / elapsed, 1), "p50_ms": pct(lat, 0.5), "p90_ms": pct(lat, 0.9),
            "p99_ms": pct(lat, 0.99), "max_ms": pct(lat, 1.0), "generator_lag_p99_ms": pct(lag, 0.99)}
