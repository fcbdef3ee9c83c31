"""LLM-judge evaluators: ``custom`` (your rubric) and ``task_completion`` (reference first, judge else).

Both put the judge's full identity (backend, model, rubric, parser, prompt version, temperature,
samples) into their own identity, so the gate never pairs runs judged differently. A judge that
is the candidate's own model or family gets a self-preference warning (:mod:`.judge_family`).
A small local judge is a code path, not a signal (DESIGN §6: SmolLM2 judges at chance level);
configure an OpenAI-compatible endpoint with a strong model for real judging.

``judge`` config: ``{backend: local|openai|<plugin kind>, model, base_url, api_key_env, adapter,
options}``, turned into a backend by the factory given to the constructor (``judge_backends=``;
the engine's suite builder passes its own), or — from Python — a ready backend object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from tunegate.core.candidate import DEFAULT_MODEL
from tunegate.core.example import Example
from tunegate.core.result import EvalResult
from tunegate.errors import EvaluatorError, UserError
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.evaluators.judge import (
    BackendFactory,
    JudgeBackend,
    JudgeVerdict,
    RubricJudge,
    build_judge_backend,
)
from tunegate.evaluators.judge_prompt import JudgeItem
from tunegate.evaluators.task_reference import (
    REFERENCE_FIELDS,
    reference_outcome,
    reference_path,
    refusal_detector,
)
from tunegate.evaluators.text_match import parse_options

__all__ = ["TASK_COMPLETION_RUBRIC", "CustomEvaluation", "TaskCompletion", "parse_judge_spec"]

TASK_COMPLETION_RUBRIC = """Did the assistant do what the user asked, completely and correctly?
- Pass only if the output addresses every part of the request and what it says is correct.
- When context is given, the answer must rest on it and must not contradict it.
- When tools were offered, the assistant must call the right tool with the right arguments, or correctly call none.
- When a reference answer is given, the output must agree with it in substance (wording may differ).
- A refusal passes only if the request should be refused.
- Ignore style and length unless they stop the task from being done."""

_JUDGE_KEYS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "backend": (str, "local"), "model": (str, None), "base_url": (str, None), "api_key_env": (str, None),
    "adapter": (str, None), "options": (dict, {}),
}


def parse_judge_spec(evaluator: str, value: Any) -> tuple[dict[str, Any] | None, JudgeBackend | None]:
    """(validated mapping for the factory, or a ready backend object) from a ``judge`` option."""
    where = f"evaluators.{evaluator}.judge"
    if value is None:
        return None, None
    if isinstance(value, JudgeBackend):
        return {"backend": "object", **value.identity()}, value
    if not isinstance(value, Mapping):
        raise UserError("must be a mapping {backend, model, base_url, api_key_env} or a backend object",
                        field=where)
    spec = parse_options(f"{evaluator}.judge", value, _JUDGE_KEYS)
    if not spec["backend"].strip():
        raise UserError("backend must name a backend kind (local, openai or a plugin's)", field=where)
    if spec["backend"] == "local":
        spec["model"] = spec["model"] or DEFAULT_MODEL
        if spec["base_url"] is not None:
            raise UserError("base_url is only for backend: openai", field=where)
    elif spec["backend"] == "openai" and (not spec["model"] or not spec["base_url"]):
        raise UserError("backend openai needs 'model' and 'base_url'", field=where)
    elif not spec["model"]:
        raise UserError(f"backend {spec['backend']} needs 'model'", field=where)
    return spec, None


class _JudgeEvaluator(Evaluator):
    """Shared judge plumbing: options, lazy judge, identity, verdict → result.

    ``judge_backends`` is how a ``judge:`` mapping becomes a backend; the registry passes it to
    classes that set ``uses_judge_backends`` (see :meth:`tunegate.evaluators.registry.Registry.create`).
    """

    default_scale: ClassVar[str] = "1-5"
    judge_required: ClassVar[bool] = True
    uses_judge_backends: ClassVar[bool] = True

    def __init__(self, *, judge_backends: BackendFactory | None = None, **config: Any) -> None:
        self._judge_factory = judge_backends
        super().__init__(**config)

    def _judge_options(self, config: dict[str, Any], extra: Mapping[str, tuple[Any, Any]]) -> dict[str, Any]:
        where = f"evaluators.{self.name}"
        spec = {"judge": (object, None), "scale": (str, self.default_scale), "samples": (int, 1),
                "temperature": (float, None), "threshold": (float, None), "seed": (int, 0),
                "max_tokens": (int, 512), **extra}
        cfg = parse_options(self.name, config, spec)
        self._judge_spec, self._judge_backend = parse_judge_spec(self.name, cfg["judge"])
        self._judge_obj: RubricJudge | None = None
        if self.judge_required and self._judge_spec is None:
            raise UserError("a judge is required: judge: {backend: openai, model: ..., base_url: ...}", field=where)
        if cfg["scale"] not in ("binary", "1-5"):
            raise UserError(f"option 'scale' must be 'binary' or '1-5', got {cfg['scale']!r}", field=where)
        if not 1 <= cfg["samples"] <= 20:
            raise UserError(f"option 'samples' must be in 1..20, got {cfg['samples']}", field=where)
        if cfg["temperature"] is None:
            cfg["temperature"] = 0.0 if cfg["samples"] == 1 else 0.7
        if not 0.0 <= cfg["temperature"] <= 2.0:
            raise UserError(f"option 'temperature' must be in [0, 2], got {cfg['temperature']}", field=where)
        if cfg["samples"] > 1 and cfg["temperature"] == 0:
            raise UserError("samples > 1 needs temperature > 0 (greedy samples would be identical)", field=where)
        if cfg["threshold"] is None:
            cfg["threshold"] = 0.75 if cfg["scale"] == "1-5" else 0.5
        if not 0.0 <= cfg["threshold"] <= 1.0:
            raise UserError(f"option 'threshold' must be in [0, 1], got {cfg['threshold']}", field=where)
        if not 16 <= cfg["max_tokens"] <= 8192:
            raise UserError(f"option 'max_tokens' must be in 16..8192, got {cfg['max_tokens']}", field=where)
        cfg["judge"] = self._judge_spec
        return cfg

    def _rubric(self) -> str:
        raise NotImplementedError

    def judge(self) -> RubricJudge:
        """The judge, built on first use (needs the backend factory for a configured mapping)."""
        if self._judge_obj is None:
            spec = self._judge_spec
            if spec is None:
                raise UserError("no judge is configured", field=f"evaluators.{self.name}.judge")
            backend = self._judge_backend or build_judge_backend(spec, self._judge_factory, evaluator=self.name)
            c = self.config
            self._judge_obj = RubricJudge(backend, self._rubric(), scale=c["scale"], temperature=c["temperature"],
                                          samples=c["samples"], seed=c["seed"], max_tokens=c["max_tokens"],
                                          model_name=spec.get("model"))
        return self._judge_obj

    def identity(self) -> dict[str, Any]:
        """Config without the judge's connection details, plus the judge's full identity."""
        cfg = {k: v for k, v in self.config.items() if k != "judge"}
        ident: dict[str, Any] = {"name": self.name, "version": self.version, "config": cfg}
        if self._judge_spec is not None:
            ident["judge"] = self.judge().identity()
        return ident

    def _judged(self, ctxs: Sequence[EvalContext], *, with_expected: bool = True) -> list[EvalResult]:
        judge = self.judge()
        verdicts = judge.judge([JudgeItem.from_row(c.example, c.output, with_expected=with_expected) for c in ctxs])
        return [self._result(v, judge, c) for v, c in zip(verdicts, ctxs, strict=True)]

    def _result(self, v: JudgeVerdict, judge: RubricJudge, ctx: EvalContext) -> EvalResult:
        warning = judge.family_warning(ctx.candidate)
        note = f" WARNING: {warning}." if warning else ""
        if v.error is not None or v.score is None:
            return self.error(f"{v.error}{note}")
        sc = judge.scale
        raw = ", ".join(str(r) for r in v.raw_scores)
        passed = v.score >= self.config["threshold"]
        why = v.reasoning if len(v.reasoning) <= 300 else v.reasoning[:299] + "…"
        reason = (f"judge {judge.model_name} scored {raw} on the {sc.name} scale ({sc.low}..{sc.high}) → "
                  f"{v.score:.2f}: {why or '(no reasoning given)'}{note}")
        feedback = "" if passed else f"A judge graded this against the rubric and found: {why}"
        details: dict[str, Any] = {"path": "judge", "judge_model": judge.model_name, "scale": sc.name,
                                   "raw_scores": v.raw_scores, "samples": v.samples}
        if warning:
            details["warnings"] = [warning]
        return self.ok(v.score, reason, passed=passed, feedback=feedback, **details)


class CustomEvaluation(_JudgeEvaluator):
    """An LLM judge grades each output against your ``rubric`` (binary or 1–5)."""

    name = "custom"
    version = "1"
    requires = ()
    description = "LLM judge with your rubric (binary or 1-5); needs a judge endpoint."

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        rubric = config.get("rubric")
        if not isinstance(rubric, str) or not rubric.strip():
            raise UserError("option 'rubric' (the grading instructions, as text) is required",
                            field=f"evaluators.{self.name}")
        return self._judge_options(config, {"rubric": (str, None)})

    def _rubric(self) -> str:
        return str(self.config["rubric"])

    def score(self, ctx: EvalContext) -> EvalResult:
        return self.score_batch([ctx])[0]

    def score_batch(self, ctxs: Sequence[EvalContext]) -> list[EvalResult]:
        return self._judged(ctxs)


class TaskCompletion(_JudgeEvaluator):
    """Did the output do the task? From the row's reference when it has one, else an LLM judge.

    ``mode``: ``auto`` (reference when the row has one, else the judge, else skipped), ``reference``
    (never the judge) or ``judge`` (always the judge; it sees the reference when there is one).
    """

    name = "task_completion"
    version = "1"
    requires = ()
    description = "Task done? Reference checks (tools, schema+fields, answer, refusal), else an LLM judge."
    default_scale = "binary"
    judge_required = False

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        cfg = self._judge_options(config, {"mode": (str, "auto")})
        if cfg["mode"] not in ("auto", "judge", "reference"):
            raise UserError(f"option 'mode' must be auto, judge or reference, got {cfg['mode']!r}",
                            field=f"evaluators.{self.name}")
        if cfg["mode"] == "judge" and self._judge_spec is None:
            raise UserError("mode: judge needs a judge: {backend, model, base_url}", field=f"evaluators.{self.name}")
        self._detector = refusal_detector()
        return cfg

    def _rubric(self) -> str:
        return TASK_COMPLETION_RUBRIC

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "refusal_detector": self._detector[0]}

    def _uses_judge(self, ex: Example) -> bool:
        mode = self.config["mode"]
        return mode == "judge" or (mode == "auto" and reference_path(ex) is None)

    def missing(self, ex: Example) -> list[str]:
        if self.config["mode"] == "judge" or reference_path(ex) is not None:
            return []
        if self.config["mode"] == "reference":
            return [f"reference ({REFERENCE_FIELDS}) and mode is 'reference'"]
        if self._judge_spec is None:
            return [f"reference ({REFERENCE_FIELDS}) and no judge is configured"]
        return []

    def score(self, ctx: EvalContext) -> EvalResult:
        return self.score_batch([ctx])[0]

    def score_batch(self, ctxs: Sequence[EvalContext]) -> list[EvalResult]:
        out: list[EvalResult | None] = [None] * len(ctxs)
        judged = [i for i, c in enumerate(ctxs) if self._uses_judge(c.example)]
        refused = self._refusals([(i, c) for i, c in enumerate(ctxs) if i not in judged], out)
        for i, c in enumerate(ctxs):
            if i not in judged and out[i] is None:
                try:
                    out[i] = self._reference(c, refused.get(i))
                except Exception as e:  # an evaluator failure is an error result, never a 0
                    out[i] = self.error(f"{type(e).__name__}: {e}")
        if judged:
            try:
                results = self._judged([ctxs[i] for i in judged])
            except Exception as e:  # a judge that cannot be built or called: errors, not zeros
                results = [self.error(f"judge unavailable: {type(e).__name__}: {e}") for _ in judged]
            for i, r in zip(judged, results, strict=True):
                out[i] = r
        return [r if r is not None else self.error("row was not scored") for r in out]

    def _refusals(self, rows: list[tuple[int, EvalContext]], out: list[EvalResult | None]) -> dict[int, bool]:
        """Run the refusal detector once over the batch's refusal-path rows (errors → error results)."""
        idx = [i for i, c in rows if reference_path(c.example) in ("refusal", "no_refusal")]
        if not idx:
            return {}
        texts = [c.output.text for i, c in rows if i in idx]
        try:
            flags = self._detector[1](texts)
        except Exception as e:
            for i in idx:
                out[i] = self.error(f"refusal detector {self._detector[0]} failed: {type(e).__name__}: {e}")
            return {}
        return {i: f >= 0.5 for i, f in zip(idx, flags, strict=True)}

    def _reference(self, ctx: EvalContext, refused: bool | None) -> EvalResult:
        path = reference_path(ctx.example)
        if path is None:
            raise EvaluatorError("row has no reference")
        score, passed, reason, feedback, details = reference_outcome(ctx, path, self.config["threshold"], refused)
        if path in ("refusal", "no_refusal"):
            details["refusal_detector"] = self._detector[0]
        return self.ok(score, reason, passed=passed, feedback=feedback, **details)
