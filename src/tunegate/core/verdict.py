"""What a gate decides, and the evidence for every rule it checked.

A verdict is meant to be read by a person deciding whether to ship: every rule is listed with its
status, the numbers behind it and one sentence of evidence, and ``reasons`` tells the story most
important first. Floats are finite or ``None`` so a verdict always serialises to strict JSON.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["EXIT_CODES", "Decision", "RuleResult", "RuleStatus", "Verdict"]

Decision = Literal["PROMOTE", "BLOCK", "INCONCLUSIVE"]
RuleStatus = Literal["pass", "fail", "undecided", "skipped"]

#: CLI exit code per decision (DESIGN.md section 5).
EXIT_CODES: dict[str, int] = {"PROMOTE": 0, "BLOCK": 1, "INCONCLUSIVE": 3}


class RuleResult(BaseModel):
    """One rule on one evaluator and cohort, with its evidence.

    ``status``: ``pass`` (holds with confidence), ``fail`` (violated with confidence), ``undecided``
    (neither; ``rows_needed`` says about how many pairs would decide it at the observed effect and
    spread, ``decides`` in which direction), ``skipped`` (not applicable, e.g. a cohort below ``min_rows``; never affects the
    decision). ``p_fail`` is the one-sided p-value of "the rule holds" (small = evidence it fails);
    ``p_adjusted`` is it after the multiplicity correction over every fail test of the verdict.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Stable label, e.g. 'headline', 'guard 2', 'cohort es'.")
    rule: str = Field(description="improve | non_inferior | no_drop | floor | cohort_variance | error_budget.")
    evaluator: str | None = None
    cohort: str | None = Field(default=None, description="'*' for the whole set, else the cohort name.")
    scope: str | None = Field(default=None, description="Rows the rule is restricted to (cohorts=..., where).")
    status: RuleStatus
    evidence: str = Field(description="One sentence with the numbers that decided the status.")
    measure: str = Field(description="delta | candidate_mean | variance_increase | error_rate.")
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    threshold: float | None = Field(default=None, description="Bound the measure's CI must clear to pass.")
    fail_threshold: float | None = Field(
        default=None, description="Bound of the fail test when it differs from threshold (no_drop: 0).")
    margin: float | None = None
    p_fail: float | None = None
    p_adjusted: float | None = None
    n: int | None = Field(default=None, description="Pairs (or rows) the rule was judged on.")
    rows_needed: int | None = Field(
        default=None, description="Undecided: pairs that would decide it at the observed effect and spread.")
    decides: Literal["pass", "fail"] | None = Field(
        default=None, description="Undecided: the direction rows_needed would decide it in.")

    @field_validator("estimate", "ci_low", "ci_high", "threshold", "margin", "p_fail", "p_adjusted",
                     mode="before")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        if v is None:
            return None
        f = float(v)
        return f if math.isfinite(f) else None


class Verdict(BaseModel):
    """The gate's decision, every rule with its evidence, and the policy that produced it."""

    model_config = ConfigDict(extra="forbid")

    decision: Decision
    rules: list[RuleResult]
    reasons: list[str] = Field(description="Human sentences, most important first.")
    policy_name: str
    policy_version: str
    policy_hash: str
    alpha: float
    correction: str = Field(description="holm | bh: correction applied to the fail tests.")

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.decision]

    def by_status(self, status: RuleStatus) -> list[RuleResult]:
        return [r for r in self.rules if r.status == status]
