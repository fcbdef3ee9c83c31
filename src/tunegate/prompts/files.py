"""Read a prompt file (YAML or JSON) into a :class:`PromptTemplate`, validating everything first.

A prompt file holds only content: ``system``, ``user``, ``few_shot`` (list of ``{input, output}``),
``include_context`` and ``include_schema``. The reference (``name@vN``) is assigned by the
registry, so a ``ref`` in the file is refused instead of being silently replaced.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from tunegate.core.loading import pydantic_message, read_yaml, yaml_line
from tunegate.core.prompt import PromptTemplate, placeholders
from tunegate.errors import UserError

__all__ = ["PROMPT_FILE_FIELDS", "load_prompt_file"]

PROMPT_FILE_FIELDS = ("system", "user", "few_shot", "include_context", "include_schema")


def load_prompt_file(path: str | Path) -> PromptTemplate:
    """The template in ``path``; any problem is a UserError naming file, line and field."""
    file = str(path)
    text, data = read_yaml(path)
    if not isinstance(data, dict):
        raise UserError(f"a prompt file must be a mapping with {', '.join(PROMPT_FILE_FIELDS)}", file=file, line=1)
    if "ref" in data:
        raise UserError("the registry assigns references; remove 'ref' from the prompt file", file=file,
                        line=yaml_line(text, ("ref",)), field="ref")
    unknown = [k for k in data if k not in PROMPT_FILE_FIELDS]
    if unknown:
        raise UserError(f"unknown field; a prompt file has {', '.join(PROMPT_FILE_FIELDS)}", file=file,
                        line=yaml_line(text, (unknown[0],)), field=str(unknown[0]))
    if not data:
        raise UserError("the prompt file is empty; give at least system or user", file=file, line=1)
    try:
        template = PromptTemplate.model_validate(data)
    except ValidationError as e:
        loc, msg = pydantic_message(e)
        raise UserError(msg, file=file, line=yaml_line(text, tuple(e.errors()[0]["loc"])), field=loc) from None
    for field in ("system", "user"):
        value = getattr(template, field)
        if value is None:
            continue
        if not value.strip():
            raise UserError("must not be empty", file=file, line=yaml_line(text, (field,)), field=field)
        try:
            placeholders(value)
        except UserError as e:
            raise UserError(e.message, file=file, line=yaml_line(text, (field,)), field=field) from None
    return template
