"""Bounded online-scoring backlog: drops are counted in /metrics, and a mirrored gateway with a
backlog exits promptly on SIGTERM (it used not to exit within 30 s)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.gateway.conftest import GatewayServer
from tests.gateway.test_release_controller import GOOD, ask, policy, setup_route, start, wait
from tests.support.openai_server import OpenAIServer, Reply
from tunegate.gateway.controller import RouteRelease

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.slow


def metric(text: str, name: str) -> float:
    """Sum of a Prometheus metric's samples in an exposition text (0 when absent)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def test_full_scoring_backlog_drops_and_counts_in_metrics(tmp_path: Path) -> None:
    with OpenAIServer(default=GOOD) as base, OpenAIServer(default=GOOD) as tuned:
        cfg, db = setup_route(tmp_path, base, tuned, 0)
        with GatewayServer(cfg, db) as srv:
            rr = RouteRelease("support", "tuned", policy(), evaluators=["json_validation"], mirror_share=0.0,
                              score_live=True, max_pending_scores=3)
            ctl = start(srv, [rr])
            route = ctl.route("support")
            assert route.scorer is not None
            route.scorer.interval_s = 3600.0   # no batch leaves before it is full (64): the backlog only grows
            scorer, scored0 = route.scorer, route.scorer.scored
            client = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0)
            peak = 0
            for i in range(20):
                ask(client, i, "faq")
                peak = max(peak, route.pending)
            # every answer is waiting, dropped, or (if the feeder was mid-wait on its old 100 ms
            # interval when the first ones came) already scored -- none is lost or counted twice
            assert wait(lambda: route.pending + route.dropped_scores + scorer.scored - scored0 == 20, 10)
            text = httpx.get(srv.base_url.removesuffix("/v1") + "/metrics").text
            pending, dropped, handled = route.pending, route.dropped_scores, scorer.scored - scored0
            srv.run(ctl.aclose())
        assert pending == 3 and peak <= 3   # bounded: never more than max_pending_scores waiting
        assert dropped == 20 - 3 - handled and dropped >= 14, (dropped, handled)
        assert metric(text, 'tunegate_gateway_scoring_dropped_total{kind="live",route="support"}') == dropped


def test_mirrored_gateway_with_a_backlog_exits_promptly_on_sigterm(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The shadow holds every call 60 s: mirror workers are stuck in flight and the queue fills up.
    with OpenAIServer(default=GOOD) as base, OpenAIServer(default=Reply('{"answer": "x"}', delay_s=60)) as tuned:
        cfg, db = setup_route(tmp_path, base, tuned, 0)
        (tmp_path / "policy.yaml").write_text("steps: [100]\nrollback_when: {fail_rate: {max_increase: 0.0}}\n")
        (tmp_path / "release.yaml").write_text(yaml.safe_dump({"routes": [{
            "route": "support", "arm": "tuned", "policy": "policy.yaml", "evaluators": ["json_validation"],
            "mirror": {"share": 1.0, "queue": 50, "concurrency": 4, "timeout_s": 120}, "score_live": True}]}))
        env = {**os.environ, "TUNEGATE_DB": str(db)}
        proc = subprocess.Popen([sys.executable, "-m", "tunegate.cli.main", "serve", "--config", str(cfg),
                                 "--release", str(tmp_path / "release.yaml"), "--port", str(port)],
                                env=env, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.2)
            client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
            for i in range(80):
                ask(client, i, "faq")
            assert wait(lambda: len(tuned.chat_requests) >= 4, 10)   # shadows are hanging in flight

            def mirror_dropped() -> float:
                return metric(httpx.get(url + "/metrics").text, 'tunegate_gateway_mirror_dropped_total{route="support"}')

            # 80 offered, at most 4 in flight + 50 queued: the rest are dropped and counted (a shadow is
            # queued after its primary has answered, so the last drops may land a moment later)
            assert wait(lambda: mirror_dropped() >= 80 - 4 - 50, 10), mirror_dropped()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(20)   # a hang, not a measurement: before the fix it did not exit in 30 s
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        # uvicorn shuts down gracefully, then re-raises the signal it captured (exit status -SIGTERM)
        assert code in (0, -signal.SIGTERM), proc.stderr.read() if proc.stderr else ""


def test_release_file_sets_the_scoring_bound_with_file_line_errors(tmp_path: Path) -> None:
    from tunegate.errors import UserError
    from tunegate.gateway.release_config import load_release_file

    (tmp_path / "policy.yaml").write_text("steps: [100]\nrollback_when: {fail_rate: {max_increase: 0.0}}\n")
    route = {"route": "support", "arm": "tuned", "policy": "policy.yaml", "evaluators": ["json_validation"]}
    p = tmp_path / "release.yaml"
    p.write_text(yaml.safe_dump({"routes": [route | {"max_pending_scores": 50}]}, sort_keys=False))
    assert load_release_file(p)[1][0].max_pending_scores == 50
    p.write_text(yaml.safe_dump({"routes": [route | {"max_pending_scores": 0}]}, sort_keys=False))
    with pytest.raises(UserError, match=r"release.yaml:\d+: routes\[0\].max_pending_scores: Input should be greater"):
        load_release_file(p)
    # a typo'd key names the keys allowed at that level (read off the model, however deep)
    p.write_text(yaml.safe_dump({"routes": [route | {"mirror": {"shar": 0.5}}]}, sort_keys=False))
    with pytest.raises(UserError, match=r"release.yaml:\d+: routes\[0\].mirror.shar: unknown key 'shar' "
                                        r"\(allowed: share, queue, concurrency, timeout_s\)"):
        load_release_file(p)
    p.write_text(yaml.safe_dump({"routes": [route], "tracing": {"span_stor": True}}, sort_keys=False))
    with pytest.raises(UserError, match=r"tracing.span_stor: unknown key 'span_stor' \(allowed: span_store,"):
        load_release_file(p)
