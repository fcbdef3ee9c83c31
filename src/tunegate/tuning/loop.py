"""The incremental loop: tune in small steps until the gate promotes, or report why it never did.

Each round tunes the current best candidate on the train split (prompt optimizer or LoRA, chosen
in the config), evaluates on dev, and gates against the *original* incumbent on the test split.
It stops at the first PROMOTE. Otherwise it reports the best candidate and the rule that blocked
it. Gating every round looks at the test split up to ``rounds`` times, which multiplies the
chance of a lucky PROMOTE; with ``split_alpha`` (default) each round's gate runs at
``alpha / rounds`` (Bonferroni), so the loop as a whole keeps the policy's nominal error rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tunegate.core.candidate import CandidateSpec
from tunegate.core.policy import GatePolicy
from tunegate.errors import UserError

__all__ = ["LoopConfig", "LoopResult", "RoundRecord", "TuneStep", "load_loop_config", "run_loop"]



class LoopConfig(BaseModel):
    """``tunegate loop --config loop.yaml``; relative paths are relative to the config file."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="Golden dataset (train/dev for tuning, test for gating).")
    candidate: str = Field(description="Incumbent candidate YAML: the first seed and every round's gate baseline.")
    policy: str = Field(description="Gate policy YAML.")
    rounds: int = Field(default=3, ge=1, le=50, description="Most rounds to try.")
    method: str = Field(default="gepa", description="What each round tunes with: lora or a prompt optimizer "
                                                    "(gepa, protegi, promptwizard, or a plugin's).")
    target_cohort: str | None = Field(default=None, description="Tune on rows of this cohort only (gating still "
                                                                "uses the whole test split, so regressions elsewhere block).")
    budget: int = Field(default=100, ge=1, description="Metric calls per round (prompt methods).")
    objective: str | None = Field(default=None, description="Objective (default: the policy's headline evaluator).")
    settings: dict[str, Any] = Field(default_factory=dict, description="Optimizer settings (prompt methods).")
    lora_config: str | None = Field(default=None, description="TuneConfig YAML (method lora).")
    split_alpha: bool = Field(default=True, description="Gate each round at alpha/rounds (Bonferroni).")
    seed: int = Field(default=0, description="Base random seed; round r uses seed + r.")
    source: str | None = Field(default=None, exclude=True)

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        from tunegate.tuning.registry import default_optimizers

        known = ["lora", *default_optimizers().names()]
        if v not in known:
            raise ValueError(f"unknown method {v!r}; choose from {known}")
        return v

    def path(self, p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() or self.source is None else Path(self.source).parent / q


def load_loop_config(path: str | Path) -> LoopConfig:
    from pydantic import ValidationError

    from tunegate.core.loading import pydantic_message, read_yaml, yaml_line

    text, data = read_yaml(path)
    if not isinstance(data, dict):
        raise UserError("a loop config must be a mapping (dataset, candidate, policy, rounds, method...)", file=str(path))
    try:
        cfg = LoopConfig.model_validate(data)
    except ValidationError as e:
        loc, msg = pydantic_message(e)
        raise UserError(msg, file=str(path), line=yaml_line(text, tuple(e.errors()[0]["loc"])), field=loc) from None
    cfg = cfg.model_copy(update={"source": str(path)})
    if cfg.method == "lora" and not cfg.lora_config:
        raise UserError("method lora needs lora_config", file=str(path), field="lora_config")
    for name in ("dataset", "candidate", "policy") + (("lora_config",) if cfg.lora_config else ()):
        if not cfg.path(getattr(cfg, name)).exists():
            raise UserError(f"file {getattr(cfg, name)!r} does not exist", file=str(path), field=name)
    return cfg


@dataclass
class TuneStep:
    """What one round's tuning produced."""

    candidate: CandidateSpec
    dev_seed: float | None
    dev_best: float | None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class RoundRecord:
    round: int
    method: str
    seed_hash: str
    candidate_hash: str
    dev_seed: float | None
    dev_best: float | None
    decision: str
    reasons: list[str]
    blocking: list[str]
    alpha: float
    wall_s: float
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class LoopResult:
    rounds: list[RoundRecord]
    promoted: bool
    best: CandidateSpec | None
    best_round: int | None
    stopped: str

    @property
    def exit_code(self) -> int:
        """0 when a round promoted; else the last round's gate code (1 BLOCK, 3 INCONCLUSIVE)."""
        if self.promoted:
            return 0
        last = self.rounds[-1].decision if self.rounds else "INCONCLUSIVE"
        return 1 if last == "BLOCK" else 3

    def to_dict(self) -> dict[str, Any]:
        return {"promoted": self.promoted, "best_round": self.best_round, "stopped": self.stopped,
                "best_candidate": self.best.hash if self.best else None,
                "rounds": [r.to_dict() for r in self.rounds]}


#: tune(round, seed candidate) -> TuneStep
TuneFn = Callable[[int, CandidateSpec], TuneStep]
#: gate(round, candidate, policy) -> GateResult-like (``.verdict.decision``, ``.verdict.rules``, ``.verdict.reasons``)
GateFn = Callable[[int, CandidateSpec, GatePolicy], Any]


def _blocking(verdict: Any) -> list[str]:
    """Rules that kept the verdict from PROMOTE: failed ones first, else the undecided ones."""
    def label(r: Any) -> str:
        where = f" [{r.cohort}]" if r.cohort not in (None, "*") else ""
        return f"{r.name} ({r.evaluator or r.rule}{where}): {r.evidence}"

    failed = [label(r) for r in verdict.rules if r.status == "fail"]
    return failed or [label(r) for r in verdict.rules if r.status == "undecided"]


def run_loop(cfg: LoopConfig, policy: GatePolicy, incumbent: CandidateSpec, *, tune: TuneFn, gate: GateFn,
             on_round: Callable[[RoundRecord], None] | None = None) -> LoopResult:
    """Rounds of tune → gate until PROMOTE or ``cfg.rounds``; each round seeds from the best so far."""
    alpha = policy.alpha / cfg.rounds if cfg.split_alpha else policy.alpha
    round_policy = policy.model_copy(update={"alpha": alpha}) if alpha != policy.alpha else policy
    seed = incumbent
    best: tuple[float, int, CandidateSpec] | None = None
    records: list[RoundRecord] = []
    for r in range(1, cfg.rounds + 1):
        t0 = time.perf_counter()
        step = tune(r, seed)
        cand = step.candidate.model_copy(update={"lineage": {**step.candidate.lineage,
                                                             "loop": {"round": r, "seed": seed.hash}}})
        res = gate(r, cand, round_policy)
        v = res.verdict
        rec = RoundRecord(round=r, method=cfg.method, seed_hash=seed.hash, candidate_hash=cand.hash,
                          dev_seed=step.dev_seed, dev_best=step.dev_best, decision=v.decision,
                          reasons=list(v.reasons), blocking=_blocking(v), alpha=alpha,
                          wall_s=round(time.perf_counter() - t0, 1), info=step.info)
        records.append(rec)
        if on_round:
            on_round(rec)
        if v.decision == "PROMOTE":
            return LoopResult(records, True, cand, r, f"round {r} promoted")
        score = step.dev_best if step.dev_best is not None else float("-inf")
        if best is None or score > best[0]:
            best = (score, r, cand)
        if step.dev_best is not None and step.dev_seed is not None and step.dev_best > step.dev_seed:
            seed = cand  # keep climbing from an improvement; otherwise retry from the same seed
    assert best is not None
    return LoopResult(records, False, best[2], best[1], f"no PROMOTE in {cfg.rounds} rounds")
