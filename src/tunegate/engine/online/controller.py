"""The release controller: a pure function from (rollout state, online statistics) to a decision.

``ReleaseController(policy).decide(state, snapshot)`` returns ``hold``, ``ramp`` (to the next
step) or ``rollback`` (share 0, for the whole route or for the cohorts that breached), with the
evidence that decided it: statistic, bound, threshold, n, cohort. No clock, no I/O: the gateway's
control loop feeds it and carries out the decision, and tests drive it directly.

Rules, in order:

1. rollback — any rollback condition whose *lower* confidence bound lies beyond its tolerance
   (Δ rate > max_increase, p99 ratio > max_ratio). A breach in a named cohort rolls back that
   cohort only (the pooled breach of the same signal is explained by it; the monitor then
   restarts the pooled sequence without that cohort); a breach in the pooled traffic alone, or of
   a signal not tested per cohort, rolls back the route.
2. ramp — every ramp condition's *upper* bound within its tolerance on every source that has
   data (at least one must), and the step's counts and time met.
3. hold — otherwise, saying what is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from tunegate.core.release_policy import LatencyCondition, RateCondition, ReleasePolicy
from tunegate.engine.online.monitor import ALL, OnlineSnapshot

__all__ = ["Decision", "Evidence", "ReleaseController", "ReleaseState"]

Action = Literal["hold", "ramp", "rollback"]


@dataclass(frozen=True)
class ReleaseState:
    """Where a route's rollout stands. ``step`` indexes the policy's steps."""

    step: int = 0
    step_started_s: float = 0.0
    now_s: float = 0.0
    rolled_back: bool = False
    excluded_cohorts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Evidence:
    """One bound compared with one threshold."""

    signal: str
    source: str
    cohort: str
    statistic: float        # point estimate: Δ rate, or quantile ratio
    bound: float            # the confidence bound the rule read (lower for rollback, upper for ramp)
    threshold: float
    n: int
    alpha: float
    rule: str               # "rollback: lower > threshold" | "ramp: upper <= threshold"
    met: bool

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return round(v, 6) if math.isfinite(v) else None
        return {"signal": self.signal, "source": self.source, "cohort": self.cohort,
                "statistic": num(self.statistic), "bound": num(self.bound), "threshold": self.threshold,
                "n": self.n, "alpha": self.alpha, "rule": self.rule, "met": self.met}


@dataclass(frozen=True)
class Decision:
    action: Action
    percent: float                       # the candidate's share after the decision
    reason: str
    cohorts: tuple[str, ...] | None = None   # rollback scope; None = the whole route
    evidence: list[Evidence] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "percent": self.percent, "reason": self.reason,
                "cohorts": list(self.cohorts) if self.cohorts is not None else None,
                "evidence": [e.to_dict() for e in self.evidence]}


def _threshold(cond: RateCondition | LatencyCondition) -> float:
    return cond.max_increase if isinstance(cond, RateCondition) else cond.max_ratio


@dataclass(frozen=True)
class ReleaseController:
    policy: ReleasePolicy

    def decide(self, state: ReleaseState, stats: OnlineSnapshot) -> Decision:
        steps = self.policy.steps
        current = 0.0 if state.rolled_back else steps[min(state.step, len(steps) - 1)].percent
        if state.rolled_back:
            return Decision("hold", 0.0, "rolled back; a new promotion is needed")
        breaches = self._breaches(state, stats)
        if breaches:
            named = sorted({e.cohort for e in breaches if e.cohort != ALL})
            if named:      # a cohort explains it: roll back that cohort, the others keep the candidate
                breaches = [e for e in breaches if e.cohort != ALL or not self._per_cohort(e.signal)]
            scope = tuple(named) if named and all(e.cohort != ALL for e in breaches) else None
            what = "; ".join(f"{e.signal}[{e.source}, {e.cohort}] lower bound {e.bound:.4g} > {e.threshold:g} "
                             f"(n={e.n})" for e in breaches)
            return Decision("rollback", 0.0 if scope is None else current,
                            f"confident breach: {what}", cohorts=scope, evidence=breaches)
        if state.step >= len(steps) - 1:
            return Decision("hold", current, "at the last step")
        ok, missing, evidence = self._ramp_evidence(state, stats)
        if ok:
            nxt = steps[state.step + 1].percent
            return Decision("ramp", nxt, f"evidence met at {current:g}%: ramp to {nxt:g}%", evidence=evidence)
        return Decision("hold", current, "waiting for evidence: " + "; ".join(missing), evidence=evidence)

    def _per_cohort(self, signal: str) -> bool:
        cond = getattr(self.policy.rollback_when, signal, None)
        return isinstance(cond, RateCondition) and cond.per_cohort

    def _breaches(self, state: ReleaseState, stats: OnlineSnapshot) -> list[Evidence]:
        out: list[Evidence] = []
        for (signal, source, cohort), iv in sorted(stats.intervals.items()):
            cond = getattr(self.policy.rollback_when, signal, None)
            if cond is None or iv.n == 0 or cohort in state.excluded_cohorts:
                continue
            if cohort != ALL and not (isinstance(cond, RateCondition) and cond.per_cohort):
                continue
            thr = _threshold(cond)
            if iv.low > thr:
                out.append(Evidence(signal, source, cohort, iv.estimate, iv.low, thr, iv.n, iv.alpha,
                                    "rollback: lower > threshold", True))
        return out

    def _ramp_evidence(self, state: ReleaseState, stats: OnlineSnapshot) -> tuple[bool, list[str], list[Evidence]]:
        needs = self.policy.step_needs(state.step)
        missing: list[str] = []
        if stats.step_pairs < needs.min_pairs:
            missing.append(f"{stats.step_pairs}/{needs.min_pairs} mirrored pairs")
        if stats.step_requests < needs.min_requests:
            missing.append(f"{stats.step_requests}/{needs.min_requests} candidate requests")
        elapsed = state.now_s - state.step_started_s
        if elapsed < needs.min_duration_s:
            missing.append(f"{elapsed:.0f}/{needs.min_duration_s:g} s at this step")
        evidence: list[Evidence] = []
        for signal, cond in self.policy.ramp_when.items():
            thr = _threshold(cond)
            seen = [(k, iv) for k, iv in sorted(stats.intervals.items())
                    if k[0] == signal and k[2] == ALL and iv.n > 0]
            if not seen:
                missing.append(f"no {signal} data")
                continue
            for (_, source, cohort), iv in seen:
                met = iv.high <= thr
                evidence.append(Evidence(signal, source, cohort, iv.estimate, iv.high, thr, iv.n, iv.alpha,
                                         "ramp: upper <= threshold", met))
                if not met:
                    missing.append(f"{signal}[{source}] upper bound {iv.high:.4g} > {thr:g} (n={iv.n})")
        return not missing, missing, evidence
