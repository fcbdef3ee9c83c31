"""Gateway test harness: a real uvicorn server on 127.0.0.1 (ephemeral port) in a background thread,
stub upstreams from ``tests.support.openai_server``, and helpers to write gateway.yaml files."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from tests.support.openai_server import OpenAIServer
from tests.support.polling import poll
from tunegate.gateway.service import Gateway


class GatewayServer:
    """``create_app`` under uvicorn on a free port; ``.gateway`` is the running Gateway."""

    def __init__(self, config: Path, db: Path | None, **kw: Any) -> None:
        import uvicorn

        from tunegate.gateway.app import create_app

        self.app = create_app(config, db=db, use_store=db is not None, **kw)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> GatewayServer:
        self.thread.start()
        if not poll(lambda: self.server.started or not self.thread.is_alive(), tries=1000, step_s=0.02) \
                or not self.server.started:
            raise RuntimeError("gateway did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    @property
    def gateway(self) -> Gateway:
        gw = self.app.state.gateway
        assert isinstance(gw, Gateway)
        return gw

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (reload, refresh, drain) and wait for it."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)


def write_candidate(path: Path, name: str, base_url: str, model: str = "test-model", **extra: Any) -> Path:
    data: dict[str, Any] = {"name": name, "backend": "openai", "model": model, "base_url": base_url,
                            "params": {"temperature": 0, "max_tokens": 64}} | extra
    path.write_text(yaml.safe_dump(data))
    return path


def write_gateway(tmp: Path, routes: list[dict[str, Any]], **top: Any) -> Path:
    p = tmp / "gateway.yaml"
    p.write_text(yaml.safe_dump({"version": 1, "routes": routes, "reload_s": 0.2, "log_flush_s": 0.05} | top,
                                sort_keys=False))
    return p


@pytest.fixture
def stubs() -> Iterator[tuple[OpenAIServer, OpenAIServer]]:
    """Two stub upstreams: (base, tuned) — each answers ``<name>: <user text>``."""
    from tests.support.openai_server import Echo

    with OpenAIServer(default=Echo("base: {user}")) as a, OpenAIServer(default=Echo("tuned: {user}")) as b:
        yield a, b


@pytest.fixture
def two_arm_config(tmp_path: Path, stubs: tuple[OpenAIServer, OpenAIServer]) -> Path:
    base, tuned = stubs
    write_candidate(tmp_path / "base.yaml", "base", base.base_url)
    write_candidate(tmp_path / "tuned.yaml", "tuned", tuned.base_url,
                    prompt={"system": "You are the tuned support agent."})
    return write_gateway(tmp_path, [{
        "name": "support", "baseline": "base",
        "arms": {"base": {"candidate": "base.yaml"}, "tuned": {"candidate": "tuned.yaml"}},
        "fallback": ["base"], "retries": 0, "timeout_s": 2,
    }])


def rule(name: str, status: str, *, cohort: str = "*", rule_kind: str = "improve", evaluator: str = "exact") -> dict[str, Any]:
    """A verdict rule as ``RuleResult.model_dump`` writes it."""
    return {"name": name, "rule": rule_kind, "evaluator": evaluator, "cohort": cohort, "status": status,
            "evidence": f"{name} is {status}", "measure": "delta", "estimate": 0.1, "ci_low": 0.05, "ci_high": 0.2,
            "threshold": 0.0, "margin": None, "p_fail": 0.5, "p_adjusted": 0.5, "n": 100, "rows_needed": None}


def stored_verdict(store: Any, out: Path, *, baseline_hash: str, candidate_hash: str, decision: str,
                   rules: list[dict[str, Any]], dataset_hash: str = "ds-golden",
                   evaluators: tuple[str, ...] = ("exact",), record: bool = True) -> Path:
    """Two runs and the verdict `tunegate gate` would record for them; writes verdict.json to ``out``."""
    import json

    evs = [{"name": n, "version": "1", "config": {}} for n in evaluators]
    runs = [store.create_run(identity=f"id-{h}", dataset_hash=dataset_hash, candidate_hash=h, selection={},
                             evaluators=evs, n_rows=100, meta={}) for h in (baseline_hash, candidate_hash)]
    side = [{"run_id": r, "candidate_hash": h, "candidate_name": None, "rows": 100, "model_calls": 100,
             "cache_hits": 0} for r, h in zip(runs, (baseline_hash, candidate_hash), strict=True)]
    verdict = {"decision": decision, "exit_code": {"PROMOTE": 0, "BLOCK": 1, "INCONCLUSIVE": 3}[decision],
               "reasons": [f"{decision} by the test policy"], "rules": rules,
               "policy": {"name": "p", "version": "1", "hash": "pol-1", "source": None, "alpha": 0.05,
                          "correction": "holm"},
               "dataset_hash": dataset_hash, "baseline": side[0], "candidate": side[1],
               "tunegate_version": "0.1.0", "created_at": "2026-12-07T00:00:00+00:00"}
    if record:
        store.put_verdict(runs[0], runs[1], "pol-1", decision, json.dumps(verdict))
    out.write_text(json.dumps(verdict, indent=2))
    return out


def promote_tuned(tmp_path: Path, cfg: Path, db: Path, percent: float, route: str = "support") -> None:
    """Give the route's ``tuned`` arm ``percent``% through a stored PROMOTE verdict, as `rollout promote` does."""
    from tunegate.gateway.config import load_gateway_config
    from tunegate.gateway.release import promote
    from tunegate.store.sqlite import Store

    c, specs = load_gateway_config(cfg)
    hashes = {r: {a: s.hash for a, s in arms.items()} for r, arms in specs.items()}
    c = c.model_copy(update={"candidate_hashes": hashes})
    with Store(db) as store:
        v = stored_verdict(store, tmp_path / "verdict.json", baseline_hash=hashes[route]["base"],
                           candidate_hash=hashes[route]["tuned"], decision="PROMOTE",
                           rules=[rule("headline", "pass")])
        promote(store, c, hashes, route, "tuned", v, percent, "alice", "canary")
