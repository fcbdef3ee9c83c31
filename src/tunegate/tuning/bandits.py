"""Best-arm identification on minibatches: pick the ``keep`` best of ``n`` prompts with few row evaluations.

ProTeGi (Pryzant et al. 2023, §2.2) treats beam selection as best-arm identification: each
candidate prompt is an arm, a *pull* scores it on a few rows, and a fixed budget of pulls decides
which ``keep`` arms survive. Scoring every candidate on the whole dev split would cost ``n × |dev|``
metric calls per round; the bandits below spend a fixed ``budget`` instead.

These functions are pure (stdlib + numpy): they know nothing about prompts or models and operate
on an ``async pull(arm, rows) -> list[float]`` callback returning one reward in [0, 1] per row that
yielded one (a row with no reward may be left out). That keeps them testable on a constructed
reward table, and lets the caller decide what a pull costs (the prompt harness charges only
uncached rows, so a pull can be cheaper than its size, never dearer).

* :func:`successive_rejects` — Audibert & Bubeck (2010), "Best Arm Identification in Multi-Armed
  Bandits", generalised from "keep 1" to "keep ``keep``" the way ProTeGi's reference code does
  (stop once ``keep`` arms remain). Phase ``k`` pulls every surviving arm up to ``n_k`` rows in
  total and rejects the arm with the lowest empirical mean over *all* its pulls.
* :func:`ucb` — ProTeGi's Algorithm 3: ``T`` rounds, each pulls the arm maximising
  ``Q + c·sqrt(log t / N)`` on ``sample_size`` rows drawn uniformly; the ``keep`` highest ``Q`` win.

Budgets are counted in *pulls* (rows scored, one per arm per row), not in what they cost, so the
schedule — and therefore the selection — does not depend on what happened to be cached.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["ArmStats", "Pull", "Selection", "sr_schedule", "successive_rejects", "ucb"]

R = TypeVar("R")
#: ``await pull(arm_index, rows)`` → rewards in [0, 1], one per row that produced one.
Pull = Callable[[int, Sequence[R]], Awaitable[list[float]]]


@dataclass
class ArmStats:
    """What the bandit has observed of one arm."""

    rows: int = 0          #: rewards observed (rows scored for this arm)
    total: float = 0.0     #: sum of those rewards
    requested: int = 0     #: rows asked for (a row may yield no reward)

    @property
    def mean(self) -> float | None:
        """Empirical mean, or None before the first reward."""
        return self.total / self.rows if self.rows else None

    def add(self, requested: int, rewards: Sequence[float]) -> None:
        self.requested += requested
        self.rows += len(rewards)
        self.total += float(sum(rewards))


@dataclass
class Selection:
    """Outcome of one selection: the survivors, a full ranking, and how the pulls were spent."""

    ranking: list[int]                 #: every arm, best first (survivors first)
    keep: int
    stats: list[ArmStats]
    pulls: int = 0                     #: rows requested from ``pull`` in total
    eliminated: list[tuple[int, int]] = field(default_factory=list)  #: (phase, arm), in order (SR)
    log: list[dict[str, Any]] = field(default_factory=list)          #: one entry per phase / round

    @property
    def survivors(self) -> list[int]:
        return self.ranking[:self.keep]


def _rank(arms: Sequence[int], stats: Sequence[ArmStats]) -> list[int]:
    """Arms by empirical mean, best first; unobserved arms last; ties keep the lower index.

    Lower indices win ties on purpose: callers list the current beam before its children, so an
    unproven child never displaces its parent on a tie.
    """
    def key(a: int) -> tuple[int, float, int]:
        m = stats[a].mean
        return (0 if m is not None else 1, -(m if m is not None else 0.0), a)
    return sorted(arms, key=key)


def sr_schedule(n_arms: int, keep: int, budget: int) -> list[int]:
    """Cumulative pulls per surviving arm at the end of each phase: ``[n_1, …, n_{n_arms-keep}]``.

    Audibert & Bubeck's ``n_k = ⌈(B − K) / (loḡ(K) · (K + 1 − k))⌉`` with
    ``loḡ(K) = ½ + Σ_{i=2..K} 1/i``, run for ``K − keep`` phases instead of ``K − 1``. The
    normaliser becomes ``1 + Σ_{i=keep+2..K} 1/i`` (equal to loḡ(K) when ``keep == 1``), which keeps
    the total ``Σ_k n_k + keep·n_last ≤ B`` — the same proof, stopped ``keep − 1`` phases early.
    """
    if keep < 1:
        raise ValueError("keep must be >= 1")
    phases = n_arms - keep
    if phases <= 0:
        return []
    if budget <= n_arms:
        raise ValueError(f"successive rejects needs a budget above the number of arms ({budget} <= {n_arms})")
    norm = 1.0 + sum(1.0 / i for i in range(keep + 2, n_arms + 1))
    return [math.ceil((budget - n_arms) / (norm * (n_arms + 1 - k)) - 1e-9) for k in range(1, phases + 1)]


async def successive_rejects(n_arms: int, keep: int, rows: Sequence[R], pull: Pull[R], *, budget: int,
                             rng: random.Random) -> Selection:
    """Keep the ``keep`` best of ``n_arms`` arms with at most ``budget`` pulls.

    Rows are drawn once, as one random permutation, and consumed in order: phase ``k`` scores every
    surviving arm on rows ``n_{k-1}..n_k`` of it, so all arms are compared on the same rows (paired,
    less noise) and an arm's mean covers all its pulls, as in Audibert & Bubeck. When ``n_k``
    exceeds the rows available, arms are compared on all rows (more pulls would repeat rows and add
    no information). The arm with the lowest mean is rejected; ties reject the higher index.
    """
    stats = [ArmStats() for _ in range(n_arms)]
    alive = list(range(n_arms))
    out: Selection = Selection(ranking=[], keep=keep, stats=stats)
    if n_arms <= keep:
        out.ranking = list(alive)
        return out
    order = rng.sample(list(rows), len(rows))
    done = 0
    for phase, n_k in enumerate(sr_schedule(n_arms, keep, budget), start=1):
        upto = min(n_k, len(order))
        fresh = order[done:upto]
        if fresh:
            for arm in alive:
                stats[arm].add(len(fresh), await pull(arm, fresh))
                out.pulls += len(fresh)
        done = max(done, upto)
        worst = _rank(alive, stats)[-1]
        alive.remove(worst)
        out.eliminated.append((phase, worst))
        out.log.append({"phase": phase, "rows_per_arm": done, "new_rows": len(fresh), "rejected": worst,
                        "rejected_mean": stats[worst].mean})
    out.ranking = _rank(alive, stats) + [a for _, a in reversed(out.eliminated)]
    return out


async def ucb(n_arms: int, keep: int, rows: Sequence[R], pull: Pull[R], *, budget: int, sample_size: int,
              c: float, rng: random.Random) -> Selection:
    """ProTeGi's UCB selection: ``budget // sample_size`` rounds of one pull each, then the top ``keep``.

    Round ``t`` (1-based) pulls the arm maximising ``Q(a) + c·sqrt(log t / N(a))`` on
    ``sample_size`` rows drawn uniformly from ``rows``; ``N`` counts rows requested (the paper adds
    ``|D_sample|`` per pull) and an arm never pulled has an infinite bound, so every arm is tried
    once (lowest index first) before the bonus matters. Arms are finally ranked by ``Q``.
    """
    stats = [ArmStats() for _ in range(n_arms)]
    out: Selection = Selection(ranking=[], keep=keep, stats=stats)
    if n_arms <= keep:
        out.ranking = list(range(n_arms))
        return out
    size = min(sample_size, len(rows))
    rounds = budget // size if size else 0
    for t in range(1, rounds + 1):
        def bound(a: int, t: int = t) -> float:
            s = stats[a]
            if s.requested == 0:
                return math.inf
            return (s.mean or 0.0) + c * math.sqrt(math.log(t) / s.requested)
        arm = max(range(n_arms), key=lambda a: (bound(a), -a))
        sample = rng.sample(list(rows), size)
        stats[arm].add(size, await pull(arm, sample))
        out.pulls += size
        out.log.append({"round": t, "arm": arm, "mean": stats[arm].mean, "rows": stats[arm].rows})
    out.ranking = _rank(range(n_arms), stats)
    return out
