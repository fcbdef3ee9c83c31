"""JSON-Schema validation of a model's text output.

Models wrap JSON in prose or Markdown fences far more often than they emit invalid JSON, so by
default we *extract* the JSON (whole text → a fenced block → the first balanced ``{...}`` /
``[...]``) and say in ``details['extraction']`` which way it was found; ``strict: true`` turns that
off when the contract is "the reply *is* the JSON". Validation is python-jsonschema, with the
validator class picked by ``$schema`` (default draft 2020-12), so verdicts agree with the
JSON-Schema-Test-Suite. A schema Python cannot run (an ECMA-262-only regex such as ``\\p{Letter}``)
gives status ``error``, never a wrong verdict.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

from tunegate.core.result import EvalResult
from tunegate.errors import EvaluatorError
from tunegate.evaluators.applicability import blank_output, empty_failure
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.evaluators.text_match import parse_options

__all__ = ["JSONValidation", "NotJSON", "extract_json", "plain_words", "validate_instance"]

_FENCE_JSON = re.compile(r"```[ \t]*(?:json|jsonc|JSON)[ \t]*\r?\n(.*?)```", re.S)
_FENCE_ANY = re.compile(r"```[^\n`]*\r?\n(.*?)```", re.S)
_MAX_SPAN_STARTS = 32  # bound the work on long prose with many stray brackets
_CACHE_SIZE = 256


class NotJSON(ValueError):
    """The text holds no parseable JSON (message is the parser's complaint about the whole text)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str) -> Any:
    # NaN / Infinity are Python extensions, not JSON: a consumer's parser would reject them.
    return json.loads(text, parse_constant=_reject_constant)


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the bracket closing the one at ``start`` (JSON strings respected), or None."""
    stack: list[str] = []
    in_str = escaped = False
    for i in range(start, len(text)):
        c = text[i]
        if in_str:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "{[":
            stack.append("}" if c == "{" else "]")
        elif c in "}]":
            if not stack or stack.pop() != c:
                return None
            if not stack:
                return i + 1
    return None


def _spans(text: str) -> Iterator[str]:
    starts = 0
    for i, c in enumerate(text):
        if c in "{[":
            starts += 1
            if starts > _MAX_SPAN_STARTS:
                return
            end = _balanced_end(text, i)
            if end is not None:
                yield text[i:end]


def extract_json(text: str, *, strict: bool = False) -> tuple[Any, str]:
    """Parse the JSON in ``text`` → (value, extraction), extraction being whole | fenced | span.

    Raises ``NotJSON`` with the parser's message for the whole text when nothing parses.
    """
    try:
        return _loads(text.strip()), "whole"
    except ValueError as e:
        whole_error = str(e)
    if not strict:
        for rx in (_FENCE_JSON, _FENCE_ANY):
            for m in rx.finditer(text):
                try:
                    return _loads(m.group(1).strip()), "fenced"
                except ValueError:
                    continue
        for span in _spans(text):
            try:
                return _loads(span), "span"
            except ValueError:
                continue
    raise NotJSON(whole_error)


def _validator(schema: Any, check_formats: bool) -> Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    if check_formats:
        return cls(schema, format_checker=cls.FORMAT_CHECKER)
    return cls(schema)


def _iter_errors(validator: Validator, instance: Any) -> list[ValidationError]:
    try:
        return list(validator.iter_errors(instance))
    except re.error as e:
        raise EvaluatorError(f"the schema has a regex Python's re cannot compile "
                             f"(ECMA-262-only syntax?): {e}") from None


def _path_order(err: ValidationError) -> tuple[str, ...]:
    return tuple(str(p) for p in err.absolute_path)


def validate_instance(schema: Any, instance: Any, *, check_formats: bool = False) -> list[str]:
    """Every way ``instance`` fails ``schema``, as ``"<json path>: <message>"``; [] when valid.

    Pure (builds its validator each call); the evaluator caches validators per schema instead.
    """
    errors = _iter_errors(_validator(schema, check_formats), instance)
    return [f"{e.json_path}: {e.message}" for e in sorted(errors, key=_path_order)]


def _clip(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _where(err: ValidationError) -> str:
    path = err.json_path
    if path == "$":
        return "the top-level value"
    return f"field `{path[2:]}`" if path.startswith("$.") else f"item `{path[1:]}`"


def plain_words(err: ValidationError) -> str:
    """One schema failure as an instruction a prompt optimizer can act on."""
    where = _where(err)
    kw, val, inst = err.validator, err.validator_value, err.instance
    got = _clip(json.dumps(inst, ensure_ascii=False, default=str), 60)
    if kw == "type":
        kinds = " or ".join(val) if isinstance(val, list) else str(val)
        return f"{where} must be of type {kinds} (got {got})"
    if kw == "required" and isinstance(inst, dict) and isinstance(val, list):
        absent = [p for p in val if p not in inst]
        return f"{where} is missing the required propert{'y' if len(absent) == 1 else 'ies'} " + \
               ", ".join(f"`{p}`" for p in absent)
    if kw == "enum":
        return f"{where} must be one of {_clip(json.dumps(val, ensure_ascii=False), 120)} (got {got})"
    if kw == "const":
        return f"{where} must equal {_clip(json.dumps(val, ensure_ascii=False), 80)} (got {got})"
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if kw in bounds:
        return f"{where} must be {bounds[str(kw)]} {val} (got {got})"
    sizes = {"minLength": ("at least", "characters"), "maxLength": ("at most", "characters"),
             "minItems": ("at least", "items"), "maxItems": ("at most", "items"),
             "minProperties": ("at least", "properties"), "maxProperties": ("at most", "properties")}
    if kw in sizes:
        q, unit = sizes[str(kw)]
        return f"{where} must have {q} {val} {unit}"
    if kw == "pattern":
        return f"{where} must match the regular expression {val} (got {got})"
    if kw == "format":
        return f"{where} must be a valid {val} (got {got})"
    if kw in ("additionalProperties", "unevaluatedProperties"):
        return f"{where} has properties the schema does not allow: {_clip(err.message, 120)}"
    return f"{where}: {_clip(err.message)}"


class JSONValidation(Evaluator):
    """Score 1 when the output is (or contains) JSON that satisfies the row's ``schema``, else 0."""

    name = "json_validation"
    version = "1"
    requires = ("json_schema",)
    description = "Output parses as JSON and validates against the row's JSON Schema."

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        cfg = parse_options(self.name, config, {"strict": (bool, False), "check_formats": (bool, False)})
        # id(schema) → (schema, validator): the identity check keeps the id from being reused while
        # cached; the canonical-text key shares validators between rows with equal schemas.
        self._by_id: OrderedDict[int, tuple[Any, Validator]] = OrderedDict()
        self._by_text: dict[str, Validator] = {}
        return cfg

    def _cached_validator(self, schema: Any) -> Validator:
        hit = self._by_id.get(id(schema))
        if hit is not None and hit[0] is schema:
            return hit[1]
        key = json.dumps(schema, sort_keys=True)
        validator = self._by_text.get(key)
        if validator is None:
            validator = _validator(schema, self.config["check_formats"])
            self._by_text[key] = validator
        self._by_id[id(schema)] = (schema, validator)
        while len(self._by_id) > _CACHE_SIZE:
            self._by_id.popitem(last=False)
        if len(self._by_text) > _CACHE_SIZE:
            self._by_text.clear()
        return validator

    def score(self, ctx: EvalContext) -> EvalResult:
        schema = ctx.example.json_schema
        if blank_output(ctx.output):
            return empty_failure(self.name, self.version, "Reply with a JSON value that satisfies the schema.",
                                 had_tool_calls=bool(ctx.output.tool_calls), extraction=None)
        try:
            instance, extraction = extract_json(ctx.output.text, strict=self.config["strict"])
        except NotJSON as e:
            where = "the whole output" if self.config["strict"] else "the output (nor in a fenced block)"
            return self.ok(0.0, f"output is not JSON: {e}",
                           feedback=f"Reply with JSON only; no JSON value was found in {where}.",
                           extraction=None)
        errors = _iter_errors(self._cached_validator(schema), instance)
        if not errors:
            return self.ok(1.0, f"output is valid JSON for the schema (extraction: {extraction})",
                           extraction=extraction)
        first = best_match(errors)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        reason = f"{first.json_path}: {_clip(first.message)}{more}"
        shown = sorted(errors, key=_path_order)[:5]
        lines = [f"- {plain_words(e)}" for e in shown]
        if len(errors) > len(shown):
            lines.append(f"- … and {len(errors) - len(shown)} more schema violations")
        feedback = "The JSON does not satisfy the required schema:\n" + "\n".join(lines)
        return self.ok(0.0, reason, feedback=feedback, extraction=extraction,
                       error_count=len(errors), error_paths=[e.json_path for e in shown])
