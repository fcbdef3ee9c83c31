"""Prompt versions roll out like adapters; the cache never crosses candidates; the embedded model serves."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.gateway.conftest import GatewayServer, write_candidate, write_gateway
from tests.support.openai_server import Echo, OpenAIServer
from tunegate.core.prompt import PromptTemplate
from tunegate.gateway.cache import cache_key
from tunegate.gateway.config import load_gateway_config
from tunegate.gateway.release import load_rollout
from tunegate.gateway.service import resolve_specs
from tunegate.prompts import PromptRegistry
from tunegate.store.sqlite import Store

openai = pytest.importorskip("openai")
MSG = [{"role": "user", "content": "hello"}]


def test_cache_key_is_scoped_by_candidate_identity() -> None:
    body = {"model": "m", "messages": MSG, "temperature": 0}
    assert cache_key("cand-base", body) != cache_key("cand-tuned", body)
    assert cache_key("cand-base", body) == cache_key("cand-base", body | {"stream": True, "user": "u2"})
    assert cache_key("cand-base", body) != cache_key("cand-base", body | {"temperature": 0.7})


@pytest.mark.slow
def test_moving_a_prompt_label_is_a_new_candidate_that_needs_its_own_release(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    with Store(db) as store:
        reg = PromptRegistry(store)
        reg.commit("support-agent", PromptTemplate(system="Version one."), "v1", labels=["production"])
    with OpenAIServer(default=Echo("base: {system}")) as base, OpenAIServer(default=Echo("tuned: {system}")) as tuned:
        write_candidate(tmp_path / "base.yaml", "base", base.base_url)
        write_candidate(tmp_path / "tuned.yaml", "tuned", tuned.base_url, prompt="support-agent@production")
        cfg = write_gateway(tmp_path, [{"name": "support", "baseline": "base", "arms": {
            "base": {"candidate": "base.yaml"}, "tuned": {"candidate": "tuned.yaml"}}}])
        with Store(db) as store:  # release the v1 candidate directly (the verdict path is tested elsewhere)
            specs = resolve_specs(store, load_gateway_config(cfg)[1])
            h1 = specs["support"]["tuned"].hash
            from tunegate.store.release import record_share

            record_share(store, route="support", arm="tuned", percent=100, action="promote", actor="t", reason="r",
                         candidate_hash=h1, verdict_hash="sha256:v1", evidence={})
        with GatewayServer(cfg, db) as srv:
            c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
            assert c.chat.completions.create(model="support", messages=MSG).choices[0].message.content == \
                "tuned: Version one."
            assert tuned.bodies[-1]["messages"][0]["content"] == "Version one."
            with Store(db) as store:
                PromptRegistry(store).commit("support-agent", PromptTemplate(system="Version two."), "v2",
                                             labels=["production"])
            srv.run(srv.gateway.refresh())
            # the label now points at other text: another candidate hash, which no verdict released
            assert c.chat.completions.create(model="support", messages=MSG).choices[0].message.content == "base: "
            with Store(db) as store:  # the v1 share is kept (moving the label back restores it)
                assert load_rollout(store).share("support", "tuned", h1) == 100
            health = srv.gateway.snap.effective_shares()  # type: ignore[union-attr]
            assert health["support"] == {"tuned": 0.0, "base": 100.0}


@pytest.mark.slow
@pytest.mark.xdist_group("local_model")
def test_embedded_local_model_serves_through_the_gateway(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    (tmp_path / "local.yaml").write_text(yaml.safe_dump({
        "name": "local", "backend": "local", "model": "smollm2-135m-instruct",
        "prompt": {"system": "Answer in one short sentence."}, "params": {"temperature": 0, "max_tokens": 12},
        "options": {"threads": 1}}))
    cfg = write_gateway(tmp_path, [{"name": "local", "baseline": "smol", "timeout_s": 120,
                                    "arms": {"smol": {"candidate": "local.yaml"}}}])
    with GatewayServer(cfg, None) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0, timeout=180)
        r = c.chat.completions.create(model="local", messages=[{"role": "user", "content": "What is the capital of France?"}])
        assert "Paris" in (r.choices[0].message.content or "")
        assert r.usage is not None and r.usage.completion_tokens > 0
        chunks = list(c.chat.completions.create(model="local", messages=MSG, stream=True,
                                                stream_options={"include_usage": True}))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices).strip()
        assert chunks[-1].usage is not None
