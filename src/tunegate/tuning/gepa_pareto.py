"""GEPA's candidate pool, per-instance Pareto frontier, parent selection and minibatch sampler.

Pure functions over score tables (no I/O, no model), so the selection rule can be pinned by tests
on hand-built tables. They follow Agrawal et al. 2025 (arXiv 2507.19457, Algorithm 2
SELECTCANDIDATE) and the reference code (gepa-ai/gepa ``gepa_utils.remove_dominated_programs`` /
``select_program_candidate_from_pareto_front``, ``strategies/batch_sampler.py``):

* the frontier of a dev row is the set of pool candidates achieving the best score on that row
  (ties all kept);
* a candidate is *dominated* when every row whose frontier holds it also holds another surviving
  candidate; dominated candidates are removed one at a time, lowest aggregate score first, until
  none is left (the reference's order, so the survivors are the same);
* the parent is drawn with probability proportional to the number of rows on whose (pruned)
  frontier it sits.

Two determinism details differ from the reference, which iterates Python sets: ties in aggregate
score are broken by pool index (older first) and the sampling list is built in pool order.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tunegate.core.prompt import PromptTemplate

__all__ = ["EpochSampler", "Fronts", "PoolEntry", "front_counts", "pareto_fronts", "remove_dominated",
           "select_best", "select_pareto"]

#: Row id → pool indices achieving the best score on that row.
Fronts = dict[str, set[int]]


@dataclass
class PoolEntry:
    """One candidate of GEPA's pool: a fully dev-evaluated proposal."""

    pid: str                                      #: proposal id in the history (p0, p3, …)
    prompt: PromptTemplate
    parents: tuple[int, ...]                      #: pool indices of its parents
    scores: dict[str, float] = field(default_factory=dict)  #: dev row id → objective
    mean: float = 0.0                             #: dev mean (the aggregate the paper ranks by)


def pareto_fronts(scores: Sequence[Mapping[str, float]], rows: Sequence[str] | None = None) -> Fronts:
    """For each row, the candidates whose score on it is the best any candidate reached.

    ``scores[k]`` maps row id → score of candidate ``k``; a candidate without a score on a row
    (no objective applied) is simply not on that row's frontier. Rows nobody scored are left out.
    """
    if rows is None:
        rows = list(dict.fromkeys(r for s in scores for r in s))
    fronts: Fronts = {}
    for r in rows:
        have = [(k, s[r]) for k, s in enumerate(scores) if r in s]
        if not have:
            continue
        best = max(v for _, v in have)
        fronts[r] = {k for k, v in have if v == best}
    return fronts


def _dominated(y: int, others: set[int], fronts: Fronts) -> bool:
    """True when every frontier holding ``y`` also holds one of ``others``."""
    return all(front & others for front in fronts.values() if y in front)


def remove_dominated(fronts: Fronts, agg: Sequence[float]) -> Fronts:
    """The frontiers with dominated candidates removed (GEPA's pruning before sampling)."""
    progs = sorted({p for f in fronts.values() for p in f}, key=lambda p: (agg[p], p))
    dominated: set[int] = set()
    found = True
    while found:
        found = False
        for y in progs:
            if y in dominated:
                continue
            if _dominated(y, set(progs) - {y} - dominated, fronts):
                dominated.add(y)
                found = True
                break
    return {r: {p for p in f if p not in dominated} for r, f in fronts.items()}


def front_counts(fronts: Fronts) -> dict[int, int]:
    """Candidate → number of rows on whose frontier it sits (pool order)."""
    c = Counter(p for f in fronts.values() for p in f)
    return {p: c[p] for p in sorted(c)}


def select_best(agg: Sequence[float]) -> int:
    """The highest aggregate score; ties go to the earlier candidate (``current_best``)."""
    return max(range(len(agg)), key=lambda k: (agg[k], -k))


def select_pareto(fronts: Fronts, agg: Sequence[float], rng: random.Random) -> int:
    """Sample a parent ∝ rows won among non-dominated candidates (best aggregate when no frontier)."""
    counts = front_counts(remove_dominated(fronts, agg))
    if not counts:
        return select_best(agg)
    population = [p for p, n in counts.items() for _ in range(n)]
    return rng.choice(population)


class EpochSampler:
    """Train minibatches that cover every row once per epoch (GEPA's ``EpochShuffledBatchSampler``).

    Each epoch shuffles the ids with the run's RNG and walks through them in chunks of ``k``. When
    ``k`` does not divide the number of rows, the last chunk is padded with the rows seen least
    often so far (as the reference does), but never with a row already in that chunk: a row scored
    twice in one minibatch would count twice in the acceptance sum. ``k`` ≥ the number of rows
    gives every row each time.
    """

    def __init__(self, ids: Sequence[str], k: int, rng: random.Random) -> None:
        if not ids:
            raise ValueError("no rows to sample minibatches from")
        self.ids = list(ids)
        self.k = min(k, len(self.ids))
        self.rng = rng
        self.order: list[str] = []
        self.pos = 0
        self.epoch = 0
        self.freq: Counter[str] = Counter()

    def _new_epoch(self) -> None:
        order = list(self.ids)
        self.rng.shuffle(order)
        self.freq.update(order)
        short = -len(order) % self.k
        if short:
            tail = set(order[len(order) - len(order) % self.k:])
            for _ in range(short):
                pick = min((i for i in self.ids if i not in tail), key=lambda i: (self.freq[i], self.ids.index(i)))
                order.append(pick)
                tail.add(pick)
                self.freq[pick] += 1
        self.order, self.pos = order, 0
        self.epoch += 1

    def next(self) -> list[str]:
        """The next minibatch of row ids (a new shuffled epoch when the current one is used up)."""
        if self.pos >= len(self.order):
            self._new_epoch()
        batch = self.order[self.pos:self.pos + self.k]
        self.pos += self.k
        return batch
