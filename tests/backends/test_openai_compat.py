"""The ``openai`` backend against a real loopback server (tests/support/openai_server.py).

Backoff values are tiny so retry tests stay fast; the server records every body it received, so
the tests assert on what went over the wire, not on internal calls.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import warnings
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from tests.support.openai_server import Drop, Echo, Fail, OpenAIServer, Raw, RecordedRequest, Reply
from tunegate.backends.base import Backend, GenerationRequest
from tunegate.backends.openai_compat import (
    RAW_ARGUMENTS_KEY,
    OpenAIBackend,
    normalise_base_url,
    parse_completion,
    retry_after_s,
    to_openai_messages,
    to_openai_tools,
)
from tunegate.core.candidate import DecodingParams
from tunegate.core.example import Message, ToolCall
from tunegate.core.result import ModelOutput
from tunegate.errors import BackendError, UserError

T = TypeVar("T")

WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def req(text: str = "hello", *, tools: tuple[dict[str, Any], ...] | None = None, sample_index: int = 0,
        **params: Any) -> GenerationRequest:
    return GenerationRequest(messages=(Message(role="user", content=text),), params=DecodingParams(**params),
                             tools=tools, sample_index=sample_index)


def make(srv: OpenAIServer, **kw: Any) -> OpenAIBackend:
    kw.setdefault("backoff_s", 0.001)
    return OpenAIBackend(kw.pop("base_url", srv.base_url), kw.pop("model", "test-model"), **kw)


async def gen(backend: OpenAIBackend, *requests: GenerationRequest) -> list[ModelOutput | BackendError]:
    try:
        return await backend.generate(list(requests))
    finally:
        await backend.aclose()


def one(backend: OpenAIBackend, request: GenerationRequest | None = None) -> ModelOutput | BackendError:
    return run(gen(backend, request or req()))[0]


def ok(result: ModelOutput | BackendError) -> ModelOutput:
    assert isinstance(result, ModelOutput), f"expected an output, got {result!r}"
    return result


def err(result: ModelOutput | BackendError) -> BackendError:
    assert isinstance(result, BackendError), f"expected an error, got {result!r}"
    return result


@pytest.fixture
def srv() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


# ---------------------------------------------------------------------------------------------- happy path

def test_happy_path_text_usage_model_latency(srv: OpenAIServer) -> None:
    backend = make(srv)
    assert isinstance(backend, Backend) and backend.kind == "openai" and backend.max_batch == 8
    out = ok(one(backend, req("what is two plus two")))
    assert out.text == "echo: what is two plus two"
    assert out.finish_reason == "stop" and out.model == "test-model" and out.tool_calls == []
    assert out.usage.prompt_tokens == 5 and out.usage.completion_tokens == 6
    assert 0 < out.latency_s < 5 and not out.cached
    assert srv.attempts == 1


def test_batch_order_preserved_when_responses_finish_out_of_order(srv: OpenAIServer) -> None:
    def slower_first(r: RecordedRequest) -> Echo:
        n = int(r.body["messages"][-1]["content"].split()[-1])
        return Echo(template="{user}", delay_s=0.02 * (5 - n))

    srv.default = slower_first
    outs = run(gen(make(srv), *(req(f"row {i}") for i in range(6))))
    assert [ok(o).text for o in outs] == [f"row {i}" for i in range(6)]


def test_empty_batch_makes_no_request(srv: OpenAIServer) -> None:
    assert run(gen(make(srv))) == []
    assert srv.requests == []


# ---------------------------------------------------------------------------------------------- request body

def test_decoding_params_seed_and_stop_are_sent(srv: OpenAIServer) -> None:
    run(gen(make(srv), req(temperature=0.7, top_p=0.9, max_tokens=33, seed=40, stop=["\n\n", "END"]),
            req(seed=40, sample_index=2)))
    a, b = sorted(srv.bodies, key=lambda body: body["seed"])
    assert a["temperature"] == 0.7 and a["top_p"] == 0.9 and a["max_tokens"] == 33
    assert a["seed"] == 40 and a["stop"] == ["\n\n", "END"] and a["model"] == "test-model"
    assert b["seed"] == 42 and "stop" not in b and "tools" not in b
    assert a["messages"] == [{"role": "user", "content": "hello"}]


def test_adapter_name_is_sent_as_model(srv: OpenAIServer) -> None:
    srv.models = ["base-model", "support-lora"]
    srv.strict_models = True
    backend = make(srv, model="base-model", adapter="support-lora")
    out = ok(one(backend))
    assert srv.bodies[0]["model"] == "support-lora" and out.model == "support-lora"
    assert backend.identity() == {"kind": "openai", "base_url": srv.base_url, "model": "base-model",
                                  "adapter": "support-lora"}


def test_unknown_model_is_a_non_retryable_404(srv: OpenAIServer) -> None:
    srv.strict_models = True
    e = err(one(make(srv, model="nope")))
    assert e.status_code == 404 and not e.retryable and "`nope` does not exist" in str(e)
    assert srv.attempts == 1


def test_api_key_sent_as_bearer_and_never_shown() -> None:
    with OpenAIServer(api_key="sk-secret-123") as srv:
        backend = make(srv, api_key="sk-secret-123", extra_headers={"X-Team": "evals"})
        assert "sk-secret" not in repr(backend) and "sk-secret" not in json.dumps(backend.identity())
        ok(one(backend))
        r = srv.chat_requests[0]
        assert r.bearer == "sk-secret-123" and r.headers["x-team"] == "evals"
        e = err(one(make(srv, api_key="sk-wrong")))
        assert e.status_code == 401 and not e.retryable and "Incorrect API key" in str(e)
        assert "sk-wrong" not in str(e)
        assert err(one(make(srv))).status_code == 401  # no key: no Authorization header at all
        assert srv.chat_requests[-1].bearer is None


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_base_url_with_or_without_v1(srv: OpenAIServer, suffix: str) -> None:
    backend = make(srv, base_url=srv.url + suffix)
    assert backend.base_url == srv.base_url
    assert backend.identity()["base_url"] == srv.base_url
    assert ok(one(backend)).text == "echo: hello"
    assert srv.chat_requests[0].path == "/v1/chat/completions"


def test_base_url_rule() -> None:
    assert normalise_base_url("http://h:8000") == "http://h:8000/v1"
    assert normalise_base_url(" https://openrouter.ai/api/v1/ ") == "https://openrouter.ai/api/v1"
    assert normalise_base_url("http://h/openai/v1") == "http://h/openai/v1"  # non-empty paths are kept
    for bad in ["localhost:8000", "ftp://h/v1", "http://h/v1?api-version=1"]:
        with pytest.raises(UserError):
            normalise_base_url(bad)


# ---------------------------------------------------------------------------------------------- tools

def test_tools_are_wrapped_and_tool_calls_parsed(srv: OpenAIServer) -> None:
    wrapped = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    srv.push(Reply(text=None, tool_calls=[("get_weather", {"city": "Paris"}), ("lookup", {})]))
    out = ok(one(make(srv), req("weather?", tools=(WEATHER, wrapped))))
    assert srv.bodies[0]["tools"] == [{"type": "function", "function": WEATHER}, wrapped]
    assert out.text == "" and out.finish_reason == "tool_calls"
    assert [c.model_copy(update={"id": None}) for c in out.tool_calls] == [
        ToolCall(name="get_weather", arguments={"city": "Paris"}), ToolCall(name="lookup")]
    assert [c.id for c in out.tool_calls] == ["call_0", "call_1"]  # server ids kept for exact replay


def test_conversation_with_tool_calls_is_serialised_for_openai(srv: OpenAIServer) -> None:
    messages = (
        Message(role="system", content="be brief"),
        Message(role="user", content="weather in Paris and Rome?"),
        Message(role="assistant", tool_calls=[ToolCall(name="get_weather", arguments={"city": "Paris"}),
                                              ToolCall(name="get_weather", arguments={"city": "Rome"})]),
        Message(role="tool", content="18C", name="get_weather"),
        Message(role="tool", content="24C", name="get_weather"),
        Message(role="user", content="thanks"),
    )
    run(gen(make(srv), GenerationRequest(messages=messages, params=DecodingParams(), tools=(WEATHER,))))
    sent = srv.bodies[0]["messages"]
    calls = sent[2]["tool_calls"]
    assert sent[2]["role"] == "assistant" and sent[2]["content"] is None
    assert [c["type"] for c in calls] == ["function", "function"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert isinstance(calls[0]["function"]["arguments"], str)
    assert [sent[3]["tool_call_id"], sent[4]["tool_call_id"]] == [calls[0]["id"], calls[1]["id"]]
    assert sent[3]["name"] == "get_weather" and sent[5] == {"role": "user", "content": "thanks"}


def test_tool_call_ids_from_tool_messages_are_reused() -> None:
    msgs = [Message(role="assistant", tool_calls=[ToolCall(name="f"), ToolCall(name="g")]),
            Message(role="tool", content="1", tool_call_id="call_abc"), Message(role="tool", content="2")]
    out = to_openai_messages(msgs)
    assert [c["id"] for c in out[0]["tool_calls"]] == ["call_abc", "call_0_1"]
    assert [out[1]["tool_call_id"], out[2]["tool_call_id"]] == ["call_abc", "call_0_1"]


def test_invalid_tool_arguments_are_kept_raw_and_replayed(srv: OpenAIServer) -> None:
    srv.push(Reply(text=None, tool_calls=[("get_weather", '{"city": "Par'), ("lookup", "[1, 2]"), ("noop", "")]))
    out = ok(one(make(srv)))
    assert [c.model_copy(update={"id": None}) for c in out.tool_calls] == [
                              ToolCall(name="get_weather", arguments={RAW_ARGUMENTS_KEY: '{"city": "Par'}),
                              ToolCall(name="lookup", arguments={RAW_ARGUMENTS_KEY: "[1, 2]"}),
                              ToolCall(name="noop", arguments={})]
    replay = to_openai_messages([Message(role="assistant", tool_calls=out.tool_calls)])
    assert replay[0]["tool_calls"][0]["function"]["arguments"] == '{"city": "Par'


def test_to_openai_tools_variants() -> None:
    assert to_openai_tools([{"function": WEATHER}]) == [{"type": "function", "function": WEATHER}]
    assert to_openai_tools([{"type": "code_interpreter"}]) == [{"type": "code_interpreter"}]


# ---------------------------------------------------------------------------------------------- retries

def test_retries_429_and_5xx_then_succeeds(srv: OpenAIServer) -> None:
    srv.fail_first(2, status=429)
    srv.push(Fail(500), Fail(503), Drop())
    out = ok(one(make(srv, max_retries=5)))
    assert out.text == "echo: hello" and srv.attempts == 6


def test_retry_after_is_honoured(srv: OpenAIServer) -> None:
    srv.fail_first(1, status=429, retry_after=0.3)
    ok(one(make(srv, backoff_s=0.001)))
    first, second = srv.chat_requests
    assert second.received_at - first.received_at >= 0.28


def test_retry_after_is_capped(srv: OpenAIServer) -> None:
    srv.fail_first(1, status=503, retry_after=60)
    ok(one(make(srv, max_backoff_s=0.05)))
    first, second = srv.chat_requests
    assert srv.attempts == 2
    assert second.received_at - first.received_at < 30, "Retry-After: 60 must be capped by max_backoff_s"


def test_gives_up_after_max_retries_and_returns_the_error(srv: OpenAIServer) -> None:
    srv.fail_first(10, status=503, message="overloaded")
    outs = run(gen(make(srv, max_retries=2, concurrency=1), req("a"), req("b")))
    for o in outs:
        e = err(o)
        assert e.retryable and e.status_code == 503
        assert "overloaded" in str(e) and "gave up after 3 attempts" in str(e)
    assert srv.attempts == 6


def test_400_is_not_retried(srv: OpenAIServer) -> None:
    srv.push(Fail(400, "max_tokens is too large"))
    e = err(one(make(srv)))
    assert not e.retryable and e.status_code == 400 and "max_tokens is too large" in str(e)
    assert srv.attempts == 1


def test_one_failed_request_does_not_sink_the_batch(srv: OpenAIServer) -> None:
    srv.default = lambda r: Fail(422, "bad row") if "bad" in r.body["messages"][-1]["content"] else Echo()
    outs = run(gen(make(srv), req("good 1"), req("bad"), req("good 2")))
    assert ok(outs[0]).text == "echo: good 1" and err(outs[1]).status_code == 422
    assert ok(outs[2]).text == "echo: good 2"


def test_timeout_is_retried_then_reported(srv: OpenAIServer) -> None:
    srv.default = Echo(delay_s=1.0)
    e = err(one(make(srv, timeout_s=0.15, max_retries=1)))
    assert e.retryable and "timed out after 0.15s" in str(e) and "gave up after 2 attempts" in str(e)
    assert srv.attempts == 2


def test_timeout_then_success(srv: OpenAIServer) -> None:
    srv.push(Echo(delay_s=1.0))
    out = ok(one(make(srv, timeout_s=0.15)))
    assert out.text == "echo: hello" and srv.attempts == 2 and out.latency_s < 0.15


def test_connection_refused_is_returned_not_raised() -> None:
    with OpenAIServer() as srv:
        url = srv.base_url
    e = err(one(OpenAIBackend(url, "m", max_retries=1, backoff_s=0.001)))
    assert e.retryable and e.status_code is None and "ConnectError" in str(e)


# ---------------------------------------------------------------------------------------------- concurrency

def test_concurrency_bound_is_respected(srv: OpenAIServer) -> None:
    srv.default = Echo(delay_s=0.05)
    outs = run(gen(make(srv, concurrency=3), *(req(f"q{i}") for i in range(12))))
    assert all(isinstance(o, ModelOutput) for o in outs)
    assert srv.max_in_flight == 3


def test_concurrency_bound_is_shared_across_generate_calls(srv: OpenAIServer) -> None:
    srv.default = Echo(delay_s=0.05)
    backend = make(srv, concurrency=2)

    async def both() -> None:
        try:
            await asyncio.gather(backend.generate([req("a"), req("b")]), backend.generate([req("c"), req("d")]))
        finally:
            await backend.aclose()

    run(both())
    assert srv.attempts == 4 and srv.max_in_flight == 2


def test_backend_survives_a_second_event_loop(srv: OpenAIServer) -> None:
    backend = make(srv)
    assert ok(run(gen(backend, req("one")))[0]).text == "echo: one"  # aclose, then reuse: fine
    with warnings.catch_warnings():
        # Without aclose() the first loop's sockets can only be dropped (ResourceWarning at GC);
        # the point here is that the backend still works instead of failing on a foreign loop.
        warnings.simplefilter("ignore", ResourceWarning)
        assert ok(run(backend.generate([req("two")]))[0]).text == "echo: two"
        assert ok(run(gen(backend, req("three")))[0]).text == "echo: three"  # new loop, new client
        gc.collect()


# ---------------------------------------------------------------------------------------------- malformed

@pytest.mark.parametrize(("body", "needle"), [
    (b"<html>502 Bad Gateway</html>", "not JSON"),
    ({"id": "x", "choices": []}, "no choices"),
    ({"choices": [{"index": 0}]}, "has no message"),
    ({"choices": [{"message": {"tool_calls": [{"function": {"arguments": "{}"}}]}}]}, "no function name"),
    ({"error": {"message": "context length exceeded"}}, "context length exceeded"),
])
def test_malformed_responses_are_clear_errors(srv: OpenAIServer, body: Any, needle: str) -> None:
    srv.push(Raw(200, body))
    e = err(one(make(srv)))
    assert needle in str(e) and not e.retryable and srv.attempts == 1


def test_list_models(srv: OpenAIServer) -> None:
    srv.models = ["a", "b"]

    async def go() -> list[dict[str, Any]]:
        backend = make(srv, base_url=srv.url)
        try:
            return await backend.list_models()
        finally:
            await backend.aclose()

    assert [m["id"] for m in run(go())] == ["a", "b"]


# ---------------------------------------------------------------------------------------------- edge parsing

def _mock(handler: Any) -> OpenAIBackend:
    return OpenAIBackend("http://mock/v1", "m", transport=httpx.MockTransport(handler), backoff_s=0.001)


def test_mock_transport_variants() -> None:
    body = {"model": "served", "choices": [{"message": {
        "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}],
        "function_call": {"name": "f", "arguments": {"x": 1}}}, "finish_reason": "function_call"}]}
    out = ok(one(_mock(lambda r: httpx.Response(200, json=body))))
    assert out.text == "ab" and out.tool_calls == [ToolCall(name="f", arguments={"x": 1})]
    assert out.model == "served" and out.usage.prompt_tokens == 0 and out.finish_reason == "function_call"


def test_mock_retry_after_ms_and_vllm_error_shape() -> None:
    calls: list[float] = []

    def handler(r: httpx.Request) -> httpx.Response:
        calls.append(time.perf_counter())
        if len(calls) == 1:
            return httpx.Response(429, headers={"retry-after-ms": "200"}, json={})
        return httpx.Response(400, json={"object": "error", "message": "bad temperature", "code": 400})

    e = err(one(_mock(handler)))
    assert calls[1] - calls[0] >= 0.19 and "bad temperature" in str(e) and e.status_code == 400


def test_retry_after_header_forms() -> None:
    assert retry_after_s(httpx.Headers({"Retry-After": "2"})) == 2.0
    assert retry_after_s(httpx.Headers({"Retry-After": "garbage"})) is None
    assert retry_after_s(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert retry_after_s(httpx.Headers({})) is None
    assert retry_after_s(httpx.Headers({"retry-after-ms": "1500", "Retry-After": "9"})) == 1.5
    assert retry_after_s({"retry-after": "3"}) == 3.0  # the gateway's pool: a dict, lower-case names


def test_parse_completion_defaults_model() -> None:
    out = parse_completion({"choices": [{"message": {"content": None}}]}, model="fallback")
    assert out.text == "" and out.model == "fallback" and out.finish_reason is None


def test_invalid_settings_are_user_errors() -> None:
    with pytest.raises(UserError):
        OpenAIBackend("http://h", "m", concurrency=0)
    with pytest.raises(UserError):
        OpenAIBackend("http://h", "m", timeout_s=0)


def test_support_server_streams_sse(srv: OpenAIServer) -> None:
    """The gateway tests rely on the loopback server's streaming; pin its shape here."""
    srv.push(Echo(), Reply(text=None, tool_calls=[("f", {"a": 1})]))
    body = {"model": "m", "messages": [{"role": "user", "content": "one two"}], "stream": True,
            "stream_options": {"include_usage": True}}
    events = []
    for _ in range(2):
        with httpx.stream("POST", srv.base_url + "/chat/completions", json=body) as r:
            assert r.headers["content-type"] == "text/event-stream"
            lines = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        events.append([json.loads(x) for x in lines[:-1]])
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[0] if e["choices"])
    assert text.strip() == "echo: one two" and events[0][-1]["usage"]["completion_tokens"] == 3
    deltas = [e["choices"][0]["delta"] for e in events[1] if e["choices"]]
    assert [d["tool_calls"][0]["function"] for d in deltas if "tool_calls" in d] == [
        {"name": "f", "arguments": '{"a": 1}'}]
    assert events[1][-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_api_key_never_leaks_into_errors(srv: OpenAIServer) -> None:
    ok(one(make(srv, api_key="sk-from-file\n")))  # trailing newline stripped, header is valid
    assert srv.chat_requests[0].bearer == "sk-from-file"
    e = err(one(make(srv, api_key="sk-bad\nkey")))  # an illegal header value cannot be sent
    assert not e.retryable and "sk-bad" not in str(e)
