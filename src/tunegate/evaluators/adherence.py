"""PromptAdherence: did the reply follow the prompt's verifiable instructions?

Instructions come from the row (``metadata.instructions``: a list of ``{"id", "kwargs"}``; rows in
IFEval's own shape, ``metadata.instruction_id_list`` + ``metadata.kwargs``, are converted) and/or
from the evaluator config (``instructions: [...]``, applied to every row). Each verifiable one is
checked by :mod:`tunegate.evaluators.ifeval`; the score is the fraction followed (IFEval's
instruction-level accuracy) and ``passed`` means all were followed (prompt-level accuracy), so both
IFEval figures come out of one evaluator.

Free-form instructions (``{"id": "free_form", "text": "..."}``) cannot be checked by code. They are
scored by a judge hook when one is wired — a callable ``(instruction_text, prompt, output) ->
(score in [0, 1], reason)`` passed as ``judge_fn=`` and described by the ``judge`` config (which is
part of the evaluator identity, so two runs with different judges are never paired). Without a
``judge`` config they are left out of the score and reported; a row with nothing else is
``skipped``. An unknown instruction id is an ``error`` naming it, never a silent pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from tunegate.core.example import Example
from tunegate.core.result import EvalResult
from tunegate.errors import UserError
from tunegate.evaluators.applicability import blank_output, empty_failure
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.evaluators.ifeval import FREE_FORM, check, from_ifeval, normalize_instruction
from tunegate.evaluators.text_match import parse_options

__all__ = ["JudgeFn", "PromptAdherence"]

#: The free-form judge hook: ``(instruction_text, prompt, output) -> (score in [0, 1], reason)``.
JudgeFn = Callable[[str, str, str], tuple[float, str]]

_NEEDS_JUDGE = ("free-form instruction needs a judge (configure judge: {backend: ..., model: ...} "
                "in the prompt_adherence options)")


def _row_instructions(ex: Example) -> list[Any] | None:
    """The row's raw instruction list, or None when the row declares none."""
    md = ex.metadata
    if "instructions" in md:
        raw = md["instructions"]
        if not isinstance(raw, list):
            raise ValueError(f"metadata.instructions must be a list, got {type(raw).__name__}")
        return raw
    if "instruction_id_list" in md:
        ids = md["instruction_id_list"]
        kwargs = md.get("kwargs") or [{} for _ in ids]
        return from_ifeval(ids, kwargs)
    return None


class PromptAdherence(Evaluator):
    """Fraction of the prompt's verifiable (IFEval-style) instructions the reply followed."""

    name = "prompt_adherence"
    version = "1"
    requires = ()
    description = ("Verifiable instructions (IFEval-style: length, format, keywords, case...) followed; "
                   "score = fraction followed, passed = all followed.")

    def __init__(self, *, judge_fn: JudgeFn | None = None, **config: Any) -> None:
        #: Hook scoring free-form instructions; the lead wires it from the ``judge`` config.
        self.judge_fn = judge_fn
        super().__init__(**config)

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        where = f"evaluators.{self.name}"
        cfg = parse_options(self.name, config, {"instructions": (list, []), "loose": (bool, False),
                                                "judge": ((dict, str), None)})
        try:
            cfg["instructions"] = [normalize_instruction(i) for i in cfg["instructions"]]
        except ValueError as e:
            raise UserError(str(e), field=f"{where}.instructions") from None
        if self.judge_fn is not None and cfg["judge"] is None:
            raise UserError("a judge callable was supplied but no 'judge' option describes it (the judge "
                            "is part of the evaluator identity)", field=where)
        return cfg

    def missing(self, ex: Example) -> list[str]:
        if self.config["instructions"]:
            return []
        if "instructions" in ex.metadata or "instruction_id_list" in ex.metadata:
            return []
        return ["metadata.instructions (and no 'instructions' configured)"]

    def _judge(self, text: str, prompt: str, output: str) -> tuple[float, str]:
        assert self.judge_fn is not None
        score, why = self.judge_fn(text, prompt, output)
        score = float(score)
        if not math.isfinite(score) or not 0.0 <= score <= 1.0:
            raise ValueError(f"the judge returned score {score!r}, outside [0, 1]")
        return score, str(why)

    def score(self, ctx: EvalContext) -> EvalResult:
        ex, output = ctx.example, ctx.output.text
        try:
            raw = _row_instructions(ex) or []
            items = [*self.config["instructions"], *(normalize_instruction(i) for i in raw)]
        except ValueError as e:
            return self.error(f"row {ex.id!r}: {e}")
        if not items:
            return self.skipped("the row declares an empty instruction list")
        if blank_output(ctx.output):
            asks = "; ".join(str(i.get("text") or i["id"]) for i in items[:5])
            return empty_failure(self.name, self.version, f"Reply, following: {asks}.",
                                 instructions=[i["id"] for i in items])
        prompt = ex.prompt_text()
        entries: list[dict[str, Any]] = []
        unjudged: list[str] = []
        for ins in items:
            if ins["id"] == FREE_FORM:
                if self.config["judge"] is None:
                    unjudged.append(ins["text"])
                    continue
                if self.judge_fn is None:
                    return self.error("a judge is configured but no judge callable was wired into "
                                      "prompt_adherence (free-form instructions cannot be scored)")
                s, why = self._judge(ins["text"], prompt, output)
                entries.append({"id": FREE_FORM, "followed": s >= 0.5, "score": s, "detail": why,
                                "ask": f"Follow the instruction: {ins['text']}"})
                continue
            c = check(ins, output, prompt=prompt, loose=self.config["loose"])
            entries.append({"id": c.id, "followed": c.followed, "score": float(c.followed),
                            "detail": c.detail, "ask": c.ask})
        if not entries:
            return self.skipped(_NEEDS_JUDGE)
        return self._result(entries, unjudged)

    def _result(self, entries: list[dict[str, Any]], unjudged: list[str]) -> EvalResult:
        score = sum(e["score"] for e in entries) / len(entries)
        failed = [e for e in entries if not e["followed"]]
        done = len(entries) - len(failed)
        mode = " (loose)" if self.config["loose"] else ""
        reason = f"followed {done} of {len(entries)} instructions{mode}"
        if failed:
            reason += "; failed: " + "; ".join(f"{e['id']} ({e['detail']})" for e in failed)
        if unjudged:
            reason += f"; {len(unjudged)} free-form instruction(s) not scored: {_NEEDS_JUDGE}"
        feedback = "\n".join(f"- {e['ask']} The reply {e['detail']}." for e in failed)
        details = {"instructions": [{k: e[k] for k in ("id", "followed", "score", "detail")} for e in entries],
                   "followed": done, "total": len(entries)}
        if unjudged:
            details["unjudged"] = unjudged
        return self.ok(score, reason, passed=not failed, feedback=feedback, **details)
