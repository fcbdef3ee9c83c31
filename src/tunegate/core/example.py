"""A golden-dataset row and the small value types it carries (messages, tool calls)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["RAW_ARGUMENTS_KEY", "Example", "ExpectedToolCall", "Message", "Split", "ToolCall", "row_id"]

#: Key under which a tool call's arguments are kept verbatim when they were not valid JSON.
RAW_ARGUMENTS_KEY = "_raw"

Split = Literal["train", "dev", "test"]



def row_id(v: Any) -> Any:
    """A row id as text: integers become strings; booleans and blank strings are refused (a
    pydantic ``mode="before"`` validator shared by every file format with row ids)."""
    if isinstance(v, bool):
        raise ValueError("must be a string or integer")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str) and not v.strip():
        raise ValueError("must not be empty")
    return v

class ToolCall(BaseModel):
    """A function call made by a model: OpenAI style name + parsed JSON arguments."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Function name as declared in the tool spec.")
    arguments: dict[str, Any] = Field(default_factory=dict, description="Parsed JSON arguments.")
    id: str | None = Field(default=None, description="Call id linking it to the tool message answering it.")


class ExpectedToolCall(BaseModel):
    """A call the model is expected to make.

    ``arguments`` gives one exact value per argument; ``any_of`` gives a list of acceptable values
    per argument (BFCL "possible answers"; a list containing ``""`` marks the argument optional).
    Rows may also use BFCL's native form ``{"func_name": {"arg": [values...]}}``; it is converted.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    any_of: dict[str, list[Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_bfcl(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) == 1 and not {"name", "arguments", "any_of"} & set(data):
            (fname, args), = data.items()
            if isinstance(args, dict) and all(isinstance(v, list) for v in args.values()):
                return {"name": fname, "any_of": args}
        return data

    def acceptable(self) -> dict[str, list[Any]]:
        """Argument name → list of acceptable values (exact values become one-element lists)."""
        out: dict[str, list[Any]] = {k: [v] for k, v in self.arguments.items()}
        out.update({k: list(v) for k, v in self.any_of.items()})
        return out


class Message(BaseModel):
    """One chat message (OpenAI chat format)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class Example(BaseModel):
    """One golden-dataset row.

    Exactly one of ``input`` and ``messages`` is given. Everything else is optional and only
    the evaluators that need a field require it (a row without it is *skipped* by them).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    id: str = Field(description="Unique, stable row id. Splits and pairing are keyed on it.")
    input: str | None = Field(default=None, description="The user's request as text.")
    messages: list[Message] | None = Field(default=None, description="A conversation instead of input.")
    context: str | list[str] | None = Field(default=None, description="Retrieved context / documents.")
    expected: Any = Field(default=None, description="Reference answer (text or JSON value).")
    json_schema: dict[str, Any] | bool | None = Field(
        default=None, alias="schema", description="JSON Schema the output must satisfy."
    )
    tools: list[dict[str, Any]] | None = Field(default=None, description="OpenAI function specs offered.")
    expected_tool_calls: list[ExpectedToolCall] | None = Field(
        default=None, description="Calls the model should make; [] means it must not call any tool."
    )
    cohorts: list[str] = Field(default_factory=list, description="Cohort tags (billing, refunds...).")
    split: Split | None = Field(default=None, description="Explicit split; otherwise derived from the id.")
    group: str | None = Field(default=None, description="Cluster key for rows that share a source.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free data, reachable in templates.")

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, v: Any) -> Any:
        return row_id(v)

    @field_validator("cohorts", mode="before")
    @classmethod
    def _cohorts(cls, v: Any) -> Any:
        if v is None:
            return []
        if isinstance(v, str):
            return [c.strip() for c in v.replace(",", "|").split("|") if c.strip()]
        return v

    @field_validator("tools")
    @classmethod
    def _tools(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if v is None:
            return v
        for i, t in enumerate(v):
            fn = t.get("function", t) if t.get("type", "function") == "function" else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise ValueError(f"tool {i} has no function name")
        return v

    @field_validator("json_schema")
    @classmethod
    def _schema_valid(cls, v: dict[str, Any] | bool | None) -> dict[str, Any] | bool | None:
        """Check against the metaschema, without format checks: an ECMA-262 ``pattern`` that Python's
        ``re`` cannot compile is the evaluator's problem (status error), not a bad dataset row."""
        if v is None or isinstance(v, bool):
            return v
        import jsonschema

        validator_cls = jsonschema.validators.validator_for(v, default=jsonschema.Draft202012Validator)
        meta = validator_cls(validator_cls.META_SCHEMA)
        err = jsonschema.exceptions.best_match(meta.iter_errors(v))
        if err is not None:
            raise ValueError(f"not a valid JSON Schema: {err.message}")
        return v

    @model_validator(mode="after")
    def _one_input(self) -> Example:
        if (self.input is None) == (self.messages is None):
            raise ValueError("exactly one of 'input' and 'messages' is required")
        if self.input is not None and not self.input.strip():
            raise ValueError("'input' must not be empty")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' must not be empty")
        return self

    def tool_names(self) -> list[str]:
        """Names of the functions offered to the model on this row."""
        names = []
        for t in self.tools or []:
            fn = t.get("function", t)
            names.append(str(fn["name"]))
        return names

    def prompt_text(self) -> str:
        """The user's request as plain text (last user message when the row is a conversation)."""
        if self.input is not None:
            return self.input
        for m in reversed(self.messages or []):
            if m.role == "user" and m.content:
                return m.content
        return ""

    def context_text(self) -> str | None:
        """Context joined into one text, or None."""
        if self.context is None:
            return None
        if isinstance(self.context, list):
            return "\n\n".join(self.context)
        return self.context
