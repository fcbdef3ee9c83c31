"""Candidate-vs-base differences as confidence sequences: paired (mirrored), unpaired (canary), p99.

* Paired: a mirrored request is answered by both arms, so each pair gives d = fail_cand − fail_base
  ∈ {−1, 0, 1}; the mean of (d + 1)/2 ∈ [0, 1] gets one empirical-Bernstein CS at level α, mapped
  back to Δ. Pairing removes per-request difficulty from the noise.
* Unpaired: live canary traffic sends each request to one arm only. Each arm's rate gets a CS at
  α/2; the union bound gives Δ ∈ [L_c − U_b, U_c − L_b] at every time with probability ≥ 1 − α.
* Quantile ratio: each arm's p99 gets a quantile CS at α/2; the ratio candidate/base lies in
  [L_c / U_b, U_c / L_b].

A breach is "the whole interval lies beyond the tolerance" — never a point estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tunegate.engine.online.bounded import EmpiricalBernsteinCS, Interval
from tunegate.engine.online.quantile import QuantileCS

__all__ = ["PairedDifference", "QuantileRatio", "TwoSampleDifference"]


@dataclass
class PairedDifference:
    """Δ = mean(candidate) − mean(base) from paired observations in [0, 1]."""

    alpha: float

    def __post_init__(self) -> None:
        self._cs = EmpiricalBernsteinCS(self.alpha)

    def update(self, base: float, candidate: float) -> None:
        self._cs.update((candidate - base + 1.0) / 2.0)

    @property
    def n(self) -> int:
        return int(self._cs.n)

    def interval(self) -> Interval:
        iv = self._cs.interval()
        return Interval(estimate=2 * iv.estimate - 1 if iv.n else math.nan, low=2 * iv.low - 1,
                        high=2 * iv.high - 1, n=iv.n, alpha=self.alpha)


@dataclass
class TwoSampleDifference:
    """Δ = mean(candidate) − mean(base) from two independent streams in [0, 1] (live canary)."""

    alpha: float

    def __post_init__(self) -> None:
        self.base = EmpiricalBernsteinCS(self.alpha / 2)
        self.candidate = EmpiricalBernsteinCS(self.alpha / 2)

    def update(self, arm: str, value: float) -> None:
        (self.candidate if arm == "candidate" else self.base).update(value)

    @property
    def n(self) -> int:
        """The smaller arm's count: the evidence is only as strong as the thinner side."""
        return int(min(self.base.n, self.candidate.n))

    def interval(self) -> Interval:
        b, c = self.base.interval(), self.candidate.interval()
        est = c.estimate - b.estimate if b.n and c.n else math.nan
        return Interval(estimate=est, low=c.low - b.high, high=c.high - b.low, n=self.n, alpha=self.alpha)


@dataclass
class QuantileRatio:
    """candidate q-quantile / base q-quantile (e.g. p99 latency), from two independent streams."""

    q: float
    alpha: float

    def __post_init__(self) -> None:
        self.base = QuantileCS(self.q, self.alpha / 2)
        self.candidate = QuantileCS(self.q, self.alpha / 2)

    def update(self, arm: str, value: float) -> None:
        (self.candidate if arm == "candidate" else self.base).update(value)

    @property
    def n(self) -> int:
        return min(self.base.n, self.candidate.n)

    def interval(self) -> Interval:
        b, c = self.base.interval(), self.candidate.interval()
        est = c.estimate / b.estimate if b.n and c.n and b.estimate > 0 else math.nan
        low = c.low / b.high if b.high > 0 and math.isfinite(b.high) and c.low > -math.inf else 0.0
        high = c.high / b.low if b.low > 0 else math.inf
        return Interval(estimate=est, low=max(low, 0.0), high=high, n=self.n, alpha=self.alpha)
