"""Prompt templates with ``{{var}}`` placeholders, compiled strictly.

A placeholder names a row field (``input``, ``context``, ``expected``, ``id``, ``cohorts``) or a
dotted path into ``metadata`` (``metadata.customer_tier`` or just ``customer_tier``). A
placeholder that the row cannot fill is an error — never an empty string — because a silently
blank prompt produces outputs that look like a model regression.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tunegate.core.example import Example, Message
from tunegate.errors import UserError

__all__ = [
    "CONTEXT_HEADER",
    "PLACEHOLDER",
    "SCHEMA_NOTE",
    "FewShot",
    "PromptTemplate",
    "placeholders",
    "render_text",
    "row_variables",
    "schema_note",
]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")
#: An opening ``{{`` that does not start a valid placeholder (a lone ``}}`` is fine: JSON has them).
_STRAY = re.compile(r"\{\{")
#: Wording used when context / schema are added automatically (part of rendered prompts, so cached).
CONTEXT_HEADER = "Context:\n"
SCHEMA_NOTE = "Respond only with a JSON object that matches this JSON Schema:\n"


def schema_note(schema: object) -> str:
    """The text appended to the last turn for a row's JSON Schema. One function for offline runs and
    the gateway: a gate verdict is about the prompts the gateway will send, byte for byte."""
    return SCHEMA_NOTE + json.dumps(schema, ensure_ascii=False, sort_keys=True)


def placeholders(text: str) -> list[str]:
    """Variable names used in ``text``, in order of first use. Malformed braces are an error."""
    names: list[str] = []
    for m in PLACEHOLDER.finditer(text):
        if m.group(1) not in names:
            names.append(m.group(1))
    leftover = PLACEHOLDER.sub("", text)
    stray = _STRAY.search(leftover)
    if stray is not None:
        near = leftover[max(0, stray.start() - 10):][:30]
        raise UserError(f"malformed placeholder near {near!r}; use {{{{name}}}}", field="prompt")
    return names


def _fmt(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return "\n\n".join(v)
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


def row_variables(ex: Example) -> dict[str, Any]:
    """Values a template may use for this row."""
    vars_: dict[str, Any] = dict(ex.metadata)
    vars_.update({"id": ex.id, "cohorts": ", ".join(ex.cohorts), "metadata": ex.metadata})
    if ex.input is not None:
        vars_["input"] = ex.input
    elif ex.messages:
        vars_["input"] = ex.prompt_text()
    if ex.context is not None:
        vars_["context"] = ex.context_text()
    if ex.expected is not None:
        vars_["expected"] = ex.expected
    if ex.json_schema is not None:
        vars_["schema"] = ex.json_schema
    if ex.tools is not None:
        vars_["tools"] = ex.tools
    return vars_


def _lookup(vars_: dict[str, Any], path: str) -> Any:
    cur: Any = vars_
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            raise KeyError(path)
    if cur is None:
        raise KeyError(path)
    return cur


def render_text(text: str, vars_: dict[str, Any], *, where: str = "prompt") -> str:
    """Fill every placeholder; a missing variable raises UserError naming it."""
    placeholders(text)

    def sub(m: re.Match[str]) -> str:
        try:
            return _fmt(_lookup(vars_, m.group(1)))
        except KeyError:
            raise UserError(f"template variable {{{{{m.group(1)}}}}} has no value in this row",
                            field=where) from None

    return PLACEHOLDER.sub(sub, text)


class FewShot(BaseModel):
    """One demonstration: a user turn and the ideal assistant turn."""

    model_config = ConfigDict(extra="forbid")

    input: str
    output: str


class PromptTemplate(BaseModel):
    """System + user template and optional few-shot demonstrations."""

    model_config = ConfigDict(extra="forbid")

    system: str | None = Field(default=None, description="System message template.")
    user: str = Field(default="{{input}}", description="User message template.")
    few_shot: list[FewShot] = Field(default_factory=list, description="Demonstrations before the row.")
    ref: str | None = Field(default=None, description="Registry reference (name@label) it came from.")
    include_context: bool = Field(
        default=True, description="Prepend the row's context to the user turn when no template uses {{context}}.")
    include_schema: bool = Field(
        default=True, description="Append the row's JSON Schema to the user turn when no template uses {{schema}}.")

    def variables(self) -> list[str]:
        out: list[str] = []
        for text in (self.system or "", self.user):
            out += [v for v in placeholders(text) if v not in out]
        return out

    def check_variables(self, ex: Example) -> list[str]:
        """Names the template needs that this row cannot fill (empty when it compiles)."""
        vars_ = row_variables(ex)
        missing = []
        for name in self.variables():
            try:
                _lookup(vars_, name)
            except KeyError:
                missing.append(name)
        return missing

    def render(self, ex: Example) -> list[Message]:
        """The chat messages sent to the model for row ``ex``.

        Context and schema are added automatically (unless a template places them itself) so that
        two prompt versions compared on the same rows see the same evidence.
        """
        vars_ = row_variables(ex)
        used = set(self.variables())
        ctx = ex.context_text() if self.include_context and "context" not in used else None
        schema = ex.json_schema if self.include_schema and "schema" not in used else None
        msgs: list[Message] = []
        system = render_text(self.system, vars_, where="prompt.system") if self.system else None
        if ex.messages is not None and ctx:
            system = f"{system}\n\n{CONTEXT_HEADER}{ctx}" if system else f"{CONTEXT_HEADER}{ctx}"
        if system:
            msgs.append(Message(role="system", content=system))
        for shot in self.few_shot:
            msgs.append(Message(role="user", content=shot.input))
            msgs.append(Message(role="assistant", content=shot.output))
        if ex.messages is not None:
            convo = list(ex.messages)
            if convo and convo[0].role == "system" and msgs and msgs[0].role == "system":
                msgs[0] = Message(role="system", content=f"{msgs[0].content}\n\n{convo[0].content}")
                convo = convo[1:]
            msgs.extend(convo)
        else:
            user = render_text(self.user, vars_, where="prompt.user")
            if ctx:
                user = f"{CONTEXT_HEADER}{ctx}\n\nQuestion: {user}"
            msgs.append(Message(role="user", content=user))
        if schema is not None:
            last = msgs[-1]
            msgs[-1] = last.model_copy(update={"content": f"{last.content or ''}\n\n{schema_note(schema)}"})
        return msgs
