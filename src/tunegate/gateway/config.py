"""``gateway.yaml``: routes, arms (candidate files), rules, fallbacks, guardrails, keys — validated strictly.

The file is versioned (``version: 1``) and hashed (``GatewayConfig.hash``: canonical JSON of the
validated content plus the hashes of every arm's candidate), so a log line or a rollout event can
say exactly which configuration served a request. Every problem is a ``UserError`` naming
``file:line: field``. Traffic *shares* are not in this file: they live in the store and change
only through release control (``tunegate rollout``), so editing YAML can never put an unpromoted
candidate in front of users.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunegate.core.hashing import content_hash
from tunegate.errors import UserError

__all__ = [
    "ArmConfig",
    "AuthConfig",
    "EvidenceConfig",
    "GatewayConfig",
    "GuardrailConfig",
    "KeyConfig",
    "Price",
    "RouteConfig",
    "RuleConfig",
    "load_gateway_config",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
OPERATORS = ("eq", "ne", "in", "not_in", "prefix", "regex", "exists")
PRE_CHECKS = ("pii", "prompt_injection")
POST_CHECKS = ("pii", "content_safety", "json_validation")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Price(_Strict):
    """USD per million tokens (used for cost-aware choice and the cost column of the request log)."""

    input_per_1m: float = Field(default=0.0, ge=0)
    output_per_1m: float = Field(default=0.0, ge=0)

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_1m + tokens_out * self.output_per_1m) / 1e6


class ArmConfig(_Strict):
    """One upstream: a tunegate candidate YAML (backend, model, adapter, prompt version, params)."""

    candidate: str = Field(description="Path to the candidate YAML (relative to gateway.yaml).")
    price: Price = Field(default_factory=Price)


class RuleConfig(_Strict):
    """``when`` every condition holds, restrict the arms to ``arms`` and pick by ``choose``.

    A condition is ``subject: {operator: value}`` (or ``subject: value`` for ``eq``); subjects are
    ``header.<name>``, ``metadata.<key>``, ``api_key`` (the key's name), ``tenant``, ``cohort``,
    ``route``.
    """

    name: str | None = None
    when: dict[str, Any] = Field(default_factory=dict)
    arms: list[str] | None = Field(default=None, description="Arms allowed for matching requests.")
    choose: Literal["rollout", "cheapest"] = "rollout"
    cohort: str | None = Field(default=None, description="Cohort to tag matching requests with.")

    @field_validator("when")
    @classmethod
    def _when(cls, v: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for subject, cond in v.items():
            head = subject.split(".", 1)[0]
            if head not in ("header", "metadata") and subject not in ("api_key", "tenant", "cohort", "route"):
                raise ValueError(f"unknown subject {subject!r}: use header.<name>, metadata.<key>, api_key, "
                                 "tenant, cohort or route")
            if head in ("header", "metadata") and "." not in subject:
                raise ValueError(f"subject {subject!r} needs a name: {head}.<name>")
            if not isinstance(cond, dict):
                cond = {"eq": cond}
            for op, val in cond.items():
                if op not in OPERATORS:
                    raise ValueError(f"{subject}: unknown operator {op!r}; known: {', '.join(OPERATORS)}")
                if op in ("in", "not_in") and not isinstance(val, list):
                    raise ValueError(f"{subject}: operator {op} needs a list")
                if op == "regex":
                    try:
                        re.compile(str(val))
                    except re.error as e:
                        raise ValueError(f"{subject}: bad regex: {e}") from None
            key = subject.lower() if head == "header" else subject
            out[key] = cond
        return out


class GuardrailConfig(_Strict):
    """One guardrail: a check and what to do when it fires."""

    check: str
    action: Literal["block", "redact", "flag", "fallback"]
    options: dict[str, Any] = Field(default_factory=dict, description="Evaluator options (entities, threshold).")


class Guardrails(_Strict):
    pre: list[GuardrailConfig] = Field(default_factory=list)
    post: list[GuardrailConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _checks(self) -> Guardrails:
        for stage, items, known in (("pre", self.pre, PRE_CHECKS), ("post", self.post, POST_CHECKS)):
            for g in items:
                if g.check not in known:
                    raise ValueError(f"{stage}: unknown check {g.check!r}; known: {', '.join(known)}")
                if stage == "pre" and g.action == "fallback":
                    raise ValueError(f"pre: {g.check}: action fallback applies to answers (post) only")
                if g.action == "redact" and g.check not in ("pii",):
                    raise ValueError(f"{stage}: {g.check}: only pii can redact")
        return self


class EvidenceConfig(_Strict):
    """What a verdict must have been measured on before it may move this route's traffic."""

    dataset_hash: str | None = Field(default=None, description="The golden dataset the verdict must use.")
    evaluators: list[str] | None = Field(default=None, description="Evaluators both runs must have scored.")
    policy_hash: str | None = Field(default=None, description="The gate policy the verdict must come from.")


class RouteConfig(_Strict):
    """A public model name clients ask for, and how its traffic is split and protected."""

    name: str
    baseline: str = Field(description="Arm serving every request not sent to a released candidate.")
    arms: dict[str, ArmConfig]
    cohorts: list[str] | None = Field(default=None, description="Cohorts this route serves (None: all).")
    sticky_key: list[str] = Field(default_factory=lambda: ["header.x-tunegate-user", "user", "metadata.user_id",
                                                           "metadata.session_id"])
    rules: list[RuleConfig] = Field(default_factory=list)
    fallback: list[str] = Field(default_factory=list, description="Arms tried, in order, after a failure.")
    retries: int = Field(default=1, ge=0, le=10, description="Retries of the same arm on a retryable error.")
    attempt_budget: int = Field(default=3, ge=1, le=20, description="Upstream calls per request, at most.")
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    backoff_s: float = Field(default=0.05, ge=0, le=10)
    max_backoff_s: float = Field(default=2.0, ge=0, le=60)
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema",
                                               description="Post-check: answers must be JSON valid for it.")
    cache: bool = Field(default=False, description="Exact response cache (opt-in).")
    cache_size: int = Field(default=10_000, ge=1)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("route names are letters, digits and . _ : - (at most 100)")
        return v

    @model_validator(mode="after")
    def _refs(self) -> RouteConfig:
        known = f"({', '.join(self.arms)})" if self.arms else "(arms: is empty)"
        if self.baseline not in self.arms:
            raise ValueError(f"baseline {self.baseline!r} is not one of the arms {known}")
        for a in self.arms:
            if not _NAME.match(a):
                raise ValueError(f"arm name {a!r}: letters, digits and . _ : - only")
        for f in self.fallback:
            if f not in self.arms:
                raise ValueError(f"fallback {f!r} is not one of the arms {known}")
        for i, r in enumerate(self.rules):
            for a in r.arms or []:
                if a not in self.arms:
                    raise ValueError(f"rules[{i}]: arm {a!r} is not one of the arms {known}")
        if self.json_schema is not None:
            from jsonschema import Draft202012Validator
            from jsonschema.exceptions import SchemaError

            try:
                Draft202012Validator.check_schema(self.json_schema)
            except SchemaError as e:
                raise ValueError(f"schema is not a valid JSON Schema: {e.message}") from None
        return self


class KeyConfig(_Strict):
    """A gateway API key, stored as its SHA-256 only (``tunegate serve --hash-key`` prints it)."""

    name: str
    sha256: str = Field(description="Hex SHA-256 of the key; the key itself is never written anywhere.")
    tenant: str | None = None
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute.")
    tokens_per_day: int | None = Field(default=None, ge=1, description="Token budget (in + out) per day.")
    routes: list[str] | None = Field(default=None, description="Routes the key may use (None: all).")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        v = v.removeprefix("sha256:").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError("must be 64 hex digits (the SHA-256 of the key), never the key itself")
        return v


class AuthConfig(_Strict):
    keys: list[KeyConfig] = Field(default_factory=list)


class GatewayConfig(_Strict):
    """The whole file."""

    version: Literal[1]
    routes: list[RouteConfig]
    auth: AuthConfig | None = Field(default=None, description="Absent: no key required (local use only).")
    reload_s: float = Field(default=1.0, gt=0, le=300, description="How often rollout state is re-read.")
    log_batch: int = Field(default=200, ge=1, le=100_000)
    log_flush_s: float = Field(default=1.0, gt=0, le=60)
    source: str | None = Field(default=None, exclude=True)
    candidate_hashes: dict[str, dict[str, str]] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="after")
    def _unique(self) -> GatewayConfig:
        names = [r.name for r in self.routes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"route names must be unique: {', '.join(dup)}")
        if not self.routes:
            raise ValueError("at least one route is needed")
        if self.auth is not None:
            kn = [k.name for k in self.auth.keys]
            if len(set(kn)) != len(kn):
                raise ValueError("key names must be unique")
        return self

    def route(self, name: str) -> RouteConfig | None:
        return next((r for r in self.routes if r.name == name), None)

    @property
    def hash(self) -> str:
        return content_hash({"config": self.model_dump(mode="json", by_alias=True),
                             "candidates": self.candidate_hashes}, prefix="gw-")


def load_gateway_config(path: str | Path) -> tuple[GatewayConfig, dict[str, dict[str, Any]]]:
    """Validate ``path``; returns the config and, per route and arm, the loaded CandidateSpec.

    Candidates are loaded (and their files checked) here so a typo in a candidate path fails at
    start-up with the gateway file's line, not on the first request.
    """
    from tunegate.core.candidate import load_candidate
    from tunegate.core.loading import dotted_field, pydantic_message, read_yaml, yaml_line

    file = str(path)
    text, data = read_yaml(path)
    if not isinstance(data, dict):
        raise UserError("a gateway file must be a mapping (version, routes, auth...)", file=file)
    try:
        cfg = GatewayConfig.model_validate(data)
    except ValidationError as e:
        loc, msg = pydantic_message(e)
        line = yaml_line(text, tuple(e.errors()[0]["loc"]))
        raise UserError(msg, file=file, line=line, field=loc) from None
    base = Path(file).parent
    specs: dict[str, dict[str, Any]] = {}
    hashes: dict[str, dict[str, str]] = {}
    for ri, route in enumerate(cfg.routes):
        specs[route.name], hashes[route.name] = {}, {}
        for arm, ac in route.arms.items():
            cpath = Path(ac.candidate)
            if not cpath.is_absolute():
                cpath = base / cpath
            where: tuple[Any, ...] = ("routes", ri, "arms", arm, "candidate")
            if not cpath.is_file():
                raise UserError(f"candidate file {ac.candidate!r} not found (relative to {base})", file=file,
                                line=yaml_line(text, where), field=dotted_field(where, "routes"))
            specs[route.name][arm] = load_candidate(cpath)
    cfg = cfg.model_copy(update={"source": file})
    return cfg, specs


def candidate_hashes(specs: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Per route and arm, the candidate hash (after prompt-registry resolution)."""
    return {r: {a: s.hash for a, s in arms.items()} for r, arms in specs.items()}
