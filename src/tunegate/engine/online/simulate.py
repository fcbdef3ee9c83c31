"""Simulated rollouts with a known truth, checked after every observation (calibration and power).

Used by ``bench/online_calibration.py`` and by the unit tests (small sizes, fixed seeds). Each
function runs ``n_streams`` independent rollouts at once (vectorised) and returns, per rollout, the
observation at which the rollback rule first fired (−1 if it never did). The rule is the
controller's: the lower confidence bound of Δ exceeds ``threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from tunegate.engine.online.bounded import EmpiricalBernsteinCS
from tunegate.engine.online.compare import QuantileRatio

__all__ = ["SimResult", "simulate_canary", "simulate_naive_paired", "simulate_p99", "simulate_paired"]

Coupling = Literal["independent", "shared"]


@dataclass(frozen=True)
class SimResult:
    """First alarm per rollout (observation index, 1-based; −1 = never) over ``horizon`` observations."""

    first_alarm: npt.NDArray[np.int64]
    horizon: int

    @property
    def alarm_rate(self) -> float:
        return float(np.mean(self.first_alarm > 0))

    def quantile_time(self, q: float) -> float:
        """q-quantile of the detection time (observations), counting never-detected as +inf."""
        t = np.where(self.first_alarm > 0, self.first_alarm, np.inf).astype(np.float64)
        return float(np.quantile(t, q))


def _pair(rng: np.random.Generator, k: int, p_base: float, p_cand: float,
          coupling: Coupling) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    u = rng.random(k)
    v = u if coupling == "shared" else rng.random(k)
    return (u < p_base).astype(np.float64), (v < p_cand).astype(np.float64)


def simulate_paired(p_base: float, p_cand: float, *, n_streams: int, horizon: int, alpha: float,
                    threshold: float = 0.0, coupling: Coupling = "independent", seed: int = 0) -> SimResult:
    """Mirrored pairs: each observation is (base failed, candidate failed) on the same request.

    ``shared`` coupling: both arms fail on the hardest requests first (strong positive correlation,
    as when a request is hard for any model); ``independent``: no correlation (the worst case).
    """
    rng = np.random.default_rng(seed)
    cs = EmpiricalBernsteinCS(alpha, (n_streams,))
    first = np.full(n_streams, -1, dtype=np.int64)
    for t in range(1, horizon + 1):
        b, c = _pair(rng, n_streams, p_base, p_cand, coupling)
        cs.update((c - b + 1.0) / 2.0)
        fired = (2.0 * cs.low - 1.0 > threshold) & (first < 0)
        first[fired] = t
        if t % 256 == 0 and np.all(first > 0):
            break
    return SimResult(first, horizon)


def simulate_canary(p_base: float, p_cand: float, *, share: float, n_streams: int, horizon: int, alpha: float,
                    threshold: float = 0.0, seed: int = 0) -> SimResult:
    """Live canary: each request goes to the candidate with probability ``share``, else to the base.

    Two sequences at α/2 each; Δ lower bound = candidate lower − base upper. ``horizon`` counts
    requests on the route (both arms).
    """
    rng = np.random.default_rng(seed)
    base = EmpiricalBernsteinCS(alpha / 2, (n_streams,))
    cand = EmpiricalBernsteinCS(alpha / 2, (n_streams,))
    first = np.full(n_streams, -1, dtype=np.int64)
    for t in range(1, horizon + 1):
        to_cand = rng.random(n_streams) < share
        u = rng.random(n_streams)
        cand.update((u < p_cand).astype(np.float64), to_cand)
        base.update((u < p_base).astype(np.float64), ~to_cand)
        fired = (cand.low - base.high > threshold) & (first < 0)
        first[fired] = t
        if t % 256 == 0 and np.all(first > 0):
            break
    return SimResult(first, horizon)


def simulate_naive_paired(p_base: float, p_cand: float, *, n_streams: int, horizon: int, z: float = 1.96,
                          min_n: int = 30, seed: int = 0) -> SimResult:
    """The mistake the sequences avoid: a fixed-n 95% z-interval re-checked after every pair."""
    rng = np.random.default_rng(seed)
    s = np.zeros(n_streams)
    s2 = np.zeros(n_streams)
    first = np.full(n_streams, -1, dtype=np.int64)
    for t in range(1, horizon + 1):
        b, c = _pair(rng, n_streams, p_base, p_cand, "independent")
        d = c - b
        s += d
        s2 += d * d
        if t < min_n:
            continue
        mean = s / t
        sd = np.sqrt(np.maximum(s2 / t - mean**2, 1e-12) * t / (t - 1))
        fired = (mean - z * sd / np.sqrt(t) > 0) & (first < 0)
        first[fired] = t
    return SimResult(first, horizon)


def simulate_p99(ratio: float, *, n_streams: int, horizon: int, alpha: float, max_ratio: float = 1.0,
                 check_every: int = 10, seed: int = 0) -> SimResult:
    """p99 latency, canary split 50/50: log-normal latencies, candidate scaled by ``ratio``.

    Checked every ``check_every`` requests (each check costs O(n): order statistics).
    """
    rng = np.random.default_rng(seed)
    first = np.full(n_streams, -1, dtype=np.int64)
    for k in range(n_streams):
        qr = QuantileRatio(q=0.99, alpha=alpha)
        lat = rng.lognormal(mean=np.log(50.0), sigma=0.5, size=horizon)
        arm = rng.random(horizon) < 0.5
        for t in range(horizon):
            qr.update("candidate" if arm[t] else "base", float(lat[t] * (ratio if arm[t] else 1.0)))
            if (t + 1) % check_every == 0 and qr.interval().low > max_ratio:
                first[k] = t + 1
                break
    return SimResult(first, horizon)
