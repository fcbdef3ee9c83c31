"""The full local evaluator suite on the demo golden set: wall time, rows/s, batched vs per-row.

Why: issue 4 promises that every evaluator runs locally and that the whole suite grades the
demo set (120+ rows) in under 2 minutes on 2 cores with each model loaded once. Generation is
not measured here (``bench_generation.py`` does that): each row's output is its own reference
(the expected JSON, the expected tool calls, the expected answer or ``metadata.reference_reply``),
so the figure is the evaluators' cost alone, on realistic text.

The named peer is the same suite called **one row at a time** (``evaluate_batch`` with a single
context), in the same process after the models are warm — what a naive per-row loop costs; the
ratio shows what batched inference buys. Model loading is timed separately (first call).

Run: ``python bench/suite_throughput.py [--dataset examples/support/dataset.jsonl]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tunegate.core.example import Example, ToolCall
from tunegate.core.loading import load_dataset
from tunegate.core.result import ModelOutput
from tunegate.evaluators.base import EvalContext, Evaluator
from tunegate.evaluators.registry import default_registry

__all__ = ["SUITE", "main", "reference_output"]

REPO = Path(__file__).resolve().parents[1]
#: Every built-in that runs without configuration. ``custom`` needs a rubric and a judge endpoint,
#: ``regex`` a pattern; ``task_completion`` runs its reference path (no judge configured).
SUITE = ("json_validation", "tool_selection", "exact_match", "numeric_match", "token_f1", "contains",
         "prompt_adherence", "answer_relevancy", "factual_accuracy", "groundedness", "faithfulness",
         "hallucination", "content_safety", "refusal", "pii", "task_completion")
TARGET_S = 120.0


def reference_output(ex: Example) -> ModelOutput:
    """The row's own reference as a model output (tool calls, JSON, text or reference reply)."""
    calls = [ToolCall(name=c.name, arguments=c.arguments or {k: v[0] for k, v in c.any_of.items() if v})
             for c in ex.expected_tool_calls or []]
    if isinstance(ex.expected, str):
        text = ex.expected
    elif ex.expected is not None:
        text = json.dumps(ex.expected)
    else:
        text = str((ex.metadata or {}).get("reference_reply", ""))
    return ModelOutput(text=text, tool_calls=calls, finish_reason="stop")


def _forget() -> None:
    """Drop the NLI model's (window, claim) memo so each pass pays for its own entailment calls."""
    from tunegate.evaluators.nli import NLIModel
    NLIModel.load().clear_memo()


def _run(evs: Sequence[Evaluator], ctxs: Sequence[EvalContext], per_row: bool
         ) -> tuple[float, dict[str, dict[str, int]], dict[str, float]]:
    """Wall time, result statuses per evaluator and seconds per evaluator for one pass."""
    _forget()
    status: dict[str, dict[str, int]] = {}
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    for ev in evs:
        t1 = time.perf_counter()
        st = status.setdefault(ev.name, {"ok": 0, "skipped": 0, "error": 0})
        for chunk in ([c] for c in ctxs) if per_row else [list(ctxs)]:
            for r in ev.evaluate_batch(chunk):
                st[r.status] += 1
        secs[ev.name] = time.perf_counter() - t1
    return time.perf_counter() - t0, status, secs


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(REPO / "examples" / "support" / "dataset.jsonl"))
    args = ap.parse_args(argv)
    con = Console(width=140)
    ds = load_dataset(args.dataset)
    reg = default_registry()
    evs = [reg.create(n) for n in SUITE if n in reg.names()]
    ctxs = [EvalContext(example=ex, output=reference_output(ex), candidate={"bench": "reference"}) for ex in ds]
    t0 = time.perf_counter()
    load_s, _, _ = _run(evs, ctxs[:1], per_row=False)          # first call loads every model once
    batched_s, status, secs = _run(evs, ctxs, per_row=False)
    peer_s, _, peer_secs = _run(evs, ctxs, per_row=True)
    table = Table(title=f"full local suite · {len(evs)} evaluators · {len(ds)} rows of {args.dataset} · "
                        f"{os.cpu_count()} cores · load {os.getloadavg()[0]:.1f}")
    for col in ("what", "wall s", "rows/s", "ok / skipped / error", "per-row peer s", "batched vs peer"):
        table.add_column(col, justify="left" if col == "what" else "right")
    tot = {k: sum(st[k] for st in status.values()) for k in ("ok", "skipped", "error")}
    table.add_row("model loading (first call)", f"{load_s:.1f}", "", "", "", "")
    table.add_row("suite, batched", f"{batched_s:.1f}", f"{len(ds) / batched_s:.1f}",
                  f"{tot['ok']} / {tot['skipped']} / {tot['error']}", f"{peer_s:.1f}", f"{peer_s / batched_s:.2f}x")
    for name in sorted(secs, key=lambda n: -secs[n]):
        st, s_ = status[name], secs[name]
        table.add_row(f"  {name}", f"{s_:.2f}", f"{len(ds) / s_:.0f}" if s_ > 0 else "",
                      f"{st['ok']} / {st['skipped']} / {st['error']}", f"{peer_secs[name]:.2f}",
                      f"{peer_secs[name] / s_:.2f}x" if s_ > 0 else "")
    con.print(table)
    total = load_s + batched_s
    met = "met" if total < TARGET_S else "MISSED"
    con.print(f"load + batched suite {total:.1f}s for {len(ds)} rows (target < {TARGET_S:.0f}s for the demo set: "
              f"{met}); whole benchmark {time.perf_counter() - t0:.0f}s")
    # numeric_match reports `error` on rows whose expected answer holds no number (by design: the
    # suite asked for a numeric comparison the row cannot support); any other error is a failure.
    unexpected = {n: st["error"] for n, st in status.items() if st["error"] and n != "numeric_match"}
    if unexpected:
        con.print(f"[red]evaluator errors: {unexpected}[/]")
    return 1 if unexpected else 0


if __name__ == "__main__":
    raise SystemExit(main())
