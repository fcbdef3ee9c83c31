"""The gateway sends an arm the prompt its candidate was gated with, byte for byte: system prompt,
few-shot demonstrations, the row's turn and the JSON Schema note, as the run engine renders them."""

from __future__ import annotations

from typing import Any

from tunegate.core.candidate import CandidateSpec
from tunegate.core.example import Example
from tunegate.core.prompt import FewShot, PromptTemplate
from tunegate.gateway.prepare import prepare_body

SCHEMA: dict[str, Any] = {"type": "object", "properties": {"intent": {"type": "string", "enum": ["refund", "ship"]}},
                          "required": ["intent"], "title": "Ticket"}


def _offline(prompt: PromptTemplate, text: str) -> list[dict[str, Any]]:
    msgs = prompt.render(Example(id="r1", input=text, json_schema=SCHEMA))
    return [{"role": m.role, "content": m.content} for m in msgs]


def test_gateway_prompt_equals_the_gated_prompt() -> None:
    prompt = PromptTemplate(system="Answer as JSON. Ünïcode kept.", user="{{input}}",
                            few_shot=[FewShot(input="I want my money back", output='{"intent": "refund"}')])
    cand = CandidateSpec(backend="openai", model="m", base_url="http://127.0.0.1:9/v1", prompt=prompt)
    text = "where is my parcel?"
    body = prepare_body({"model": "support", "messages": [{"role": "user", "content": text}]}, cand, "served-m",
                        schema=SCHEMA)
    assert body["model"] == "served-m"
    assert body["messages"] == _offline(prompt, text)
    assert body["messages"][-1]["content"].endswith('"title": "Ticket", "type": "object"}')  # sorted keys, as gated


def test_schema_is_left_out_when_the_prompt_says_so() -> None:
    prompt = PromptTemplate(user="{{input}}", include_schema=False)
    cand = CandidateSpec(backend="openai", model="m", base_url="http://127.0.0.1:9/v1", prompt=prompt)
    body = prepare_body({"model": "s", "messages": [{"role": "user", "content": "hi"}]}, cand, "s", schema=SCHEMA)
    assert body["messages"] == [{"role": "user", "content": "hi"}] == _offline(prompt, "hi")
