"""A request body over ``MAX_BODY_BYTES`` is a documented 413 with an OpenAI-style error, refused
while streaming in (declared or chunked), never buffered whole; a body under the limit is served."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import GatewayServer, write_candidate, write_gateway
from tests.support.openai_server import Echo, OpenAIServer
from tunegate.gateway import app as gateway_app


def test_oversized_bodies_are_413(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_app, "MAX_BODY_BYTES", 2000)
    with OpenAIServer(default=Echo("ok")) as up:
        write_candidate(tmp_path / "base.yaml", "base", up.base_url)
        cfg = write_gateway(tmp_path, [{"name": "support", "baseline": "base",
                                        "arms": {"base": {"candidate": "base.yaml"}}}])
        with GatewayServer(cfg, tmp_path / "db.sqlite") as srv:
            small = {"model": "support", "messages": [{"role": "user", "content": "hi"}]}
            big = {"model": "support", "messages": [{"role": "user", "content": "x" * 5000}]}
            ok = httpx.post(srv.base_url + "/chat/completions", json=small, timeout=10)
            declared = httpx.post(srv.base_url + "/chat/completions", json=big, timeout=10)
            chunked = httpx.post(srv.base_url + "/chat/completions", timeout=10,
                                 content=iter([b'{"model": "support", "messages": [', b" " * 3000, b"]}"]),
                                 headers={"content-type": "application/json"})
            feedback = httpx.post(srv.base_url + "/feedback", json={"request_id": "r" * 3000}, timeout=10)
    assert ok.status_code == 200
    for r in (declared, chunked, feedback):
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "body_too_large"
    assert "413" in gateway_app.openapi_document()["paths"]["/v1/chat/completions"]["post"]["responses"]
