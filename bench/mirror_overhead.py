"""Does mirroring slow the primary path? And how fast is online scoring?

1. Mirroring overhead: `tunegate serve` (uvicorn + uvloop, its own process, pinned to core 1 with
   its scoring worker) in front of two stub upstreams (primary, shadow) with a fixed 20 ms latency.
   an open-loop raw-socket generator (its own process, pinned to core 0 with the stubs; requests sent at fixed
   times, latency measured from the *scheduled* send time, so queueing is not hidden) runs at
   ``--rps`` for ``--seconds``, once with mirroring off (no release file) and once with 100% of the
   traffic mirrored to the shadow arm and both answers scored with ``json_validation`` — ``--repeat``
   such pairs. Reported per run: primary p50/p99, the p99 ratio (on / off), CPU ms per request of the
   gateway process and of its scoring worker (load-independent), pairs stored, drops (mirror queue,
   scoring backlog) and the seconds SIGTERM took. The issue's goal: the ratio stays below 1.05.
2. Online scoring throughput (pairs/s, one scoring process, batched as the gateway batches): the
   deterministic suite (json_validation, tool_selection, token_f1) and a model-based suite
   (answer_relevancy: the bundled MiniLM embeddings; pii: presidio + spaCy), on synthetic pairs.

Run: ``python bench/mirror_overhead.py [--rps 200 --seconds 20 --repeat 3]``; results in
bench/results/mirror_overhead.json. The machine's load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def _pin(core: int | None) -> list[str]:
    if core is None or not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(core)]


def _load(port: int, rps: float, seconds: float, core: int | None) -> dict[str, Any]:
    """Run the open-loop generator (:func:`_generate`) in its own process, pinned to ``core``."""
    args = [sys.executable, __file__, "_load", str(port), str(rps), str(seconds)]
    out = subprocess.run(_pin(core) + args, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


async def _generate(port: int, rps: float, seconds: float, timeout: float = 30.0) -> dict[str, Any]:
    """Open loop on raw keep-alive sockets (bench/openloop.py, shared with bench/gateway.py)."""
    from openloop import open_loop, post_request

    body = json.dumps({"model": "support", "messages": [{"role": "user", "content": "ping"}]}).encode()
    return await open_loop(port, post_request("/v1/chat/completions", body), rps, seconds, timeout)


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def run_gateway(tmp: Path, upstream: str, mirror: bool, rps: float, seconds: float, *,
                shadow_upstream: str | None = None, gw_core: int | None = 1, gen_core: int | None = 0,
                scorer_core: int | None = 0, scorer_workers: int = 1) -> dict[str, Any]:
    from openloop import children, cpu_seconds

    for arm, url in (("base", upstream), ("shadow", shadow_upstream or upstream)):
        (tmp / f"{arm}.yaml").write_text(yaml.safe_dump({"name": arm, "backend": "openai", "model": "m",
                                                         "base_url": url, "params": {"max_tokens": 16}}))
    (tmp / "gateway.yaml").write_text(yaml.safe_dump({"version": 1, "routes": [{
        "name": "support", "baseline": "base", "schema": SCHEMA, "retries": 0,
        "arms": {"base": {"candidate": "base.yaml"}, "shadow": {"candidate": "shadow.yaml"}}}]}))
    (tmp / "policy.yaml").write_text("steps: [100]\nrollback_when: {fail_rate: {max_increase: 0.0}}\n")
    (tmp / "release.yaml").write_text(yaml.safe_dump({"routes": [{
        "route": "support", "arm": "shadow", "policy": "policy.yaml", "evaluators": ["json_validation"],
        "mirror": {"share": 1.0, "queue": 5000, "concurrency": 8}, "score_live": False}],
        "scorer_workers": scorer_workers}))
    port = _free_port()
    db = tmp / f"db-{mirror}-{time.time_ns()}.sqlite"
    cmd = ["--db", str(db), "serve", "--config", str(tmp / "gateway.yaml"), "--port", str(port)]
    if mirror:
        cmd += ["--release", str(tmp / "release.yaml")]
    log = (tmp / f"gateway-{mirror}.log").open("wb")   # a file, never a pipe nobody reads
    proc = subprocess.Popen([*_pin(gw_core), sys.executable, "-c", "from tunegate.cli.main import entry; entry()",
                             *cmd], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url, proc)
        print(f"  gateway up (mirror={mirror}), warming up", flush=True)
        _load(port, rps, 2.0, gen_core)            # warm-up (connections, scorer spawn)
        time.sleep(3.0)
        load_before = os.getloadavg()[0]
        kids = children(proc.pid)   # the scoring worker (spawned at the first job)
        if gen_core is not None and scorer_core is not None:
            for k in kids:   # the gateway keeps core 1 to itself; the scorer goes with the generator
                os.sched_setaffinity(k, {scorer_core})
        gw0, sc0 = cpu_seconds([proc.pid]), cpu_seconds(kids)
        res = _load(port, rps, seconds, gen_core)
        time.sleep(1.0)   # the last pairs reach the store
        gw1, sc1 = cpu_seconds([proc.pid]), cpu_seconds(kids)
        import httpx

        metrics = httpx.get(url + "/metrics", timeout=10).text
    finally:
        proc.terminate()
        t = time.perf_counter()
        proc.wait(timeout=30)
        exit_s = time.perf_counter() - t
        log.close()
    pairs = 0
    if mirror:
        import sqlite3

        with sqlite3.connect(db) as con:
            pairs = con.execute("SELECT count(*) FROM online_pairs").fetchone()[0]
    n = max(1, res["ok"])
    return {"mirror": mirror, "requests": res["sent"], "ok": res["ok"], "errors": res["errors"],
            "achieved_rps": res["achieved_rps"], "p50_ms": res["p50_ms"], "p99_ms": res["p99_ms"],
            "max_ms": res["max_ms"], "generator_lag_p99_ms": res["generator_lag_p99_ms"],
            "gateway_cpu_ms_per_request": round((gw1 - gw0) * 1000 / n, 3),
            "scorer_cpu_ms_per_request": round((sc1 - sc0) * 1000 / n, 3),
            "pairs_stored": pairs, "mirror_dropped": _metric(metrics, "tunegate_gateway_mirror_dropped_total"),
            "scoring_dropped": _metric(metrics, "tunegate_gateway_scoring_dropped_total"),
            "sigterm_exit_s": round(exit_s, 2), "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2)}


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
    ap.add_argument("--repeat", type=int, default=1, help="pairs of runs (off, on)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to cores (taskset)")
    ap.add_argument("--scorer-workers", type=int, default=1)
    ap.add_argument("--scorer-core", type=int, default=0, choices=[0, 1],
                    help="core of the scoring worker when pinned (1: shares the gateway's core)")
    ap.add_argument("--out", default="bench/results/mirror_overhead.json")
    args = ap.parse_args()
    out: dict[str, Any] = {"rps": args.rps, "seconds": args.seconds, "upstream_latency_ms": 20,
                           "load_at_start": [round(x, 2) for x in os.getloadavg()]}
    if not args.scoring_only:
        out |= mirroring(args.rps, args.seconds, args.repeat, not args.no_pin, args.scorer_workers,
                         args.scorer_core)
    suites = [["json_validation", "tool_selection", "token_f1"]]
    if not args.skip_model_suite:
        suites.append(["answer_relevancy", "pii"])
    out["scoring"] = []
    for s in suites if args.pairs > 0 else []:   # --pairs 0: mirroring only
        r = scoring_throughput(s, args.pairs if s[0] == "json_validation" else max(20, args.pairs // 10))
        out["scoring"].append(r)
        print(f"  online scoring {'+'.join(s)}: {r['pairs_per_s']:.2f} pairs/s (one process, load {r['load']:.1f})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _start_stub(delay_ms: float, core: int | None, nice: int = 0) -> tuple[subprocess.Popen[bytes], str]:
    """The uvloop stub of bench/gateway.py (a stdlib threaded server saturates near 200 RPS and would
    measure itself), answering valid JSON for the route's schema. ``nice``: the shadow's stub stands
    for another deployment, so on this box it must not take the generator's CPU."""
    port = _free_port()
    proc = subprocess.Popen([*_pin(core), *(["nice", "-n", str(nice)] if nice else []), sys.executable, str(ROOT / "bench" / "gateway.py"), "_stub", "--port",
                             str(port), "--delay-ms", str(delay_ms), "--content", '{"answer": "ok"}'], cwd=ROOT)
    deadline = time.time() + 30
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}/v1"
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("stub did not start")


def mirroring(rps: float, seconds: float, repeat: int, pin: bool, scorer_workers: int,
              scorer_core: int | None) -> dict[str, Any]:
    """``repeat`` pairs of runs (off, then on), each pair on the same machine within a minute."""
    gw_core, gen_core = (1, 0) if pin else (None, None)
    # Primary and shadow have their own upstream processes, as in production (a shadow is another
    # deployment); both answer after 20 ms.
    base_proc, base_url = _start_stub(20.0, gen_core)
    shadow_proc, shadow_url = _start_stub(20.0, gen_core, nice=10)
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as d:
            for i in range(repeat):
                off = run_gateway(Path(d), base_url, False, rps, seconds, shadow_upstream=shadow_url,
                                  gw_core=gw_core, gen_core=gen_core, scorer_workers=scorer_workers)
                on = run_gateway(Path(d), base_url, True, rps, seconds, shadow_upstream=shadow_url,
                                 gw_core=gw_core, gen_core=gen_core, scorer_core=scorer_core,
                                 scorer_workers=scorer_workers)
                ratio = on["p99_ms"] / off["p99_ms"] if on["p99_ms"] and off["p99_ms"] else None
                runs.append({"mirror_off": off, "mirror_on": on, "p99_ratio_on_off": ratio})
                print(f"open loop {rps:g} RPS x {seconds:g} s, stub 20 ms, run {i + 1}/{repeat}:")
                for r in (off, on):
                    print(f"  mirroring {'100%' if r['mirror'] else 'off '}: p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms"
                          f"  ok {r['ok']}/{r['requests']}  gateway CPU {r['gateway_cpu_ms_per_request']} ms/req"
                          f"  scorer CPU {r['scorer_cpu_ms_per_request']} ms/req  pairs {r['pairs_stored']}"
                          f"  dropped {r['mirror_dropped']:g}+{r['scoring_dropped']:g}"
                          f"  (load {r['load_before']:.1f} -> {r['load_after']:.1f})", flush=True)
                print(f"  primary p99 ratio on/off: {ratio if ratio is None else round(ratio, 3)}", flush=True)
    finally:
        base_proc.terminate()
        shadow_proc.terminate()
    ratios: list[float] = sorted(r["p99_ratio_on_off"] for r in runs if r["p99_ratio_on_off"] is not None)
    where = "with the gateway" if scorer_core == 1 else f"on core {scorer_core}"
    return {"pinning": f"gateway taskset -c 1, stubs + generator -c 0, scorer {where}" if pin else "none",
            "scorer_workers": scorer_workers, "runs": runs,
            "p99_ratio_median": ratios[len(ratios) // 2] if ratios else None}


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "_load":
        import uvloop

        print(json.dumps(uvloop.run(_generate(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])))))
        raise SystemExit(0)
    raise SystemExit(main())
