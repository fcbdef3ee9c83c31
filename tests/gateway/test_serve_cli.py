"""``tunegate serve`` as a user runs it: a real process, uvicorn with uvloop + httptools."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import write_candidate, write_gateway
from tests.support.openai_server import Echo, OpenAIServer
from tests.support.polling import poll
from tunegate.gateway.auth import hash_key


def test_hash_key_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tunegate.cli.main import main

    monkeypatch.setattr(sys, "stdin", io.StringIO("sk-secret\n"))
    assert main(["serve", "--hash-key"]) == 0
    assert capsys.readouterr().out.strip() == hash_key("sk-secret")


@pytest.mark.slow
def test_tunegate_serve_process_answers_and_stops_cleanly(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with OpenAIServer(default=Echo("up: {user}")) as up:
        write_candidate(tmp_path / "base.yaml", "base", up.base_url)
        cfg = write_gateway(tmp_path, [{"name": "support", "baseline": "base", "arms": {"base": {"candidate": "base.yaml"}}}])
        env = {**os.environ, "TUNEGATE_DB": str(tmp_path / "db.sqlite")}
        proc = subprocess.Popen([sys.executable, "-m", "tunegate.cli.main", "serve", "--config", str(cfg), "--port",
                                 str(port)], env=env, stderr=subprocess.PIPE, text=True)
        try:
            def up_or_exited() -> bool:
                if proc.poll() is not None:
                    return True
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            assert poll(up_or_exited, tries=300, step_s=0.2) and proc.poll() is None, \
                proc.stderr.read() if proc.stderr else ""
            r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                           json={"model": "support", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "up: hi"
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(20) == 0
