"""Turn a client's chat request into the request an arm's candidate was evaluated with.

The candidate's prompt version is applied the way the run engine applies it to a conversation row
(:meth:`tunegate.core.prompt.PromptTemplate.render`): its system template (rendered with the
request's ``metadata`` as variables) goes first, merged with the client's own leading system
message; its few-shot demonstrations follow; then the conversation; a route ``schema`` is appended
to the last turn as the evaluation did. Decoding defaults come from the candidate's params; values
the client sets explicitly win (they are part of the cache key). ``model`` becomes the served name.
"""

from __future__ import annotations

from typing import Any

from tunegate.core.candidate import CandidateSpec
from tunegate.core.prompt import render_text, schema_note

__all__ = ["GATEWAY_FIELDS", "prepare_body"]

#: Request fields the gateway consumes and never forwards upstream.
GATEWAY_FIELDS = frozenset({"metadata"})
_PARAM_DEFAULTS = ("temperature", "top_p", "max_tokens", "seed", "stop")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def prepare_body(body: dict[str, Any], candidate: CandidateSpec, served_model: str,
                 schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The upstream body for ``candidate`` (see the module docstring). Raises UserError on a prompt
    variable the request's metadata cannot fill."""
    out = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
    out["model"] = served_model
    prompt = candidate.prompt
    messages: list[dict[str, Any]] = list(body["messages"])
    if prompt.system or prompt.few_shot:
        head: list[dict[str, Any]] = []
        system = None
        if prompt.system:
            meta = body.get("metadata") or {}
            users = [m for m in messages if m.get("role") == "user"]
            vars_: dict[str, Any] = dict(meta) | {"metadata": meta}
            if users:
                vars_["input"] = _text(users[-1].get("content"))
            system = render_text(prompt.system, vars_, where="prompt.system")
        if messages and messages[0].get("role") == "system" and system is not None:
            system = f"{system}\n\n{_text(messages[0].get('content'))}"
            messages = messages[1:]
        if system is not None:
            head.append({"role": "system", "content": system})
        for shot in prompt.few_shot:
            head += [{"role": "user", "content": shot.input}, {"role": "assistant", "content": shot.output}]
        messages = head + messages
    if schema is not None and prompt.include_schema and messages:
        last = dict(messages[-1])
        last["content"] = f"{_text(last.get('content'))}\n\n{schema_note(schema)}"
        messages[-1] = last
    out["messages"] = messages
    params = candidate.params
    for name in _PARAM_DEFAULTS:
        if out.get(name) is None:
            value = getattr(params, name)
            if value is not None:
                out[name] = value
    if not candidate.tools:
        out.pop("tools", None)
        out.pop("tool_choice", None)
    return out

