"""The Starlette ASGI app: endpoints over a :class:`~tunegate.gateway.service.Gateway`.

``create_app(config_path, ...)`` builds the app; its lifespan starts and stops the gateway (HTTP
pool, store thread, request log, reload loop). ``app.state.gateway`` is the running Gateway — the
place to add request hooks or a span hook before start-up, or to call ``reload_config()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunegate.gateway.chat import Outcome, handle_chat
from tunegate.gateway.dashboard import dashboard_route
from tunegate.gateway.openapi import openapi_document
from tunegate.gateway.records import RequestHook, SpanHook
from tunegate.gateway.service import Gateway
from tunegate.gateway.validate import error_body

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["MAX_BODY_BYTES", "app_from_env", "create_app"]

#: Largest request body read (a chat request with long context is well under this); a larger one is
#: a 413 before it is buffered, so a client cannot make the gateway hold gigabytes in memory.
MAX_BODY_BYTES = 16 * 1024 * 1024


async def _body(request: Request) -> bytes | None:
    """The request body, or None when it is larger than :data:`MAX_BODY_BYTES`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(error_body(f"request body larger than {MAX_BODY_BYTES} bytes", code="body_too_large"),
                        status_code=413)


def _response(out: Outcome) -> Response:
    from starlette.responses import JSONResponse, StreamingResponse

    if out.stream is not None:
        return StreamingResponse(out.stream, status_code=out.status, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", **out.headers})
    return JSONResponse(out.body, status_code=out.status, headers=out.headers)


def create_app(config_path: str | Path, *, db: str | Path | None = None, use_store: bool = True,
               request_hooks: list[RequestHook] | None = None,
               span_hook: SpanHook | None = None) -> Starlette:
    """The gateway app for ``config_path`` (``use_store=False``: no rollout state, no request log)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    gw = Gateway(config_path, db=db, use_store=use_store, request_hooks=request_hooks,
                 span_hook=span_hook)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    async def chat(request: Request) -> Response:
        if (body := await _body(request)) is None:
            return _too_large()
        return _response(await handle_chat(gw, body, request.headers))

    def _auth(request: Request) -> Response | None:
        if gw.snap is None or gw.snap.config.auth is None or gw.limiter is None:
            return None
        res = gw.limiter.check(request.headers.get("authorization"), "")
        if res.status == 401:
            return JSONResponse(error_body(res.message, type_="authentication_error", code=res.code), 401)
        return None

    async def models(request: Request) -> Response:
        if (denied := _auth(request)) is not None:
            return denied
        assert gw.snap is not None
        data = [{"id": r.name, "object": "model", "created": 0, "owned_by": "tunegate"}
                for r in gw.snap.config.routes]
        return JSONResponse({"object": "list", "data": data})

    async def rollout(request: Request) -> Response:
        if (denied := _auth(request)) is not None:
            return denied
        if gw.worker is None or gw.snap is None:
            return JSONResponse(error_body("the gateway runs without a store", type_="unavailable"), 503)
        from tunegate.gateway.release import overview

        try:
            data = await gw.worker.call(overview, gw.snap.config, gw.snap.hashes)
        except Exception as e:
            gw.metrics.store_failures.labels("rollout_overview").inc()
            return JSONResponse(error_body(f"store unavailable: {type(e).__name__}", type_="unavailable"), 503)
        body: dict[str, Any] = {"config_hash": gw.snap.config.hash, "routes": data}
        if gw.release_status is not None:
            body["release"] = gw.release_status()
        return JSONResponse(body)

    async def health(request: Request) -> Response:
        snap = gw.snap
        body: dict[str, Any] = {"status": "ok", "store": gw.store_ok}
        if snap is not None:
            body |= {"config_hash": snap.config.hash, "rollout_seq": snap.state.seq,
                     "shares": snap.effective_shares()}
        return JSONResponse(body)

    async def metrics(request: Request) -> Response:
        data, ctype = gw.metrics.render()
        return Response(data, media_type=ctype)

    async def feedback(request: Request) -> Response:
        from tunegate.gateway.feedback import handle_feedback

        if (denied := _auth(request)) is not None:
            return denied
        if (body := await _body(request)) is None:
            return _too_large()
        status, data = await handle_feedback(gw, body)
        return JSONResponse(data, status)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def http_error(request: Request, exc: Exception) -> Response:
        from starlette.exceptions import HTTPException

        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error (see the gateway log)"
        return JSONResponse(error_body(f"{request.method} {request.url.path}: {detail}",
                                       type_="invalid_request_error" if status < 500 else "server_error"), status)

    from starlette.exceptions import HTTPException

    app = Starlette(exception_handlers={HTTPException: http_error, Exception: http_error}, routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/rollout", rollout, methods=["GET"]),
        Route("/v1/feedback", feedback, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/dashboard", dashboard_route(gw, _auth), methods=["GET"]),  # rollout dashboard (gateway/dashboard.py)
    ], lifespan=lifespan)
    app.state.gateway = gw
    return app


def app_from_env() -> Starlette:
    """App factory for servers that take an import string (``granian --factory``, ``uvicorn --factory``):
    ``TUNEGATE_GATEWAY_CONFIG`` names gateway.yaml, ``TUNEGATE_DB`` the store (``TUNEGATE_NO_STORE=1``: none)."""
    import os

    from tunegate.errors import UserError

    path = os.environ.get("TUNEGATE_GATEWAY_CONFIG")
    if not path:
        raise UserError("set TUNEGATE_GATEWAY_CONFIG to the gateway.yaml to serve", field="TUNEGATE_GATEWAY_CONFIG")
    return create_app(path, db=os.environ.get("TUNEGATE_DB") or None,
                      use_store=os.environ.get("TUNEGATE_NO_STORE", "") not in ("1", "true", "yes"))
