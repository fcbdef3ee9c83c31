"""Release policy: how a promoted candidate is ramped and when it is rolled back, per route.

Example::

    name: support-release
    version: "1"
    alpha: 0.05            # chance, over the whole rollout, that any monitored bound is ever wrong
    max_cohorts: 8         # cohorts tested on their own (Bonferroni family size); more are pooled
    steps:                 # percent of the route's traffic on the candidate, and what each needs
      - {percent: 1,  min_pairs: 200, min_requests: 50,  min_duration_s: 60}
      - {percent: 5,  min_pairs: 400, min_requests: 200, min_duration_s: 300}
      - 25                 # a bare number: the defaults below
      - 50
      - 100
    defaults: {min_pairs: 200, min_requests: 500, min_duration_s: 600}
    ramp_when:             # the upper confidence bound must be within these to advance
      fail_rate: {max_increase: 0.02}
      error_rate: {max_increase: 0.01}
      p99_latency: {max_ratio: 1.25}
    rollback_when:         # the lower confidence bound beyond these rolls back at once
      fail_rate: {max_increase: 0.0, per_cohort: true}
      error_rate: {max_increase: 0.02}
      fallback_rate: {max_increase: 0.02}
      p99_latency: {max_ratio: 1.5}
      thumbs_down_rate: {max_increase: 0.05}

Signals: ``fail_rate`` (the route's evaluator suite failed a row: mirrored pairs and scored canary
replies), ``error_rate`` (upstream error), ``fallback_rate`` (the answer needed a fallback or a
schema repair), ``thumbs_down_rate`` (``POST /v1/feedback``), ``p99_latency`` (candidate p99 over
base p99). Bounds come from anytime-valid confidence sequences (``tunegate.engine.online``), so the
controller may look after every request. Validation and hashing follow ``core/policy.py``.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunegate.core.hashing import content_hash
from tunegate.errors import UserError

__all__ = ["RATE_SIGNALS", "SIGNALS", "Conditions", "LatencyCondition", "RateCondition", "ReleasePolicy",
           "ReleaseStep", "Signal", "StepDefaults", "load_release_policy"]

Signal = Literal["fail_rate", "error_rate", "fallback_rate", "thumbs_down_rate", "p99_latency"]
RATE_SIGNALS: tuple[str, ...] = ("fail_rate", "error_rate", "fallback_rate", "thumbs_down_rate")
SIGNALS: tuple[str, ...] = (*RATE_SIGNALS, "p99_latency")


class RateCondition(BaseModel):
    """A rate of the candidate against the base: Δ = candidate rate − base rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_increase: float = Field(ge=0.0, le=1.0, description="Largest tolerated Δ (0 = any confident rise).")
    per_cohort: bool = Field(default=False, description="Also test each cohort on its own.")


class LatencyCondition(BaseModel):
    """A quantile of latency: candidate quantile / base quantile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_ratio: float = Field(ge=1.0, le=100.0, description="Largest tolerated ratio of the quantiles.")
    quantile: float = Field(default=0.99, gt=0.5, lt=1.0, description="Which quantile (0.99 = p99).")


class Conditions(BaseModel):
    """One optional condition per signal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_rate: RateCondition | None = None
    error_rate: RateCondition | None = None
    fallback_rate: RateCondition | None = None
    thumbs_down_rate: RateCondition | None = None
    p99_latency: LatencyCondition | None = None

    def items(self) -> list[tuple[str, RateCondition | LatencyCondition]]:
        """(signal, condition) for every condition that is set, in signal order."""
        out: list[tuple[str, RateCondition | LatencyCondition]] = []
        for name in SIGNALS:
            cond = getattr(self, name)
            if cond is not None:
                out.append((name, cond))
        return out


class StepDefaults(BaseModel):
    """Evidence a step needs before the next one, unless the step says otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_pairs: int = Field(default=200, ge=0, description="Mirrored, scored pairs seen during the step.")
    min_requests: int = Field(default=500, ge=0, description="Live requests the candidate answered during the step.")
    min_duration_s: float = Field(default=600.0, ge=0.0, description="Seconds spent at the step.")


class ReleaseStep(BaseModel):
    """One ramp step: the candidate's share and the evidence needed to leave it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    percent: float = Field(gt=0.0, le=100.0)
    min_pairs: int | None = Field(default=None, ge=0)
    min_requests: int | None = Field(default=None, ge=0)
    min_duration_s: float | None = Field(default=None, ge=0.0)


class ReleasePolicy(BaseModel):
    """The whole release plan of a route: steps, ramp evidence, rollback conditions, α."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="default", min_length=1)
    version: str = Field(default="1", min_length=1)
    route: str | None = Field(default=None, description="Route it governs (None: any route it is given to).")
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5,
                         description="Family-wise chance that any monitored bound is ever wrong.")
    max_cohorts: int = Field(default=8, ge=0, le=256,
                             description="Cohorts tested on their own (first seen, or those listed).")
    cohorts: list[str] | None = Field(default=None, description="Cohorts to test on their own (else first seen).")
    steps: list[ReleaseStep] = Field(min_length=1)
    defaults: StepDefaults = Field(default_factory=StepDefaults)
    ramp_when: Conditions = Field(default_factory=Conditions)
    rollback_when: Conditions
    source: str | None = Field(default=None, exclude=True)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @field_validator("steps", mode="before")
    @classmethod
    def _bare_steps(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"percent": s} if isinstance(s, int | float) and not isinstance(s, bool) else s for s in v]
        return v

    @field_validator("steps")
    @classmethod
    def _increasing(cls, v: list[ReleaseStep]) -> list[ReleaseStep]:
        pcts = [s.percent for s in v]
        if any(b <= a for a, b in pairwise(pcts)):
            raise ValueError(f"steps must increase strictly, got {', '.join(f'{p:g}' for p in pcts)}")
        return v

    @field_validator("rollback_when")
    @classmethod
    def _some_rollback(cls, v: Conditions) -> Conditions:
        if not v.items():
            raise ValueError("rollback_when needs at least one condition (fail_rate, error_rate, ...)")
        return v

    @model_validator(mode="after")
    def _check(self) -> ReleasePolicy:
        if self.cohorts is not None and len(self.cohorts) > self.max_cohorts:
            raise ValueError(f"{len(self.cohorts)} cohorts listed but max_cohorts is {self.max_cohorts}")
        return self

    def step_needs(self, index: int) -> StepDefaults:
        """The evidence step ``index`` needs, with defaults filled in."""
        s, d = self.steps[index], self.defaults
        return StepDefaults(min_pairs=d.min_pairs if s.min_pairs is None else s.min_pairs,
                            min_requests=d.min_requests if s.min_requests is None else s.min_requests,
                            min_duration_s=d.min_duration_s if s.min_duration_s is None else s.min_duration_s)

    def monitored(self) -> dict[str, bool]:
        """Signals any condition reads → whether they are also tested per cohort."""
        out: dict[str, bool] = {}
        for conds in (self.rollback_when, self.ramp_when):
            for name, cond in conds.items():
                per = isinstance(cond, RateCondition) and cond.per_cohort
                out[name] = out.get(name, False) or per
        return out

    def n_tests(self) -> int:
        """Size of the Bonferroni family: one two-sided sequence per (signal, source, cohort).

        ``fail_rate`` has two sources (mirrored pairs, scored canary replies); per-cohort signals
        add ``max_cohorts`` sequences each.
        """
        n = 0
        for name, per in self.monitored().items():
            sources = 2 if name == "fail_rate" else 1
            n += sources * (1 + (self.max_cohorts if per else 0))
        return max(n, 1)

    @property
    def alpha_per_test(self) -> float:
        return self.alpha / self.n_tests()

    @property
    def hash(self) -> str:
        """Content hash of every setting (defaults filled in), ``rel-`` prefixed."""
        return content_hash(self.model_dump(mode="json"), prefix="rel-")


def _item(seq: Any, index: Any) -> Any:
    return seq[index] if isinstance(seq, list) and isinstance(index, int) and 0 <= index < len(seq) else None


def load_release_policy(path: str | Path) -> ReleasePolicy:
    """Read a release policy YAML; any problem is a UserError naming file, line and field."""
    from tunegate.core.loading import config_error, model_walker, read_yaml

    file = str(path)
    text, data = read_yaml(path)
    if not isinstance(data, dict):
        raise UserError("a release policy must be a mapping (steps, rollback_when, ...)", file=file, line=1)
    try:
        policy = ReleasePolicy.model_validate(data)
    except ValidationError as e:
        def bare_step(err: dict[str, Any], loc: tuple[Any, ...], msg: str) -> tuple[tuple[Any, ...], str]:
            # a bare-number step that failed reports under the synthetic key: point at the list item
            if len(loc) >= 3 and loc[0] == "steps" and not isinstance(_item(data.get("steps"), loc[1]), dict):
                return loc[:2], msg
            return loc, msg

        raise config_error(e, text=text, file=file, root="policy", model_at=model_walker(ReleasePolicy), refine=bare_step) from None
    return policy.model_copy(update={"source": file})
