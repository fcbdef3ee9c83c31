"""What a prompt optimizer maximises: one evaluator or a weighted mix, plus constraints.

The objective is computed per row from the same evaluator results the gate uses, so an optimizer
can only win by improving what the gate will later measure. Constraints (a prompt-size budget, a
floor on a safety evaluator) turn a proposal down however well it scores on the objective.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tunegate.core.prompt import PromptTemplate
from tunegate.core.result import EvalResult
from tunegate.errors import UserError

__all__ = ["Objective", "RowObjective", "prompt_tokens"]


def prompt_tokens(prompt: PromptTemplate) -> int:
    """Approximate token count of the prompt's own text (system + user template + few-shot).

    Tokenizer-free (≈ 4 characters per token, the usual BPE average for English) so the constraint
    means the same thing on every backend; it bounds prompt growth, it is not a billing figure.
    """
    chars = len(prompt.system or "") + len(prompt.user)
    chars += sum(len(s.input) + len(s.output) for s in prompt.few_shot)
    return (chars + 3) // 4


class RowObjective(BaseModel):
    """The objective for one row: ``value`` is None when no weighted evaluator applied."""

    model_config = ConfigDict(extra="forbid")

    value: float | None
    error: bool = False
    reason: str = ""


class Objective(BaseModel):
    """Weighted mean of evaluator scores per row; constraints on the dev means and prompt size."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] = Field(description="Evaluator name → weight (> 0).")
    floors: dict[str, float] = Field(default_factory=dict,
                                     description="Evaluator name → minimum dev mean a proposal must keep.")
    max_prompt_tokens: int | None = Field(default=None, ge=1,
                                          description="Largest prompt (system+user+few-shot, ≈chars/4).")
    error_value: float = Field(default=0.0, ge=0.0, le=1.0, description=(
        "Value an errored row contributes while optimising (errors are still counted and reported; "
        "a prompt that makes the model or an evaluator fail must not look better for it)."))

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("name at least one evaluator")
        bad = [k for k, w in v.items() if not w > 0]
        if bad:
            raise ValueError(f"weights must be > 0 (got {bad})")
        return v

    @classmethod
    def parse(cls, text: str, *, floors: Mapping[str, float] | None = None,
              max_prompt_tokens: int | None = None) -> Objective:
        """``json_validation`` or ``json_validation=0.7,tool_selection=0.3`` (equal weights when omitted)."""
        weights: dict[str, float] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name, _, w = part.partition("=")
            try:
                weights[name.strip()] = float(w) if w else 1.0
            except ValueError:
                raise UserError(f"weight {w!r} of {name.strip()!r} is not a number", field="objective") from None
        try:
            return cls(weights=weights, floors=dict(floors or {}), max_prompt_tokens=max_prompt_tokens)
        except ValueError as e:
            raise UserError(str(e).splitlines()[-1].strip(), field="objective") from None

    @property
    def evaluators(self) -> list[str]:
        """Every evaluator the objective or its floors read."""
        return list(dict.fromkeys([*self.weights, *self.floors]))

    def row(self, results: Mapping[str, EvalResult]) -> RowObjective:
        """Weighted mean over the evaluators that applied to the row (skipped ones drop out)."""
        total = wsum = 0.0
        errors = []
        for name, w in self.weights.items():
            r = results.get(name)
            if r is None or r.status == "skipped":
                continue
            if r.status == "error":
                errors.append(f"{name}: {r.reason}")
                continue
            assert r.score is not None
            total += w * r.score
            wsum += w
        if errors:
            return RowObjective(value=self.error_value, error=True, reason="; ".join(errors))
        if wsum == 0:
            return RowObjective(value=None, reason="no objective evaluator applies to this row")
        return RowObjective(value=total / wsum)

    def violations(self, prompt: PromptTemplate, means: Mapping[str, float | None]) -> list[str]:
        """Constraints the proposal breaks (empty when it is admissible)."""
        out = []
        if self.max_prompt_tokens is not None and (n := prompt_tokens(prompt)) > self.max_prompt_tokens:
            out.append(f"prompt is ~{n} tokens, budget {self.max_prompt_tokens}")
        for name, floor in self.floors.items():
            m = means.get(name)
            if m is not None and m < floor:
                out.append(f"{name} mean {m:.3f} below floor {floor:.3f}")
        return out
