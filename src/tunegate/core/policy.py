"""Gate policy: which rules a candidate must satisfy, read from YAML, versioned and hashed.

Example::

    name: support-bot
    version: "3"
    headline: {evaluator: task_completion, rule: improve}            # CI low bound of delta > 0
    guards:
      - {evaluator: groundedness, rule: non_inferior, margin: 0.02}  # CI low bound > -0.02
      - {evaluator: content_safety, rule: no_drop, margin: 0.01}     # no drop shown, and CI low > -0.01
      - {evaluator: json_validation, rule: floor, min: 0.95}         # candidate mean >= 0.95
      - {evaluator: numeric_match, rule: non_inferior, margin: 0.05, cohorts: [arithmetic]}  # those rows only
    cohorts: {rule: non_inferior, margin: 0.05, min_rows: 20}       # every cohort with >= 20 pairs
    max_cohort_variance_increase: 0.01
    error_budget: 0.02
    forgetting: {probe: general-v1, rule: non_inferior, margin: 0.05}  # general capability kept

Unknown keys are rejected (a typo like ``margn`` must not silently disable a guard), and errors
name the file, the line and the field. The hash covers every setting that changes a verdict, with
defaults filled in, so two files that say the same thing hash the same (a policy without a
``forgetting`` section, or rules without a scope, hash exactly as they did before those existed).

Rule kinds (docs/decisions/0003-no-drop-and-rows-needed.md):

* ``improve`` -- superiority: passes when the CI of the delta lies above 0 (and, for pass/fail
  metrics, the exact one-sided McNemar test agrees); fails when a drop is shown with confidence.
* ``non_inferior`` -- passes when the CI lies above ``-margin``; fails only when a drop *larger than
  the margin* is shown with confidence (drops inside the margin are tolerated).
* ``no_drop`` -- "must not get worse": passes when the CI lies above ``-margin`` (an unchanged metric
  passes once there are enough rows to rule out a drop of ``margin``); fails when *any* drop is shown
  with confidence (the fail test is against 0, not ``-margin``). The margin is required: without a
  tolerance no finite number of rows can show that nothing changed.
* ``floor`` -- the candidate's mean is at least ``min``, judged on the CI of the candidate mean.

A rule may be **scoped to rows**: ``cohorts: [math]`` (rows tagged with any of them) and/or
``where: {metadata.task: math}`` (dotted paths into the row; a list value means any of). Rows outside
the scope are not gated by that rule and their errors do not count against the error budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunegate.core.hashing import content_hash
from tunegate.errors import UserError

__all__ = ["PROBES_DIR", "CohortRules", "ForgettingRule", "GatePolicy", "ProbeCohorts", "Rule", "RuleKind",
           "builtin_probes", "load_policy", "row_value"]

RuleKind = Literal["improve", "non_inferior", "no_drop", "floor"]

#: Where the built-in general-capability probes ship (package data: ``<name>.jsonl`` + suite YAML).
PROBES_DIR = Path(__file__).resolve().parent.parent / "data" / "probes"
_SUITE_SUFFIX = ".evaluators.yaml"


class _FieldProblem(ValueError):
    """A model-level problem that belongs to one field (the loader names ``<rule>.<field>``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def _check_rule(rule: str, margin: float | None, minimum: float | None) -> None:
    """Shared by per-evaluator and per-cohort rules: each kind takes exactly the numbers it uses."""
    if rule == "non_inferior" and margin is None:
        raise _FieldProblem("rule non_inferior needs a margin (e.g. margin: 0.02)", "margin")
    if rule == "no_drop" and not margin:
        raise _FieldProblem(
            "rule no_drop needs a margin > 0: the smallest drop the rule must rule out before it passes "
            "(e.g. margin: 0.01). An unchanged metric can only pass once the rows exclude a drop of that "
            "size; any drop shown with confidence still fails", "margin")
    if rule not in ("non_inferior", "no_drop") and margin is not None:
        hint = " (use non_inferior or no_drop for a tolerance)" if rule == "improve" else ""
        raise _FieldProblem(f"rule {rule} takes no margin{hint}", "margin")
    if rule == "floor" and minimum is None:
        raise _FieldProblem("rule floor needs a min (e.g. min: 0.95)", "min")
    if rule != "floor" and minimum is not None:
        raise _FieldProblem(f"rule {rule} takes no min (only floor does)", "min")


def _threshold(rule: str, margin: float | None, minimum: float | None) -> float:
    """The bound the rule's CI must clear to pass."""
    if rule in ("non_inferior", "no_drop"):
        return -float(margin) if margin else 0.0
    if rule == "floor":
        return float(minimum or 0.0)
    return 0.0


def _fail_threshold(rule: str, margin: float | None, minimum: float | None) -> float:
    """The bound a one-sided test must show the measure is below to fail: ``no_drop`` fails on any
    drop shown with confidence (0), every other rule on the same bound it must clear to pass."""
    return 0.0 if rule == "no_drop" else _threshold(rule, margin, minimum)


_MISSING = object()


def row_value(row: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` (``metadata.task``) of a row's JSON, or a sentinel when absent."""
    cur: Any = row
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


class Rule(BaseModel):
    """One rule on one evaluator's overall result (over every row, or the rows of its scope).

    ``improve``: the 95% CI of the mean delta lies above 0. ``non_inferior``: it lies above
    ``-margin``. ``no_drop``: it lies above ``-margin`` and no drop at all is shown with confidence.
    ``floor``: the candidate's mean is at least ``min``, judged on the CI of the candidate mean.
    ``cohorts`` / ``where`` restrict the rows the rule applies to.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    evaluator: str = Field(min_length=1, description="Evaluator name, as in the runs.")
    rule: RuleKind = Field(description="improve | non_inferior | no_drop | floor.")
    margin: float | None = Field(default=None, ge=0.0, le=1.0,
                                 description="Tolerated drop (non_inferior); drop to rule out (no_drop).")
    min: float | None = Field(default=None, ge=0.0, le=1.0, description="Lowest acceptable mean (floor).")
    cohorts: list[str] | None = Field(default=None, description="Only rows tagged with any of these cohorts.")
    where: dict[str, Any] | None = Field(
        default=None, description="Only rows whose dotted field equals the value (a list: any of), e.g. "
                                  "{metadata.task: math}; with cohorts, a row must satisfy both.")

    @model_validator(mode="after")
    def _kind(self) -> Rule:
        _check_rule(self.rule, self.margin, self.min)
        return self

    @field_validator("cohorts")
    @classmethod
    def _cohorts(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        names = [c.strip() for c in v]
        if not names or not all(names):
            raise ValueError("name at least one cohort (or leave cohorts out to gate every row)")
        if len(set(names)) != len(names):
            raise ValueError("a cohort is listed twice")
        return names

    @field_validator("where")
    @classmethod
    def _where(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("an empty where matches every row; leave it out instead")
        for key, want in v.items():
            if not key.strip() or any(not p for p in key.split(".")):
                raise ValueError(f"{key!r} is not a dotted field path (e.g. metadata.task)")
            values = want if isinstance(want, list) else [want]
            if not values or any(isinstance(x, dict | list) for x in values):
                raise ValueError(f"{key}: compare with a value or a list of values (any of), not {want!r}")
        return v

    @property
    def threshold(self) -> float:
        """The value the measured quantity's CI must clear to pass: 0, -margin, or min."""
        return _threshold(self.rule, self.margin, self.min)

    @property
    def fail_threshold(self) -> float:
        """The bound a one-sided test must put the measure below to fail (0 for ``no_drop``)."""
        return _fail_threshold(self.rule, self.margin, self.min)

    @property
    def scope(self) -> str | None:
        """A short label of the rows the rule applies to (``cohorts=math``), None for every row."""
        parts = []
        if self.cohorts:
            parts.append("cohorts=" + ",".join(self.cohorts))
        for key, want in (self.where or {}).items():
            parts.append(f"{key}=" + (",".join(map(str, want)) if isinstance(want, list) else str(want)))
        return " ".join(parts) or None

    @property
    def key(self) -> str:
        """Name of the measure the rule reads: the evaluator, or ``evaluator [scope]`` when scoped."""
        return self.evaluator if self.scope is None else f"{self.evaluator} [{self.scope}]"

    def applies_to(self, cohorts: Sequence[str], row: Mapping[str, Any] | None = None) -> bool:
        """Does the rule gate this row (its cohort tags, and its JSON for ``where``)?"""
        if self.cohorts and not set(self.cohorts).intersection(cohorts):
            return False
        for key, want in (self.where or {}).items():
            got = row_value(row or {}, key)
            values = want if isinstance(want, list) else [want]
            if got is _MISSING or got not in values:
                return False
        return True

    def describe(self) -> str:
        where = f" on {self.scope}" if self.scope else ""
        if self.rule in ("non_inferior", "no_drop"):
            return f"{self.evaluator} {self.rule} (margin {self.margin:g}){where}"
        if self.rule == "floor":
            return f"{self.evaluator} floor {self.min:g}{where}"
        return f"{self.evaluator} {self.rule}{where}"


class CohortRules(BaseModel):
    """A rule applied to every cohort with at least ``min_rows`` pairs, for each listed evaluator."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: RuleKind = "non_inferior"
    margin: float | None = Field(default=None, ge=0.0, le=1.0)
    min: float | None = Field(default=None, ge=0.0, le=1.0)
    min_rows: int = Field(default=20, ge=1, description="Smaller cohorts are listed but not gated.")
    evaluators: list[str] | None = Field(
        default=None, description="Evaluators the cohort rule covers; default: headline + guards.")
    alpha_share: float = Field(
        default=0.5, gt=0.0, lt=1.0,
        description="Share of the false-BLOCK budget spent on per-cohort tests (rest: overall rules).")

    @model_validator(mode="after")
    def _kind(self) -> CohortRules:
        _check_rule(self.rule, self.margin, self.min)
        return self

    @property
    def threshold(self) -> float:
        return _threshold(self.rule, self.margin, self.min)

    @property
    def fail_threshold(self) -> float:
        return _fail_threshold(self.rule, self.margin, self.min)


def builtin_probes() -> list[str]:
    """Names of the probes shipped with tunegate (``general-v1``...)."""
    return sorted(p.name.removesuffix(".jsonl") for p in PROBES_DIR.glob("*.jsonl"))


class ProbeCohorts(BaseModel):
    """Per-cohort forgetting rule: every probe cohort with at least ``min_rows`` pairs must stay
    non-inferior too. Probe cohorts are small (16 rows in general-v1), so only a large drop can be
    shown with confidence: the margin is wider than the overall one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Literal["non_inferior", "no_drop"] = "non_inferior"
    margin: float | None = Field(default=None, ge=0.0, le=1.0, description="Tolerated drop per cohort.")
    min_rows: int = Field(default=10, ge=1, description="Smaller probe cohorts are listed but not gated.")

    @model_validator(mode="after")
    def _kind(self) -> ProbeCohorts:
        _check_rule(self.rule, self.margin, None)
        return self

    def as_rule(self, evaluator: str) -> Rule:
        return Rule(evaluator=evaluator, rule=self.rule, margin=self.margin)


class ForgettingRule(BaseModel):
    """Catastrophic-forgetting guard: both candidates also run on a general-capability probe, and the
    candidate's per-row probe score must stay non-inferior to the baseline's.

    The probe is scored by its own evaluator suite; each row's probe score is the mean of the
    evaluators that apply to it, and the rule is judged like a ``non_inferior`` guard on that score
    (same CI, same fail test, same multiplicity correction as the other rules).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe: str = Field(default="general-v1", min_length=1,
                       description="Built-in probe name, or a golden dataset file (relative to the policy file).")
    evaluators: str | list[str] | None = Field(
        default=None, description="Probe evaluators: names or a suite YAML (relative to the policy file); "
                                  "default: the probe's shipped <probe>.evaluators.yaml.")
    rule: Literal["non_inferior", "no_drop"] = Field(
        default="non_inferior", description="non_inferior | no_drop (both need a margin).")
    margin: float | None = Field(default=None, ge=0.0, le=1.0, description="Tolerated drop of the probe score.")
    max_tokens: int | None = Field(default=None, ge=1, le=32768,
                                   description="Decoding max_tokens for probe runs (default: each candidate's own).")
    prompt: Literal["candidate", "bare"] = Field(
        default="candidate", description="candidate: probe rows go through each candidate's prompt template; "
                                         "bare: no system prompt, the row input only (weights-only forgetting).")
    cohorts: ProbeCohorts | None = Field(
        default=None, description="Also gate each probe cohort (arithmetic, factual, ...): a mean that holds "
                                  "while one ability collapses is still forgetting.")

    @model_validator(mode="after")
    def _kind(self) -> ForgettingRule:
        _check_rule(self.rule, self.margin, None)
        return self

    @field_validator("evaluators")
    @classmethod
    def _evaluators(cls, v: str | list[str] | None) -> str | list[str] | None:
        if v is not None and not (v.strip() if isinstance(v, str) else [n for n in v if n.strip()]):
            raise ValueError("name at least one evaluator (or leave evaluators out for the probe's own suite)")
        return v

    def as_rule(self) -> Rule:
        """The guard this section amounts to, on the probe's combined score."""
        return Rule(evaluator=f"probe:{self.probe_name}", rule=self.rule, margin=self.margin)

    @property
    def probe_name(self) -> str:
        return self.probe if self.probe in builtin_probes() else Path(self.probe).stem

    def probe_files(self, base_dir: str | Path | None = None) -> tuple[Path, str | list[str] | None]:
        """(probe dataset file, evaluator suite spec); relative paths resolve against ``base_dir``.

        Raises ``ValueError`` naming what was tried when the probe is neither built in nor a file.
        """
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        if self.probe in builtin_probes():
            data = PROBES_DIR / f"{self.probe}.jsonl"
        else:
            data = Path(self.probe) if Path(self.probe).is_absolute() else base / self.probe
            if not data.is_file():
                raise ValueError(f"probe {self.probe!r} is neither a built-in probe ({', '.join(builtin_probes())}) "
                                 f"nor a file ({data} not found)")
        suite: str | list[str] | None = self.evaluators
        if isinstance(suite, str) and suite.endswith((".yaml", ".yml")) and not Path(suite).is_absolute():
            suite = str(base / suite)
        elif suite is None:
            shipped = data.with_name(data.name.removesuffix(data.suffix) + _SUITE_SUFFIX)
            suite = str(shipped) if shipped.is_file() else None
        return data, suite


class GatePolicy(BaseModel):
    """The whole gate: rules, statistical settings, identity (name, version, hash)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="default", min_length=1)
    version: str = Field(default="1", min_length=1, description="The policy's own version string.")
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5, description="Nominal false-BLOCK / false-PROMOTE rate.")
    correction: Literal["holm", "bh"] = Field(default="holm", description="Multiplicity correction.")
    n_resamples: int = Field(default=2000, ge=200, le=200_000)
    seed: int = Field(default=0, ge=0)
    min_rows: int = Field(default=10, ge=1, description="Fewest pairs on which an overall rule is decided.")
    headline: Rule | None = None
    guards: list[Rule] = Field(default_factory=list)
    cohorts: CohortRules | None = None
    max_cohort_variance_increase: float | None = Field(
        default=None, ge=0.0, description="Largest allowed rise in the variance of cohort means.")
    error_budget: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Largest fraction of rows errored or missing on either side (gated evaluators).")
    forgetting: ForgettingRule | None = Field(
        default=None, description="Also gate on a general-capability probe (catastrophic forgetting).")
    source: str | None = Field(default=None, exclude=True, description="File it was loaded from.")

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _rules(self) -> GatePolicy:
        if self.headline is None and not self.guards and self.forgetting is None:
            raise ValueError("a policy needs a headline or at least one guard (or a forgetting rule)")
        return self

    def gated_evaluators(self) -> list[str]:
        """Headline and guard evaluators, in policy order, without repeats."""
        names = ([self.headline.evaluator] if self.headline else []) + [g.evaluator for g in self.guards]
        return list(dict.fromkeys(names))

    def cohort_evaluators(self) -> list[str]:
        """Evaluators the cohort rule and the cohort-variance limit apply to."""
        if self.cohorts is not None and self.cohorts.evaluators is not None:
            return list(dict.fromkeys(self.cohorts.evaluators))
        return self.gated_evaluators()

    def named_rules(self) -> list[tuple[str, str, Rule]]:
        """(label, YAML field, rule) for the headline and every guard, in policy order."""
        out = [("headline", "headline", self.headline)] if self.headline is not None else []
        return out + [(f"guard {i + 1}", f"guards[{i}]", g) for i, g in enumerate(self.guards)]

    def scoped_rules(self) -> list[tuple[str, Rule]]:
        """(YAML field, rule) of the rules restricted to some rows, first per measure key."""
        seen: dict[str, tuple[str, Rule]] = {}
        for _, field, r in self.named_rules():
            if r.scope is not None:
                seen.setdefault(r.key, (field, r))
        return list(seen.values())

    def gated_keys(self) -> list[str]:
        """Measures the headline and guards read: evaluator names, ``evaluator [scope]`` when scoped."""
        return list(dict.fromkeys(r.key for _, _, r in self.named_rules()))

    def cohort_keys(self) -> list[str]:
        """Measures the cohort rule and the cohort-variance limit apply to: the listed evaluators, or
        by default the headline and guard measures (a scoped guard's cohort checks stay in its scope)."""
        if self.cohorts is not None and self.cohorts.evaluators is not None:
            return list(dict.fromkeys(self.cohorts.evaluators))
        return self.gated_keys()

    @property
    def min_cohort_rows(self) -> int:
        return self.cohorts.min_rows if self.cohorts is not None else 20

    def compare_options(self) -> dict[str, Any]:
        """Keyword arguments for ``compare_arrays`` so the comparison matches this policy."""
        return {"n_resamples": self.n_resamples, "alpha": self.alpha, "seed": self.seed,
                "correction": self.correction, "min_cohort_rows": self.min_cohort_rows}

    @property
    def hash(self) -> str:
        """Content hash of every setting (defaults included), ``pol-`` prefixed.

        An absent ``forgetting`` section is left out, so policies written before it existed keep
        their hash (stored verdicts stay matched to them).
        """
        data = self.model_dump(mode="json")
        if data.get("forgetting") is None:
            data.pop("forgetting", None)
        for rule in [data.get("headline"), *data.get("guards", [])]:
            for k in ("cohorts", "where"):
                if isinstance(rule, dict) and rule.get(k) is None:
                    rule.pop(k, None)
        return content_hash(data, prefix="pol-")

    @property
    def base_dir(self) -> Path | None:
        """Folder of the policy file (relative probe paths resolve against it), if loaded from one."""
        return Path(self.source).resolve().parent if self.source else None


def load_policy(path: str | Path) -> GatePolicy:
    """Read a policy YAML; any problem is a UserError naming file, line and field."""
    from tunegate.core.loading import config_error, model_walker, read_yaml, yaml_line

    file = str(path)
    text, data = read_yaml(path)
    if not isinstance(data, dict):
        raise UserError("a policy file must be a mapping (headline, guards, cohorts...)", file=file, line=1)
    try:
        policy = GatePolicy.model_validate(data)
    except ValidationError as e:
        raise config_error(e, text=text, file=file, root="policy", model_at=model_walker(GatePolicy), refine=_field_problem) from None
    policy = policy.model_copy(update={"source": file})
    if policy.forgetting is not None:
        try:
            policy.forgetting.probe_files(policy.base_dir)
        except ValueError as e:
            raise UserError(str(e), file=file, line=yaml_line(text, ("forgetting", "probe")),
                            field="forgetting.probe") from None
    return policy


def _field_problem(err: dict[str, Any], loc: tuple[Any, ...], msg: str) -> tuple[tuple[Any, ...], str]:
    """A model-level check about one field (a rule's margin or min): name that field."""
    problem = (err.get("ctx") or {}).get("error")
    if isinstance(problem, _FieldProblem):
        return (*loc, problem.field), str(problem)
    return loc, msg
