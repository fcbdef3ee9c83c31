"""Choosing PromptWizard's in-context examples: failures first, diverse, within the prompt budget.

PromptWizard (Agarwal et al. 2024, §3.2) builds its demonstrations from training rows the current
instruction gets wrong ("negative examples"), because those teach the model what the instruction
alone does not. We keep that priority, reserve a slot for a row it gets right (so the
demonstrations also show the normal case), and order each group farthest-first by word overlap
so three demonstrations are not three variants of one question. Only rows handed in by the caller
— always train rows — can become demonstrations; synthetic ones are marked as such.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from tunegate.core.prompt import FewShot, PromptTemplate
from tunegate.tuning.objective import prompt_tokens

__all__ = ["Demo", "DemoKind", "demos_extra", "diverse_order", "fit_demos", "select_demos"]

DemoKind = Literal["negative", "positive", "synthetic"]


@dataclass(frozen=True)
class Demo:
    """One demonstration and where it came from (a train row id, or None when synthesised)."""

    shot: FewShot
    row_id: str | None
    kind: DemoKind
    reasoning: bool = False
    sources: tuple[str, ...] = ()   #: train rows shown to the reflector that wrote a synthetic demo

    def with_output(self, output: str) -> Demo:
        return replace(self, shot=FewShot(input=self.shot.input, output=output), reasoning=True)


def demos_extra(demos: Sequence[Demo]) -> list[dict[str, Any]]:
    """How the demonstrations are recorded in a proposal's ``extra`` (provenance, synthetic marked)."""
    out = []
    for d in demos:
        item: dict[str, Any] = {"row": d.row_id, "kind": d.kind, "synthetic": d.kind == "synthetic"}
        if d.reasoning:
            item["reasoning"] = True
        if d.sources:
            item["source_rows"] = list(d.sources)
        out.append(item)
    return out


def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", text.lower()))


def _distance(a: frozenset[str], b: frozenset[str]) -> float:
    union = a | b
    return 1.0 - (len(a & b) / len(union)) if union else 0.0


def diverse_order(items: Sequence[Demo], rng: random.Random,
                  text: Callable[[Demo], str] = lambda d: d.shot.input) -> list[Demo]:
    """``items`` reordered farthest-first (max-min Jaccard distance over words), seeded start."""
    rest = list(items)
    rng.shuffle(rest)
    if not rest:
        return []
    bags = {id(d): _words(text(d)) for d in rest}
    out = [rest.pop(0)]
    while rest:
        scores = [min(_distance(bags[id(c)], bags[id(o)]) for o in out) for c in rest]
        out.append(rest.pop(scores.index(max(scores))))
    return out


def select_demos(negatives: Sequence[Demo], positives: Sequence[Demo], k: int, rng: random.Random) -> list[Demo]:
    """All usable demonstrations in priority order; the first ``k`` are the intended set.

    Failures come first (PromptWizard's negative examples) but one of ``k >= 2`` slots goes to a row
    the instruction gets right when there is one; the remaining rows follow as fallbacks in case
    the token budget rules a preferred one out.
    """
    neg, pos = diverse_order(negatives, rng), diverse_order(positives, rng)
    n_neg = min(len(neg), k - 1 if (k >= 2 and pos) else k)
    head = neg[:n_neg] + pos[:k - n_neg]
    head += neg[n_neg:n_neg + (k - len(head))]
    return head + [d for d in neg + pos if d not in head]


def fit_demos(prompt: PromptTemplate, ranked: Sequence[Demo], k: int, max_tokens: int | None) -> list[Demo]:
    """Up to ``k`` of ``ranked`` (in order) such that ``prompt`` plus them stays within ``max_tokens``.

    A demonstration that does not fit is skipped and the next one tried, so one long row does not
    cost every slot after it.
    """
    chosen: list[Demo] = []
    for d in ranked:
        if len(chosen) >= k:
            break
        trial = prompt.model_copy(update={"few_shot": [x.shot for x in (*chosen, d)]})
        if max_tokens is None or prompt_tokens(trial) <= max_tokens:
            chosen.append(d)
    return chosen
