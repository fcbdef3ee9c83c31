"""Strict compile of a template with variables, and a readable diff of two templates.

Compile never leaves a placeholder blank: a missing variable is a UserError naming it, because a
prompt silently rendered with an empty hole looks exactly like a model regression. Variables that
were given but not used are reported (``unused``), since they usually mean a typo in the template
or in the caller.

Against a dataset row, compile uses the engine's own rendering (``PromptTemplate.render``), so
the messages shown are byte for byte what a run sends (context and JSON Schema included).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from tunegate.core.example import Example, Message
from tunegate.core.prompt import PromptTemplate, render_text, row_variables
from tunegate.errors import UserError
from tunegate.prompts.models import CompiledPrompt, prompt_hash

__all__ = ["compile_template", "diff_templates", "template_text"]


def _has(vars_: Mapping[str, Any], path: str) -> bool:
    cur: Any = vars_
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return False
        cur = cur[part]
    return cur is not None


def _roots(names: list[str]) -> set[str]:
    """Variable names a caller may have given for these placeholders (``metadata.x`` uses ``x``)."""
    out: set[str] = set()
    for n in names:
        parts = n.split(".")
        out.add(parts[0])
        if parts[0] == "metadata" and len(parts) > 1:
            out.add(parts[1])
    return out


def _missing_error(missing: list[str], needed: list[str], given: list[str], where: str) -> UserError:
    s = "s" if len(missing) > 1 else ""
    names = ", ".join("{{" + m + "}}" for m in missing)
    return UserError(f"missing template variable{s} {names}{where}; the template uses {needed or 'none'}, "
                     f"given: {given or 'none'}", field=f"variables.{missing[0]}")


def compile_template(template: PromptTemplate, variables: Mapping[str, Any], *, ref: str | None = None,
                     example: Example | None = None) -> CompiledPrompt:
    """Fill ``template`` strictly.

    Without ``example``: system and user are filled from ``variables`` (flat names; also reachable
    as ``metadata.<name>``), few-shot turns are copied. With ``example``: the row supplies its
    fields and ``variables`` add to its metadata, and rendering is the run engine's.
    """
    needed = template.variables()
    given = sorted(variables)
    used = _roots(needed)
    unused = [k for k in given if k not in used]
    if example is not None:
        own = row_variables(example)
        clash = sorted(k for k in variables if k in own and k not in example.metadata)
        if clash:
            raise UserError(f"variable {clash[0]!r} is a field of row {example.id!r}; it cannot be overridden",
                            field=f"variables.{clash[0]}")
        row = example.model_copy(update={"metadata": {**example.metadata, **variables}})
        missing = template.check_variables(row)
        if missing:
            raise _missing_error(missing, needed, given, f" (row {example.id!r} has no value for it)")
        messages = template.render(row)
    else:
        vars_: dict[str, Any] = dict(variables)
        vars_.setdefault("metadata", dict(variables))
        missing = [n for n in needed if not _has(vars_, n)]
        if missing:
            raise _missing_error(missing, needed, given, "")
        messages = []
        if template.system:
            messages.append(Message(role="system", content=render_text(template.system, vars_,
                                                                       where="prompt.system")))
        for shot in template.few_shot:
            messages.append(Message(role="user", content=shot.input))
            messages.append(Message(role="assistant", content=shot.output))
        messages.append(Message(role="user", content=render_text(template.user, vars_, where="prompt.user")))
    return CompiledPrompt(ref=ref, hash=prompt_hash(template), messages=messages, variables=needed,
                          unused=unused, row=example.id if example is not None else None)


def template_text(t: PromptTemplate) -> list[str]:
    """A line-oriented text of everything that changes what a template renders (for diffs)."""
    lines = ["[system]", *((t.system or "(none)").splitlines() or [""]), "", "[user]", *(t.user.splitlines() or [""])]
    for i, shot in enumerate(t.few_shot, start=1):
        lines += ["", f"[few_shot {i} input]", *(shot.input.splitlines() or [""]),
                  "", f"[few_shot {i} output]", *(shot.output.splitlines() or [""])]
    lines += ["", f"[include_context] {str(t.include_context).lower()}",
              f"[include_schema] {str(t.include_schema).lower()}"]
    return lines


def diff_templates(a: PromptTemplate, b: PromptTemplate, *, a_name: str = "a", b_name: str = "b",
                   context: int = 3) -> str:
    """Unified diff of two templates over system, user, few-shot and the include flags ("" if equal)."""
    return "".join(difflib.unified_diff([line + "\n" for line in template_text(a)],
                                        [line + "\n" for line in template_text(b)],
                                        fromfile=a_name, tofile=b_name, n=context))
