"""GEPA's system-aware merge: combine two pool candidates through their common ancestor.

Follows the reference merge proposer (gepa-ai/gepa ``proposer/merge.py``, paper §3 "system aware
merge"): pick two non-dominated candidates ``i``, ``j`` neither of which descends from the other,
and a common ancestor ``a`` that scores no better than either; for every component, take the
version that *changed* from ``a`` (if only one side changed it), the better-scoring side's version
(if both changed it), or the shared version. A triplet qualifies only if at least one component
changed on exactly one side — otherwise the merge would just re-pick one parent's text.

**Limitation here.** A tunegate prompt has two text components a merge can exchange: the system
instruction and the few-shot list (the user template carries the row and is never mutated).
GEPA's reflective mutation only rewrites the instruction, so candidates born inside one GEPA run
always differ from their ancestors in that single component, and no triplet qualifies: merge
only fires when the pool holds candidates whose few-shot lists differ (e.g. a pool warm-started
from a history with demonstration edits). With one component the paper's merge has nothing to
combine; we keep the faithful rule rather than inventing sentence-level crossover.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunegate.core.prompt import FewShot, PromptTemplate

__all__ = ["COMPONENTS", "MergePlan", "ancestors", "components", "find_merge", "merge_subsample",
           "with_components"]

#: The prompt parts a merge may exchange (the paper's "modules" of a compound system).
COMPONENTS = ("system", "few_shot")


def components(prompt: PromptTemplate) -> dict[str, Any]:
    """Comparable values of each mergeable component."""
    return {"system": (prompt.system or "").strip(),
            "few_shot": tuple((s.input, s.output) for s in prompt.few_shot)}


def with_components(base: PromptTemplate, comps: dict[str, Any]) -> PromptTemplate:
    """``base`` with its components replaced (everything else — user template, flags — kept)."""
    return base.model_copy(update={"system": comps["system"] or None,
                                   "few_shot": [FewShot(input=i, output=o) for i, o in comps["few_shot"]],
                                   "ref": None})


def ancestors(parents: Sequence[Sequence[int]], node: int) -> set[int]:
    """Every pool index ``node`` descends from."""
    out: set[int] = set()
    stack = list(parents[node])
    while stack:
        p = stack.pop()
        if p not in out:
            out.add(p)
            stack.extend(parents[p])
    return out


def _desirable(anc: dict[str, Any], a: dict[str, Any], b: dict[str, Any]) -> bool:
    """At least one component changed on exactly one side (the reference's filter)."""
    return any((anc[c] == a[c] or anc[c] == b[c]) and a[c] != b[c] for c in COMPONENTS)


@dataclass(frozen=True)
class MergePlan:
    """Two pool candidates, their common ancestor and the merged prompt."""

    i: int
    j: int
    ancestor: int
    prompt: PromptTemplate
    sources: tuple[int, ...]  #: per component (COMPONENTS order), the pool index it came from


def _pair(rng: random.Random, parents: Sequence[Sequence[int]], cands: list[int], agg: Sequence[float],
          comps: list[dict[str, Any]], done: set[tuple[int, int, int]],
          attempts: int) -> tuple[int, int, int] | None:
    for _ in range(attempts):
        if len(cands) < 2:
            return None
        i, j = sorted(rng.sample(cands, 2))
        anc_i, anc_j = ancestors(parents, i), ancestors(parents, j)
        if j in anc_i or i in anc_j:
            continue
        common = sorted(a for a in anc_i & anc_j
                        if (i, j, a) not in done and agg[a] <= agg[i] and agg[a] <= agg[j]
                        and _desirable(comps[a], comps[i], comps[j]))
        if common:
            weights = [agg[a] for a in common]
            if sum(weights) > 0:
                return i, j, rng.choices(common, weights=weights, k=1)[0]
            return i, j, rng.choice(common)
    return None


def find_merge(prompts: Sequence[PromptTemplate], parents: Sequence[Sequence[int]], agg: Sequence[float],
               cands: Sequence[int], rng: random.Random, done: set[tuple[int, int, int]],
               done_desc: set[tuple[int, int, tuple[int, ...]]], attempts: int = 10) -> MergePlan | None:
    """A merge of two of ``cands`` (non-dominated pool indices), or None when no triplet qualifies.

    ``done`` holds (i, j, ancestor) triplets already tried and ``done_desc`` (i, j, sources)
    combinations already built; the latter is updated here, as in the reference.
    """
    if len(cands) < 2 or len(prompts) < 3:
        return None
    comps = [components(p) for p in prompts]
    for _ in range(attempts):
        found = _pair(rng, parents, sorted(cands), agg, comps, done, attempts)
        if found is None:
            continue
        i, j, a = found
        merged = dict(comps[a])
        sources: list[int] = []
        for c in COMPONENTS:
            ca, ci, cj = comps[a][c], comps[i][c], comps[j][c]
            if ca in (ci, cj) and ci != cj:
                src = j if ca == ci else i
            elif ca not in (ci, cj):
                src = i if agg[i] > agg[j] else j if agg[j] > agg[i] else rng.choice([i, j])
            else:
                src = i
            merged[c] = comps[src][c]
            sources.append(src)
        key = (i, j, tuple(sources))
        if key in done_desc:
            continue
        done_desc.add(key)
        return MergePlan(i, j, a, with_components(prompts[a], merged), tuple(sources))
    return None


def merge_subsample(s1: dict[str, float], s2: dict[str, float], rows: Sequence[str], k: int,
                    rng: random.Random) -> list[str]:
    """Up to ``k`` dev rows both candidates were scored on, stratified as in the reference.

    A third each from rows where the first parent wins, where the second wins, and where they tie,
    then topped up from the rest. Unlike the reference, a dev set smaller than ``k`` gives fewer
    rows rather than repeated ones (a repeated row would count twice in the acceptance sum).
    """
    common = [r for r in rows if r in s1 and r in s2]
    buckets = ([r for r in common if s1[r] > s2[r]], [r for r in common if s2[r] > s1[r]],
               [r for r in common if s1[r] == s2[r]])
    each = max(1, math.ceil(k / 3))
    picked: list[str] = []
    for b in buckets:
        if len(picked) >= k:
            break
        avail = [r for r in b if r not in picked]
        take = min(len(avail), each, k - len(picked))
        if take > 0:
            picked += rng.sample(avail, take)
    rest = [r for r in common if r not in picked]
    if len(picked) < k and rest:
        picked += rng.sample(rest, min(len(rest), k - len(picked)))
    return picked
