"""schemathesis against the gateway's own OpenAPI document: generated requests never cause a 5xx that
is not an upstream's (502/504 with ``type: upstream_error``); refusals are documented status codes with
an OpenAI-style error body; successes are completions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from tests.gateway.conftest import GatewayServer, write_candidate, write_gateway  # noqa: E402
from tests.support.openai_server import Echo, OpenAIServer  # noqa: E402
from tunegate.gateway.openapi import openapi_document  # noqa: E402

pytestmark = pytest.mark.slow
schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    with OpenAIServer(default=Echo("ok: {user}")) as up:
        write_candidate(tmp / "base.yaml", "base", up.base_url)
        cfg = write_gateway(tmp, [{"name": "support", "baseline": "base", "arms": {"base": {"candidate": "base.yaml"}},
                                   "timeout_s": 2}])
        with GatewayServer(cfg, tmp / "db.sqlite") as srv:
            yield srv


def _json(response) -> dict:  # type: ignore[no-untyped-def, type-arg]
    try:
        return dict(json.loads(response.content))
    except ValueError:
        raise AssertionError(f"{response.status_code}: not JSON: {response.content[:200]!r}") from None


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_that_is_not_an_upstream_error(case, gateway: GatewayServer) -> None:  # type: ignore[no-untyped-def]
    root = gateway.base_url.removesuffix("/v1")
    response = case.call(base_url=root)
    where = case.as_curl_command()
    if response.status_code >= 500:
        err = _json(response)["error"]
        assert response.status_code in (502, 504) and err["type"] == "upstream_error", where
    elif response.status_code >= 400:  # a clear OpenAI-style error naming the problem
        err = _json(response)["error"]
        assert err["message"] and err["type"], where
        documented = case.operation.definition.raw["responses"]
        assert str(response.status_code) in documented or response.status_code == 405, where
    elif case.path == "/v1/chat/completions" and b"data:" not in response.content[:6]:
        body = _json(response)
        assert body["object"] == "chat.completion" and body["choices"], where
