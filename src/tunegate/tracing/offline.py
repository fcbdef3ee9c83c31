"""Offline run rows as spans, in the gateway's vocabulary (one span per row, per sample's output).

``run_row_hook(tracing, candidate)`` returns a hook for ``engine.run.executor.execute(row_hook=...)``:
each committed row becomes an LLM span (``tunegate.source = offline``, ``tunegate.run.id``,
``tunegate.row.id``, cohort = the row's first cohort) with the candidate's model, prompt version,
tokens, finish reason, and every evaluator result as a ``gen_ai.evaluation.result`` event — so
``tunegate traces --by source`` compares a run's rows with live traffic directly. Rows are duck-typed
(``example``, ``outputs``, ``errors``, ``scores``, ``messages``): tracing sits below the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tunegate.tracing.attributes import EvalEvent, LLMCall
from tunegate.tracing.tracer import Tracing

__all__ = ["run_row_hook"]


def run_row_hook(tracing: Tracing, candidate: Any) -> Callable[[str, Any], None]:
    """A ``row_hook`` emitting one span per row of a run of ``candidate`` (a CandidateSpec, or None)."""
    model = getattr(candidate, "model", None) or "outputs-file"
    provider = "tunegate.local" if getattr(candidate, "backend", "") == "local" else "openai"
    prompt = getattr(getattr(candidate, "prompt", None), "ref", None)
    cand_id = getattr(candidate, "hash", None)
    params = getattr(candidate, "params", None)
    param_dict = params.model_dump() if params is not None and hasattr(params, "model_dump") else {}

    def hook(run_id: str, row: Any) -> None:
        ex = row.example
        call = LLMCall(request_model=model, provider=provider, source="offline", candidate_id=cand_id,
                       prompt_version=prompt, cohort=ex.cohorts[0] if ex.cohorts else None, run_id=run_id,
                       row_id=str(ex.id), params=param_dict,
                       input_messages=[m.model_dump(exclude_none=True) for m in row.messages])
        for i, out in enumerate(row.outputs):
            call.attempt = i
            with tracing.llm_span(call) as sp:
                if out is None:
                    sp.error(row.errors[i] or "generation failed")
                    continue
                sp.set_response(response_model=out.model or model, input_tokens=out.usage.prompt_tokens,
                                output_tokens=out.usage.completion_tokens,
                                finish_reasons=[out.finish_reason] if out.finish_reason else None,
                                output_text=out.text)
                sp.set_attributes({"tunegate.cached": out.cached})
                for name, results in row.scores.items():
                    if i < len(results):
                        r = results[i]
                        sp.add_evaluation(EvalEvent(name, r.score, r.passed, r.reason, r.status))

    return hook
