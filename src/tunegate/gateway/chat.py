"""``POST /v1/chat/completions``: route, guard, call with retries and fallbacks, post-check, record.

The attempt plan is the chosen arm, then the route's ``fallback`` arms that may serve (the
baseline, or a candidate a verdict released on this route), each tried up to ``1 + retries`` times
on retryable errors, all within ``attempt_budget`` upstream calls. Between retries of one arm the
gateway waits the upstream's ``Retry-After`` when it is at most ``max_backoff_s`` (longer: it
moves on to the next arm at once), else ``backoff_s · 2^k`` with jitter. A failed post-check (the
answer is not JSON valid for the route's ``schema``) or a post-call guardrail with action
``fallback`` also moves to the next arm.

Streaming: when the route has no post-check, upstream chunks are relayed as they arrive; a failure
before the first chunk still falls back, a failure after it ends the stream with an error event
(the client already has part of an answer). When the route post-checks answers, the answer is
produced whole, checked, then streamed, so a client never sees an answer that fails the checks.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tunegate.errors import UserError
from tunegate.gateway.cache import cache_key
from tunegate.gateway.config import RouteConfig
from tunegate.gateway.guardrails import GuardrailBlock, run_post, run_pre
from tunegate.gateway.prepare import prepare_body
from tunegate.gateway.records import Attempt, RequestRecord, SpanInfo
from tunegate.gateway.routing import RequestFacts, choose_arm
from tunegate.gateway.sse import DONE, Accumulator, completion_to_chunks, encode
from tunegate.gateway.upstream import UpstreamError
from tunegate.gateway.validate import BadRequest, check_chat_body, error_body

if TYPE_CHECKING:
    from tunegate.gateway.service import Gateway, Snapshot

__all__ = ["Outcome", "handle_chat"]


@dataclass
class Outcome:
    """What the HTTP layer sends: a JSON body, or an SSE byte stream."""

    status: int
    body: dict[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class _Exhausted(Exception):
    def __init__(self, last: UpstreamError | None) -> None:
        super().__init__(last.message if last else "no upstream could serve the request")
        self.last = last


def _usage(c: dict[str, Any]) -> tuple[int, int]:
    u = c.get("usage") or {}
    return int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)


def _post_check(schema: dict[str, Any] | None, completion: dict[str, Any]) -> str | None:
    """Why the answer fails the route's schema (None when it passes or there is no schema)."""
    if schema is None:
        return None
    from jsonschema import Draft202012Validator

    for ch in completion.get("choices") or []:
        msg = ch.get("message") or {}
        if msg.get("tool_calls"):
            continue
        try:
            value = json.loads(msg.get("content") or "")
        except ValueError:
            return f"choice {ch.get('index', 0)}: answer is not JSON"
        err = next(iter(Draft202012Validator(schema).iter_errors(value)), None)
        if err is not None:
            return f"choice {ch.get('index', 0)}: {err.message}"[:300]
    return None


class _Call:
    """One client request in flight: its record, plan and attempts."""

    def __init__(self, gw: Gateway, snap: Snapshot, route: RouteConfig, body: dict[str, Any],
                 rec: RequestRecord, arms: list[str]) -> None:
        self.gw, self.snap, self.route, self.body, self.rec, self.arms = gw, snap, route, body, rec, arms
        self.t0 = time.perf_counter()

    def _note(self, arm: str, outcome: str, t: float, detail: str = "") -> None:
        self.rec.attempts.append(Attempt(arm, self.snap.hashes[self.route.name][arm], outcome,
                                         round((time.perf_counter() - t) * 1000, 3), detail))
        self.gw.metrics.attempts.labels(self.route.name, arm, outcome).inc()

    async def _backoff(self, k: int, err: UpstreamError) -> bool:
        """Wait before retrying the same arm; False when the upstream asks for longer than allowed."""
        if err.retry_after is not None:
            if err.retry_after > self.route.max_backoff_s:
                return False
            await asyncio.sleep(err.retry_after)
            return True
        await asyncio.sleep(min(self.route.max_backoff_s, self.route.backoff_s * 2**k) * random.uniform(0.5, 1.0))
        return True

    def _served(self, arm: str, completion: dict[str, Any]) -> None:
        r = self.route.name
        self.rec.arm = arm
        self.rec.candidate_hash = self.snap.hashes[r][arm]
        self.rec.prompt_version = self.snap.specs[r][arm].prompt.ref

    async def whole(self) -> dict[str, Any]:
        """A complete, checked answer from the first arm that gives one (raises _Exhausted)."""
        last: UpstreamError | None = None
        budget = self.route.attempt_budget
        r = self.route.name
        for arm in self.arms:
            up = self.snap.upstreams[r][arm]
            spec = self.snap.specs[r][arm]
            prepared = prepare_body(self.body, spec, up.model, self.route.json_schema)
            prepared.pop("stream", None)
            prepared.pop("stream_options", None)
            cache = self.snap.caches.get(r)
            key = cache_key(up.candidate_hash, prepared) if cache is not None else ""
            if cache is not None and (hit := cache.get(key)) is not None:
                self.rec.cached = True
                self.gw.metrics.cache_hits.labels(r, arm).inc()
                self._note(arm, "cache_hit", time.perf_counter())
                self._served(arm, hit)
                return hit
            for k in range(1 + self.route.retries):
                if budget <= 0:
                    raise _Exhausted(last)
                budget -= 1
                t = time.perf_counter()
                info = SpanInfo(self.rec.request_id, r, arm, up.candidate_hash, up.model,
                                len(self.rec.attempts), self.rec.stream)
                try:
                    async with self.gw.span_hook(info):
                        done = await up.complete(prepared, timeout_s=self.route.timeout_s)
                        info.attributes.update({"usage": done.get("usage")})
                except UpstreamError as e:
                    self._note(arm, e.outcome, t, e.message)
                    last = e
                    if not e.retryable or k == self.route.retries or not await self._backoff(k, e):
                        break
                    continue
                why = _post_check(self.route.json_schema, done)
                if why is not None:
                    self._note(arm, "post_check", t, why)
                    last = UpstreamError("post_check", f"answer of {arm} failed the route's schema: {why}")
                    break
                if self.route.guardrails.post:
                    post = await run_post(self.route, done)  # GuardrailBlock propagates
                    self.rec.guardrail_events.extend(post.events)
                    if post.fallback is not None:
                        self._note(arm, "guardrail", t, post.fallback.detail)
                        last = UpstreamError("guardrail", f"guardrail {post.fallback.check} rejected {arm}'s answer")
                        break
                    done = post.completion
                self._note(arm, "ok", t)
                if cache is not None:
                    cache.put(key, done)
                self._served(arm, done)
                return done
        raise _Exhausted(last)

    async def first_chunk(self) -> tuple[dict[str, Any], AsyncIterator[dict[str, Any]], str]:
        """Start a relayed stream: (first chunk, rest, arm) from the first arm that produces one."""
        last: UpstreamError | None = None
        budget = self.route.attempt_budget
        r = self.route.name
        for arm in self.arms:
            up = self.snap.upstreams[r][arm]
            prepared = prepare_body(self.body, self.snap.specs[r][arm], up.model, self.route.json_schema)
            prepared["stream_options"] = {"include_usage": True}
            for k in range(1 + self.route.retries):
                if budget <= 0:
                    raise _Exhausted(last)
                budget -= 1
                t = time.perf_counter()
                it = up.stream(prepared, timeout_s=self.route.timeout_s).__aiter__()
                try:
                    first = await it.__anext__()
                except StopAsyncIteration:
                    e = UpstreamError("empty_stream", f"upstream {arm} ended the stream without a chunk")
                except UpstreamError as err:
                    e = err
                else:
                    self._note(arm, "ok", t)
                    self._served(arm, first)
                    return first, it, arm
                self._note(arm, e.outcome, t, e.message)
                last = e
                if not e.retryable or k == self.route.retries or not await self._backoff(k, e):
                    break
        raise _Exhausted(last)


def _finish(gw: Gateway, route: RouteConfig, rec: RequestRecord, t0: float, completion: dict[str, Any] | None) -> None:
    rec.latency_ms = round((time.perf_counter() - t0) * 1000, 3)
    if completion is not None:
        rec.tokens_in, rec.tokens_out = _usage(completion)
        choices = completion.get("choices") or []
        if choices:
            msg = choices[0].get("message") or {}
            rec.response_text = msg.get("content")
            rec.tool_calls = list(msg.get("tool_calls") or [])
            rec.finish_reason = choices[0].get("finish_reason")
        if rec.arm is not None:
            rec.cost = route.arms[rec.arm].price.cost(rec.tokens_in, rec.tokens_out)
    m = gw.metrics
    m.requests.labels(route.name, rec.arm or "-", rec.status).inc()
    m.latency.labels(route.name).observe(rec.latency_ms / 1000)
    if rec.tokens_in or rec.tokens_out:
        m.tokens.labels(route.name, rec.arm or "-", "in").inc(rec.tokens_in)
        m.tokens.labels(route.name, rec.arm or "-", "out").inc(rec.tokens_out)
    for ev in rec.guardrail_events:
        m.guardrails.labels(route.name, ev.check, ev.action).inc()
    if gw.limiter is not None and rec.api_key is not None and gw.snap is not None and gw.snap.config.auth:
        key = next((k for k in gw.snap.config.auth.keys if k.name == rec.api_key), None)
        gw.limiter.spend(key, rec.tokens_in + rec.tokens_out)
    if gw.log is not None:
        gw.log.put(rec)


def _error(status: int, message: str, *, type_: str, code: str | None = None, param: str | None = None,
           headers: dict[str, str] | None = None) -> Outcome:
    return Outcome(status, error_body(message, type_=type_, param=param, code=code), headers=headers or {})


def _exhausted(e: _Exhausted) -> Outcome:
    last = e.last
    status = 504 if last is not None and last.outcome == "timeout" else 502
    if last is not None and last.status in (400, 404, 413, 422):
        status = last.status  # the upstream judged the request itself; every arm would
    return _error(status, f"no upstream could answer: {e}", type_="upstream_error",
                  code=last.outcome if last else "no_upstream")


async def handle_chat(gw: Gateway, raw: bytes, headers: Mapping[str, str]) -> Outcome:
    """Serve one chat-completions request (see the module docstring)."""
    t0 = time.perf_counter()
    started = time.time()
    snap = gw.snap
    assert snap is not None and gw.limiter is not None
    try:
        body = check_chat_body(json.loads(raw) if raw else None)
    except ValueError as e:
        if isinstance(e, BadRequest):
            return _error(e.status, e.message, type_="invalid_request_error", param=e.param, code=e.code)
        return _error(400, "the request body is not valid JSON", type_="invalid_request_error")
    except BadRequest as e:
        return _error(e.status, e.message, type_="invalid_request_error", param=e.param, code=e.code)
    route = snap.config.route(body["model"])
    if route is None:
        names = ", ".join(r.name for r in snap.config.routes)
        return _error(404, f"the model {body['model']!r} does not exist; models: {names}",
                      type_="invalid_request_error", param="model", code="model_not_found")
    auth = gw.limiter.check(headers.get("authorization"), route.name)
    if auth.status != 200:
        hdrs = {"Retry-After": str(max(1, round(auth.retry_after)))} if auth.retry_after is not None else {}
        kind = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}[auth.status]
        gw.metrics.requests.labels(route.name, "-", "rate_limited" if auth.status == 429 else "unauthorized").inc()
        return _error(auth.status, auth.message, type_=kind, code=auth.code, headers=hdrs)
    rid = "req-" + uuid.uuid4().hex  # never the client's x-request-id: it keys the request log
    facts = RequestFacts(route.name, headers, body.get("metadata") or {}, auth.key.name if auth.key else None,
                         auth.key.tenant if auth.key else None, body.get("user"), rid)
    hashes = snap.hashes[route.name]
    choice = choose_arm(route, facts, snap.state, hashes)
    if choice.cohort is not None and choice.cohort in gw.cohort_blocks.get((route.name, choice.arm), ()):
        choice = replace(choice, arm=route.baseline, reason="cohort_rolled_back")  # release controller
    plan = [choice.arm] + [a for a in route.fallback if a != choice.arm and
                           (a == route.baseline or snap.state.released(route.name, a, hashes[a]))]
    stream = bool(body.get("stream"))
    rec = RequestRecord(rid, route.name, None, choice.arm, None, None, choice.cohort,
                        auth.key.name if auth.key else None, choice.sticky_key,
                        {k: v for k, v in body.items() if k != "model"}, stream, "ok", 200, started_at=started)
    out_headers = {"x-request-id": rid}
    try:
        if route.guardrails.pre:
            pre = await run_pre(route, body["messages"])
            rec.guardrail_events.extend(pre.events)
            if pre.messages is not body["messages"]:
                body = body | {"messages": pre.messages}
                rec.request["messages"] = pre.messages
        call = _Call(gw, snap, route, body, rec, plan)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if stream and route.json_schema is None and not route.guardrails.post and not route.cache:
            first, rest, arm = await call.first_chunk()
            out_headers["x-tunegate-arm"] = arm
            return Outcome(200, stream=_relay(gw, route, rec, t0, first, rest, include_usage), headers=out_headers)
        done = await call.whole()
    except GuardrailBlock as e:
        rec.guardrail_events.append(e.event)
        rec.status, rec.http_status, rec.error = "blocked", e.status, str(e)
        _finish(gw, route, rec, t0, None)
        return _error(e.status, f"request blocked by guardrail {e.event.check}: {e.event.detail}",
                      type_="invalid_request_error", code="guardrail_blocked", headers=out_headers)
    except UserError as e:  # a prompt variable the request's metadata does not give
        rec.status, rec.http_status, rec.error = "error", 400, str(e)
        _finish(gw, route, rec, t0, None)
        return _error(400, f"the route's prompt needs request metadata: {e}", type_="invalid_request_error",
                      param="metadata", headers=out_headers)
    except _Exhausted as e:
        res = _exhausted(e)
        rec.status, rec.http_status, rec.error = "error", res.status, str(e)
        _finish(gw, route, rec, t0, None)
        res.headers.update(out_headers)
        return res
    assert rec.arm is not None
    out_headers["x-tunegate-arm"] = rec.arm
    public = done | {"model": route.name}
    if stream:
        chunks = list(completion_to_chunks(public, include_usage=include_usage))
        _finish(gw, route, rec, t0, done)
        return Outcome(200, stream=_replay(chunks), headers=out_headers)
    _finish(gw, route, rec, t0, done)
    return Outcome(200, public, headers=out_headers)


async def _replay(chunks: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for c in chunks:
        yield encode(c)
    yield DONE


async def _relay(gw: Gateway, route: RouteConfig, rec: RequestRecord, t0: float, first: dict[str, Any],
                 rest: AsyncIterator[dict[str, Any]], include_usage: bool) -> AsyncIterator[bytes]:
    """Relay upstream chunks; the usage chunk only when the client asked for it; record at the end."""
    acc = Accumulator()
    chunk: dict[str, Any] | None = first
    try:
        while chunk is not None:
            acc.add(chunk)
            is_usage = not chunk.get("choices") and chunk.get("usage") is not None
            if is_usage:
                if include_usage:
                    yield encode(chunk | {"model": route.name})
            else:
                out = chunk if include_usage else {k: v for k, v in chunk.items() if k != "usage"}
                yield encode(out | {"model": route.name})
            try:
                chunk = await rest.__anext__()
            except StopAsyncIteration:
                chunk = None
        yield DONE
    except UpstreamError as e:
        rec.status, rec.http_status, rec.error = "error", 502, f"failed mid-stream: {e.message}"
        gw.metrics.attempts.labels(route.name, rec.arm or "-", "mid_stream_" + e.outcome).inc()
        yield encode(error_body(f"upstream failed mid-stream: {e.message}", type_="upstream_error",
                                code=e.outcome))
        yield DONE
    finally:
        _finish(gw, route, rec, t0, acc.completion())
        close = getattr(rest, "aclose", None)
        if close is not None:  # the client went away mid-stream: release the upstream connection now
            await close()
