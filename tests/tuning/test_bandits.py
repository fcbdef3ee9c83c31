"""Best-arm identification without a model: successive rejects and UCB on constructed reward tables."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import numpy as np
import pytest

from tunegate.tuning.bandits import sr_schedule, successive_rejects, ucb

ROWS = list(range(40))


class Table:
    """Arms with a fixed reward per (arm, row); logs every pull."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.calls: list[tuple[int, list[int]]] = []

    async def pull(self, arm: int, rows: Sequence[int]) -> list[float]:
        self.calls.append((arm, list(rows)))
        return [float(self.table[arm, r]) for r in rows]


def test_schedule_matches_audibert_bubeck_and_fits_the_budget():
    # keep=1 is the original: loḡ(5) = 1/2 + 1/2 + 1/3 + 1/4 + 1/5, n_k = ceil((B-K) / (loḡ (K+1-k)))
    logbar = 0.5 + sum(1 / i for i in range(2, 6))
    expected = [int(np.ceil((100 - 5) / (logbar * (6 - k)))) for k in range(1, 5)]
    assert sr_schedule(5, 1, 100) == expected == [11, 14, 18, 27]
    assert sr_schedule(4, 4, 10) == [] and sr_schedule(3, 5, 10) == []
    for n in range(2, 22):
        for keep in range(1, n):
            for budget in (n + 1, n + 7, 3 * n, 60, 250):
                if budget <= n:
                    continue
                sched = sr_schedule(n, keep, budget)
                assert len(sched) == n - keep and sched == sorted(sched) and sched[0] >= 1
                # arms alive in phase k pull n_k - n_{k-1}; survivors reach n_last
                total = sum(sched[:-1]) + (keep + 1) * sched[-1]
                assert total <= budget, (n, keep, budget, sched)
    with pytest.raises(ValueError, match="above the number of arms"):
        sr_schedule(5, 1, 5)


def test_successive_rejects_eliminates_the_worst_arm_first_and_keeps_the_best():
    acc = [0.5, 0.9, 0.1, 0.7, 0.3]
    t = Table(np.tile(np.array(acc)[:, None], (1, len(ROWS))))
    sel = asyncio.run(successive_rejects(5, 2, ROWS, t.pull, budget=120, rng=random.Random(0)))
    assert [arm for _, arm in sel.eliminated] == [2, 4, 0]          # worst first
    assert [ph for ph, _ in sel.eliminated] == [1, 2, 3]
    assert sel.survivors == [1, 3] and sel.ranking == [1, 3, 0, 4, 2]
    # per-phase pull counts follow the schedule; every phase shows all alive arms the same rows
    sched = sr_schedule(5, 2, 120)
    assert [sel.stats[a].requested for a in (2, 4, 0)] == sched
    assert sel.stats[1].requested == sel.stats[3].requested == sched[-1]
    assert sel.pulls == sum(len(r) for _, r in t.calls) <= 120
    phase1 = [rows for arm, rows in t.calls[:5]]
    assert all(rows == phase1[0] for rows in phase1) and len(phase1[0]) == sched[0]
    # cumulative means: no row is scored twice for the same arm
    for arm in range(5):
        seen = [r for a, rows in t.calls if a == arm for r in rows]
        assert len(seen) == len(set(seen))


def test_successive_rejects_with_noisy_arms_keeps_the_best():
    acc = np.array([0.3, 0.45, 0.85, 0.5, 0.2, 0.4])
    for seed in range(5):
        gen = np.random.default_rng(seed)
        t = Table((gen.random((6, len(ROWS))) < acc[:, None]).astype(float))
        sel = asyncio.run(successive_rejects(6, 1, ROWS, t.pull, budget=150, rng=random.Random(seed)))
        assert sel.survivors == [2]
        assert sel.pulls <= 150


def test_successive_rejects_caps_pulls_at_the_rows_available():
    t = Table(np.tile(np.array([[0.2], [0.8], [0.5]]), (1, 6)))
    sel = asyncio.run(successive_rejects(3, 1, list(range(6)), t.pull, budget=500, rng=random.Random(1)))
    assert sel.survivors == [1]
    assert max(s.requested for s in sel.stats) == 6 and sel.pulls <= 6 * 3


def test_ties_reject_the_later_arm():
    t = Table(np.zeros((3, 10)))
    sel = asyncio.run(successive_rejects(3, 1, list(range(10)), t.pull, budget=40, rng=random.Random(0)))
    assert [a for _, a in sel.eliminated] == [2, 1] and sel.survivors == [0]


def test_no_selection_needed_costs_nothing():
    t = Table(np.ones((3, 10)))
    for fn in (successive_rejects(3, 4, ROWS, t.pull, budget=50, rng=random.Random(0)),
               ucb(3, 3, ROWS, t.pull, budget=50, sample_size=5, c=1.0, rng=random.Random(0))):
        sel = asyncio.run(fn)
        assert sel.pulls == 0 and sel.survivors == [0, 1, 2]
    assert t.calls == []


def test_ucb_favours_the_better_arm():
    acc = [0.2, 0.85, 0.5, 0.35]
    draws = random.Random(7)

    async def pull(arm: int, rows: Sequence[int]) -> list[float]:
        return [1.0 if draws.random() < acc[arm] else 0.0 for _ in rows]

    sel = asyncio.run(ucb(4, 1, ROWS, pull, budget=400, sample_size=5, c=1.0, rng=random.Random(3)))
    assert [e["arm"] for e in sel.log[:4]] == [0, 1, 2, 3]            # every arm tried once, in order
    pulls = [s.requested for s in sel.stats]
    assert pulls[1] == max(pulls) and pulls[1] > 2 * pulls[0] and pulls[1] > 2 * pulls[3]
    assert sel.survivors == [1] and sel.pulls == 400 == sum(pulls)


def test_ucb_exploration_constant_spreads_pulls():
    acc = [0.2, 0.85, 0.5]

    def run(c: float) -> list[int]:
        draws = random.Random(11)

        async def pull(arm: int, rows: Sequence[int]) -> list[float]:
            return [1.0 if draws.random() < acc[arm] else 0.0 for _ in rows]
        sel = asyncio.run(ucb(3, 1, ROWS, pull, budget=300, sample_size=5, c=c, rng=random.Random(3)))
        return [s.requested for s in sel.stats]

    greedy, explore = run(0.0), run(5.0)
    assert min(explore) > min(greedy)
    assert max(explore) < max(greedy)
