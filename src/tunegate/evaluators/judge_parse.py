"""Parsing an LLM judge's reply into a score on its scale — robustly, and never into a silent 0.

Judges are asked for ``{"reasoning": "...", "score": <int>}``, but real replies wrap it in Markdown
fences, add prose after it, use Python quotes, forget to escape a quote inside the reasoning, or
answer ``Score: 4`` on a last line. Each of those is recoverable without guessing, so we recover
it, and say how in ``Judgement.method`` (an audit trail for a surprising score). What is *not*
recoverable — no score at all, a score off the scale, a reply cut by the token limit — raises
``JudgeParseError`` with a ``kind``, so the caller can retry once and then report status
``error``: a format failure of the judge is not evidence about the candidate.

Order of attempts (first that yields a score wins): the whole reply as JSON; each fenced block;
each balanced ``{...}`` span (the *last* one carrying a score, because a judge may quote the
candidate's own JSON before giving its verdict); each of these also through light repairs
(single quotes, trailing commas, bare keys, JSON/Python literals, a missing final brace); then a
``"score": N`` key inside broken JSON; then a ``Score: N`` line (the last one). ``<think>`` blocks
of reasoning models are dropped first.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

from tunegate.core.text import balanced_end

__all__ = [
    "PARSER_NAME",
    "PARSER_VERSION",
    "SCALES",
    "JudgeParseError",
    "Judgement",
    "Scale",
    "parse_judgement",
]

PARSER_NAME = "tunegate.judge_parse"
#: Bump when a reply that parsed before now parses differently (it is part of the judge identity).
PARSER_VERSION = "1"

_SCORE_KEYS = ("score", "rating", "grade", "verdict", "result")
_REASON_KEYS = ("reasoning", "reason", "explanation", "rationale", "justification", "analysis")
_COMPLETE_METHODS = frozenset({"json", "fenced-json", "json-span"})
_PASS = {"pass", "passed", "yes", "true", "correct", "1"}
_FAIL = {"fail", "failed", "no", "false", "incorrect", "0"}


@dataclass(frozen=True)
class Scale:
    """An integer score scale ``low..high``, mapped linearly onto [0, 1]."""

    name: str
    low: int
    high: int
    meaning: str  #: what the ends of the scale mean, shown to the judge

    def normalise(self, value: float) -> float:
        return (value - self.low) / (self.high - self.low)


SCALES: dict[str, Scale] = {
    "binary": Scale("binary", 0, 1, "1 = the output meets the rubric (pass); 0 = it does not (fail)."),
    "1-5": Scale("1-5", 1, 5, "1 = fails the rubric entirely; 2 = mostly fails; 3 = partly meets it; "
                              "4 = meets it with minor flaws; 5 = fully meets it."),
}


@dataclass(frozen=True)
class Judgement:
    """A parsed judge reply: ``score`` on the judge's scale, its reasoning, and how it was found."""

    score: int
    reasoning: str
    method: str  #: json | fenced-json | json-span | repaired-json | score-key | score-line


class JudgeParseError(ValueError):
    """The reply holds no valid score. ``kind``: empty | unparseable | missing_score | out_of_range |
    truncated."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# -- JSON-ish decoding ----------------------------------------------------------------------------
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```[^\n`]*\r?\n?(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:")
_SMART = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
_PY_LITERALS = (("true", "True"), ("false", "False"), ("null", "None"))


def _literal(text: str) -> Any:
    """Python-literal decoding (single quotes), also with JSON's true/false/null spelled in."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    fixed = text
    for js, py in _PY_LITERALS:
        fixed = re.sub(rf"\b{js}\b", py, fixed)
    try:
        return ast.literal_eval(fixed)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _decode(text: str) -> tuple[Any, bool]:
    """(value, repaired) for an object-looking text, or (None, False)."""
    text = text.strip()
    if not text.startswith("{"):
        return None, False
    try:
        return json.loads(text), False
    except ValueError:
        pass
    fixed = _BARE_KEY.sub(r'\1"\2":', _TRAILING_COMMA.sub(r"\1", text.translate(_SMART)))
    for attempt in (fixed, fixed + "}", fixed + '"}'):
        try:
            return json.loads(attempt), True
        except ValueError:
            value = _literal(attempt)
            if value is not None:
                return value, True
    return None, False


def _spans(text: str, limit: int = 64) -> list[str]:
    out: list[str] = []
    for i, c in enumerate(text):
        if c == "{":
            end = balanced_end(text, i, brackets="{[")
            if end is not None:
                out.append(text[i:end])
            if len(out) >= limit:
                break
    return out


def _lookup(obj: dict[Any, Any], keys: tuple[str, ...]) -> tuple[bool, Any]:
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    for k in keys:
        if k in lowered:
            return True, lowered[k]
    return False, None


# -- score values ----------------------------------------------------------------------------------
def _score_value(value: Any, scale: Scale) -> int:
    """The integer score on ``scale`` for a raw value, or JudgeParseError(out_of_range)."""
    v: Any = value
    if isinstance(v, str):
        s = v.strip().lower().rstrip(".")
        m = re.fullmatch(r"([-+]?\d+(?:\.\d+)?)\s*(?:/\s*(\d+)|out of\s*(\d+))?", s)
        if m:
            of = m.group(2) or m.group(3)
            if of is not None and int(of) != scale.high:
                raise JudgeParseError("out_of_range", f"score {v!r} is not on the {scale.name} scale "
                                                      f"({scale.low}..{scale.high})")
            v = float(m.group(1))
        elif scale.name == "binary" and s in _PASS | _FAIL:
            return 1 if s in _PASS else 0
        else:
            raise JudgeParseError("out_of_range", f"score {v!r} is not a number on the {scale.name} scale")
    if isinstance(v, bool):
        if scale.name == "binary":
            return int(v)
        raise JudgeParseError("out_of_range", f"score {v!r} is a boolean, not a number {scale.low}..{scale.high}")
    if isinstance(v, int | float) and float(v).is_integer() and scale.low <= v <= scale.high:
        return int(v)
    raise JudgeParseError("out_of_range", f"score {v!r} is not an integer in {scale.low}..{scale.high} "
                                          f"({scale.name} scale)")


def _reasoning(obj: dict[Any, Any]) -> str:
    found, value = _lookup(obj, _REASON_KEYS)
    return str(value).strip() if found and value is not None else ""


# -- the parser ------------------------------------------------------------------------------------
_SCORE_KEY = re.compile(r"""["']?(?:score|rating|grade)["']?\s*:\s*["']?\s*([-+]?\d+(?:\.\d+)?|true|false)\b""",
                        re.I)
_SCORE_LINE = re.compile(
    r"^[\s>#*_`-]*(?:final\s+|overall\s+)?(?:score|rating|grade|verdict)[*_`\s]*(?:\([^)\n]{0,20}\))?"
    r"[*_`\s]*[:=\-][*_`\s]*(?P<v>[-+]?\d+(?:\.\d+)?(?:\s*(?:/|out\s+of)\s*\d+)?|pass(?:ed)?|fail(?:ed)?"
    r"|yes|no|true|false)\b",
    re.I | re.M,
)


def _from_objects(sources: list[tuple[str, list[str]]], scale: Scale) -> tuple[Judgement | None, str | None]:
    """First judgement found in (method, texts) sources; else (None, why the objects did not do)."""
    problem: str | None = None
    for method, texts in sources:
        for text in reversed(texts):  # the last object in a source is the judge's final answer
            obj, repaired = _decode(text)
            if not isinstance(obj, dict):
                continue
            found, value = _lookup(obj, _SCORE_KEYS)
            if not found:
                problem = problem or f"a JSON object without a 'score' key ({', '.join(map(str, obj))[:80]})"
                continue
            score = _score_value(value, scale)
            return Judgement(score, _reasoning(obj), "repaired-json" if repaired else method), None
    return None, problem


def parse_judgement(text: str, scale: Scale, *, finish_reason: str | None = None) -> Judgement:
    """Parse a judge reply (see the module docstring for the order); raise ``JudgeParseError``.

    A reply cut by the token limit (``finish_reason == "length"``) is accepted only when a
    complete JSON object with a score was found: a ``Score:`` line in a cut reply may be a draft
    the judge was about to revise.
    """
    body = _THINK.sub("", text or "").strip()
    if not body:
        raise JudgeParseError("truncated" if finish_reason == "length" else "empty", "the judge reply is empty")
    fences = [m.group(1) for m in _FENCE.finditer(body)]
    sources = [("json", [body]), ("fenced-json", fences), ("json-span", _spans(body))]
    found, problem = _from_objects(sources, scale)
    if found is None:
        keys = list(_SCORE_KEY.finditer(body))
        lines = list(_SCORE_LINE.finditer(body))
        if keys and "{" in body:
            found = Judgement(_score_value(keys[-1].group(1), scale), _loose_reasoning(body), "score-key")
        elif lines:
            last = lines[-1]
            found = Judgement(_score_value(last.group("v"), scale), body[: last.start()].strip(), "score-line")
    cut = finish_reason == "length"
    if found is not None and (not cut or found.method in _COMPLETE_METHODS):
        return found
    if cut or ("{" in body and balanced_end(body, body.index("{"), brackets="{[") is None):
        raise JudgeParseError("truncated", "the judge reply was cut off (token limit or an unclosed JSON "
                                           "object) before a complete verdict")
    if problem:
        raise JudgeParseError("missing_score", f"the judge reply has {problem}")
    raise JudgeParseError("unparseable", "no JSON object with a score and no 'Score: N' line in the judge reply")


def _loose_reasoning(body: str) -> str:
    m = re.search(r"""["']?(?:reasoning|reason|explanation|rationale)["']?\s*:\s*["'](.*?)["']\s*,\s*["']?"""
                  r"""(?:score|rating|grade)""", body, re.S | re.I)
    return m.group(1).strip() if m else ""
