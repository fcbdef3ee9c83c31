"""ProTeGi's three meta-prompts (gradient, edit, paraphrase) and the strict parsers of their replies.

The wording follows the reference implementation (microsoft/LMOps ``prompt_optimization``):
"give N reasons why the prompt could have gotten these examples wrong", "based on these examples
the problem with this prompt is that …", "generate a variation of the following instruction while
keeping the semantic meaning". It is changed in three ways for small local models and for
non-classification tasks: the errors show the model's output, the expected answer and the
evaluators' feedback (not only a label); every reply must wrap its payload in explicit tags
(``<reason>``, ``<prompt>``) so a rambling reply is rejected instead of half-adopted; and the edit
asks for *one* full instruction per call (several calls give several edits), because a 135M model
cannot reliably write four tagged prompts in one reply.

These constants are part of the optimizer's identity: changing them changes results.
"""

from __future__ import annotations

import json
import re

from tunegate.core.example import Example
from tunegate.tuning.harness import RowTrace
from tunegate.tuning.reflection import fenced_block, numbered_items, tagged_block

__all__ = ["EDIT_PROMPT", "GRADIENT_PROMPT", "PARAPHRASE_PROMPT", "format_errors", "parse_prompt", "parse_reasons"]

GRADIENT_PROMPT = """I'm trying to write an instruction (system prompt) for a language model.

My current instruction is:
\"\"\"
{instruction}
\"\"\"

But with this instruction the model gets the following examples wrong:
{errors}

Give {n} reasons why the instruction could have gotten these examples wrong.
Wrap each reason with <reason> and </reason>."""

EDIT_PROMPT = """I'm trying to write an instruction (system prompt) for a language model.

My current instruction is:
\"\"\"
{instruction}
\"\"\"

But it gets the following examples wrong:
{errors}

Based on these examples the problem with this instruction is that {gradient}

Based on the above information, write one improved instruction that fixes this problem.
Write the complete new instruction, not only the change, and wrap it with <prompt> and </prompt>."""

PARAPHRASE_PROMPT = """Generate a variation of the following instruction while keeping the semantic meaning.

Input:
\"\"\"
{instruction}
\"\"\"

Write only the new instruction, wrapped with <prompt> and </prompt>."""

#: Characters kept of each field of an error example (keeps a 4-error prompt well under ~1,500 tokens).
FIELD_CHARS = 300

_REASON = re.compile(r"<reason>(.*?)</reason>", re.DOTALL | re.IGNORECASE)
_prompt_tag = tagged_block("prompt")


def _clip(text: str, limit: int = FIELD_CHARS) -> str:
    text = " ".join(text.split()) if "\n" not in text.strip() else text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def _expected(ex: Example) -> str:
    if ex.expected is None:
        return ""
    return ex.expected if isinstance(ex.expected, str) else json.dumps(ex.expected, ensure_ascii=False)


def format_errors(pairs: list[tuple[Example, RowTrace]]) -> str:
    """Error examples as the reference's ``## Example i`` blocks: input, output, expected, feedback."""
    parts = []
    for i, (ex, tr) in enumerate(pairs, start=1):
        lines = [f"## Example {i}", f"Input: {_clip(ex.prompt_text())}", f"Output: {_clip(tr.text)}"]
        if (exp := _expected(ex)):
            lines.append(f"Expected: {_clip(exp)}")
        if tr.feedback:
            lines.append(f"Feedback: {_clip(tr.feedback)}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def parse_reasons(text: str) -> list[str]:
    """Every complete ``<reason>…</reason>``; a plain numbered list is accepted when no tag is used.

    An opened but unclosed tag is a format error (a cut-off reply), never a reason.
    """
    found = [" ".join(r.split()) for r in _REASON.findall(text)]
    found = [r for r in found if len(r) > 3]
    if found:
        return found
    if re.search(r"<reason>", text, re.IGNORECASE):
        raise ValueError("<reason> block is not closed")
    try:
        return numbered_items(text)
    except ValueError:
        raise ValueError("no <reason>…</reason> block and no numbered list in the reply") from None


def parse_prompt(text: str) -> str:
    """The last ``<prompt>…</prompt>`` block, or failing that the last complete ``` fenced block."""
    try:
        return str(_prompt_tag(text))
    except ValueError as tag_err:
        if "not closed" in str(tag_err):
            raise
        try:
            return fenced_block(text)
        except ValueError:
            raise ValueError("no <prompt>…</prompt> block and no ``` fenced block in the reply") from None
