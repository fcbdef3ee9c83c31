"""When an evaluator applies to a row, and what an empty reply scores.

Two rules shared by the output-quality evaluators, kept in one place so they read the same:

* **Not applicable → ``skipped``.** A row whose reference the evaluator cannot use (a JSON-object
  ``expected`` for a text metric, no number in the reference for ``numeric_match``) is not the
  evaluator failing: it is reported as ``skipped`` with the reason, and the gate does not count it
  against the error budget. ``error`` is kept for an evaluator that failed to run.
* **Empty reply → failure.** An empty or whitespace-only reply (and, for tool-call evaluators, no
  tool call either) is scored 0 with status ``ok`` and a reason starting ``empty output``, so a
  candidate that starts returning nothing can never look better than one that answers.
"""

from __future__ import annotations

import json
from typing import Any

from tunegate.core.result import EvalResult, ModelOutput

__all__ = ["EMPTY_OUTPUT", "blank_output", "empty_failure", "structured_reference"]

#: The prefix of every empty-reply reason (tests and reports match on it).
EMPTY_OUTPUT = "empty output"


def blank_output(output: ModelOutput, *, tool_calls_count: bool = False) -> bool:
    """True when the reply has no text but whitespace (and no tool call, if those count as a reply)."""
    if output.text.strip():
        return False
    return not (tool_calls_count and output.tool_calls)


def empty_failure(name: str, version: str, feedback: str = "", **details: Any) -> EvalResult:
    """Score 0, status ok, reason ``empty output …``: the reply was blank."""
    note = ""
    if details.pop("had_tool_calls", False):
        note = " (the reply was tool calls only; this evaluator scores text)"
    return EvalResult.ok(name, version, 0.0, f"{EMPTY_OUTPUT}: the reply is blank{note}", passed=False,
                         feedback=feedback or "The reply was empty: answer the request.", empty_output=True,
                         **details)


def _as_json(value: str) -> Any:
    s = value.strip()
    if not s or s[0] not in "{[":
        return None
    try:
        return json.loads(s)
    except ValueError:
        return None


def structured_reference(expected: Any) -> str | None:
    """Why ``expected`` is a structured (JSON object / list-of-objects) reference, or None.

    A structured reference is scored by ``json_validation`` / ``task_completion``; comparing its
    JSON text word by word (or its digits as a number) would reward key names and IDs.
    """
    items = expected if isinstance(expected, list) else [expected]
    for x in items:
        if isinstance(x, dict):
            return "expected is a JSON object; score it with json_validation"
        if isinstance(x, list):
            return "expected holds a JSON list; score it with json_validation"
        if isinstance(x, str) and isinstance(_as_json(x), dict | list):
            return "expected is JSON text; score it with json_validation"
    return None
