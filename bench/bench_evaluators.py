"""Throughput of the deterministic evaluators on the public labelled sets, with a named peer.

Why: the deterministic evaluators run on every row of every run, so their cost must stay
negligible next to generation. The peer is a plain ``jsonschema.validate`` loop over the same
JSON-Schema-Test-Suite rows (parsing the same output text), measured in the same process, so
the ratio shows what our wrapper (extraction, validator cache, reasons, feedback, result objects)
adds or saves. ``jsonschema.validate`` re-checks the schema and builds a validator on every call;
the "prebuilt validator" line is the floor no wrapper can beat.

Run: ``python bench/bench_evaluators.py`` (datasets are read from ../shared/datasets).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
from rich.console import Console
from rich.table import Table

from tunegate.core.example import Example, ToolCall
from tunegate.core.result import ModelOutput
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.evaluators.json_validation import JSONValidation
from tunegate.evaluators.text_match import Contains, ExactMatch, NumericMatch, Regex, TokenF1
from tunegate.evaluators.tool_selection import ToolSelection

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TUNEGATE_SHARED_DATASETS", REPO / ".." / "shared" / "datasets")).resolve()
REPEATS = 5


def _rows(name: str) -> list[dict[str, Any]]:
    text = (DATASETS / name / "data.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _schema_example(row: dict[str, Any]) -> Example:
    return Example(id=row["id"], input="produce the instance", json_schema=row["schema"])


def _pick(values: list[Any]) -> Any:
    return _build(next(v for v in values if v != ""))


def _build(v: Any) -> Any:
    if isinstance(v, dict) and v and all(isinstance(x, list) for x in v.values()):
        return {k: _pick(ws) for k, ws in v.items() if ws and ws[0] != ""}
    return [_build(x) for x in v] if isinstance(v, list) else v


def _bfcl_context(row: dict[str, Any]) -> EvalContext:
    specs = {f["name"]: f["parameters"] for f in row["functions"]}
    calls = []
    for gt in row["ground_truth"] or []:
        (name, answers), = gt.items()
        required = set(specs[name].get("required", []))
        args = {a: _pick(ws) for a, ws in answers.items()
                if not ("" in ws and a not in required and (ws[0] == "" or a not in specs[name]["properties"]))}
        calls.append(ToolCall(name=name, arguments=args))
    ex = Example(id=row["id"], input=row["user_prompt"], tools=row["functions"],
                 expected_tool_calls=row["ground_truth"] or [])
    return EvalContext(ex, ModelOutput(tool_calls=calls))


def _best_seconds(fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _time_evaluator(make: Callable[[], Evaluator], ctxs: Sequence[EvalContext]) -> float:
    # a fresh evaluator per repeat: caches start cold every time, as in a new run
    return _best_seconds(lambda: make().evaluate_batch(ctxs))


def _peer_validate(pairs: Sequence[tuple[Any, str]]) -> None:
    for schema, text in pairs:
        instance = json.loads(text)
        try:
            jsonschema.validate(instance, schema)
        except jsonschema.ValidationError:
            pass
        except Exception:  # the 5 ECMA-regex rows raise here too
            pass


def _peer_prebuilt(pairs: Sequence[tuple[Any, str]]) -> None:
    cache: dict[int, Any] = {}
    for schema, text in pairs:
        v = cache.get(id(schema))
        if v is None:
            v = cache[id(schema)] = jsonschema.validators.validator_for(
                schema, default=jsonschema.Draft202012Validator)(schema)
        with contextlib.suppress(Exception):
            v.is_valid(json.loads(text))


def main() -> None:
    """Time every deterministic evaluator and the jsonschema peer; print one table."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=110)  # a log file or pipe: do not wrap the table at 80 columns
    if not DATASETS.is_dir():
        console.print(f"[yellow]public datasets not found at {DATASETS}; nothing to measure[/yellow]")
        return
    suite = [r for r in _rows("json_schema_test_suite") if not r["requires_remote_ref"]]
    json_ctxs = [EvalContext(_schema_example(r), ModelOutput(text=json.dumps(r["data"]))) for r in suite]
    pairs = [(c.example.json_schema, c.output.text) for c in json_ctxs]
    bfcl_ctxs = [_bfcl_context(r) for r in _rows("bfcl")]
    gsm = _rows("gsm8k")
    gsm_ctxs = [EvalContext(Example(id=r["id"], input=r["question"], expected=r["final_answer"]),
                            ModelOutput(text=r["solution"])) for r in gsm]

    cases: list[tuple[str, str, Callable[[], Evaluator], Sequence[EvalContext]]] = [
        ("json_validation", "json-schema suite", JSONValidation, json_ctxs),
        ("json_validation strict", "json-schema suite", lambda: JSONValidation(strict=True), json_ctxs),
        ("tool_selection", "bfcl ground truth", ToolSelection, bfcl_ctxs),
        ("numeric_match", "gsm8k solutions", NumericMatch, gsm_ctxs),
        ("exact_match", "gsm8k solutions", ExactMatch, gsm_ctxs),
        ("token_f1", "gsm8k solutions", TokenF1, gsm_ctxs),
        ("contains", "gsm8k solutions", Contains, gsm_ctxs),
        ("regex", "gsm8k solutions", lambda: Regex(pattern=r"####\s*-?[\d,.]+"), gsm_ctxs),
    ]
    table = Table(title=f"Deterministic evaluators (best of {REPEATS}, one process)")
    for col in ("evaluator", "data", "rows", "seconds", "rows/s", "vs peer"):
        table.add_column(col, justify="left" if col in ("evaluator", "data") else "right", no_wrap=True)

    peer_s = _best_seconds(lambda: _peer_validate(pairs))
    floor_s = _best_seconds(lambda: _peer_prebuilt(pairs))
    ours_json_s = 0.0
    for label, data, make, ctxs in cases:
        secs = _time_evaluator(make, ctxs)
        if label == "json_validation":
            ours_json_s = secs
        ratio = f"{(len(ctxs) / secs) / (len(pairs) / peer_s):.2f}x" if data == "json-schema suite" else ""
        table.add_row(label, data, str(len(ctxs)), f"{secs:.4f}", f"{len(ctxs) / secs:,.0f}", ratio)
    table.add_section()
    table.add_row("peer: jsonschema.validate", "json-schema suite", str(len(pairs)), f"{peer_s:.4f}",
                  f"{len(pairs) / peer_s:,.0f}", "1.00x")
    table.add_row("floor: prebuilt is_valid", "json-schema suite", str(len(pairs)),
                  f"{floor_s:.4f}", f"{len(pairs) / floor_s:,.0f}",
                  f"{(len(pairs) / floor_s) / (len(pairs) / peer_s):.2f}x")
    console.print(table)
    console.print(f"json_validation vs peer (ours/peer rows/s): {peer_s / ours_json_s:.2f}x; "
                  f"vs prebuilt-validator floor: {floor_s / ours_json_s:.2f}x "
                  "(the rest is extraction, reasons, feedback and result objects)")


if __name__ == "__main__":
    main()
