"""One span vocabulary for offline runs and the gateway: OTel GenAI + OpenInference + tunegate.

A :class:`LLMCall` describes one model call (a gateway attempt, a shadow call, or an offline run
row). :func:`llm_attributes` turns it into span attributes under three conventions at once, so the
same span reads well in any OTel backend (``gen_ai.*``, OpenTelemetry GenAI semantic conventions),
in Phoenix / OpenInference tools (``openinference.span.kind``, ``llm.*``), and in ``tunegate
traces`` (``tunegate.*``). Pure: no OpenTelemetry import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tunegate.tracing.redact import redact_text, scrub_attributes

__all__ = ["EVALUATION_EVENT", "EvalEvent", "LLMCall", "eval_event_attributes", "llm_attributes",
           "response_attributes"]

EVALUATION_EVENT = "gen_ai.evaluation.result"

AttrValue = str | bool | int | float | list[str]


@dataclass
class LLMCall:
    """What is known about one model call before it is made (``response_*`` filled after)."""

    request_model: str
    provider: str = "openai"                 #: gen_ai.provider.name (openai, tunegate.local, vllm...)
    operation: str = "chat"                  #: gen_ai.operation.name
    source: str = "gateway"                  #: gateway | shadow | offline
    candidate_id: str | None = None
    prompt_version: str | None = None
    route: str | None = None
    arm: str | None = None
    cohort: str | None = None
    request_id: str | None = None
    run_id: str | None = None
    row_id: str | None = None
    attempt: int = 0
    input_messages: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalEvent:
    """One evaluator's result on the evaluated span (``gen_ai.evaluation.result``)."""

    name: str
    score: float | None
    passed: bool | None
    explanation: str = ""
    status: str = "ok"

    @property
    def label(self) -> str:
        if self.status != "ok":
            return self.status          # skipped | error: never counted as a pass or a fail
        return "pass" if self.passed else "fail"


def _content(messages: list[dict[str, Any]], redact: bool) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        c = m.get("content")
        text = c if isinstance(c, str) else json.dumps(c, default=str) if c is not None else ""
        out.append({"role": str(m.get("role", "user")), "content": redact_text(text) if redact else text})
    return out


def llm_attributes(call: LLMCall, *, capture_content: bool = False, redact: bool = True) -> dict[str, AttrValue]:
    """Attributes known when the call starts."""
    a: dict[str, Any] = {
        "gen_ai.operation.name": call.operation,
        "gen_ai.provider.name": call.provider,
        "gen_ai.request.model": call.request_model,
        "openinference.span.kind": "LLM",
        "llm.model_name": call.request_model,
        "llm.provider": call.provider,
        "tunegate.source": call.source,
        "tunegate.attempt": call.attempt,
    }
    for key, val in (("tunegate.candidate.id", call.candidate_id), ("tunegate.prompt.version", call.prompt_version),
                     ("tunegate.route", call.route), ("tunegate.rollout.arm", call.arm),
                     ("tunegate.cohort", call.cohort), ("tunegate.request.id", call.request_id),
                     ("tunegate.run.id", call.run_id), ("tunegate.row.id", call.row_id)):
        if val is not None:
            a[key] = val
    for p, name in (("temperature", "gen_ai.request.temperature"), ("top_p", "gen_ai.request.top_p"),
                    ("max_tokens", "gen_ai.request.max_tokens"), ("seed", "gen_ai.request.seed")):
        if isinstance(call.params.get(p), int | float) and not isinstance(call.params.get(p), bool):
            a[name] = call.params[p]
    if capture_content and call.input_messages:
        msgs = _content(call.input_messages, redact)
        a["gen_ai.input.messages"] = json.dumps(msgs)
        a["input.value"] = msgs[-1]["content"] if msgs else ""
        for i, m in enumerate(msgs):
            a[f"llm.input_messages.{i}.message.role"] = m["role"]
            a[f"llm.input_messages.{i}.message.content"] = m["content"]
    return scrub_attributes(a)


def response_attributes(*, response_model: str | None, input_tokens: int | None, output_tokens: int | None,
                        finish_reasons: list[str] | None = None, cost_prompt: float | None = None,
                        cost_completion: float | None = None, output_text: str | None = None,
                        capture_content: bool = False, redact: bool = True,
                        response_id: str | None = None) -> dict[str, AttrValue]:
    """Attributes known when the call has returned."""
    a: dict[str, AttrValue] = {}
    if response_model:
        a["gen_ai.response.model"] = response_model
    if response_id:
        a["gen_ai.response.id"] = response_id
    if input_tokens is not None:
        a["gen_ai.usage.input_tokens"] = int(input_tokens)
        a["llm.token_count.prompt"] = int(input_tokens)
    if output_tokens is not None:
        a["gen_ai.usage.output_tokens"] = int(output_tokens)
        a["llm.token_count.completion"] = int(output_tokens)
    if input_tokens is not None or output_tokens is not None:
        a["llm.token_count.total"] = int(input_tokens or 0) + int(output_tokens or 0)
    if finish_reasons:
        a["gen_ai.response.finish_reasons"] = [str(r) for r in finish_reasons]
    if cost_prompt is not None or cost_completion is not None:
        a["llm.cost.prompt"] = float(cost_prompt or 0.0)
        a["llm.cost.completion"] = float(cost_completion or 0.0)
        a["llm.cost.total"] = float(cost_prompt or 0.0) + float(cost_completion or 0.0)
    if capture_content and output_text is not None:
        text = redact_text(output_text) if redact else output_text
        a["output.value"] = text
        a["gen_ai.output.messages"] = json.dumps([{"role": "assistant", "content": text}])
        a["llm.output_messages.0.message.role"] = "assistant"
        a["llm.output_messages.0.message.content"] = text
    return a


def eval_event_attributes(ev: EvalEvent) -> dict[str, AttrValue]:
    a: dict[str, AttrValue] = {"gen_ai.evaluation.name": ev.name, "gen_ai.evaluation.score.label": ev.label}
    if ev.score is not None:
        a["gen_ai.evaluation.score.value"] = float(ev.score)
    if ev.explanation:
        a["gen_ai.evaluation.explanation"] = redact_text(ev.explanation)[:1000]
    return a
