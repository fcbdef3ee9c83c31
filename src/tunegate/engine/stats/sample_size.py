"""Rows needed to decide a gate rule, by inverting the gate's own interval and tests at larger n.

Why not the textbook formula: ``n = ((z_a + z_b) sd / gap)^2`` assumes a CI half-width that shrinks
like ``sd / sqrt(n)``. The gate's CI also has a floor, the zero-event bound ``1 - (alpha/2)^(1/n)``
(~3.69/n), that shrinks like ``1/n`` and dominates when most pairs tie; folding that floor into a
per-row sd (as an earlier version did) overstated the rows needed by up to 6x. And a check below
``min_rows`` has no test weight yet, so sizing it at a weight of ~0 asked for a level of 1e-13.

Here the question "at how many pairs would this rule be decided?" is answered with the decision rule
itself. At a candidate size ``m``, suppose the rows look like the observed ones (same mean, same
per-row spread, same discordance rates for pass/fail data). Then:

* **pass** needs the estimate, at its ``power`` quantile below the mean, minus the CI half-width at
  ``m`` (``max(z sd/sqrt(m), zero-event(m))``, plus Clopper-Pearson for a pass/fail candidate mean) to
  clear the threshold, and for an ``improve`` rule on pass/fail data the exact one-sided McNemar test
  at the scaled discordant counts to agree at alpha/2;
* ... and, since the gate checks fail before pass, the fail test must not fire at the estimate's
  lower ``power`` quantile (for ``no_drop`` with a slightly negative effect, pass is possible only in
  a window of sizes: more rows make the drop itself significant);
* **fail** needs the one-sided t test (standard error floored by the zero-event bound, as in the
  gate) to reject at the check's level (its weighted-Holm share of alpha, the strictest step), and
  the exact McNemar / binomial test where the gate takes it.

The smallest such ``m`` is found by doubling then bisection (each condition is monotone in ``m``,
except the pass window above, whose first size the bisection finds when a doubling step lands in it).
With ``power`` 0.8 the rule is decided in the stated direction about 80% of the time when the
observed effect and spread are the truth (``bench/rows_needed.py`` checks it by simulation); with
``power`` 0.5 it is the size at which the *expected* data just decides it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from tunegate.engine.stats.inference import _special, z_quantile, zero_event_halfwidth

__all__ = ["Need", "SizingInput", "rows_to_decide"]

#: Beyond this many pairs an estimate is no longer useful ("more rows alone will not decide it").
_MAX_ROWS = 100_000_000


@dataclass(frozen=True)
class SizingInput:
    """What the sizing needs from one check of the gate.

    ``measure``: ``delta`` (paired delta), ``candidate_mean`` (floor rules) or ``variance_increase``
    (cohort-variance limit; no zero-event floor, bound from above). ``sd`` is the per-row standard
    deviation of the measure (bootstrap se x sqrt(n): includes clustering), never the floor.
    ``pass_threshold``: the bound the CI must clear; ``fail_threshold``: the bound the fail test
    uses (they differ for ``no_drop``). ``wins``/``losses``: discordant pairs (pass/fail deltas);
    ``successes``: candidate passes (pass/fail floor).
    """

    measure: Literal["delta", "candidate_mean", "variance_increase"]
    estimate: float
    sd: float
    n: int
    pass_threshold: float
    fail_threshold: float
    strict: bool = True
    alpha: float = 0.05
    fail_level: float = 0.05
    wins: int | None = None
    losses: int | None = None
    successes: int | None = None
    exact_pass: bool = False
    exact_fail: bool = False
    min_rows: int = 1


@dataclass(frozen=True)
class Need:
    """Pairs needed and the decision they would give (``pass`` or ``fail``)."""

    rows: int
    direction: Literal["pass", "fail"]


def _binom_ge(k: float, n: float) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), continuous in k and n (regularised incomplete beta)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return float(_special().betainc(k, n - k + 1.0, 0.5))


def _binom_le(k: float, n: float, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), continuous in k and n."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return float(_special().betainc(n - k, k + 1.0, 1.0 - p))


def _t(q: float, df: float) -> float:
    return float(_special().stdtrit(df, q)) if df > 0 else math.inf


def _halfwidth(s: SizingInput, m: int) -> float:
    return z_quantile(1 - s.alpha / 2) * s.sd / math.sqrt(m)


def _passes(s: SizingInput, m: int, zp: float) -> bool:
    se = s.sd / math.sqrt(m)
    if s.measure == "variance_increase":
        return s.estimate + zp * se + _halfwidth(s, m) <= s.pass_threshold
    est = s.estimate - zp * se
    low = est - max(_halfwidth(s, m), zero_event_halfwidth(m, s.alpha))
    if s.measure == "candidate_mean" and s.successes is not None:
        k = min(max(est * m, 0.0), float(m))
        cp = 0.0 if k <= 0 else float(_special().betaincinv(k, m - k + 1.0, s.alpha / 2))
        low = min(low, cp)
    ok = low > s.pass_threshold if s.strict else low >= s.pass_threshold
    if ok and s.exact_pass and s.wins is not None and s.losses is not None:
        d = (s.wins + s.losses) * m / max(s.n, 1)
        q = s.wins / max(s.wins + s.losses, 1)
        w = d * q - zp * math.sqrt(d * q * (1 - q))
        ok = _binom_ge(math.ceil(w - 1e-9), d) <= s.alpha / 2
    return ok


def _fails(s: SizingInput, m: int, zp: float) -> bool:
    se = s.sd / math.sqrt(m)
    if s.measure == "variance_increase":
        return s.estimate - s.fail_threshold >= _t(1 - s.fail_level, m - 1) * se + zp * se and se > 0
    se_eff = max(se, zero_event_halfwidth(m, s.alpha) / z_quantile(1 - s.alpha / 2))
    ok = s.fail_threshold - s.estimate >= _t(1 - s.fail_level, m - 1) * se_eff + zp * se
    if ok and s.exact_fail:
        if s.measure == "delta" and s.wins is not None and s.losses is not None:
            d = (s.wins + s.losses) * m / max(s.n, 1)
            q = s.wins / max(s.wins + s.losses, 1)
            w = d * q + zp * math.sqrt(d * q * (1 - q))
            ok = _binom_le(math.floor(w + 1e-9), d, 0.5) <= s.fail_level
        elif s.measure == "candidate_mean" and s.successes is not None:
            k = min(max((s.estimate + zp * se) * m, 0.0), float(m))
            ok = _binom_le(math.floor(k + 1e-9), m, s.fail_threshold) <= s.fail_level
    return ok


def _smallest(pred: object, lo: int) -> int | None:
    """Smallest m >= lo with pred(m), assuming pred is monotone; None beyond _MAX_ROWS."""
    assert callable(pred)
    if pred(lo):
        return lo
    hi = max(lo * 2, lo + 1)
    while not pred(hi):
        lo, hi = hi, hi * 2
        if hi > _MAX_ROWS:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return hi


def rows_to_decide(s: SizingInput, *, power: float = 0.8) -> Need | None:
    """Fewest pairs (more than ``s.n``, at least ``s.min_rows``) at which the check would be decided
    at the observed effect and spread, and in which direction; None when no size would decide it
    (an effect exactly on the threshold, or beyond ``1e8`` pairs)."""
    if not (math.isfinite(s.estimate) and math.isfinite(s.sd)) or s.sd < 0:
        return None
    zp = z_quantile(power) if power != 0.5 else 0.0
    start = max(s.n + 1, s.min_rows, 2)
    # a pass counts only if the fail test does not fire first (the gate checks fail before pass): for
    # no_drop with a slightly negative effect, large n makes the drop significant and pass impossible
    n_pass = _smallest(lambda m: _passes(s, m, zp) and not _fails(s, m, -zp), start)
    n_fail = _smallest(lambda m: _fails(s, m, zp), start)
    if n_pass is None and n_fail is None:
        return None
    if n_fail is not None and (n_pass is None or n_fail <= n_pass):
        return Need(n_fail, "fail")  # a failure found first wins, as in the gate (fail before pass)
    assert n_pass is not None
    return Need(n_pass, "pass")
