"""The release controller inside the gateway: observe, score, decide, act — within seconds.

``ReleaseControl([RouteRelease(...)]).attach(gw)`` registers a request hook and a feedback hook on a
:class:`~tunegate.gateway.service.Gateway`; ``await control.start()`` (on the gateway's loop, after
the gateway started) starts mirroring, the scoring workers and the decision loop.

Per released route and candidate arm it keeps an :class:`~tunegate.engine.online.OnlineMonitor`:

* live canary traffic (request hook): error, fallback/schema-repair, latency per arm, and — when
  ``score_live`` — the evaluator suite's verdict on the answer each arm actually served;
* mirrored pairs (``mirror_share`` of baseline-served traffic replayed to the candidate): both answers
  scored by the same suite in batches in worker processes (:mod:`tunegate.gateway.scoring`), which
  also store them as paired rows keyed by request id, one transaction per batch. Answers waiting
  for scoring are bounded per route (``max_pending_scores``): more are dropped and counted
  (``dropped_scores``, ``tunegate_gateway_scoring_dropped`` in /metrics);
* thumbs up/down from ``POST /v1/feedback``.

Every ``tick_s`` the pure :class:`~tunegate.engine.online.ReleaseController`
decides. A rollback sets the arm's share to 0 through :func:`~tunegate.gateway.release.rollback`
(audited, visible in ``tunegate rollout history``) and the gateway re-reads its state at once; a
cohort rollback routes that cohort to the baseline (``Gateway.cohort_blocks``) and is audited as
``rollback_cohort``; a ramp raises the share to the next step through ``set_share``. Each decision is
also a ``release_decisions`` row with its evidence (statistic, bound, threshold, n, α, cohort).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tunegate.core.release_policy import ReleasePolicy
from tunegate.engine.online import Decision, OnlineMonitor, ReleaseController, ReleaseState
from tunegate.gateway.mirror import Mirror, ShadowResult
from tunegate.gateway.records import RequestRecord
from tunegate.gateway.release import rollback, set_share
from tunegate.gateway.scoring import OnlineScorer
from tunegate.store import online as q

if TYPE_CHECKING:
    from tunegate.gateway.service import Gateway
    from tunegate.gateway.tracing_hook import GatewayTracing
    from tunegate.store.sqlite import Store

__all__ = ["ACTOR", "ReleaseControl", "RouteRelease"]

_log = logging.getLogger(__name__)
ACTOR = "release-controller"


@dataclass(frozen=True)
class RouteRelease:
    """What the controller watches on one route: the candidate ``arm``, its policy and evaluators."""

    route: str
    arm: str
    policy: ReleasePolicy
    evaluators: str | list[str] | None = None   #: the offline gate's suite; None: no scoring
    mirror_share: float = 0.0                    #: share of baseline-served traffic mirrored (0..1)
    mirror_queue: int = 1000
    mirror_concurrency: int = 4
    mirror_timeout_s: float = 30.0
    score_live: bool = True                      #: score the answers each arm served (canary fail_rate)
    max_pending_scores: int = 1000               #: answers (live + pairs) waiting for scoring; more are dropped
    references: bool = False                     #: score against the client's metadata.reference


@dataclass
class _Route:
    cfg: RouteRelease
    monitor: OnlineMonitor
    controller: ReleaseController
    state: ReleaseState = field(default_factory=ReleaseState)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    mirror: Mirror | None = None
    scorer: OnlineScorer | None = None
    pending: int = 0
    dropped_scores: int = 0
    decisions: list[Decision] = field(default_factory=list)
    last: Decision | None = None          #: the latest decision, holds included (what status shows)


def _audit(store: Store, route: str, arm: str, decision: dict[str, Any], percent: float, action: str,
           policy: ReleasePolicy, candidate_hash: str | None, from_percent: float) -> dict[str, Any]:
    """One transaction per side: the rollout event (``rollout history``) and the decision row."""
    evidence = {"decision": decision, "policy": {"name": policy.name, "version": policy.version, "hash": policy.hash}}
    if action == "rollback":
        rollback(store, route, ACTOR, decision["reason"], evidence, arm)
    else:
        set_share(store, route, arm, percent, ACTOR, decision["reason"], evidence, action=action)
    return q.insert_decision(store, route=route, arm=arm, action=action, from_percent=from_percent,
                             to_percent=percent, cohorts=decision["cohorts"], reason=decision["reason"],
                             evidence=decision["evidence"], policy_hash=policy.hash, candidate_hash=candidate_hash)


def _blocked(store: Store, route: str, arm: str, candidate_hash: str) -> list[str]:
    out: list[str] = []
    for d in q.list_decisions(store, route):
        if d["arm"] == arm and d["action"] == "rollback_cohort" and d["candidate_hash"] == candidate_hash:
            out.extend(d["cohorts"] or [])
    return sorted(set(out))


class ReleaseControl:
    """See the module docstring."""

    def __init__(self, routes: list[RouteRelease], *, tick_s: float = 0.5, scorer_workers: int = 1,
                 clock: Callable[[], float] = time.monotonic, tracing: GatewayTracing | None = None) -> None:
        self._routes = {r.route: _Route(r, OnlineMonitor(r.policy), ReleaseController(r.policy)) for r in routes}
        if len(self._routes) != len(routes):
            raise ValueError("one RouteRelease per route")
        self.tick_s, self.clock, self.scorer_workers = tick_s, clock, scorer_workers
        self.tracing = tracing            #: evaluator results and shadow calls also become spans
        self.gw: Gateway | None = None
        self._task: asyncio.Task[None] | None = None
        self._scorers: dict[str, OnlineScorer] = {}

    # -- wiring -----------------------------------------------------------------------------------
    def attach(self, gw: Gateway) -> ReleaseControl:
        self.gw = gw
        gw.request_hooks.append(self.on_request)
        gw.feedback_hooks.append(self.on_feedback)
        gw.release_status = self.status
        return self

    async def start(self) -> None:
        gw = self.gw
        assert gw is not None and gw.snap is not None, "attach() to a started gateway first"
        for r in self._routes.values():
            spec = r.cfg.evaluators
            if spec is not None:
                key = spec if isinstance(spec, str) else ",".join(spec)
                if key not in self._scorers:
                    db = gw.worker.db if gw.worker is not None else None
                    self._scorers[key] = OnlineScorer(spec, workers=self.scorer_workers, db=db,
                                                      use_store=gw.worker is not None)
                r.scorer = self._scorers[key]
            if r.cfg.mirror_share > 0 and r.scorer is not None:
                r.mirror = Mirror(gw, r.cfg.route, r.cfg.arm, self._on_shadow, share=r.cfg.mirror_share,
                                  queue_size=r.cfg.mirror_queue, concurrency=r.cfg.mirror_concurrency,
                                  timeout_s=r.cfg.mirror_timeout_s)
                r.mirror.start()
            now = self.clock()
            r.state = ReleaseState(step=self._step_of(r), step_started_s=now, now_s=now)
            if gw.worker is not None:
                h = self._hash(r)
                blocked = await gw.worker.call(_blocked, r.cfg.route, r.cfg.arm, h)
                if blocked:
                    self._block(r, blocked)
        self._task = asyncio.create_task(self._loop(), name="tunegate-release-control")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for r in self._routes.values():
            if r.mirror is not None:
                await r.mirror.aclose()
        for s in self._scorers.values():
            s.close()

    def route(self, name: str) -> _Route:
        return self._routes[name]

    def status(self) -> list[dict[str, Any]]:
        """Per watched route, what only this process knows: the step and the evidence gathered at it,
        the scoring backlog and what was dropped, the mirror's counters, the latest decision (holds
        included). ``GET /v1/rollout`` returns it as ``release``; ``tunegate rollout status --gateway``
        prints it. Why here and not in the store: these counters change on every request, and the
        store keeps only decisions that moved traffic."""
        now = self.clock()
        out: list[dict[str, Any]] = []
        for name, r in self._routes.items():
            steps = r.cfg.policy.steps
            step = min(r.state.step, len(steps) - 1)
            try:
                share: float | None = self._share(r)
            except (AssertionError, KeyError):   # not started, or the arm left the gateway file
                share = None
            out.append({
                "route": name, "arm": r.cfg.arm, "percent": share, "step": step,
                "steps": [s.percent for s in steps], "rolled_back": r.state.rolled_back,
                "excluded_cohorts": sorted(r.state.excluded_cohorts),
                "at_step": {"pairs": r.monitor.step_pairs, "requests": r.monitor.step_requests,
                            "seconds": round(max(0.0, now - r.state.step_started_s), 1)},
                "needs": r.cfg.policy.step_needs(step).model_dump(),
                "scoring": {"pending": r.pending, "max_pending": r.cfg.max_pending_scores,
                            "dropped": r.dropped_scores},
                "mirror": None if r.mirror is None else {"share": r.cfg.mirror_share, "queued": r.mirror.queued,
                                                         **asdict(r.mirror.stats)},
                "last_decision": None if r.last is None else r.last.to_dict(),
            })
        return out

    # -- rollout state ----------------------------------------------------------------------------
    def _hash(self, r: _Route) -> str:
        assert self.gw is not None and self.gw.snap is not None
        return self.gw.snap.hashes[r.cfg.route][r.cfg.arm]

    def _share(self, r: _Route) -> float:
        assert self.gw is not None and self.gw.snap is not None
        return self.gw.snap.state.share(r.cfg.route, r.cfg.arm, self._hash(r))

    def _step_of(self, r: _Route) -> int:
        share = self._share(r)
        below = [i for i, s in enumerate(r.cfg.policy.steps) if s.percent <= share + 1e-9]
        return below[-1] if below else 0

    def _block(self, r: _Route, cohorts: list[str]) -> None:
        assert self.gw is not None
        key = (r.cfg.route, r.cfg.arm)
        self.gw.cohort_blocks[key] = frozenset(self.gw.cohort_blocks.get(key, frozenset()) | set(cohorts))
        r.monitor.exclude(cohorts)
        r.state = ReleaseState(r.state.step, r.state.step_started_s, r.state.now_s, r.state.rolled_back,
                               r.state.excluded_cohorts | frozenset(cohorts))

    # -- observations -----------------------------------------------------------------------------
    def _side(self, r: _Route, arm: str | None) -> str | None:
        assert self.gw is not None and self.gw.snap is not None
        route = self.gw.snap.config.route(r.cfg.route)
        if arm == r.cfg.arm:
            return "candidate"
        if route is not None and arm == route.baseline:
            return "base"
        return None

    def _job(self, r: _Route, rec: RequestRecord, kind: str) -> dict[str, Any]:
        """A picklable scoring job: the worker process builds the row and outputs from it."""
        assert self.gw is not None and self.gw.snap is not None
        route = self.gw.snap.config.route(r.cfg.route)
        return {"kind": kind, "request_id": rec.request_id, "request": rec.request, "cohort": rec.cohort,
                "schema": route.json_schema if route is not None else None, "references": r.cfg.references,
                "text": rec.response_text, "tool_calls": rec.tool_calls, "finish_reason": rec.finish_reason,
                "want_scores": self.tracing is not None}

    def _submit(self, r: _Route, job: dict[str, Any], kind: str, done: Callable[[dict[str, Any]], None]) -> None:
        """Queue a job for the scoring workers, or drop and count it when the route's backlog is full."""
        assert r.scorer is not None and self.gw is not None

        def finish(res: dict[str, Any]) -> None:
            r.pending -= 1
            done(res)

        if r.pending < r.cfg.max_pending_scores:
            r.pending += 1
            if r.scorer.submit(job, finish, asyncio.get_running_loop()):
                return
            r.pending -= 1   # the scorer is closed (shutdown)
        r.dropped_scores += 1
        self.gw.metrics.scoring_dropped.labels(r.cfg.route, kind).inc()

    async def on_request(self, rec: RequestRecord) -> None:
        """Request hook: canary observations, mirroring, live scoring. Never blocks on I/O."""
        r = self._routes.get(rec.route)
        if r is None or r.state.rolled_back:
            return
        cohorts = [rec.cohort] if rec.cohort else []
        side = self._side(r, rec.chosen_arm)
        if side is not None and rec.status in ("ok", "error"):
            fell_back = rec.arm != rec.chosen_arm or any(a.outcome != "ok" for a in rec.attempts)
            r.monitor.observe_request(side, cohorts, error=rec.status == "error", fallback=fell_back,
                                      latency_ms=rec.latency_ms if rec.status == "ok" else None)
        if r.mirror is not None:
            blocked = self.gw.cohort_blocks.get((r.cfg.route, r.cfg.arm), frozenset()) if self.gw else frozenset()
            if rec.cohort not in blocked:
                r.mirror.offer(rec)
        served = self._side(r, rec.arm)
        if r.cfg.score_live and r.scorer is not None and served is not None and rec.status == "ok":
            self._submit(r, self._job(r, rec, "live"), "live", lambda res: self._live_done(r, rec, served, res))

    def _live_done(self, r: _Route, rec: RequestRecord, side: str, res: dict[str, Any]) -> None:
        if "error" in res:
            _log.warning("live scoring failed for %s: %s", rec.request_id, res["error"])
            return
        if res["failed"] is not None:
            r.monitor.observe_request(side, [rec.cohort] if rec.cohort else [], failed=res["failed"])
        if self.tracing is not None and res.get("scores"):
            self.tracing.evaluations(rec.request_id, res["scores"], arm=rec.arm)

    async def on_feedback(self, row: dict[str, Any]) -> None:
        r = self._routes.get(str(row.get("route")))
        if r is None or row.get("thumbs") is None:
            return
        side = self._side(r, row.get("arm"))
        if side is not None:
            r.monitor.observe_feedback(side, [row["cohort"]] if row.get("cohort") else [],
                                       thumbs_down=row["thumbs"] == -1)

    async def _on_shadow(self, res: ShadowResult) -> None:
        """A finished shadow call: queue the pair for scoring (the worker also stores it)."""
        r = self._routes[res.record.route]
        rec = res.record
        job = self._job(r, rec, "pair") | {
            "completion": res.completion, "route": rec.route, "base_arm": rec.arm, "candidate_arm": res.arm,
            "base_hash": rec.candidate_hash, "candidate_hash": res.candidate_hash, "base_prompt": rec.prompt_version,
            "candidate_prompt": res.prompt_version, "candidate_error": res.error}
        self._submit(r, job, "pair", lambda out: self._pair_done(r, res, out))

    def _pair_done(self, r: _Route, res: ShadowResult, out: dict[str, Any]) -> None:
        rec = res.record
        if "error" in out:
            _log.warning("mirrored pair %s not scored: %s", rec.request_id, out["error"])
            return
        if "store_error" in out:   # losing a stored pair must not stop the controller
            _log.warning("mirrored pair %s not stored: %s", rec.request_id, out["store_error"])
            if self.gw is not None:
                self.gw.metrics.store_failures.labels("online_pairs").inc()
        if self.tracing is not None:
            if out.get("base_scores"):
                self.tracing.evaluations(rec.request_id, out["base_scores"], arm=rec.arm)
            self.tracing.shadow(res, out.get("candidate_scores"))
        cohorts = [rec.cohort] if rec.cohort else []
        if res.error is not None:
            r.monitor.observe_request("candidate", cohorts, error=True)   # shadow errors count as errors
        elif out["base_failed"] is not None and out["candidate_failed"] is not None:
            r.monitor.observe_pair(cohorts, base_failed=out["base_failed"], candidate_failed=out["candidate_failed"])
            # No decision here: deciding after every pair rebuilt every interval (the p99 sequence sorts
            # its whole history) 200 times a second at 200 RPS and stalled the gateway's loop (mirrored
            # primary p99 2.7 s vs 0.69 s with decisions on the tick only; bench/mirror_overhead.py).
            # The tick loop (tick_s, default 0.5 s) still acts within a second of a confident breach.

    # -- decisions --------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            if self.gw is not None:
                for name, r in self._routes.items():
                    self.gw.metrics.scoring_pending.labels(name).set(r.pending)
            for name in list(self._routes):
                try:
                    await self.decide(name)
                except Exception as e:
                    _log.exception("release controller: decision on %s failed: %s", name, e)

    async def decide(self, name: str) -> Decision | None:
        """Decide now for one route and carry the decision out. None when the arm has no traffic."""
        r = self._routes[name]
        gw = self.gw
        assert gw is not None and gw.snap is not None
        async with r.lock:
            if r.state.rolled_back:
                return None
            share = self._share(r)
            if share <= 0:
                return None
            now = self.clock()
            r.state = ReleaseState(r.state.step, r.state.step_started_s, now, False, r.state.excluded_cohorts)
            d = r.controller.decide(r.state, r.monitor.snapshot())
            r.last = d
            if d.action == "hold":
                return d
            h = self._hash(r)
            if d.action == "rollback" and d.cohorts is not None:
                self._block(r, list(d.cohorts))
                action, pct = "rollback_cohort", share
            elif d.action == "rollback":
                r.state = ReleaseState(r.state.step, r.state.step_started_s, now, True, r.state.excluded_cohorts)
                action, pct = "rollback", 0.0
            else:
                action, pct = "ramp", d.percent
                r.state = ReleaseState(r.state.step + 1, now, now, False, r.state.excluded_cohorts)
                r.monitor.start_step()
            r.decisions.append(d)
            _log.warning("release controller: %s %s/%s → %s: %s", action, name, r.cfg.arm, pct, d.reason)
            if gw.worker is not None:
                await gw.worker.call(_audit, name, r.cfg.arm, d.to_dict(), pct, action, r.cfg.policy, h, share)
                await gw.refresh()
            return d
