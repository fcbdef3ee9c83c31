"""Live statistics of one route's rollout: every signal the release policy reads, as sequences.

The monitor turns gateway events into observations of confidence sequences keyed by
(signal, source, cohort): ``source`` is ``mirror`` (paired: both arms answered the same request)
or ``canary`` (unpaired: each live request went to one arm). Cohort ``*`` pools all traffic; the
first ``max_cohorts`` cohorts seen (or those the policy lists) get their own sequences, each at the
policy's per-test α (Bonferroni over the family the policy declares), so the chance that *any*
bound the controller reads is ever wrong stays ≤ the policy's α however often it looks.

When a cohort is rolled back its traffic stops counting, and the pooled sequences of per-cohort
signals restart without it (alpha-spending: generation g runs at α/2^(g+1)), so a regression
confined to one cohort does not go on to roll back the whole route.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tunegate.core.release_policy import LatencyCondition, ReleasePolicy
from tunegate.engine.online.bounded import Interval
from tunegate.engine.online.compare import PairedDifference, QuantileRatio, TwoSampleDifference

__all__ = ["ALL", "OnlineMonitor", "OnlineSnapshot", "StreamKey"]

ALL = "*"
#: (signal, source, cohort)
StreamKey = tuple[str, str, str]


@dataclass(frozen=True)
class OnlineSnapshot:
    """What the controller reads: an interval per stream, and the counts of the current step."""

    intervals: dict[StreamKey, Interval]
    step_pairs: int = 0
    step_requests: int = 0
    alpha_per_test: float = 0.0

    def get(self, signal: str, source: str, cohort: str = ALL) -> Interval | None:
        return self.intervals.get((signal, source, cohort))


@dataclass
class OnlineMonitor:
    """Accumulates one route's observations for a release policy. Not thread-safe (one loop owns it)."""

    policy: ReleasePolicy
    _streams: dict[StreamKey, PairedDifference | TwoSampleDifference | QuantileRatio] = field(
        default_factory=dict)
    _cohorts: list[str] = field(default_factory=list)
    step_pairs: int = 0
    step_requests: int = 0
    excluded: set[str] = field(default_factory=set)
    _generation: int = 0

    def __post_init__(self) -> None:
        self._alpha = self.policy.alpha_per_test
        self._signals = self.policy.monitored()
        if self.policy.cohorts:
            self._cohorts = list(self.policy.cohorts)

    def _tracked(self, signal: str, cohorts: Iterable[str]) -> list[str]:
        if not self._signals.get(signal, False):
            return [ALL]
        cohorts = list(cohorts)
        if self.excluded.intersection(cohorts):
            return []                  # rolled back for this cohort: its traffic no longer tells us anything
        out = [ALL]
        for c in cohorts:
            if c not in self._cohorts and self.policy.cohorts is None and len(self._cohorts) < self.policy.max_cohorts:
                self._cohorts.append(c)
            if c in self._cohorts:
                out.append(c)
        return out

    def _alpha_for(self, key: StreamKey) -> float:
        """Pooled streams of per-cohort signals restart after a cohort rollback; generation g gets
        α/2^(g+1), so all generations together spend at most the stream's α."""
        if key[2] == ALL and self._signals.get(key[0], False):
            return self._alpha * 0.5 ** (self._generation + 1)
        return self._alpha

    def exclude(self, cohorts: Iterable[str]) -> None:
        """Cohorts rolled back: drop their traffic, restart the pooled streams that included them."""
        new = set(cohorts) - self.excluded
        if not new:
            return
        self.excluded |= new
        self._generation += 1
        for key in [k for k in self._streams if k[2] == ALL and self._signals.get(k[0], False)]:
            del self._streams[key]

    def _stream(self, key: StreamKey) -> PairedDifference | TwoSampleDifference | QuantileRatio:
        s = self._streams.get(key)
        if s is None:
            alpha = self._alpha_for(key)
            if key[0] == "p99_latency":
                cond = self.policy.rollback_when.p99_latency or self.policy.ramp_when.p99_latency
                q = cond.quantile if isinstance(cond, LatencyCondition) else 0.99
                s = QuantileRatio(q=q, alpha=alpha)
            elif key[1] == "mirror":
                s = PairedDifference(alpha=alpha)
            else:
                s = TwoSampleDifference(alpha=alpha)
            self._streams[key] = s
        return s

    def observe_pair(self, cohorts: Iterable[str], *, base_failed: bool, candidate_failed: bool) -> None:
        """A mirrored request scored on both arms by the route's evaluator suite."""
        if "fail_rate" not in self._signals:
            return
        self.step_pairs += 1
        for c in self._tracked("fail_rate", list(cohorts)):
            s = self._stream(("fail_rate", "mirror", c))
            assert isinstance(s, PairedDifference)
            s.update(float(base_failed), float(candidate_failed))

    def observe_request(self, arm: str, cohorts: Iterable[str], *, error: bool | None = None,
                        fallback: bool | None = None, failed: bool | None = None,
                        latency_ms: float | None = None) -> None:
        """A live request answered by ``arm`` (``candidate`` or ``base``); None = not measured."""
        cohorts = list(cohorts)
        if arm == "candidate":
            self.step_requests += 1
        for signal, value in (("error_rate", error), ("fallback_rate", fallback), ("fail_rate", failed)):
            if value is None or signal not in self._signals:
                continue
            for c in self._tracked(signal, cohorts):
                s = self._stream((signal, "canary", c))
                assert isinstance(s, TwoSampleDifference)
                s.update(arm, float(value))
        if latency_ms is not None and "p99_latency" in self._signals:
            q = self._stream(("p99_latency", "canary", ALL))
            assert isinstance(q, QuantileRatio)
            q.update(arm, latency_ms)

    def observe_feedback(self, arm: str, cohorts: Iterable[str], *, thumbs_down: bool) -> None:
        if "thumbs_down_rate" not in self._signals:
            return
        for c in self._tracked("thumbs_down_rate", list(cohorts)):
            s = self._stream(("thumbs_down_rate", "feedback", c))
            assert isinstance(s, TwoSampleDifference)
            s.update(arm, float(thumbs_down))

    def start_step(self) -> None:
        """A new ramp step began: the step's evidence counters start again (the sequences do not)."""
        self.step_pairs = 0
        self.step_requests = 0

    def snapshot(self) -> OnlineSnapshot:
        return OnlineSnapshot(intervals={k: s.interval() for k, s in self._streams.items()},
                              step_pairs=self.step_pairs, step_requests=self.step_requests,
                              alpha_per_test=self._alpha)
