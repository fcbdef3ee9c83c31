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

Bounded cost: a gateway feeds this every request for days, and the controller asks for the
interval on every tick. So (1) the count bounds are searched in a window around q·t that widens
until the accepted set lies strictly inside it (the set is an interval because log M_t is convex
in s), which costs O(√t) instead of O(t); and (2) after ``exact_limit`` observations the values
move into a histogram of log-spaced bins (relative width ``bin_width``, default 0.5 %). An order
statistic is then known only to its bin, so the bounds are taken at the bin's outer edges (lower
bound: lower edge, upper bound: upper edge): the interval can only get wider, so it stays valid.
Memory is the number of distinct bins (a few thousand for latencies), not the number of requests.
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
    log_c = math.log(1.0 / alpha)
    mid = round(q * t)
    # the accepted set is an interval around q·t of width O(sqrt(t log t)); widen until it fits
    width = 16 + math.ceil(4.0 * math.sqrt(t * q * (1.0 - q) * (log_c + math.log1p(t / rho) + 1.0)))
    while True:
        lo, hi = max(0, mid - width), min(t, mid + width)
        s = np.arange(lo, hi + 1, dtype=np.float64)
        log_m = betaln(a + s, b + t - s) - betaln(a, b) - s * math.log(q) - (t - s) * math.log1p(-q)
        ok = np.flatnonzero(log_m < log_c)
        if ok.size == 0:      # cannot happen for a proper mixture, but never return an empty set
            return mid, mid
        first, last = lo + int(ok[0]), lo + int(ok[-1])
        if (first > lo or lo == 0) and (last < hi or hi == t):
            return first, last
        width *= 2


class _LogBins:
    """Counts of values in log-spaced bins (sign-symmetric, so any real value has a bin)."""

    def __init__(self, width: float) -> None:
        self._step = math.log1p(width)
        self._counts: dict[int, int] = {}

    def key(self, x: float) -> int:
        k = math.floor(math.log1p(abs(x)) / self._step)
        return k + 1 if x > 0 else (-k - 1 if x < 0 else 0)

    def edges(self, key: int) -> tuple[float, float]:
        """(lower, upper) edge of a bin: every value in it lies in [lower, upper]."""
        if key == 0:
            return 0.0, 0.0
        k = abs(key) - 1
        lo, hi = math.expm1(k * self._step), math.expm1((k + 1) * self._step)
        return (lo, hi) if key > 0 else (-hi, -lo)

    def add(self, x: float, n: int = 1) -> None:
        k = self.key(x)
        self._counts[k] = self._counts.get(k, 0) + n

    def order_stats(self, ranks: list[int]) -> list[tuple[float, float]]:
        """Bin edges holding the 1-based order statistics ``ranks`` (ascending ranks)."""
        out: list[tuple[float, float]] = []
        keys = sorted(self._counts)
        cum, i = 0, 0
        for r in ranks:
            while cum + self._counts[keys[i]] < r:
                cum += self._counts[keys[i]]
                i += 1
            out.append(self.edges(keys[i]))
        return out


class QuantileCS:
    """Streaming (1 − α) CS for the ``q``-quantile, in bounded memory (see the module docstring)."""

    def __init__(self, q: float, alpha: float, *, rho: float = 200.0, exact_limit: int = 50_000,
                 bin_width: float = 0.005) -> None:
        if not 0.0 < q < 1.0:
            raise ValueError(f"q must be in (0, 1), got {q}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if exact_limit < 1 or not 0.0 < bin_width < 1.0:
            raise ValueError("exact_limit must be >= 1 and bin_width in (0, 1)")
        self.q, self.alpha, self.rho = q, alpha, rho
        self.exact_limit, self.bin_width = exact_limit, bin_width
        self._xs: list[float] = []
        self._bins: _LogBins | None = None
        self._t = 0
        self._low = -math.inf
        self._high = math.inf
        self._seen = 0
        self._est = math.nan

    def update(self, x: float) -> None:
        self._t += 1
        if self._bins is not None:
            self._bins.add(float(x))
            return
        self._xs.append(float(x))
        if len(self._xs) > self.exact_limit:  # from here on: bins, bounded memory
            self._bins = _LogBins(self.bin_width)
            for v in self._xs:
                self._bins.add(v)
            self._xs = []

    def extend(self, xs: npt.ArrayLike) -> None:
        for v in np.asarray(xs, dtype=np.float64).ravel():
            self.update(float(v))

    @property
    def n(self) -> int:
        return self._t

    @property
    def binned(self) -> bool:
        """True once the observations live in bins (order statistics known to ``bin_width``)."""
        return self._bins is not None

    def interval(self) -> Interval:
        """The current interval (running intersection with every earlier query)."""
        t = self._t
        if t == 0:
            return Interval(estimate=math.nan, low=-math.inf, high=math.inf, n=0, alpha=self.alpha)
        if t != self._seen:
            s_lo, s_hi = count_bounds(t, self.q, self.alpha, self.rho)
            k_est = min(t, max(1, math.ceil(self.q * t)))
            if self._bins is None:
                xs = np.sort(np.asarray(self._xs))
                low = float(xs[s_lo - 1]) if s_lo >= 1 else -math.inf
                high = float(xs[s_hi]) if s_hi + 1 <= t else math.inf
                self._est = float(np.quantile(xs, self.q))
            else:
                ranks = sorted({r for r in (s_lo, s_hi + 1, k_est) if 1 <= r <= t})
                edges = dict(zip(ranks, self._bins.order_stats(ranks), strict=True))
                low = edges[s_lo][0] if s_lo >= 1 else -math.inf
                high = edges[s_hi + 1][1] if s_hi + 1 <= t else math.inf
                self._est = sum(edges[k_est]) / 2.0
            self._low, self._high = max(self._low, low), min(self._high, high)
            self._seen = t
        return Interval(estimate=self._est, low=self._low, high=self._high, n=t, alpha=self.alpha)
