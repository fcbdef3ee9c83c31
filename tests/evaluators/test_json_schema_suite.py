"""json_validation against the JSON-Schema-Test-Suite (draft 2020-12, no remote refs).

The suite's labels are the specification's verdicts. Each row's instance is serialised and given
as the model's output text; our verdict must equal ``valid`` on every row we can evaluate, and
the 5 rows whose ECMA-262 pattern (``\\p{Letter}``) Python's ``re`` rejects must come out as
status ``error`` — an honest "cannot judge", never a wrong verdict.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tests.conftest import shared_dataset
from tunegate.core.example import Example
from tunegate.core.result import ModelOutput
from tunegate.evaluators.base import EvalContext
from tunegate.evaluators.json_validation import JSONValidation

ECMA_PATTERN_ROWS = {"pattern/2/0", "pattern/2/1", "pattern/2/2", "patternProperties/5/0",
                     "patternProperties/5/1"}


def _example(row: dict[str, Any]) -> tuple[Example, bool]:
    """The row as a validated Example (boolean schemas and ECMA-262 patterns load; the second
    value is kept False so the assertions below pin that nothing is bypassed)."""
    return Example(id=row["id"], input="produce the instance", json_schema=row["schema"]), False


def test_agrees_with_the_suite_on_every_row_it_can_evaluate() -> None:
    path = shared_dataset("json_schema_test_suite") / "data.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if not r["requires_remote_ref"]]
    assert len(rows) == 1242

    built = [_example(r) for r in rows]
    bypassed = {r["id"] for r, (_, b) in zip(rows, built, strict=True) if b}
    boolean_schema_rows = {r["id"] for r in rows if isinstance(r["schema"], bool)}
    assert not bypassed and boolean_schema_rows

    ctxs = [EvalContext(ex, ModelOutput(text=json.dumps(r["data"]))) for r, (ex, _) in zip(rows, built, strict=True)]
    results = JSONValidation(strict=True).evaluate_batch(ctxs)

    counts: Counter[str] = Counter()
    wrong: list[str] = []
    errored: set[str] = set()
    for row, res in zip(rows, results, strict=True):
        counts[res.status] += 1
        if res.status == "error":
            errored.add(row["id"])
        elif res.status == "ok":
            assert res.details["extraction"] == "whole"
            if res.passed != row["valid"]:
                wrong.append(f"{row['id']}: suite says {row['valid']}, we say {res.passed} ({res.reason})")
    print(f"\njson-schema suite: ok={counts['ok']} agree={counts['ok'] - len(wrong)} "
          f"error={counts['error']} skipped={counts['skipped']}")
    assert not wrong, wrong[:5]
    assert errored == ECMA_PATTERN_ROWS
    assert counts == Counter({"ok": 1237, "error": 5})
    assert counts["ok"] >= 1232
    for row, res in zip(rows, results, strict=True):
        if row["id"] in ECMA_PATTERN_ROWS:
            assert res.score is None and "regex" in res.reason


def test_invalid_rows_give_a_path_and_feedback() -> None:
    path = shared_dataset("json_schema_test_suite") / "data.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    row = next(r for r in rows if r["id"] == "additionalProperties/0/1")
    ex, _ = _example(row)
    res = JSONValidation().evaluate(EvalContext(ex, ModelOutput(text=json.dumps(row["data"]))))
    assert res.score == 0.0 and res.reason.startswith("$")
    assert res.feedback.startswith("The JSON does not satisfy the required schema:")
