"""Does mirroring slow the primary path? And how fast is online scoring?

1. Mirroring overhead: `tunegate serve` (uvicorn + uvloop, its own process) in front of a stub
   upstream with a fixed 20 ms latency (another process). An open-loop generator (requests sent at
   fixed times, latency measured from the *scheduled* send time, so queueing is not hidden) runs at
   ``--rps`` for ``--seconds``, once with mirroring off (no release file) and once with 100% of the
   traffic mirrored to a shadow arm and both answers scored with ``json_validation`` in the scoring
   process. Reported: primary p50/p99 latency of each run and the p99 ratio (on / off), same machine,
   same run. The issue's goal: the ratio stays below 1.05.
2. Online scoring throughput (pairs/s, one scoring process, batched as the gateway batches): the deterministic suite
   (json_validation, tool_selection, token_f1) and a model-based suite (answer_relevancy: the
   bundled MiniLM embeddings; pii: presidio + spaCy), on synthetic pairs.

Run: ``python bench/mirror_overhead.py [--rps 200 --seconds 20]``; results in
bench/results/mirror_overhead.json. The machine's load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = {"type": "object", "required": ["answer"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import httpx

    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("gateway did not start")


async def _load(url: str, rps: float, seconds: float) -> tuple[list[float], int]:
    """Open loop: a dispatcher starts request i at t0 + i/rps whatever the earlier ones are doing."""
    import httpx

    n = int(rps * seconds)
    lat: list[float] = []
    errors = 0
    body = {"model": "support", "messages": [{"role": "user", "content": "hello"}]}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200,
                                                                max_keepalive_connections=200)) as client:
        async def one(i: int, at: float) -> None:
            nonlocal errors
            try:
                r = await client.post(url + "/v1/chat/completions", json=body, headers={"x-tunegate-user": f"u{i}"})
                if r.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            lat.append((time.perf_counter() - at) * 1000)

        tasks = []
        t0 = time.perf_counter()
        for i in range(n):
            at = t0 + i / rps
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, at)))
        await asyncio.gather(*tasks)
    return lat, errors


def run_gateway(tmp: Path, upstream: str, mirror: bool, rps: float, seconds: float, *,
                shadow_upstream: str | None = None) -> dict[str, Any]:
    for arm, url in (("base", upstream), ("shadow", shadow_upstream or upstream)):
        (tmp / f"{arm}.yaml").write_text(yaml.safe_dump({"name": arm, "backend": "openai", "model": "m",
                                                         "base_url": url, "params": {"max_tokens": 16}}))
    (tmp / "gateway.yaml").write_text(yaml.safe_dump({"version": 1, "routes": [{
        "name": "support", "baseline": "base", "schema": SCHEMA, "retries": 0,
        "arms": {"base": {"candidate": "base.yaml"}, "shadow": {"candidate": "shadow.yaml"}}}]}))
    (tmp / "policy.yaml").write_text("steps: [100]\nrollback_when: {fail_rate: {max_increase: 0.0}}\n")
    (tmp / "release.yaml").write_text(yaml.safe_dump({"routes": [{
        "route": "support", "arm": "shadow", "policy": "policy.yaml", "evaluators": ["json_validation"],
        "mirror": {"share": 1.0, "queue": 5000, "concurrency": 8}, "score_live": False}]}))
    port = _free_port()
    cmd = [sys.executable, "-m", "tunegate.cli.main", "--db", str(tmp / f"db-{mirror}.sqlite"), "serve",
           "--config", str(tmp / "gateway.yaml"), "--port", str(port)]
    if mirror:
        cmd += ["--release", str(tmp / "release.yaml")]
    log = (tmp / f"gateway-{mirror}.log").open("wb")   # a file, never a pipe nobody reads
    proc = subprocess.Popen([sys.executable, "-c", "from tunegate.cli.main import entry; entry()", *cmd[3:]],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url, proc)
        print(f"  gateway up (mirror={mirror}), warming up", flush=True)
        asyncio.run(_load(url, rps, 2.0))            # warm-up (connections, scorer spawn)
        time.sleep(3.0)
        lat, errors = asyncio.run(_load(url, rps, seconds))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    a = np.asarray(lat)
    return {"mirror": mirror, "requests": len(lat), "errors": errors, "p50_ms": float(np.quantile(a, 0.5)),
            "p99_ms": float(np.quantile(a, 0.99)), "load": os.getloadavg()[0]}


def scoring_throughput(suite: list[str], n: int) -> dict[str, Any]:
    from tunegate.gateway.online import example_row, output_of
    from tunegate.gateway.scoring import OnlineScorer

    scorer = OnlineScorer(suite, workers=1)
    try:
        scorer.warm(timeout_s=600)
        ex = example_row("r", {"messages": [{"role": "user", "content": "What are your opening hours on Monday?"}]},
                         "faq", SCHEMA) | {"expected": "9 to 5", "tools": None}
        ex = {k: v for k, v in ex.items() if v is not None}
        outs = [output_of('{"answer": "We open 9 to 5 on Monday, mail help@example.com"}'),
                output_of("Monday: 9am-5pm.")]

        async def go() -> float:
            # All at once, as a busy gateway submits them: the scorer batches them (64 per call).
            t = time.perf_counter()
            await asyncio.gather(*(scorer.score(ex, outs) for _ in range(n)))
            return time.perf_counter() - t

        wall = asyncio.run(go())
    finally:
        scorer.close()
    return {"suite": suite, "pairs": n, "pairs_per_s": n / wall, "load": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rps", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--skip-model-suite", action="store_true")
    ap.add_argument("--scoring-only", action="store_true", help="only the online scoring throughput part")
    ap.add_argument("--out", default="bench/results/mirror_overhead.json")
    args = ap.parse_args()
    out: dict[str, Any] = {"rps": args.rps, "seconds": args.seconds, "upstream_latency_ms": 20}
    if not args.scoring_only:
        out |= mirroring(args.rps, args.seconds)
    suites = [["json_validation", "tool_selection", "token_f1"]]
    if not args.skip_model_suite:
        suites.append(["answer_relevancy", "pii"])
    out["scoring"] = []
    for s in suites:
        r = scoring_throughput(s, args.pairs if s[0] == "json_validation" else max(20, args.pairs // 10))
        out["scoring"].append(r)
        print(f"  online scoring {'+'.join(s)}: {r['pairs_per_s']:.2f} pairs/s (one process, load {r['load']:.1f})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _start_stub(delay_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    """The uvloop stub of bench/gateway.py (a stdlib threaded server saturates near 200 RPS and would
    measure itself), answering valid JSON for the route's schema."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "gateway.py"), "_stub", "--port", str(port),
                             "--delay-ms", str(delay_ms), "--content", '{"answer": "ok"}'], cwd=ROOT)
    deadline = time.time() + 30
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}/v1"
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("stub did not start")


def mirroring(rps: float, seconds: float) -> dict[str, Any]:
    # Primary and shadow have their own upstream processes, as in production (a shadow is another
    # deployment); both answer after 20 ms.
    base_proc, base_url = _start_stub(20.0)
    shadow_proc, shadow_url = _start_stub(20.0)
    try:
        with tempfile.TemporaryDirectory() as d:
            off = run_gateway(Path(d), base_url, False, rps, seconds, shadow_upstream=shadow_url)
            on = run_gateway(Path(d), base_url, True, rps, seconds, shadow_upstream=shadow_url)
    finally:
        base_proc.terminate()
        shadow_proc.terminate()
    print(f"open loop {rps:g} RPS x {seconds:g} s, stub 20 ms:")
    for r in (off, on):
        print(f"  mirroring {'100%' if r['mirror'] else 'off '}: p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  "
              f"errors {r['errors']}/{r['requests']}  (load {r['load']:.1f})")
    ratio = on["p99_ms"] / off["p99_ms"]
    print(f"  primary p99 ratio on/off: {ratio:.3f}")
    return {"mirror_off": off, "mirror_on": on, "p99_ratio_on_off": ratio}

if __name__ == "__main__":
    raise SystemExit(main())
