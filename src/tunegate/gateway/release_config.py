"""``tunegate serve --release release.yaml``: which routes the release controller watches, and tracing.

Example::

    routes:
      - route: support                 # a route of gateway.yaml
        arm: tuned                     # its candidate arm (promoted with `tunegate rollout promote`)
        policy: release-policy.yaml    # core/release_policy.py (relative to this file)
        evaluators: [json_validation]  # the offline gate's suite: names or a suite YAML
        mirror: {share: 0.1, queue: 1000, concurrency: 4, timeout_s: 30}
        score_live: true
        max_pending_scores: 1000       # answers waiting for scoring; more are dropped and counted
        references: none               # or "metadata": score against the client's metadata.reference
    tick_s: 0.5
    scorer_workers: 1
    tracing: {span_store: true, otlp_endpoint: http://127.0.0.1:6006/v1/traces, capture_content: false}

Validated strictly (``file:line: field: problem``, exit 2), like every tunegate file.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunegate.errors import UserError

__all__ = ["ReleaseFile", "install_release_control", "load_release_file"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MirrorSection(_Strict):
    share: float = Field(default=0.0, ge=0.0, le=1.0, description="Share of baseline-served traffic mirrored.")
    queue: int = Field(default=1000, ge=1, le=1_000_000)
    concurrency: int = Field(default=4, ge=1, le=256)
    timeout_s: float = Field(default=30.0, gt=0, le=600)


class RouteSection(_Strict):
    route: str
    arm: str
    policy: str = Field(description="Release policy YAML (relative to this file).")
    evaluators: str | list[str] | None = None
    mirror: MirrorSection = Field(default_factory=MirrorSection)
    score_live: bool = True
    max_pending_scores: int = Field(
        default=1000, ge=1, le=1_000_000, description="Answers (live + mirrored pairs) waiting for or in online "
        "scoring; beyond it they are dropped and counted (tunegate_gateway_scoring_dropped), never waited for.")
    references: Literal["none", "metadata"] = Field(
        default="none", description="'metadata': the client supplies each row's reference (expected, "
        "expected_tool_calls, schema, context) in metadata.reference. Only for trusted traffic (replays, "
        "labelled requests): the client then supplies the evidence its answers are judged by.")


class TracingSection(_Strict):
    span_store: bool = True
    otlp_endpoint: str | None = None
    capture_content: bool = False
    redact: bool = True


class ReleaseFile(_Strict):
    routes: list[RouteSection] = Field(min_length=1)
    tick_s: float = Field(default=0.5, gt=0, le=60)
    scorer_workers: int = Field(default=1, ge=1, le=64)
    tracing: TracingSection | None = None


def load_release_file(path: str | Path) -> tuple[ReleaseFile, list[Any]]:
    """(the file, its RouteRelease list with policies loaded); errors name file, line and field."""
    from tunegate.core.loading import config_error, model_walker, read_yaml
    from tunegate.core.release_policy import load_release_policy
    from tunegate.gateway.controller import RouteRelease

    file = str(path)
    text, data = read_yaml(path)
    if not isinstance(data, dict):
        raise UserError("a release file must be a mapping with routes:", file=file, line=1)
    try:
        rf = ReleaseFile.model_validate(data)
    except ValidationError as e:
        raise config_error(e, text=text, file=file, root="release", model_at=model_walker(ReleaseFile)) from None
    base = Path(file).resolve().parent
    out = []
    for r in rf.routes:
        pol = Path(r.policy) if Path(r.policy).is_absolute() else base / r.policy
        ev = r.evaluators
        if isinstance(ev, str) and ev.endswith((".yaml", ".yml")) and not Path(ev).is_absolute():
            ev = str(base / ev)
        out.append(RouteRelease(r.route, r.arm, load_release_policy(pol), evaluators=ev, mirror_share=r.mirror.share,
                                mirror_queue=r.mirror.queue, mirror_concurrency=r.mirror.concurrency,
                                mirror_timeout_s=r.mirror.timeout_s, score_live=r.score_live,
                                max_pending_scores=r.max_pending_scores,
                                references=r.references == "metadata"))
    return rf, out


def install_release_control(app: Any, release_path: str | Path, db: str | Path | None) -> None:
    """Run the release controller (and tracing) inside ``app``'s lifespan, after the gateway started."""
    from tunegate.gateway.controller import ReleaseControl

    rf, routes = load_release_file(release_path)
    gw = app.state.gateway
    tracing_hook = None
    if rf.tracing is not None:
        from tunegate.gateway.tracing_hook import GatewayTracing, store_sink
        from tunegate.tracing import Tracing, TracingConfig

        t = rf.tracing
        tr = Tracing(TracingConfig(span_store=t.span_store, otlp_endpoint=t.otlp_endpoint,
                                   capture_content=t.capture_content, redact=t.redact), sink=store_sink(db))
        tracing_hook = GatewayTracing(tr).attach(gw)
    ctl = ReleaseControl(routes, tick_s=rf.tick_s, scorer_workers=rf.scorer_workers, tracing=tracing_hook).attach(gw)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[None]:
        async with inner(a):
            snap = gw.snap
            for r in routes:
                if snap is None or snap.config.route(r.route) is None or r.arm not in snap.config.route(r.route).arms:
                    raise UserError(f"route {r.route!r} / arm {r.arm!r} is not in the gateway config",
                                    file=str(release_path), field="routes")
            await ctl.start()
            try:
                yield
            finally:
                await ctl.aclose()
                if tracing_hook is not None:
                    tracing_hook.tracing.shutdown()

    app.router.lifespan_context = lifespan
    app.state.release_control = ctl
