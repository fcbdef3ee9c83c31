"""Confidence sequence for the mean of a bounded stream: predictable plug-in empirical Bernstein.

Why a confidence *sequence*: the gateway looks at its statistics after every request. A fixed-n
interval checked that often covers the truth far less than 95% of the time (optional stopping),
so a canary would be rolled back by noise sooner or later. A confidence sequence (CS) covers the
mean at every time simultaneously — P(∃t: μ ∉ C_t) ≤ α — so it may be checked continuously.

Method: Waudby-Smith & Ramdas (2023), "Estimating means of bounded random variables by betting",
JRSS-B 86(1), Theorem 2 (PrPl-EB). For X_i ∈ [0, 1] with conditional mean μ::

    μ̂_t  = (1/2 + Σ X_i) / (t + 1)                       (predictable mean estimate)
    σ̂²_t = (1/4 + Σ (X_i − μ̂_i)²) / (t + 1)
    λ_t  = min( sqrt(2 log(2/α) / (σ̂²_{t−1} t log(1 + t))), c )
    C_t  = Σλ_i X_i / Σλ_i  ±  (log(2/α) + Σ 4 (X_i − μ̂_{i−1})² ψ_E(λ_i)) / Σλ_i,
           ψ_E(λ) = (−log(1 − λ) − λ) / 4

It adapts to the variance (a 2% fail rate gets a much tighter sequence than Hoeffding's), costs
O(1) per observation, and stays valid when the conditional mean drifts (it then covers the running
average of conditional means). We keep the running intersection, which is also a valid CS.

Every array here has a leading "stream" shape so one object can run thousands of independent
streams at once (the calibration simulation); the gateway uses shape ``()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["EmpiricalBernsteinCS", "Interval"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Interval:
    """A confidence-sequence interval at one moment: the estimate, the bounds, the sample size."""

    estimate: float
    low: float
    high: float
    n: int
    alpha: float

    def to_dict(self) -> dict[str, float | int]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "n": self.n, "alpha": self.alpha}


class EmpiricalBernsteinCS:
    """Streaming two-sided (1 − α) CS for the mean of observations in [0, 1].

    ``shape`` is the number of independent streams (``()`` for one). ``update(x, mask)`` adds one
    observation to each stream where ``mask`` is true (streams may receive data at different rates).
    """

    def __init__(self, alpha: float, shape: tuple[int, ...] = (), *, c: float = 0.5) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if not 0.0 < c < 1.0:
            raise ValueError(f"c must be in (0, 1), got {c}")
        self.alpha = alpha
        self.c = c
        self._scalar = shape == ()
        self._log_term = math.log(2.0 / alpha)
        self.n = np.zeros(shape, dtype=np.int64)
        self._sum_x = np.zeros(shape)
        self._sum_sq = np.zeros(shape)          # Σ (X_i − μ̂_i)²
        self._sum_lam = np.zeros(shape)
        self._sum_lam_x = np.zeros(shape)
        self._sum_pen = np.zeros(shape)         # Σ v_i ψ_E(λ_i)
        self._low = np.zeros(shape)
        self._high = np.ones(shape)

    def update(self, x: FloatArray | float, mask: npt.NDArray[np.bool_] | bool = True) -> None:
        """Add one observation per stream (only where ``mask``); values must lie in [0, 1]."""
        if self._scalar and mask is True and isinstance(x, (float, int)):
            self._update_one(float(x))
            return
        xa = np.asarray(x, dtype=np.float64)
        m = np.broadcast_to(np.asarray(mask, dtype=bool), self.n.shape)
        if np.any((xa < 0.0) | (xa > 1.0)):
            raise ValueError("observations must lie in [0, 1]")
        xa = np.broadcast_to(xa, self.n.shape)
        t = self.n + 1                                          # index of this observation
        mu_prev = (0.5 + self._sum_x) / t                       # μ̂_{t−1}
        var_prev = (0.25 + self._sum_sq) / t                    # σ̂²_{t−1}
        lam = np.minimum(np.sqrt(2.0 * self._log_term / (var_prev * t * np.log1p(t))), self.c)
        pen = 4.0 * (xa - mu_prev) ** 2 * (-np.log1p(-lam) - lam) / 4.0
        mu_new = (0.5 + self._sum_x + xa) / (t + 1)             # μ̂_t
        self.n = np.where(m, t, self.n)
        self._sum_x = np.where(m, self._sum_x + xa, self._sum_x)
        self._sum_sq = np.where(m, self._sum_sq + (xa - mu_new) ** 2, self._sum_sq)
        self._sum_lam = np.where(m, self._sum_lam + lam, self._sum_lam)
        self._sum_lam_x = np.where(m, self._sum_lam_x + lam * xa, self._sum_lam_x)
        self._sum_pen = np.where(m, self._sum_pen + pen, self._sum_pen)
        centre, half = self._raw()
        self._low = np.where(m, np.maximum(self._low, centre - half), self._low)
        self._high = np.where(m, np.minimum(self._high, centre + half), self._high)

    def _update_one(self, x: float) -> None:
        """:meth:`update` for a single stream in Python floats: the same formulas (equal to rounding),
        ~15x faster than numpy on 0-d arrays. The gateway's event loop runs this for every scored
        pair: the numpy path cost ~85 µs per update, a 11 ms loop stall per batch of 64 pairs."""
        if not 0.0 <= x <= 1.0:
            raise ValueError("observations must lie in [0, 1]")
        n, sum_x, sum_sq = int(self.n), float(self._sum_x), float(self._sum_sq)
        t = n + 1
        mu_prev = (0.5 + sum_x) / t
        var_prev = (0.25 + sum_sq) / t
        lam = min(math.sqrt(2.0 * self._log_term / (var_prev * t * math.log1p(t))), self.c)
        pen = 4.0 * (x - mu_prev) ** 2 * (-math.log1p(-lam) - lam) / 4.0
        mu_new = (0.5 + sum_x + x) / (t + 1)
        sum_lam = float(self._sum_lam) + lam
        sum_lam_x = float(self._sum_lam_x) + lam * x
        sum_pen = float(self._sum_pen) + pen
        self.n = np.asarray(t, dtype=np.int64)
        self._sum_x = np.asarray(sum_x + x)
        self._sum_sq = np.asarray(sum_sq + (x - mu_new) ** 2)
        self._sum_lam, self._sum_lam_x, self._sum_pen = np.asarray(sum_lam), np.asarray(sum_lam_x), np.asarray(sum_pen)
        centre = sum_lam_x / sum_lam
        half = (self._log_term + sum_pen) / sum_lam
        self._low = np.asarray(max(float(self._low), centre - half))
        self._high = np.asarray(min(float(self._high), centre + half))

    def extend(self, xs: FloatArray | list[float]) -> None:
        """Feed a sequence of observations to a single-stream CS, in order."""
        for x in np.asarray(xs, dtype=np.float64).ravel():
            self.update(float(x))

    def _raw(self) -> tuple[FloatArray, FloatArray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            centre = np.where(self._sum_lam > 0, self._sum_lam_x / self._sum_lam, 0.5)
            half = np.where(self._sum_lam > 0, (self._log_term + self._sum_pen) / self._sum_lam, np.inf)
        return centre, half

    @property
    def low(self) -> FloatArray:
        """Lower bounds (running intersection), clipped to [0, 1]."""
        return np.clip(self._low, 0.0, 1.0)

    @property
    def high(self) -> FloatArray:
        return np.clip(self._high, 0.0, 1.0)

    @property
    def mean(self) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.n > 0, self._sum_x / np.maximum(self.n, 1), np.nan)

    def interval(self) -> Interval:
        """The current interval of a single-stream CS."""
        if self.n.shape != ():
            raise ValueError("interval() is for a single stream; read .low/.high for many")
        return Interval(estimate=float(self.mean), low=float(self.low), high=float(self.high),
                        n=int(self.n), alpha=self.alpha)
