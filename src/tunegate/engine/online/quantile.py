"""Confidence sequence for a quantile (p99 latency) of a stream, valid at every sample size.

Method: Howard & Ramdas (2022), "Sequential estimation of quantiles with applications to A/B
testing and best-arm identification", Bernoulli 28(3), Theorem 1 with a conjugate beta-binomial
mixture boundary (Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric,
nonasymptotic confidence sequences", Ann. Statist. 49(2), Section 3).

Why it works: at the true q-quantile x_q of a continuous distribution, the count
S_t = #{i ≤ t: X_i ≤ x_q} is Binomial(t, q). Its beta-binomial mixture likelihood ratio::

    M_t(s) = B(a + s, b + t − s) / B(a, b) / (q^s (1 − q)^(t − s)),   a = qρ, b = (1 − q)ρ

is a nonnegative martingale with mean 1, so by Ville's inequality P(∃t: M_t(S_t) ≥ 1/α) ≤ α.
{s: M_t(s) < 1/α} is an interval [s_lo, s_hi] (log M_t is convex in s); translating counts into
order statistics gives x_q ∈ [X_(s_lo), X_(s_hi + 1)] for all t with probability ≥ 1 − α
(X_(0) = −∞, X_(t+1) = +∞). ``rho`` sets where the boundary is tightest (in observations).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from tunegate.engine.online.bounded import Interval

__all__ = ["QuantileCS", "count_bounds"]


def count_bounds(t: int, q: float, alpha: float, rho: float) -> tuple[int, int]:
    """[s_lo, s_hi]: the counts below the true quantile that the mixture does not reject at time t."""
    from scipy.special import betaln

    if t <= 0:
        return 0, 0
    a, b = q * rho, (1.0 - q) * rho
    s = np.arange(t + 1, dtype=np.float64)
    log_m = betaln(a + s, b + t - s) - betaln(a, b) - s * math.log(q) - (t - s) * math.log1p(-q)
    ok = np.flatnonzero(log_m < math.log(1.0 / alpha))
    if ok.size == 0:          # cannot happen for a proper mixture, but never return an empty set
        k = round(q * t)
        return k, k
    return int(ok[0]), int(ok[-1])


class QuantileCS:
    """Streaming (1 − α) CS for the ``q``-quantile; keeps the observations (latencies are small)."""

    def __init__(self, q: float, alpha: float, *, rho: float = 200.0) -> None:
        if not 0.0 < q < 1.0:
            raise ValueError(f"q must be in (0, 1), got {q}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.q, self.alpha, self.rho = q, alpha, rho
        self._xs: list[float] = []
        self._low = -math.inf
        self._high = math.inf
        self._seen = 0

    def update(self, x: float) -> None:
        self._xs.append(float(x))

    def extend(self, xs: npt.ArrayLike) -> None:
        self._xs.extend(float(v) for v in np.asarray(xs, dtype=np.float64).ravel())

    @property
    def n(self) -> int:
        return len(self._xs)

    def interval(self) -> Interval:
        """The current interval (running intersection with every earlier query)."""
        t = len(self._xs)
        if t == 0:
            return Interval(estimate=math.nan, low=-math.inf, high=math.inf, n=0, alpha=self.alpha)
        xs = np.sort(np.asarray(self._xs))
        if t != self._seen:
            s_lo, s_hi = count_bounds(t, self.q, self.alpha, self.rho)
            low = float(xs[s_lo - 1]) if s_lo >= 1 else -math.inf
            high = float(xs[s_hi]) if s_hi + 1 <= t else math.inf
            self._low, self._high = max(self._low, low), min(self._high, high)
            self._seen = t
        est = float(np.quantile(xs, self.q))
        return Interval(estimate=est, low=self._low, high=self._high, n=t, alpha=self.alpha)
