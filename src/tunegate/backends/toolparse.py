"""Recover tool calls from the free text of a model that has no native tool-call channel.

Small local models answer a tool request in many shapes: a bare JSON object, one inside a
```json fence or ``<tool_call>`` tags, a list of them, OpenAI's ``{"function": {...}}`` wrapper,
arguments as a JSON *string*, Python-ish dicts with single quotes, or a Python call
``get_weather(city="Paris")``. Evaluators need the calls as data, so this module is lenient in
what it reads but strict in what it accepts as a call: a JSON object counts only when it has a
string ``name`` and either an ``arguments``/``parameters`` field or a name among the offered
tools — an answer like ``{"name": "Alice", "age": 3}`` is data, not a call.

Pure stdlib; no model needed (unit-tested on text alone).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from tunegate.core.example import RAW_ARGUMENTS_KEY, ToolCall
from tunegate.core.text import balanced_end

__all__ = ["parse_tool_calls", "signature", "tool_names", "tools_system_prompt"]

_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S | re.I)
_FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", re.S)
_ARG_KEYS = ("arguments", "parameters", "args", "input")


def tool_names(tools: Iterable[dict[str, Any]] | None) -> set[str]:
    """Function names of OpenAI-style tool specs (``{"type": "function", "function": {...}}`` or bare)."""
    out = set()
    for t in tools or ():
        fn = t.get("function", t)
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out.add(fn["name"])
    return out


def _type_text(spec: dict[str, Any]) -> str:
    t = spec.get("type", "any")
    if isinstance(t, list):
        t = "|".join(str(x) for x in t)
    if "enum" in spec:
        return "one of " + "|".join(json.dumps(v, ensure_ascii=False) for v in spec["enum"])
    if t == "array" and isinstance(spec.get("items"), dict):
        return f"array of {_type_text(spec['items'])}"
    return str(t)


def signature(tool: dict[str, Any]) -> str:
    """One line per function: ``name(arg: type, opt?: type) - description``.

    Prefill dominates CPU generation cost, and JSON specs cost about three times the tokens of
    this form for the same information (names, types, enums, required/optional, descriptions).
    """
    fn = tool.get("function", tool)
    params = fn.get("parameters") or {}
    props = params.get("properties") or {}
    required = set(params.get("required") or [])
    args = []
    for name, spec in props.items():
        spec = spec if isinstance(spec, dict) else {}
        text = f"{name}{'' if name in required else '?'}: {_type_text(spec)}"
        if spec.get("description"):
            text += f" ({spec['description']})"
        args.append(text)
    desc = f" - {fn['description']}" if fn.get("description") else ""
    return f"{fn['name']}({', '.join(args)}){desc}"


def tools_system_prompt(tools: Iterable[dict[str, Any]]) -> str:
    """Tool specs as text, for chat templates that cannot render tools themselves.

    The requested answer format (JSON inside ``<tool_call>`` tags) is the one Qwen/Hermes-style
    templates use, so models trained on those recognise it and :func:`parse_tool_calls` reads it.
    Arguments marked ``?`` are optional.
    """
    specs = "\n".join(f"- {signature(t)}" for t in tools)
    return (
        "You can call these tools (arguments marked ? are optional):\n"
        f"{specs}\n\n"
        "To call a tool, answer with only a JSON object inside tags, like\n"
        '<tool_call>{"name": "tool_name", "arguments": {"arg": "value"}}</tool_call>\n'
        "Use one <tool_call> block per call. If no tool is needed, answer normally."
    )


def _loads(text: str) -> Any:
    """JSON, or a Python literal (single quotes, True/None) as small models often write."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _scan_json(text: str) -> Iterator[Any]:
    """Every top-level JSON object/array embedded in prose, left to right."""
    decoder = json.JSONDecoder()
    i, n = 0, len(text)
    while i < n:
        j = min((k for k in (text.find("{", i), text.find("[", i)) if k >= 0), default=-1)
        if j < 0:
            return
        try:
            value, end = decoder.raw_decode(text, j)
        except ValueError:
            value = _literal_at(text, j)
            if value is None:
                i = j + 1
                continue
            value, end = value
        yield value
        i = end


def _literal_at(text: str, start: int) -> tuple[Any, int] | None:
    """A Python-literal dict/list starting at ``start``, and where it ends."""
    end = balanced_end(text, start)
    if end is None:
        return None
    value = _loads(text[start:end])
    return (value, end) if isinstance(value, dict | list) else None


def _arguments(raw: Any) -> dict[str, Any]:
    """Arguments as a dict; text that is not a JSON object is kept verbatim under ``_raw``."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        parsed = _loads(raw)
        return parsed if isinstance(parsed, dict) else {RAW_ARGUMENTS_KEY: raw}
    return raw if isinstance(raw, dict) else {RAW_ARGUMENTS_KEY: json.dumps(raw, ensure_ascii=False)}


def _calls_from(value: Any, names: set[str]) -> list[ToolCall]:
    """Tool calls found in one parsed JSON value (object, list, or OpenAI wrapper)."""
    if isinstance(value, list):
        return [c for v in value for c in _calls_from(v, names)]
    if not isinstance(value, dict):
        return []
    if isinstance(value.get("tool_calls"), list):
        return _calls_from(value["tool_calls"], names)
    if isinstance(value.get("function"), dict):
        return _calls_from(value["function"], names)
    name = value.get("name", value.get("tool"))
    if not isinstance(name, str) or not name:
        return []
    key = next((k for k in _ARG_KEYS if k in value), None)
    if key is None and name not in names:
        return []
    args = _arguments(value.get(key) if key else {k: v for k, v in value.items() if k not in ("name", "tool")})
    return [ToolCall(name=name, arguments=args)]


def _python_calls(text: str, names: set[str]) -> list[ToolCall]:
    """``f(a=1)`` calls of offered tools (also inside ``[f(a=1), g(b="x")]``), literal kwargs only."""
    calls = []
    for m in re.finditer(r"([A-Za-z_][\w.]*)\s*\(", text):
        if m.group(1) not in names:
            continue
        end = balanced_end(text, m.end() - 1)
        if end is None:
            continue
        try:
            node = ast.parse(text[m.start():end], mode="eval").body
            if not isinstance(node, ast.Call) or node.args:
                continue
            args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except (ValueError, SyntaxError, TypeError, RecursionError):
            continue
        calls.append(ToolCall(name=m.group(1), arguments=args))
    return calls


def _values(block: str) -> list[Any]:
    """A block that is one JSON value as a whole, else the JSON values embedded in it."""
    value = _loads(block)
    return [value] if value is not None else list(_scan_json(block))


def parse_tool_calls(text: str, tools: Iterable[dict[str, Any]] | None = None) -> list[ToolCall]:
    """The tool calls a model wrote in ``text``, in order; ``[]`` when it answered in prose.

    Looks, in order of specificity, at ``<tool_call>`` blocks, fenced code blocks, then any JSON
    embedded in the text, and finally Python-style calls of offered tools. The first place that
    yields calls wins, so prose quoting an example call after a real ``<tool_call>`` is ignored.
    """
    names = tool_names(tools)
    for pattern in (_TAG, _FENCE):
        blocks = [m.group(1) for m in pattern.finditer(text)]
        calls = [c for b in blocks for v in _values(b) for c in _calls_from(v, names)]
        if calls:
            return calls
    calls = [c for v in _scan_json(text) for c in _calls_from(v, names)]
    if calls:
        return calls
    return _python_calls(text, names) if names else []
