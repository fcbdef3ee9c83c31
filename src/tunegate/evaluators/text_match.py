"""Reference-based text evaluators: exact match, numeric answer, token F1, regex, substring checks.

They are deterministic and cheap, so they run on every row of every run; their scores are 0/1
(or an F1 in [0, 1]) so the gate's exact tests (McNemar) and bootstrap CIs apply directly.
Normalisation follows SQuAD (lower-case, drop punctuation and English articles, collapse spaces)
and number extraction follows the GSM8K convention (``#### 42``), because those are the rules
public reference sets were labelled with.
"""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Mapping
from typing import Any

from tunegate.core.example import Example
from tunegate.core.result import EvalResult
from tunegate.errors import EvaluatorError, UserError
from tunegate.evaluators.applicability import blank_output, empty_failure, structured_reference
from tunegate.evaluators.base import EvalContext, Evaluator

__all__ = [
    "Contains",
    "ExactMatch",
    "NumericMatch",
    "Regex",
    "TokenF1",
    "extract_number",
    "normalize_answer",
    "numeric_reference",
    "parse_options",
    "token_f1",
]

_TYPE_WORDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}


def parse_options(evaluator: str, config: Mapping[str, Any],
                  spec: Mapping[str, tuple[type | tuple[type, ...], Any]]) -> dict[str, Any]:
    """Check ``config`` against ``spec`` (key → (accepted types, default)) and fill in defaults.

    Shared by the built-in evaluators so every one rejects unknown keys and wrong types the same
    way (a ``UserError`` naming ``evaluators.<name>``). Defaults are filled in so an evaluator's
    identity hash is the same whether an option was left out or given at its default value.
    ``bool`` is never accepted for a number (it is a subclass of ``int`` in Python).
    """
    where = f"evaluators.{evaluator}"
    unknown = sorted(set(config) - set(spec))
    if unknown:
        raise UserError(f"unknown option(s) {unknown}; known: {sorted(spec)}", field=where)
    out: dict[str, Any] = {}
    for key, (types, default) in spec.items():
        if key not in config:
            out[key] = default
            continue
        value = config[key]
        accepted = types if isinstance(types, tuple) else (types,)
        ok = isinstance(value, accepted) and not (isinstance(value, bool) and bool not in accepted)
        if not ok and float in accepted and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            words = " or ".join(_TYPE_WORDS.get(t, t.__name__) for t in accepted)
            raise UserError(f"option {key!r} must be {words}, got {type(value).__name__} {value!r}",
                            field=where)
        out[key] = value
    return out


# -- normalisation ------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCT = str.maketrans("", "", string.punctuation)


def _strip_punct(text: str) -> str:
    out = text.translate(_ASCII_PUNCT)
    if out.isascii():
        return out
    return "".join(c for c in out if ord(c) < 128 or not unicodedata.category(c).startswith("P"))


def normalize_answer(text: str) -> str:
    """SQuAD answer normalisation (also drops Unicode punctuation such as curly quotes)."""
    return " ".join(_ARTICLES.sub(" ", _strip_punct(text.lower())).split())


def _as_texts(expected: Any) -> list[str]:
    """A reference or a list of references, each as text (JSON for non-string values)."""
    items = expected if isinstance(expected, list) else [expected]
    if not items:
        raise EvaluatorError("expected is an empty list")
    return [x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in items]


def _text_missing(ex: Example) -> list[str]:
    """Text matching needs a textual reference: a JSON-object ``expected`` (a structured-output row)
    is skipped rather than compared with its JSON text, which would reward key names; an empty list
    of references is a row that says nothing to compare with (skipped, not an evaluator failure)."""
    if ex.expected is None:
        return ["expected"]
    why = structured_reference(ex.expected)
    if why is not None:
        return [f"textual expected ({why})"]
    if isinstance(ex.expected, list) and not ex.expected:
        return ["expected (expected is an empty list)"]
    return []


def _empty(ev: Evaluator, ctx: EvalContext, feedback: str = "") -> EvalResult | None:
    """The failure result for a blank reply, or None when the reply has text."""
    if not blank_output(ctx.output):
        return None
    return empty_failure(ev.name, ev.version, feedback, had_tool_calls=bool(ctx.output.tool_calls))


def _short(text: str, n: int = 80) -> str:
    return repr(text if len(text) <= n else text[: n - 1] + "…")


# -- exact match --------------------------------------------------------------------------------
class ExactMatch(Evaluator):
    """The output equals the reference (or one of several), after SQuAD normalisation by default."""

    name = "exact_match"
    version = "1"
    requires = ("expected",)
    description = "Output equals the expected answer (SQuAD-normalised unless normalize: false)."

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return parse_options(self.name, config, {"normalize": (bool, True)})

    def missing(self, ex: Example) -> list[str]:
        return _text_missing(ex)

    def score(self, ctx: EvalContext) -> EvalResult:
        refs = _as_texts(ctx.example.expected)
        if (empty := _empty(self, ctx, f"Answer with {_short(refs[0])}.")) is not None:
            return empty
        norm = normalize_answer if self.config["normalize"] else str.strip
        got = norm(ctx.output.text)
        for ref in refs:
            if norm(ref) == got:
                return self.ok(1.0, f"output matches expected {_short(ref)}", matched=ref)
        shown = ", ".join(_short(r) for r in refs[:5])
        return self.ok(0.0, f"output {_short(ctx.output.text)} does not match expected {shown}",
                       feedback=f"Answer with exactly {shown} and nothing else; the reply was "
                                f"{_short(ctx.output.text)}.",
                       normalized_output=got)


# -- numeric match ------------------------------------------------------------------------------
_NUM_CORE = (r"(?<![\w.])(?P<sign>-)?\$?(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
             r"(?:[eE](?P<exp>[-+]?\d+))?")
_FRACTION = r"(?:\s?/\s?(?P<den>\d+(?:\.\d+)?))?"


def _patterns(num: str) -> tuple[re.Pattern[str], list[tuple[str, re.Pattern[str]]]]:
    return re.compile(num), [
        ("answer is", re.compile(r"answer\s*(?:is|:|=)\s*:?\s*(?:\\boxed\{)?\s*\**\s*(" + num + ")", re.I)),
        ("boxed", re.compile(r"\\boxed\{\s*(" + num + r")\s*\}")),
        ("= at end", re.compile(r"=\s*(" + num + r")\s*%?[^\w]*$")),
    ]


#: (number regex, [(method, regex whose group 1 holds the number)]) with and without fractions.
_RULES = {True: _patterns(_NUM_CORE + _FRACTION), False: _patterns(_NUM_CORE)}


def _to_float(m: re.Match[str]) -> float | None:
    value = float(m.group("num").replace(",", "") + (f"e{m.group('exp')}" if m.group("exp") else ""))
    if m.re.groupindex.get("den") and m.group("den"):
        den = float(m.group("den"))
        if den == 0:
            return None
        value /= den
    if not math.isfinite(value):  # "1e999" is not an answer, and inf would not store as JSON
        return None
    return -value if m.group("sign") else value


def extract_number(text: str, *, fractions: bool = True) -> tuple[float, str, str] | None:
    """The final answer number of ``text`` → (value, how it was found, the matched text), or None.

    Order (GSM8K convention first): the first number after the last ``####``; the last
    "answer is X" / ``\\boxed{X}``; an "= X" that ends the text; the last number in the text.
    Handles ``1,000``, ``$5``, ``-3``, ``2.5``, ``1e3``, ``50%`` (→ 50) and ``3/4`` (→ 0.75;
    with ``fractions`` false the slash is plain text, so ``3/4`` reads as 3 then 4).
    """
    num_re, rules = _RULES[fractions]
    if "####" in text:
        m = num_re.search(text.rsplit("####", 1)[1])
        if m and (v := _to_float(m)) is not None:
            return v, "####", m.group(0)
    for how, rx in rules:
        found = list(rx.finditer(text))
        if found:
            inner = num_re.search(found[-1].group(1))
            if inner and (v := _to_float(inner)) is not None:
                return v, how, inner.group(0)
    for m in reversed(list(num_re.finditer(text))):
        if (v := _to_float(m)) is not None:
            return v, "last number", m.group(0)
    return None


#: Words a number answer may carry besides the number ("12 apples", "$5 per month", "50 %").
_MAX_UNIT_WORDS = 3
_WORD = re.compile(r"[^\W\d_]+")


def numeric_reference(text: str, *, fractions: bool = True) -> float | None:
    """The number a reference *answers with*, or None when the reference is not a number answer.

    A numeric comparison is meaningful when the reference is a number: ``"42"``, ``"$1,250"``,
    ``"3/4"``, ``"12 apples"``, or a worked answer marked the GSM8K way (``#### 42``, "the answer
    is 42", ``\\boxed{42}``). A reference that merely *contains* digits — a product name
    ("ThinkPad X1 Gen 11"), an order line, a sentence with dates — is not: taking its last number
    would score an unrelated digit. Rule: an answer marker wins; otherwise exactly one number and
    at most three other words, none with a digit.
    """
    num_re, rules = _RULES[fractions]
    if "####" in text or any(rx.search(text) for how, rx in rules if how != "= at end"):
        found = extract_number(text, fractions=fractions)
        return found[0] if found else None
    matches = list(num_re.finditer(text))
    if len(matches) != 1:
        return None
    rest = (text[:matches[0].start()] + " " + text[matches[0].end():]).split()
    words = [w for w in rest if _WORD.search(w) or any(c.isdigit() for c in w)]
    if len(words) > _MAX_UNIT_WORDS or any(c.isdigit() for w in words for c in w):
        return None  # more than a unit, or other digits ("X1"): not a number answer
    return _to_float(matches[0])


def _fmt(x: float) -> str:
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


class NumericMatch(Evaluator):
    """The final number in the output equals the expected number within a relative tolerance."""

    name = "numeric_match"
    version = "2"  # 2: only number-answer references apply (others skipped); empty output fails
    requires = ("expected",)
    description = "Final number in the output (GSM8K-style extraction) equals the expected number."

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        cfg = parse_options(self.name, config, {"rel_tol": (float, 1e-6), "abs_tol": (float, 0.0),
                                                "fractions": (bool, True)})
        for key in ("rel_tol", "abs_tol"):
            if not 0.0 <= cfg[key] < 1.0 or not math.isfinite(cfg[key]):
                raise UserError(f"option {key!r} must be in [0, 1), got {cfg[key]!r}",
                                field=f"evaluators.{self.name}")
        return cfg

    def missing(self, ex: Example) -> list[str]:
        """A numeric comparison is meaningful only against a numeric reference (see ``numeric_reference``)."""
        if ex.expected is None:
            return ["expected"]
        _, why = self._expected(ex)
        return [why] if why else []

    def _expected(self, ex: Example) -> tuple[list[float], str | None]:
        """The reference numbers, or why the row has none (→ skipped, never an error)."""
        refs = ex.expected if isinstance(ex.expected, list) else [ex.expected]
        if not refs:
            return [], "numeric expected (expected is an empty list)"
        why = structured_reference(ex.expected)
        if why is not None:
            return [], f"numeric expected ({why})"
        values: list[float] = []
        for ref in refs:
            if isinstance(ref, int | float) and not isinstance(ref, bool):
                values.append(float(ref))
                continue
            value = numeric_reference(str(ref), fractions=self.config["fractions"])
            if value is None:
                return [], f"numeric expected ({_short(str(ref))} is not a number answer)"
            values.append(value)
        return values, None

    def score(self, ctx: EvalContext) -> EvalResult:
        want, why = self._expected(ctx.example)
        if why is not None:  # missing() already skipped such rows; reached only by direct score() calls
            raise EvaluatorError(f"row has no {why}")
        want_s = " or ".join(_fmt(w) for w in want)
        if (empty := _empty(self, ctx, f"End the answer with the final number alone, e.g. '#### {want_s}'.")):
            empty.details["expected"] = want
            return empty
        found = extract_number(ctx.output.text, fractions=self.config["fractions"])
        if found is None:
            return self.ok(0.0, f"no number found in output; expected {want_s}",
                           feedback=f"End the answer with the final number alone, e.g. '#### {want_s}'.",
                           expected=want)
        got, how, raw = found
        hit = any(math.isclose(got, w, rel_tol=self.config["rel_tol"], abs_tol=self.config["abs_tol"])
                  for w in want)
        reason = f"extracted {_fmt(got)} (from {raw!r}, by {how}) vs expected {want_s}"
        if hit:
            return self.ok(1.0, reason, extracted=got, method=how, expected=want)
        return self.ok(0.0, reason, extracted=got, method=how, expected=want,
                       feedback=f"The final answer was {_fmt(got)} but should be {want_s}; recheck the "
                                "arithmetic and state the final number last.")


# -- token F1 -----------------------------------------------------------------------------------
def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token-level F1 between two texts (both empty → 1, one empty → 0)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


class TokenF1(Evaluator):
    """SQuAD token F1 against the best of the references; ``passed`` at ``threshold``."""

    name = "token_f1"
    version = "1"
    requires = ("expected",)
    description = "SQuAD token-overlap F1 with the expected answer (max over references)."

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        cfg = parse_options(self.name, config, {"threshold": (float, 0.5)})
        if not 0.0 <= cfg["threshold"] <= 1.0:
            raise UserError(f"option 'threshold' must be in [0, 1], got {cfg['threshold']!r}",
                            field=f"evaluators.{self.name}")
        return cfg

    def missing(self, ex: Example) -> list[str]:
        return _text_missing(ex)

    def score(self, ctx: EvalContext) -> EvalResult:
        refs = _as_texts(ctx.example.expected)
        if (empty := _empty(self, ctx, f"Answer in the reference's terms, e.g. {_short(refs[0])}.")) is not None:
            return empty
        f1, best = max(((token_f1(ctx.output.text, r), r) for r in refs), key=lambda t: t[0])
        passed = f1 >= self.config["threshold"]
        reason = f"token F1 {f1:.3f} against {_short(best)} (threshold {self.config['threshold']})"
        feedback = "" if passed else (f"The answer shares few words with the reference {_short(best)}; "
                                      "state the answer in the reference's terms and drop extra text.")
        return self.ok(f1, reason, passed=passed, feedback=feedback, best_reference=best)


# -- regex --------------------------------------------------------------------------------------
_FLAGS = {"I": re.I, "IGNORECASE": re.I, "M": re.M, "MULTILINE": re.M, "S": re.S, "DOTALL": re.S,
          "X": re.X, "VERBOSE": re.X, "A": re.A, "ASCII": re.A}


class Regex(Evaluator):
    """The output matches a regular expression (from config, else from the row's metadata.regex).

    With ``fullmatch`` the whole output, surrounding whitespace stripped, must match.
    """

    name = "regex"
    version = "1"
    requires = ()
    description = "Output matches a regex (config 'pattern', or the row's metadata.regex)."

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        cfg = parse_options(self.name, config, {"pattern": (str, None), "flags": ((list, str), []),
                                                "fullmatch": (bool, False)})
        names = list(cfg["flags"]) if isinstance(cfg["flags"], list) else list(cfg["flags"].replace(" ", ""))
        bits = 0
        for f in names:
            if not isinstance(f, str) or f.upper() not in _FLAGS:
                raise UserError(f"unknown regex flag {f!r}; known: I, M, S, X, A (or their long names)",
                                field=f"evaluators.{self.name}")
            bits |= _FLAGS[f.upper()]
        cfg["flags"] = sorted({_FLAGS[f.upper()].name or "" for f in names})
        self._bits = bits
        self._compiled: re.Pattern[str] | None = None
        if cfg["pattern"] is not None:
            try:
                self._compiled = re.compile(cfg["pattern"], bits)
            except re.error as e:
                raise UserError(f"invalid regex pattern {cfg['pattern']!r}: {e}",
                                field=f"evaluators.{self.name}") from None
        return cfg

    def missing(self, ex: Example) -> list[str]:
        if self._compiled is None and not isinstance(ex.metadata.get("regex"), str):
            return ["metadata.regex (and no 'pattern' configured)"]
        return []

    def score(self, ctx: EvalContext) -> EvalResult:
        rx = self._compiled
        if rx is None:
            try:
                rx = re.compile(ctx.example.metadata["regex"], self._bits)
            except re.error as e:
                raise EvaluatorError(f"row metadata.regex is not a valid pattern: {e}") from None
        if (empty := _empty(self, ctx, f"The reply must contain text matching /{rx.pattern}/.")) is not None:
            return empty
        text = ctx.output.text
        m = rx.fullmatch(text.strip()) if self.config["fullmatch"] else rx.search(text)
        full = self.config["fullmatch"]
        if m:
            how = "fully matches" if full else "contains a match for"
            return self.ok(1.0, f"output {how} /{rx.pattern}/", match=m.group(0)[:200])
        how = "does not fully match" if full else "has no match for"
        return self.ok(0.0, f"output {_short(text)} {how} /{rx.pattern}/",
                       feedback=f"The reply must {'be exactly' if full else 'contain'} "
                                f"text matching the pattern /{rx.pattern}/.")


# -- contains -----------------------------------------------------------------------------------
class Contains(Evaluator):
    """The output contains all (or any) of some substrings: from config, else the row's expected."""

    name = "contains"
    version = "1"
    requires = ()
    description = "Output contains the configured substrings (or the expected answer), all or any."

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        cfg = parse_options(self.name, config, {"substrings": ((list, str), None), "mode": (str, "all"),
                                                "case_sensitive": (bool, False)})
        where = f"evaluators.{self.name}"
        if cfg["mode"] not in ("all", "any"):
            raise UserError(f"option 'mode' must be 'all' or 'any', got {cfg['mode']!r}", field=where)
        subs = cfg["substrings"]
        if isinstance(subs, str):
            subs = [subs]
        if subs is not None and (not subs or not all(isinstance(s, str) and s for s in subs)):
            raise UserError("option 'substrings' must be a non-empty list of non-empty strings", field=where)
        cfg["substrings"] = subs
        return cfg

    def missing(self, ex: Example) -> list[str]:
        if self.config["substrings"] is not None:
            return []
        return [m + " (and no 'substrings' configured)" for m in _text_missing(ex)]

    def score(self, ctx: EvalContext) -> EvalResult:
        subs: list[str] = self.config["substrings"] or _as_texts(ctx.example.expected)
        if (empty := _empty(self, ctx, f"The reply must mention {', '.join(_short(s, 40) for s in subs)}.")):
            return empty
        text = ctx.output.text
        if not self.config["case_sensitive"]:
            text = text.casefold()
        found = [s for s in subs if (s if self.config["case_sensitive"] else s.casefold()) in text]
        lost = [s for s in subs if s not in found]
        mode = self.config["mode"]
        hit = not lost if mode == "all" else bool(found)
        if hit:
            return self.ok(1.0, f"output contains {', '.join(_short(s, 40) for s in found)}",
                           found=found, missing=lost)
        if mode == "all":
            reason = f"output lacks {', '.join(_short(s, 40) for s in lost)}"
            feedback = f"The reply must mention all of: {', '.join(_short(s, 40) for s in subs)}."
        else:
            reason = f"output contains none of {', '.join(_short(s, 40) for s in subs)}"
            feedback = f"The reply must mention at least one of: {', '.join(_short(s, 40) for s in subs)}."
        return self.ok(0.0, reason, feedback=feedback, found=found, missing=lost)
