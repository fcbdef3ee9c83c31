"""The files ``tunegate init`` writes: a golden-set template, two candidates and a policy that fits.

The dataset is generated, not copied, so it is small to ship and sized on purpose: 20 rows per
cohort is the fewest at which every rule of the policy can be decided (a ``non_inferior`` margin
of 0.2 needs 17 unchanged pairs to pass, a ``floor`` of 0.8 needs 17 perfect rows; see
``tunegate policy explain``). Each cohort exercises one kind of row — a JSON-Schema row, a tool
row, a text row with context, a numeric row — and each guard is scoped to the cohort it applies to.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["POLICY", "SCAFFOLD_FILES", "dataset_rows"]

ROWS_PER_COHORT = 20

TRIAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "product": {"type": "string"},
        "priority": {"type": "integer", "minimum": 1, "maximum": 3},
        "category": {"type": "string", "enum": ["hardware", "software", "billing"]},
    },
    "required": ["product", "priority", "category"],
    "additionalProperties": False,
}

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "lookup_order", "description": "Find an order by its id.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                       "required": ["order_id"]}}},
    {"type": "function", "function": {
        "name": "reset_password", "description": "Send a password-reset link to an email address.",
        "parameters": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]}}},
]

_PRODUCTS = ["ThinkPad X1", "Surface Pro 9", "Pixel 8", "MacBook Air", "Galaxy S23"]
_ISSUES = [("will not turn on", 1, "hardware"), ("shows an update error", 2, "software"),
           ("was charged twice", 1, "billing"), ("has a cracked screen", 2, "hardware")]
_POLICY = [
    ("How many days do I have to return an item?", "30 days"),
    ("How long does a refund take once the return arrives?", "5 business days"),
    ("Is shipping free on orders over 50 dollars?", "yes"),
    ("Which carrier ships our parcels?", "DHL"),
    ("How long is the warranty on laptops?", "2 years"),
]
_CONTEXT = ("Returns are accepted within 30 days of delivery. Refunds are paid 5 business days after the "
            "return arrives. Shipping is free on orders over 50 dollars; parcels ship with DHL. Laptops carry "
            "a 2 years warranty; phones carry 1 year.")


def dataset_rows() -> list[dict[str, Any]]:
    """Four cohorts of ``ROWS_PER_COHORT`` rows: triage (schema), tools, policy (text), math."""
    rows: list[dict[str, Any]] = []
    for i in range(ROWS_PER_COHORT):
        product = _PRODUCTS[i % len(_PRODUCTS)]
        issue, prio, cat = _ISSUES[(i // len(_PRODUCTS)) % len(_ISSUES)]
        rows.append({"id": f"triage-{i + 1:02d}", "cohorts": ["triage"],
                     "input": f"Triage this ticket as JSON: 'My {product} {issue}.'",
                     "schema": TRIAGE_SCHEMA, "expected": {"product": product, "priority": prio, "category": cat}})
    for i in range(ROWS_PER_COHORT):
        row: dict[str, Any] = {"id": f"tools-{i + 1:02d}", "cohorts": ["tools"], "tools": TOOLS}
        if i % 4 == 3:  # no tool fits: the model must answer or ask, not call
            row |= {"input": "Where is my order? I lost the order number.", "expected_tool_calls": []}
        elif i % 2 == 0:
            oid = f"A-{1000 + 7 * i}"
            row |= {"input": f"Where is my order {oid}?",
                    "expected_tool_calls": [{"name": "lookup_order", "arguments": {"order_id": oid}}]}
        else:
            email = f"user{i}@example.com"
            row |= {"input": f"I forgot my password, my email is {email}.",
                    "expected_tool_calls": [{"name": "reset_password", "arguments": {"email": email}}]}
        rows.append(row)
    for i in range(ROWS_PER_COHORT):
        question, answer = _POLICY[i % len(_POLICY)]
        variant = ["", " Please answer briefly.", " (asked by a new customer)", " Thanks!"][i // len(_POLICY)]
        rows.append({"id": f"policy-{i + 1:02d}", "cohorts": ["policy"], "input": question + variant,
                     "context": _CONTEXT, "expected": answer})
    for i in range(ROWS_PER_COHORT):
        a, b = 12 + 7 * i, 5 + 3 * i
        op, val = ("+", a + b) if i % 2 == 0 else ("*", a * b) if i % 4 == 1 else ("-", a - b)
        rows.append({"id": f"math-{i + 1:02d}", "cohorts": ["math"],
                     "input": f"What is {a} {op} {b}? End with the number alone.", "expected": str(val)})
    return rows


INCUMBENT = """\
# The model in production today. backend: local runs the embedded SmolLM2-135M-Instruct on CPU
# (no server, no key). For a server, see docs/candidates.md, e.g.:
#   backend: openai
#   base_url: http://localhost:11434/v1      # Ollama; vLLM: http://localhost:8000/v1
#   model: qwen2.5:7b-instruct
#   api_key_env: OPENAI_API_KEY              # only when the server wants a key
name: incumbent
backend: local
model: smollm2-135m-instruct
prompt:
  system: You are a helpful support assistant.
params: {temperature: 0, max_tokens: 128}
"""

CANDIDATE = """\
# The change under test: the same model with a more precise system prompt. Change anything that
# changes outputs (model, adapter, prompt, params); the gate compares it with incumbent.yaml.
name: candidate
backend: local
model: smollm2-135m-instruct
prompt:
  system: >-
    You are a precise support assistant. When asked for JSON, reply with the JSON object only.
    Use a tool when one fits the request; otherwise answer briefly. For arithmetic, end with the
    number alone. Answer policy questions from the context in a few words.
params: {temperature: 0, max_tokens: 128}
"""

POLICY = """\
# The gate: the candidate must do better overall and must not get worse where each guard applies.
# Check what each rule will decide on before any model call:  tunegate policy explain policy.yaml --dataset dataset.jsonl
name: starter
version: "1"
headline: {evaluator: task_completion, rule: improve}        # all rows: CI low bound of the delta > 0
guards:
  - {evaluator: json_validation, rule: floor, min: 0.8, cohorts: [triage]}          # schema rows only
  - {evaluator: tool_selection, rule: non_inferior, margin: 0.2, cohorts: [tools]}  # tool rows only
  - {evaluator: contains, rule: non_inferior, margin: 0.2, cohorts: [policy]}       # text rows only
  - {evaluator: numeric_match, rule: non_inferior, margin: 0.2, cohorts: [math]}    # number rows only
error_budget: 0.05
"""


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


#: file name → content (the dataset is rendered when written).
SCAFFOLD_FILES: dict[str, str] = {
    "dataset.jsonl": _jsonl(dataset_rows()),
    "incumbent.yaml": INCUMBENT,
    "candidate.yaml": CANDIDATE,
    "policy.yaml": POLICY,
}
