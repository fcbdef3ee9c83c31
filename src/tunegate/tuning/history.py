"""Everything an optimisation run tried: proposals, parents, scores, calls spent, rejections.

The history is the evidence behind a tuned prompt: which parent it came from, which operator made
it, what it scored on which rows, and how much budget had been spent when it appeared. It is
written as JSON next to the report and replayed into the prompt registry's lineage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tunegate.core.prompt import PromptTemplate

__all__ = ["History", "Proposal", "ProposalStatus", "Rejection"]

ProposalStatus = Literal["seed", "accepted", "rejected"]


class Proposal(BaseModel):
    """One candidate prompt the optimizer produced (the seed is proposal ``p0``)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    parents: list[str] = Field(default_factory=list)
    operator: str = Field(description="What made it: seed, reflect, merge, edit, paraphrase, style:…, …")
    prompt: PromptTemplate
    status: ProposalStatus
    reason: str = ""
    minibatch: dict[str, Any] = Field(default_factory=dict,
                                      description="Row ids and parent/child scores of an acceptance test.")
    dev_scores: dict[str, float] | None = Field(default=None, description="Row id → objective on dev.")
    dev_mean: float | None = None
    dev_means: dict[str, float | None] = Field(default_factory=dict, description="Per evaluator, on dev.")
    calls_at: int = Field(description="Metric calls spent when the proposal was recorded.")
    wall_s: float = 0.0
    extra: dict[str, Any] = Field(default_factory=dict)


class Rejection(BaseModel):
    """A reflection reply that was not adopted (truncated, empty, wrong format, unusable)."""

    model_config = ConfigDict(extra="forbid")

    operator: str
    parent: str | None
    reason: str
    raw: str = Field(description="The reply (first 2,000 characters).")
    calls_at: int


class History:
    """Append-only record of a run; ``best()`` is the highest dev mean among evaluated proposals."""

    def __init__(self) -> None:
        self.proposals: list[Proposal] = []
        self.rejections: list[Rejection] = []
        self.meta: dict[str, Any] = {}

    def next_id(self) -> str:
        return f"p{len(self.proposals)}"

    def add(self, proposal: Proposal) -> Proposal:
        if any(p.id == proposal.id for p in self.proposals):
            raise ValueError(f"duplicate proposal id {proposal.id}")
        self.proposals.append(proposal)
        return proposal

    def reject(self, operator: str, parent: str | None, reason: str, raw: str, calls_at: int) -> None:
        self.rejections.append(Rejection(operator=operator, parent=parent, reason=reason, raw=raw[:2000],
                                         calls_at=calls_at))

    def get(self, pid: str) -> Proposal:
        for p in self.proposals:
            if p.id == pid:
                return p
        raise KeyError(pid)

    def evaluated(self) -> list[Proposal]:
        """Proposals with a full dev evaluation (the seed and the accepted ones)."""
        return [p for p in self.proposals if p.dev_mean is not None and p.status != "rejected"]

    def best(self) -> Proposal:
        """Highest dev mean; ties go to the earlier (simpler, cheaper-found) proposal."""
        pool = self.evaluated()
        if not pool:
            raise ValueError("no evaluated proposal")
        return max(pool, key=lambda p: (p.dev_mean, -self.proposals.index(p)))

    def curve(self) -> list[tuple[int, float]]:
        """(metric calls spent, best dev mean so far) at each evaluated proposal."""
        out: list[tuple[int, float]] = []
        best = float("-inf")
        for p in self.proposals:
            if p.dev_mean is not None and p.status != "rejected":
                best = max(best, p.dev_mean)
                out.append((p.calls_at, best))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "proposals": [p.model_dump(mode="json") for p in self.proposals],
                "rejections": [r.model_dump(mode="json") for r in self.rejections],
                "curve": self.curve()}

    def write(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return p
