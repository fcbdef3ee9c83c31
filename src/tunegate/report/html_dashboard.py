"""The live rollout dashboard's page, rendered from a plain JSON-able dict (the gateway's data seam).

The gateway (``tunegate serve``) owns the numbers; this module owns the picture. The gateway builds
a dict of the shape of :class:`DashboardData` from its release controller, trace store and online
scorers, and serves ``render_dashboard(data)`` at ``/dashboard`` behind its own auth::

    from tunegate.report.html_dashboard import render_dashboard
    html = render_dashboard({"title": "prod gateway", "refresh_s": 15, "routes": [
        {"name": "support", "arms": [{"name": "incumbent", "share": 0.9, "p50_ms": 180, "p99_ms": 900,
                                      "cost_per_trace": 0.0004, "traces": 5120},
                                     {"name": "canary", "candidate_hash": "cand-…", "share": 0.1, ...}],
         "fail_rate": [{"cohort": "billing", "arm": "canary", "limit": 0.12,
                        "points": [{"t": "2026-12-07T01:00:00Z", "rate": 0.08, "lower": 0.05, "upper": 0.11,
                                    "n": 140}, ...]}],
         "fallbacks": 3, "guardrails": {"pii": 2, "content_safety": 1},
         "history": [{"t": "...", "action": "ramp", "detail": "canary 5% -> 10%", "verdict": "PROMOTE"}]}]})

Same guarantees as ``report.html``: no script at all, no network (a CSP says so), every value
escaped. Unknown keys are ignored so the gateway can send more than is drawn. Invalid data raises
``UserError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunegate._version import __version__
from tunegate.errors import UserError, field_path
from tunegate.report.html import asset, page_environment
from tunegate.report.html_svg import Series, line_chart

__all__ = ["Arm", "DashboardData", "FailSeries", "RolloutEvent", "RouteView", "render_dashboard"]

_COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#57606a", "#e16f24", "#0a3069"]


class _M(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Arm(_M):
    """One arm of a route: who serves, how much traffic, how fast, how costly."""

    name: str
    candidate_hash: str | None = None
    share: float = Field(ge=0, le=1, description="Traffic share now (0..1).")
    role: str | None = Field(default=None, description="incumbent | canary | mirror | fallback ...")
    traces: int | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cost_per_trace: float | None = None


class FailPoint(_M):
    t: str | float = Field(description="ISO-8601 time or seconds.")
    rate: float | None = None
    lower: float | None = Field(default=None, description="Online (anytime-valid) bound, low.")
    upper: float | None = Field(default=None, description="Online (anytime-valid) bound, high.")
    n: int | None = None


class FailSeries(_M):
    """Eval-fail rate of one cohort (on one arm) over time, with its online bounds."""

    cohort: str
    arm: str | None = None
    limit: float | None = Field(default=None, description="Rollback threshold on the fail rate.")
    points: list[FailPoint] = Field(default_factory=list)


class RolloutEvent(_M):
    t: str
    action: str = Field(description="start | ramp | hold | promote | rollback | ...")
    detail: str = ""
    verdict: str | None = None
    actor: str | None = None


class RouteView(_M):
    name: str
    arms: list[Arm] = Field(default_factory=list)
    fail_rate: list[FailSeries] = Field(default_factory=list)
    fallbacks: int = 0
    guardrails: dict[str, int] = Field(default_factory=dict, description="Guardrail name → blocked count.")
    history: list[RolloutEvent] = Field(default_factory=list)


class DashboardData(_M):
    title: str = "tunegate gateway"
    generated_at: str | None = None
    refresh_s: int | None = Field(default=None, ge=1, description="Page reload interval (meta refresh).")
    routes: list[RouteView] = Field(default_factory=list)


def _seconds(t: str | float) -> float:
    if isinstance(t, (int, float)):
        return float(t)
    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def _share_bar(arms: list[Arm]) -> Markup:
    from html import escape

    x, parts = 0.0, []
    for i, a in enumerate(arms):
        w = a.share * 600
        parts.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="22" fill="{_COLORS[i % len(_COLORS)]}">'
                     f'<title>{escape(a.name)}: {a.share * 100:.1f}%</title></rect>')
        if w > 50:
            parts.append(f'<text x="{x + 6:.1f}" y="15" style="fill:#fff;font-size:12px">{escape(a.name)} '
                         f'{a.share * 100:.0f}%</text>')
        x += w
    return Markup(f'<svg class="chart share" viewBox="0 0 600 22" width="600" height="22" '
                  f'xmlns="http://www.w3.org/2000/svg" role="img"><title>traffic share</title>{"".join(parts)}</svg>')


def _fail_chart(route: RouteView) -> Markup:
    pts = [p for s in route.fail_rate for p in s.points]
    if not pts:
        return Markup('<p class="muted">No online scores yet.</p>')
    t0 = min(_seconds(p.t) for p in pts)
    series, limits = [], []
    for i, s in enumerate(route.fail_rate):
        name = s.cohort + (f" · {s.arm}" if s.arm else "")
        xy = [((_seconds(p.t) - t0) / 60, p.rate) for p in s.points if p.rate is not None]
        band = [((_seconds(p.t) - t0) / 60, p.lower, p.upper) for p in s.points
                if p.lower is not None and p.upper is not None]
        tips = [f"{name}: {p.rate:.3f} [{p.lower if p.lower is not None else '—'}, "
                f"{p.upper if p.upper is not None else '—'}] n={p.n}" for p in s.points if p.rate is not None]
        series.append(Series(name, [(x, float(y)) for x, y in xy if y is not None], _COLORS[i % len(_COLORS)],
                             "line", band=[(x, float(lo), float(hi)) for x, lo, hi in band if lo is not None
                                           and hi is not None], tips=tips))
        if s.limit is not None:
            limits.append((s.limit, f"rollback limit {name}: {s.limit}"))
    return line_chart(series, title=f"{route.name}: eval-fail rate by cohort (online bounds shaded)",
                      x_label="minutes since first point", y_label="fail rate", hlines=limits)


def render_dashboard(data: Mapping[str, Any] | DashboardData) -> str:
    """The dashboard page (no script, no network) from the gateway's dict."""
    try:
        d = data if isinstance(data, DashboardData) else DashboardData.model_validate(dict(data))
    except ValidationError as e:
        err = e.errors()[0]
        raise UserError(f"dashboard data: {err['msg']}", field=field_path(tuple(err["loc"]), "dashboard")) from e
    routes = [{"r": r, "share": _share_bar(r.arms), "fail": _fail_chart(r)} for r in d.routes]
    return str(page_environment().get_template("dashboard.html.j2").render(
        d=d, routes=routes, version=__version__, css=Markup(asset("report.css")),
        generated=d.generated_at or datetime.now(UTC).isoformat(timespec="seconds")))
