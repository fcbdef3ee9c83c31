"""Gateway overhead vs the LiteLLM proxy: open-loop constant-rate load against a 20 ms loopback stub.

Same machine, same stub, same route for both gateways (one upstream + one fallback). The load
generator is *open loop*: request i is sent at t0 + i/rate whatever happened to earlier requests, and
its latency is measured from that scheduled instant, so queueing inside a saturated gateway shows
up in the percentiles instead of silently lowering the offered rate (a closed loop hides it).

Added latency = gateway-path percentile − direct-path percentile (generator → stub), measured in
the same run at the same rate. Max sustainable RPS: the highest rate in the ladder with 0 errors,
achieved throughput ≥ 97% of offered and p99 < 20 ms + 100 ms. RSS of the gateway process (and its
children) after the load. Fault run: the primary upstream fails 20% of calls (a third each 500,
timeout, connection reset) at a steady rate for ``--fault-seconds``; the client must lose no request.

Pinning (2 cores): the gateway under test on core 1 (``taskset -c 1``); stub and load generator on
core 0. Every process is started by this script; LiteLLM runs from its own venv (``--litellm-venv``,
created on first use) because ``litellm[proxy]`` pins huggingface_hub and rich below what the
project's venv needs.

    python bench/gateway.py                      # tunegate (uvicorn) vs LiteLLM, 10 s per rate
    python bench/gateway.py --servers uvicorn,granian --no-litellm   # server choice (docs/decisions/0004)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
RESPONSE = json.dumps({
    "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "stub-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "stub answer"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}).encode()


# -- the stub upstream ---------------------------------------------------------------------------------

def run_stub(port: int, delay_ms: float, fault_rate: float, seed: int) -> None:
    """A minimal asyncio HTTP/1.1 server: every POST answers RESPONSE after ``delay_ms``."""
    import uvloop

    rng = random.Random(seed)
    ok = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(RESPONSE)
          + RESPONSE)
    err_body = b'{"error": {"message": "injected failure", "type": "server_error"}}'
    err = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % \
        len(err_body) + err_body
    models = b'{"object": "list", "data": [{"id": "stub-model", "object": "model"}]}'
    models_resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(models) \
        + models

    class Proto(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.t = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                i = self.buf.find(b"\r\n\r\n")
                if i < 0:
                    return
                head = self.buf[:i].lower()
                cl = 0
                j = head.find(b"content-length:")
                if j >= 0:
                    cl = int(head[j + 15:].split(b"\r\n", 1)[0])
                if len(self.buf) < i + 4 + cl:
                    return
                self.buf = self.buf[i + 4 + cl:]
                loop = asyncio.get_running_loop()
                if head.startswith(b"get"):
                    self.t.write(models_resp)
                    continue
                if fault_rate and rng.random() < fault_rate:
                    kind = rng.randrange(3)
                    if kind == 0:
                        loop.call_later(delay_ms / 1000, self._send, err)
                    elif kind == 1:
                        loop.call_later(5.0, self._send, ok)  # past the gateway's timeout
                    else:
                        loop.call_later(delay_ms / 1000, self.t.abort)
                    continue
                loop.call_later(delay_ms / 1000, self._send, ok)

        def _send(self, data: bytes) -> None:
            if not self.t.is_closing():
                self.t.write(data)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Proto, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


# -- the open-loop load generator --------------------------------------------------------------------

async def _load(port: int, path: str, body: bytes, rate: float, seconds: float, timeout: float) -> dict[str, Any]:
    """Open loop on raw keep-alive sockets (bench/openloop.py, shared with bench/mirror_overhead.py)."""
    from openloop import open_loop, post_request

    req = post_request(path, body, {"Authorization": "Bearer sk-bench"})
    return {"rate": rate, **await open_loop(port, req, rate, seconds, timeout)}


def run_load(port: int, path: str, model: str, rate: float, seconds: float, timeout: float) -> dict[str, Any]:
    """One load step in a subprocess pinned to core 0 (so the generator never shares the gateway's core)."""
    args = [PY, __file__, "_load", "--port", str(port), "--path", path, "--model", model, "--rate", str(rate),
            "--seconds", str(seconds), "--timeout", str(timeout)]
    out = subprocess.run(_pin(0) + args, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


# -- processes ------------------------------------------------------------------------------------------

def _pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str, seconds: float = 90) -> None:
    import httpx

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing answered on port {port}{path}")


def rss_mb(pid: int) -> float:
    """RSS of a process and its children (MB)."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pids += [int(p) for p in out]
    except FileNotFoundError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def start(cmd: list[str], core: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(_pin(core) + cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop(p: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)


def tunegate_config(tmp: Path, primary: int, secondary: int) -> tuple[Path, Path]:
    """gateway.yaml with a baseline arm on ``primary`` and a released fallback arm on ``secondary``."""
    import yaml

    sys.path.insert(0, str(ROOT / "src"))
    from tunegate.gateway.config import load_gateway_config
    from tunegate.store.release import record_share
    from tunegate.store.sqlite import Store

    for name, port in (("primary", primary), ("secondary", secondary)):
        (tmp / f"{name}.yaml").write_text(yaml.safe_dump({
            "name": name, "backend": "openai", "model": "stub-model", "base_url": f"http://127.0.0.1:{port}/v1",
            "params": {"temperature": 0, "max_tokens": 16}}))
    cfg = tmp / "gateway.yaml"
    from tunegate.gateway.auth import hash_key

    cfg.write_text(yaml.safe_dump({"version": 1, "auth": {"keys": [{"name": "bench", "sha256": hash_key("sk-bench")}]},
                                   "routes": [{
        "name": "bench", "baseline": "primary", "fallback": ["secondary"], "retries": 0, "timeout_s": 1.0,
        "arms": {"primary": {"candidate": "primary.yaml"}, "secondary": {"candidate": "secondary.yaml"}}}]}))
    db = tmp / "gw.db"
    _, specs = load_gateway_config(cfg)
    with Store(db) as store:  # the fallback must be a released candidate: grant it a 0% share
        record_share(store, route="bench", arm="secondary", percent=0, action="promote", actor="bench",
                     reason="bench fallback", candidate_hash=specs["bench"]["secondary"].hash,
                     verdict_hash="sha256:bench", evidence={})
    return cfg, db


def start_tunegate(server: str, cfg: Path, db: Path, port: int) -> subprocess.Popen[bytes]:
    env = {"TUNEGATE_GATEWAY_CONFIG": str(cfg), "TUNEGATE_DB": str(db), "PYTHONPATH": str(ROOT / "src")}
    if server == "granian":
        cmd = [str(Path(PY).parent / "granian"), "--interface", "asgi", "--factory", "--host", "127.0.0.1",
               "--port", str(port), "--loop", "uvloop", "--log-level", "warning", "--no-ws",
               "tunegate.gateway.app:app_from_env"]
    else:
        cmd = [PY, "-m", "uvicorn", "--factory", "tunegate.gateway.app:app_from_env", "--host", "127.0.0.1",
               "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
               "--no-access-log"]
    return start(cmd, 1, env)


def litellm_python(venv: Path) -> Path:
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "litellm[proxy]"], check=True)
    return py


def start_litellm(venv: Path, tmp: Path, primary: int, secondary: int, port: int) -> subprocess.Popen[bytes]:
    import yaml

    py = litellm_python(venv)
    conf = tmp / "litellm.yaml"
    conf.write_text(yaml.safe_dump({
        "model_list": [
            {"model_name": "bench", "litellm_params": {"model": "openai/stub-model", "api_base":
                                                       f"http://127.0.0.1:{primary}/v1", "api_key": "x",
                                                       "timeout": 1.0}},
            {"model_name": "bench-fallback", "litellm_params": {"model": "openai/stub-model", "api_base":
                                                                f"http://127.0.0.1:{secondary}/v1",
                                                                "api_key": "x", "timeout": 1.0}}],
        "router_settings": {"fallbacks": [{"bench": ["bench-fallback"]}], "num_retries": 0},
        "general_settings": {"master_key": "sk-bench"},
        "litellm_settings": {"telemetry": False, "drop_params": True, "num_retries": 0,
                             "request_timeout": 1.0, "set_verbose": False}}))
    env = {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "NO_DOCS": "True", "DISABLE_SCHEMA_UPDATE": "true"}
    return start([str(py), "-m", "litellm.proxy.proxy_cli", "--config", str(conf), "--host", "127.0.0.1",
                  "--port", str(port), "--num_workers", "1"], 1, env)


# -- the benchmark -------------------------------------------------------------------------------------

def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (load-independent cost measure)."""
    from openloop import children, cpu_seconds

    return cpu_seconds([pid, *children(pid)])


def ladder(port: int, path: str, model: str, direct: dict[float, dict[str, Any]], rates: list[float],
           seconds: float, stub_port: int, pid: int) -> list[dict[str, Any]]:
    out = []
    for rate in rates:
        if rate not in direct:
            direct[rate] = run_load(stub_port, "/v1/chat/completions", "stub-model", rate, seconds, 5)
        c0 = cpu_s(pid)
        res = run_load(port, path, model, rate, seconds, 5)
        res["cpu_ms_per_request"] = round((cpu_s(pid) - c0) * 1000 / max(1, res["ok"] + sum(res["errors"].values())), 3)
        d = direct[rate]
        res["added_p50_ms"] = round(res["p50_ms"] - d["p50_ms"], 3) if res["p50_ms"] and d["p50_ms"] else None
        res["added_p99_ms"] = round(res["p99_ms"] - d["p99_ms"], 3) if res["p99_ms"] and d["p99_ms"] else None
        res["sustained"] = (not res["errors"] and res["achieved_rps"] >= 0.97 * rate
                            and (res["p99_ms"] or 1e9) < d["p99_ms"] + 100)
        print(f"  {rate:>6g} rps: p50 {res['p50_ms']} ms (+{res['added_p50_ms']}), p99 {res['p99_ms']} ms "
              f"(+{res['added_p99_ms']}), achieved {res['achieved_rps']}, errors {res['errors'] or 0}, "
              f"gateway CPU {res['cpu_ms_per_request']} ms/request", flush=True)
        out.append(res)
        if not res["sustained"] and rate > 500:
            break
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="Duration of each load step.")
    ap.add_argument("--rates", default="100,500,1000,1500,2000,3000,4000")
    ap.add_argument("--servers", default="uvicorn", help="tunegate under uvicorn and/or granian.")
    ap.add_argument("--no-litellm", action="store_true")
    ap.add_argument("--litellm-rates", default="100,250,500,750,1000")
    ap.add_argument("--fault-seconds", type=float, default=120.0, help="0 skips the fault run.")
    ap.add_argument("--fault-rate", type=float, default=200.0)
    ap.add_argument("--litellm-venv", default=str(Path(tempfile.gettempdir()) / "tunegate-bench-litellm"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gateway.json"))
    a = ap.parse_args()
    rates = [float(r) for r in a.rates.split(",")]
    load = os.getloadavg()
    print(f"# gateway bench · load {load[0]:.2f} {load[1]:.2f} · gateway on core 1, stub + generator on core 0")
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {"load_before": load, "seconds_per_step": a.seconds, "pinning": {
        "gateway": "taskset -c 1", "stub": "taskset -c 0", "generator": "taskset -c 0"}, "runs": {}}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        try:
            ports = {k: free_port() for k in ("stub", "stub2", "faulty")}
            for name, fault in (("stub", 0.0), ("stub2", 0.0)):
                procs.append(start([PY, __file__, "_stub", "--port", str(ports[name]), "--fault", str(fault)], 0))
            for name in ("stub", "stub2"):
                wait_http(ports[name], "/v1/models")
            cfg, db = tunegate_config(tmp, ports["stub"], ports["stub2"])
            direct: dict[float, dict[str, Any]] = {}
            for server in a.servers.split(","):
                port = free_port()
                p = start_tunegate(server, cfg, db, port)
                try:
                    wait_http(port, "/healthz")
                    print(f"tunegate ({server}):", flush=True)
                    steps = ladder(port, "/v1/chat/completions", "bench", direct, rates, a.seconds, ports["stub"], p.pid)
                    result["runs"][f"tunegate-{server}"] = {"steps": steps, "rss_mb": rss_mb(p.pid)}
                finally:
                    stop(p)
            if not a.no_litellm:
                port = free_port()
                p = start_litellm(Path(a.litellm_venv), tmp, ports["stub"], ports["stub2"], port)
                try:
                    wait_http(port, "/health/liveliness", 180)
                    print("litellm proxy:", flush=True)
                    steps = ladder(port, "/v1/chat/completions", "bench", direct,
                                   [float(r) for r in a.litellm_rates.split(",")], a.seconds, ports["stub"], p.pid)
                    result["runs"]["litellm"] = {"steps": steps, "rss_mb": rss_mb(p.pid)}
                finally:
                    stop(p)
            result["direct"] = list(direct.values())
            if a.fault_seconds > 0:
                procs.append(start([PY, __file__, "_stub", "--port", str(ports["faulty"]), "--fault", "0.2"], 0))
                wait_http(ports["faulty"], "/v1/models")
                (tmp / "faults").mkdir()
                fcfg, fdb = tunegate_config(tmp / "faults", ports["faulty"], ports["stub2"])
                port = free_port()
                p = start_tunegate(a.servers.split(",")[0], fcfg, fdb, port)
                try:
                    wait_http(port, "/healthz")
                    res = run_load(port, "/v1/chat/completions", "bench", a.fault_rate, a.fault_seconds, 10)
                    print(f"faults (20% of primary calls: 500 / timeout / reset) at {a.fault_rate:g} rps for "
                          f"{a.fault_seconds:g}s: sent {res['sent']}, ok {res['ok']}, errors {res['errors'] or 0}, "
                          f"p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms", flush=True)
                    result["faults"] = res
                finally:
                    stop(p)
        finally:
            for p in procs:
                stop(p)
    summarize(result)
    result["load_after"] = os.getloadavg()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"results: {a.out}")
    return 0


def summarize(result: dict[str, Any]) -> None:
    def at(run: str, rate: float) -> dict[str, Any] | None:
        steps = result["runs"].get(run, {}).get("steps", [])
        return next((s for s in steps if s["rate"] == rate), None)

    def max_rps(run: str) -> float:
        return max((s["rate"] for s in result["runs"].get(run, {}).get("steps", []) if s["sustained"]), default=0.0)

    summary: dict[str, Any] = {}
    for run in result["runs"]:
        steps = result["runs"][run]["steps"]
        summary[run] = {"max_sustained_rps": max_rps(run), "rss_mb": result["runs"][run]["rss_mb"],
                        "cpu_ms_per_request@100": (at(run, 100.0) or {}).get("cpu_ms_per_request"),
                        "cpu_ms_per_request_min": min((x["cpu_ms_per_request"] for x in steps), default=None),
                        **{f"added_p{q}_ms@{int(r)}": (at(run, r) or {}).get(f"added_p{q}_ms")
                           for r in (100.0, 500.0) for q in (50, 99)}}
    ours = next((r for r in summary if r.startswith("tunegate")), None)
    if ours and "litellm" in summary:
        lt, us = summary["litellm"], summary[ours]
        summary["ratios"] = {
            k: (round(lt[k] / us[k], 1) if isinstance(lt[k], int | float) and isinstance(us[k], int | float)
                and us[k] and us[k] > 0 else None)
            for k in ("added_p50_ms@100", "added_p99_ms@100", "added_p50_ms@500", "added_p99_ms@500",
                      "cpu_ms_per_request@100", "cpu_ms_per_request_min")}
        summary["ratios"]["max_sustained_rps"] = round(us["max_sustained_rps"] / lt["max_sustained_rps"], 1) \
            if lt["max_sustained_rps"] else None
        summary["ratios"]["rss"] = round(lt["rss_mb"] / us["rss_mb"], 1) if us["rss_mb"] else None
    result["summary"] = summary
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_stub":
        p = argparse.ArgumentParser()
        p.add_argument("_stub")
        p.add_argument("--port", type=int)
        p.add_argument("--delay-ms", type=float, default=20.0)
        p.add_argument("--fault", type=float, default=0.0)
        p.add_argument("--content", default=None, help="assistant text of every answer (default 'stub answer')")
        x = p.parse_args()
        if x.content is not None:
            RESPONSE = json.dumps({
                "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "stub-model",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": x.content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}).encode()
        run_stub(x.port, x.delay_ms, x.fault, 0)
    elif len(sys.argv) > 1 and sys.argv[1] == "_load":
        p = argparse.ArgumentParser()
        p.add_argument("_load")
        for k in ("--port", "--rate", "--seconds", "--timeout"):
            p.add_argument(k, type=float)
        p.add_argument("--path")
        p.add_argument("--model")
        x = p.parse_args()
        body = json.dumps({"model": x.model, "messages": [{"role": "user", "content": "ping"}]}).encode()
        import uvloop

        print(json.dumps(uvloop.run(_load(int(x.port), x.path, body, x.rate, x.seconds, x.timeout))))
    else:
        sys.exit(main())
