"""Tool-call checking with the Berkeley Function Calling Leaderboard's AST rules.

BFCL is the public yardstick for function calling, so we score the way it does: the right
function, every required argument, no argument outside the function's parameters or the expected
call, each value among the acceptable values (strings compared after BFCL's standardisation:
spaces and ``,./-_*^`` dropped, lower-cased, ``'`` → ``"``; an int accepted where a float is
declared), and the declared type respected unless the acceptable values themselves have another
type (BFCL's "variable" rule). Parallel calls are matched one-to-one in any order by bipartite
matching, which — unlike BFCL's greedy first-fit — never rejects a set of calls that has a valid
pairing. ``expected_tool_calls == []`` means no offered function fits and the model must not call.

Where BFCL's dictionaries of acceptable values nest (``{"budget": [{"min": [1], "max": [2]}]}``),
values from ``ExpectedToolCall.any_of`` are read that way; values from ``arguments`` are literal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tunegate.core.example import Example, ExpectedToolCall, ToolCall
from tunegate.core.result import EvalResult
from tunegate.evaluators.applicability import EMPTY_OUTPUT, blank_output, empty_failure
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.evaluators.text_match import parse_options

__all__ = ["Problem", "ToolSelection", "standardize_string", "value_matches"]

_STD = re.compile(r"[\s,./\-_*^]")
_TYPES = {
    "string": "string", "str": "string", "char": "string", "character": "string",
    "integer": "integer", "int": "integer", "long": "integer", "short": "integer", "byte": "integer",
    "float": "number", "double": "number", "number": "number",
    "boolean": "boolean", "bool": "boolean",
    "array": "array", "arraylist": "array", "list": "array", "tuple": "array", "set": "array",
    "dict": "object", "object": "object", "hashmap": "object", "map": "object",
    "null": "null", "none": "null",
}  # BFCL and Java/JS spellings → JSON kinds; "any" and unknown names are not type-checked


def standardize_string(text: str) -> str:
    """BFCL's string normalisation: drop whitespace and ``,./-_*^``, lower-case, ``'`` → ``"``."""
    return _STD.sub("", text).lower().replace("'", '"')


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list | tuple):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null" if v is None else type(v).__name__


def _declared(schema: Any) -> set[str] | None:
    """JSON kinds a parameter schema allows, or None when it does not constrain the type."""
    t = schema.get("type") if isinstance(schema, dict) else None
    names = t if isinstance(t, list) else [t]
    kinds = {_TYPES.get(n.lower()) for n in names if isinstance(n, str)}
    return None if not kinds or None in kinds else {k for k in kinds if k}


def _fits(kind: str, allowed: set[str]) -> bool:
    return kind in allowed or (kind == "integer" and "number" in allowed)


def value_matches(value: Any, want: Any, *, nested: bool = True) -> bool:
    """Does ``value`` equal the acceptable value ``want`` under BFCL normalisation?

    With ``nested`` a dict whose values are all lists is BFCL's "acceptable values per key" form
    (keys absent from ``value`` must list ``""``); otherwise dicts compare key by key.
    """
    if isinstance(want, str):
        return isinstance(value, str) and standardize_string(value) == standardize_string(want)
    if isinstance(want, bool) or want is None:
        return type(value) is type(want) and value == want
    if isinstance(want, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool) and value == want
    if isinstance(want, list | tuple):
        return (isinstance(value, list | tuple) and len(value) == len(want)
                and all(value_matches(v, w, nested=nested) for v, w in zip(value, want, strict=True)))
    if isinstance(want, dict):
        if not isinstance(value, dict):
            return False
        if nested and want and all(isinstance(w, list) for w in want.values()):
            return (all(k in want and any(value_matches(v, w) for w in want[k]) for k, v in value.items())
                    and all(k in value or "" in ws for k, ws in want.items()))
        return value.keys() == want.keys() and all(
            value_matches(value[k], want[k], nested=False) for k in want)
    return bool(value == want)


@dataclass(frozen=True)
class Problem:
    """One reason a call does not fit: a machine ``kind``, a ``reason`` and a ``fix`` in plain words."""

    kind: str
    reason: str
    fix: str


@dataclass
class _Spec:
    """What we know about one expected call: acceptable values and, when offered, its declaration."""

    call: ExpectedToolCall
    acceptable: dict[str, list[Any]]
    params: dict[str, Any] | None  # declared properties, None when the function spec is unknown
    required: list[str] = field(default_factory=list)


def _tool_params(ex: Example) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for t in ex.tools or []:
        fn = t.get("function", t)
        params = fn.get("parameters")
        out[str(fn["name"])] = params if isinstance(params, dict) else {}
    return out


def _spec(call: ExpectedToolCall, tools: dict[str, dict[str, Any]]) -> _Spec:
    acceptable = call.acceptable()
    params = tools.get(call.name)
    props = params.get("properties") if params is not None else None
    declared_required = list(params.get("required") or []) if params is not None else []
    required = list(dict.fromkeys(declared_required + [a for a, ws in acceptable.items() if "" not in ws]))
    return _Spec(call, acceptable, props if isinstance(props, dict) else None, required)


def _show(v: Any, n: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= n else text[: n - 1] + "…"


def _type_problem(fn: str, arg: str, value: Any, schema: Any, wants: list[Any]) -> Problem | None:
    allowed = _declared(schema)
    if allowed is None:
        return None
    kind = _kind(value)
    want_kinds = {_kind(w) for w in wants if w != ""}
    if not (_fits(kind, allowed) or _fits(kind, want_kinds)):
        decl = "/".join(sorted(allowed))
        return Problem("wrong_type", f"{fn}: arg '{arg}' must be {decl}, got {kind} {_show(value)}",
                       f"Pass `{arg}` to `{fn}` as {decl}.")
    items = _declared(schema.get("items")) if kind == "array" and isinstance(schema, dict) else None
    if items and isinstance(value, list | tuple):
        elem_kinds = {_kind(e) for w in wants if isinstance(w, list) for e in w}
        for i, el in enumerate(value):
            if not (_fits(_kind(el), items) or _fits(_kind(el), elem_kinds)):
                decl = "/".join(sorted(items))
                return Problem("wrong_type", f"{fn}: element {i} of '{arg}' must be {decl}, got {_show(el)}",
                               f"Pass `{arg}` to `{fn}` as a list of {decl}.")
    return None


def _check_call(spec: _Spec, call: ToolCall) -> list[Problem]:
    """Everything wrong with ``call`` as an answer to the expected call (assumes the name fits)."""
    fn = spec.call.name
    probs: list[Problem] = []
    for arg in spec.required:
        if arg not in call.arguments:
            probs.append(Problem("missing_arg", f"{fn}: missing required arg '{arg}'",
                                 f"Pass the required argument `{arg}` to `{fn}`."))
    for arg, value in call.arguments.items():
        declared = spec.params is None or arg in spec.params
        if arg not in spec.acceptable or not declared:
            why = "not a parameter of the function" if not declared else "not expected in this call"
            probs.append(Problem("unexpected_arg", f"{fn}: unexpected arg '{arg}' ({why})",
                                 f"Do not pass `{arg}` to `{fn}`."))
            continue
        wants = spec.acceptable[arg]
        if spec.params is not None:
            tp = _type_problem(fn, arg, value, spec.params[arg], wants)
            if tp is not None:
                probs.append(tp)
                continue
        nested = arg in spec.call.any_of
        if not any(value_matches(value, w, nested=nested) for w in wants):
            allowed = [w for w in wants if w != ""]
            probs.append(Problem(
                "value_not_allowed", f"{fn}: value not allowed for '{arg}': got {_show(value)}, "
                                     f"allowed {_show(allowed, 120)}",
                f"Set `{arg}` in `{fn}` to one of {_show(allowed, 120)} (the reply sent {_show(value)})."))
    return probs


def _max_matching(ok: list[list[bool]], n_calls: int) -> dict[int, int]:
    """Maximum bipartite matching expected → call (Kuhn's augmenting paths; n is tiny)."""
    owner = [-1] * n_calls

    def augment(i: int, seen: set[int]) -> bool:
        for j in range(n_calls):
            if ok[i][j] and j not in seen:
                seen.add(j)
                if owner[j] == -1 or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    for i in range(len(ok)):
        augment(i, set())
    return {i: j for j, i in enumerate(owner) if i != -1}


class ToolSelection(Evaluator):
    """1 when the model's tool calls match the expected calls one-to-one (BFCL AST rules), else 0.

    ``partial: true`` scores matched / max(expected, made), so extra calls still cost.
    ``underscore_names`` (default true) accepts ``math_factorial`` for ``math.factorial``, since
    OpenAI-style APIs forbid dots in function names (BFCL converts the same way).
    """

    name = "tool_selection"
    version = "2"  # 2: a reply with neither text nor a tool call fails (was: a correct no-call)
    requires = ("expected_tool_calls",)
    description = "Tool calls match the expected calls: function, required args, allowed values (BFCL AST)."

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return parse_options(self.name, config, {"partial": (bool, False), "underscore_names": (bool, True)})

    def _same_name(self, expected: str, got: str, offered: dict[str, Any]) -> bool:
        return got == expected or (self.config["underscore_names"] and "." in expected
                                   and got == expected.replace(".", "_") and got not in offered)

    def score(self, ctx: EvalContext) -> EvalResult:
        ex, calls = ctx.example, list(ctx.output.tool_calls)
        expected = ex.expected_tool_calls or []
        tools = _tool_params(ex)
        made = [c.name for c in calls]
        blank = blank_output(ctx.output, tool_calls_count=True)
        if blank and not expected:  # declining means saying so; nothing at all is not a decline
            return empty_failure(self.name, self.version, "Answer in text (or ask for what is missing) "
                                 "without calling a tool.", called=[], expected=[])
        if not expected:
            if not calls:
                return self.ok(1.0, "correctly made no call: no offered function fits", called=[])
            names = ", ".join(made)
            return self.ok(0.0, f"called {names} but no function fits this request",
                           feedback="None of the offered functions fits this request: answer in text "
                                    "(or ask for what is missing) without calling a tool.",
                           called=made, problems=["called_when_none_fits"])
        specs = [_spec(c, tools) for c in expected]
        table = [[_check_call(s, c) if self._same_name(s.call.name, c.name, tools) else None for c in calls]
                 for s in specs]
        pairs = _max_matching([[p == [] for p in row] for row in table], len(calls))
        n, m = len(specs), len(calls)
        want = [s.call.name for s in specs]
        score = float(len(pairs) == n == m)
        if self.config["partial"]:
            score = len(pairs) / max(n, m)
        if len(pairs) == n == m:
            return self.ok(score, f"all {n} expected call(s) matched: {', '.join(want)}",
                           called=made, expected=want, matched=n)
        probs = self._diagnose(specs, calls, table, pairs, tools)
        reason = "; ".join(p.reason for p in probs[:2]) + (f" (+{len(probs) - 2} more)" if len(probs) > 2 else "")
        if blank:
            reason = f"{EMPTY_OUTPUT}: no text and no tool call; {reason}"
        feedback = "\n".join(f"- {p.fix}" for p in probs[:8])
        return self.ok(score, reason, passed=len(pairs) == n == m, feedback=feedback, called=made,
                       expected=want, matched=len(pairs), problems=[p.kind for p in probs])

    def _diagnose(self, specs: list[_Spec], calls: list[ToolCall], table: list[list[list[Problem] | None]],
                  pairs: dict[int, int], tools: dict[str, Any]) -> list[Problem]:
        """Explain the unmatched calls: closest same-name call's problems, else wrong/missing/extra."""
        n, m = len(specs), len(calls)
        probs: list[Problem] = []
        if n != m:
            probs.append(Problem(
                "wrong_count", f"wrong number of calls: expected {n} ({', '.join(s.call.name for s in specs)}), "
                               f"got {m} ({', '.join(c.name for c in calls) or 'none'})",
                f"Make exactly {n} call(s): {', '.join(s.call.name for s in specs)}."))
        pool = [j for j in range(m) if j not in pairs.values()]
        for i in (i for i in range(n) if i not in pairs):
            name = specs[i].call.name
            same = [j for j in pool if table[i][j] is not None]
            if same:
                j = min(same, key=lambda j: len(table[i][j] or []))
                probs.extend(table[i][j] or [])
                pool.remove(j)
            elif pool:
                j = pool.pop(0)
                got = calls[j].name
                note = "" if not tools or got in tools else " (not an offered tool)"
                probs.append(Problem("wrong_function", f"wrong function: expected {name}, got {got}{note}",
                                     f"Call `{name}` instead of `{got}`."))
            else:
                probs.append(Problem("missing_call", f"missing call to {name}", f"Also call `{name}`."))
        for j in pool:
            got = calls[j].name
            probs.append(Problem("extra_call", f"unexpected extra call to {got}",
                                 f"Do not make the extra call to `{got}`."))
        return probs
