"""``GET /dashboard``: the rollout dashboard, built from what the gateway and its controller stored.

The picture is :func:`tunegate.report.html_dashboard.render_dashboard`'s; this module only builds
its data. Everything comes from the store (the same rows ``tunegate rollout status|history`` and
``tunegate traces`` read), never from the controller's memory, so the page shows the same thing
in every gateway process, after a restart, and when it is exported from the command line
(:func:`dashboard_html`, used by ``tunegate demo`` to save the page to a file):

* arms and shares: :func:`tunegate.gateway.release.overview` (effective shares, stale hashes);
* p50 / p99 latency and requests per arm: ``gateway_requests`` (answers the client got);
* eval-fail rate per cohort over time: the scored mirrored pairs (``online_pairs``), the
  candidate's running fail rate with an empirical-Bernstein confidence sequence (the controller's
  own kind of bound, valid at every look), and the incumbent's on the same requests;
* fallbacks and guardrail blocks: ``gateway_requests``;
* history: the audited rollout events (promotions, ramps, rollbacks) with the verdict behind them.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from tunegate.gateway.config import GatewayConfig
    from tunegate.gateway.service import Gateway
    from tunegate.store.sqlite import Store

__all__ = ["ALPHA", "MAX_POINTS", "dashboard_data", "dashboard_html", "dashboard_route"]

#: Error level of the fail-rate bands (per series; the controller's own α is split over its family).
ALPHA = 0.05
#: Points per fail-rate series (a long rollout is thinned, the last point is always kept).
MAX_POINTS = 60
_RECENT_REQUESTS = 20_000


def _quantile(xs: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (a latency some client actually saw)."""
    if not xs:
        return None
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))]


def _requests(store: Store, route: str) -> list[tuple[str | None, str, float, str, str]]:
    """(arm, status, latency_ms, attempts JSON, guardrails JSON) of the route's recent requests."""
    with store.tx() as db:
        rows = db.execute("SELECT arm, status, latency_ms, attempts, guardrails FROM gateway_requests "
                          "WHERE route = ? ORDER BY created_at DESC LIMIT ?", (route, _RECENT_REQUESTS)).fetchall()
    return [(r[0], str(r[1]), float(r[2]), str(r[3] or "[]"), str(r[4] or "[]")) for r in rows]


def _thin(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    keep = [points[int(i * step)] for i in range(MAX_POINTS - 1)]
    return [*keep, points[-1]]


def fail_series(pairs: Sequence[dict[str, Any]], candidate_arm: str, base_arm: str) -> list[dict[str, Any]]:
    """Per cohort: the candidate's running fail rate on scored mirrored pairs with its confidence
    sequence; plus the incumbent's on all the same requests (the reference the rollback compares to)."""
    from tunegate.engine.online.bounded import EmpiricalBernsteinCS

    by_cohort: dict[str, list[dict[str, Any]]] = defaultdict(list)
    base_points: list[dict[str, Any]] = []
    base_fail = base_n = 0
    for p in pairs:
        if p.get("candidate_failed") is None or p.get("base_failed") is None:
            continue   # skipped by every evaluator, or the shadow call failed: no fail/pass to show
        by_cohort[str(p.get("cohort") or "all")].append(p)
        base_n += 1
        base_fail += int(bool(p["base_failed"]))
        base_points.append({"t": p["created_at"], "rate": base_fail / base_n, "n": base_n})
    out: list[dict[str, Any]] = []
    for cohort, rows in sorted(by_cohort.items()):
        cs = EmpiricalBernsteinCS(ALPHA)
        points, fails = [], 0
        for i, p in enumerate(rows, 1):
            x = float(bool(p["candidate_failed"]))
            fails += int(x)
            cs.update(x)
            iv = cs.interval()
            points.append({"t": p["created_at"], "rate": fails / i, "lower": round(iv.low, 4),
                           "upper": round(iv.high, 4), "n": i})
        out.append({"cohort": cohort, "arm": candidate_arm, "points": _thin(points)})
    if base_points:
        out.append({"cohort": "all cohorts", "arm": base_arm, "points": _thin(base_points)})
    return out


def _history(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for ev in reversed(events):   # oldest first, as a timeline reads
        evidence = ev.get("evidence") or {}
        verdict = evidence.get("decision") if isinstance(evidence.get("decision"), str) else None
        out.append({"t": ev["created_at"], "action": ev["action"], "actor": ev.get("actor"), "verdict": verdict,
                    "detail": f"{ev['arm']} {ev['from_percent']:g}% → {ev['to_percent']:g}%: {ev.get('reason') or ''}"})
    return out


def dashboard_data(store: Store, cfg: GatewayConfig, hashes: dict[str, dict[str, str]], *,
                   title: str = "tunegate gateway", refresh_s: int | None = 10) -> dict[str, Any]:
    """The ``render_dashboard`` dict for every route of ``cfg`` (a plain, JSON-able dict)."""
    from tunegate.gateway.release import overview
    from tunegate.store.online import pair_rows

    routes = []
    for view in overview(store, cfg, hashes, history=50):
        name = view["route"]
        reqs = _requests(store, name)
        lat: dict[str, list[float]] = defaultdict(list)
        fallbacks = 0
        guardrails: dict[str, int] = defaultdict(int)
        for arm, status, latency, attempts, guards in reqs:
            if status == "ok" and arm is not None:
                lat[arm].append(latency)
            tries = json.loads(attempts)
            if isinstance(tries, list) and len(tries) > 1:   # a retry or a fallback arm answered
                fallbacks += 1
            for g in json.loads(guards):
                if isinstance(g, dict) and g.get("action") == "block":
                    guardrails[str(g.get("check") or "guardrail")] += 1
        arms = []
        base = next((a["arm"] for a in view["arms"] if a["baseline"]), "baseline")
        cand = [a["arm"] for a in view["arms"] if not a["baseline"]]
        for a in view["arms"]:
            xs = lat.get(a["arm"], [])
            role = "incumbent" if a["baseline"] else ("canary" if a["percent"] > 0 else "mirror")
            arms.append({"name": a["arm"], "candidate_hash": a["candidate_hash"], "share": a["percent"] / 100.0,
                         "role": role, "traces": (a["traffic"] or {}).get("requests", 0),
                         "p50_ms": _quantile(xs, 0.5), "p99_ms": _quantile(xs, 0.99)})
        pairs = pair_rows(store, name)
        routes.append({"name": name, "arms": arms, "fallbacks": fallbacks, "guardrails": dict(guardrails),
                       "fail_rate": fail_series(pairs, cand[0] if len(cand) == 1 else "candidate", base),
                       "history": _history(view["history"])})
    return {"title": title, "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "refresh_s": refresh_s, "routes": routes}


def dashboard_html(store: Store, cfg: GatewayConfig, hashes: dict[str, dict[str, str]], *,
                   title: str = "tunegate gateway", refresh_s: int | None = None) -> str:
    """The page itself (an export has no refresh: it is a snapshot)."""
    from tunegate.report.html_dashboard import render_dashboard

    return render_dashboard(dashboard_data(store, cfg, hashes, title=title, refresh_s=refresh_s))


def dashboard_route(gw: Gateway, auth: Callable[[Request], Response | None]) -> Callable[[Request],
                                                                                        Awaitable[Response]]:
    """The ``GET /dashboard`` endpoint: the gateway's own auth, the store read on its store thread."""
    async def dashboard(request: Request) -> Response:
        from starlette.responses import HTMLResponse, JSONResponse

        from tunegate.gateway.validate import error_body

        if (denied := auth(request)) is not None:
            return denied
        if gw.worker is None or gw.snap is None:
            return JSONResponse(error_body("the gateway runs without a store", type_="unavailable"), 503)
        snap = gw.snap
        try:
            page = await gw.worker.call(functools.partial(dashboard_html, refresh_s=10), snap.config, snap.hashes)
        except Exception as e:
            gw.metrics.store_failures.labels("dashboard").inc()
            return JSONResponse(error_body(f"store unavailable: {type(e).__name__}", type_="unavailable"), 503)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})
    return dashboard
