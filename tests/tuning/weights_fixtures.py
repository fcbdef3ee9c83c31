"""Tiny golden set + seed candidate for weight-tuning tests (explicit splits, every target kind).

Train rows cover text answers, JSON objects for schema rows, tool calls (with an ``any_of``
argument and an optional one) and a no-call row with no answer (nothing to learn: skipped).
Dev/test rows are deliberately similar so a leak would be visible in the training rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LOOKUP = {"type": "function", "function": {
    "name": "lookup_order", "description": "Look up an order.",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}, "note": {"type": "string"}},
                   "required": ["order_id"]}}}
SCHEMA = {"type": "object", "properties": {"order_id": {"type": ["string", "null"]}, "issue": {"enum": ["late", "lost"]}},
          "required": ["order_id", "issue"], "additionalProperties": False}

ROWS: list[dict[str, Any]] = [
    {"id": "t-text-1", "input": "What colour is the sky?", "expected": "Blue.", "split": "train"},
    {"id": "t-text-2", "input": "Capital of France?", "expected": "Paris.", "split": "train"},
    {"id": "t-json-1", "input": "Order A-1 is late.", "schema": SCHEMA,
     "expected": {"order_id": "A-1", "issue": "late"}, "split": "train"},
    {"id": "t-json-2", "input": "My parcel got lost.", "schema": SCHEMA,
     "expected": {"order_id": None, "issue": "lost"}, "split": "train"},
    {"id": "t-tool-1", "input": "Where is order A-7?", "tools": [LOOKUP],
     "expected_tool_calls": [{"name": "lookup_order", "any_of": {"order_id": ["A-7", "a-7"], "note": ["", "x"]}}],
     "split": "train"},
    {"id": "t-tool-none", "input": "Write me a poem.", "tools": [LOOKUP], "expected_tool_calls": [], "split": "train"},
    {"id": "d-text-1", "input": "Colour of grass?", "expected": "Green.", "split": "dev"},
    {"id": "d-tool-1", "input": "Where is order A-8?", "tools": [LOOKUP],
     "expected_tool_calls": [{"name": "lookup_order", "arguments": {"order_id": "A-8"}}], "split": "dev"},
    {"id": "x-text-1", "input": "Capital of Spain?", "expected": "Madrid.", "split": "test"},
    {"id": "x-json-1", "input": "Order A-9 is lost.", "schema": SCHEMA,
     "expected": {"order_id": "A-9", "issue": "lost"}, "split": "test"},
]
HELD_OUT = {r["id"] for r in ROWS if r["split"] != "train"}

SEED = """name: seed
backend: local
model: smollm2-135m-instruct
prompt:
  system: Answer briefly.
  user: "{{input}}"
params: {temperature: 0, max_tokens: 8}
"""

#: Preference pairs: two usable, one naming a dev row (leak: dropped), one reusing a test row's
#: prompt text (leak: dropped), one with chosen == rejected (dropped).
PAIRS = [
    {"id": "p1", "prompt": "Say hello.", "chosen": "Hello!", "rejected": "Go away.", "source": "test", "margin": 1.0},
    {"id": "t-text-2", "prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon.", "source": "test"},
    {"id": "d-text-1", "prompt": "Colour of grass?", "chosen": "Green.", "rejected": "Red.", "source": "test"},
    {"id": "p4", "prompt": "Capital of Spain?", "chosen": "Madrid.", "rejected": "Rome.", "source": "test"},
    {"id": "p5", "prompt": "Say yes.", "chosen": "Yes.", "rejected": "Yes.", "source": "test"},
    {"id": "p6", "prompt": "Say thanks.", "chosen": "Thanks!", "rejected": "No.", "source": "test", "margin": 2},
]


def write_inputs(tmp: Path, config: str = "") -> dict[str, Path]:
    """dataset.jsonl, seed.yaml, prefs.jsonl and cfg.yaml under ``tmp``."""
    paths = {"dataset": tmp / "dataset.jsonl", "seed": tmp / "seed.yaml", "prefs": tmp / "prefs.jsonl",
             "config": tmp / "cfg.yaml"}
    paths["dataset"].write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    paths["seed"].write_text(SEED)
    paths["prefs"].write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    paths["config"].write_text(config)
    return paths
