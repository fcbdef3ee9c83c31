"""Upstreams of candidates no route serves any more are retired, then closed after a grace period:
an edited candidate or promoted prompt version makes a new upstream, and a local one holds a model."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import GatewayServer, poll, write_candidate, write_gateway
from tests.support.openai_server import Echo, OpenAIServer

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.slow

MSG = [{"role": "user", "content": "where is my order?"}]


def test_a_replaced_candidate_is_closed_only_after_its_grace(tmp_path: Path) -> None:
    with OpenAIServer(default=Echo("base: {user}")) as base:
        cand = write_candidate(tmp_path / "base.yaml", "base", base.base_url)
        cfg = write_gateway(tmp_path, [{"name": "support", "baseline": "base",
                                        "arms": {"base": {"candidate": "base.yaml"}}}])
        with GatewayServer(cfg, None) as srv:
            gw = srv.gateway
            client = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0)
            (old,) = gw._upstreams.values()
            closed: list[Any] = []
            real_close = old.aclose

            async def spy() -> None:
                closed.append(old)
                await real_close()

            old.aclose = spy  # type: ignore[method-assign]
            # a slow request is in flight on the old upstream while the candidate changes
            base.push(Echo("slow: {user}", delay_s=1.0))
            result: dict[str, Any] = {}
            t = threading.Thread(target=lambda: result.update(r=client.chat.completions.create(model="support",
                                                                                                messages=MSG)))
            t.start()
            assert poll(lambda: len(base.chat_requests) == 1, tries=200)
            write_candidate(cand, "base", base.base_url, prompt={"system": "Be brief."})   # a new hash
            srv.run(gw.reload_config())
            (new,) = gw._upstreams.values()
            assert new is not old and [u for *_, u in gw._retired] == [old]
            assert srv.run(gw.close_retired()) == 0 and not closed      # default grace: still open
            t.join(10)
            assert result["r"].choices[0].message.content == "slow: where is my order?"
            write_candidate(cand, "base", base.base_url, prompt={"system": "Be briefer."})
            srv.run(gw.reload_config())
            assert len(gw._retired) == 2 and srv.run(gw.close_retired()) == 0
            gw.retire_grace_s = 0.0     # grace over: the reload loop (or this call) closes both
            srv.run(gw.close_retired())
            assert poll(lambda: gw._retired == [], tries=200) and closed == [old]
            assert client.chat.completions.create(model="support", messages=MSG).choices[0].message.content \
                == "base: where is my order?"
