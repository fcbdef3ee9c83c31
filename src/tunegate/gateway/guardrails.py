"""Guardrails: checks before the upstream call (on the request) and after it (on the answer).

Checks come from the evaluator registry so a guardrail and a gate rule agree on what "PII" or
"unsafe" means: ``pii`` (Presidio, offline; can redact), ``content_safety`` (the local moderation
head), ``json_validation`` (the route's schema). ``prompt_injection`` has no evaluator yet and is
a built-in pattern check on user turns (phrases that try to override instructions or reveal the
system prompt) — a cheap first line, not a classifier.

Actions: ``block`` (the client gets an OpenAI-style error, status 400 pre-call / 422 post-call),
``redact`` (PII replaced by ``<ENTITY>``), ``flag`` (only recorded), ``fallback`` (post-call:
the answer counts as a failed attempt and the next arm is tried). Model-based checks run on a
worker thread so the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from tunegate.gateway.config import GuardrailConfig, RouteConfig
from tunegate.gateway.records import GuardrailEvent

__all__ = ["GuardrailBlock", "PostResult", "PreResult", "injection_signals", "run_post", "run_pre"]

_INJECTION = [re.compile(p, re.IGNORECASE) for p in (
    r"\b(ignore|disregard|forget)\b.{0,40}\b(previous|prior|above|earlier|all)\b.{0,20}\b(instructions?|rules?|prompts?)",
    r"\b(reveal|print|show|repeat|output)\b.{0,40}\b(system prompt|hidden (instructions?|prompt)|your instructions)",
    r"\byou are now\b.{0,40}\b(DAN|jailbroken|unrestricted|developer mode)",
    r"\b(developer|god|jailbreak) mode\b",
    r"\bact as\b.{0,30}\bwithout (any )?(restrictions|filters|rules)",
)]


def injection_signals(text: str) -> list[str]:
    """The injection patterns ``text`` matches (empty when none)."""
    return [m.group(0)[:80] for p in _INJECTION if (m := p.search(text))]


class GuardrailBlock(Exception):
    """A guardrail with action ``block`` fired."""

    def __init__(self, event: GuardrailEvent, status: int) -> None:
        super().__init__(f"blocked by guardrail {event.check}: {event.detail}")
        self.event = event
        self.status = status


@dataclass
class PreResult:
    messages: list[dict[str, Any]]
    events: list[GuardrailEvent] = field(default_factory=list)


@dataclass
class PostResult:
    completion: dict[str, Any]
    events: list[GuardrailEvent] = field(default_factory=list)
    fallback: GuardrailEvent | None = None


def _content(m: dict[str, Any]) -> str:
    c = m.get("content")
    if isinstance(c, list):
        return "".join(p.get("text", "") for p in c if isinstance(p, dict))
    return c if isinstance(c, str) else ""


def _pii_findings(texts: list[str], g: GuardrailConfig) -> list[list[dict[str, Any]]]:
    from tunegate.evaluators.pii import DEFAULT_THRESHOLD, analyze

    return analyze(texts, g.options.get("entities"), float(g.options.get("score_threshold", DEFAULT_THRESHOLD)))


def _redact(text: str, findings: list[dict[str, Any]]) -> str:
    for f in sorted(findings, key=lambda f: f["start"], reverse=True):
        text = text[: f["start"]] + f"<{f['type']}>" + text[f["end"]:]
    return text


def _act(g: GuardrailConfig, stage: str, detail: str, status: int) -> GuardrailEvent:
    ev = GuardrailEvent("pre" if stage == "pre" else "post", g.check, g.action, detail)
    if g.action == "block":
        raise GuardrailBlock(ev, status)
    return ev


async def run_pre(route: RouteConfig, messages: list[dict[str, Any]]) -> PreResult:
    """Apply the route's pre-call guardrails to the user turns; raises GuardrailBlock."""
    res = PreResult(list(messages))
    user_idx = [i for i, m in enumerate(res.messages) if m.get("role") == "user"]
    for g in route.guardrails.pre:
        texts = [_content(res.messages[i]) for i in user_idx]
        if g.check == "prompt_injection":
            hits = [h for t in texts for h in injection_signals(t)]
            if hits:
                res.events.append(_act(g, "pre", f"matched {hits[0]!r}", 400))
        elif g.check == "pii":
            found = await asyncio.to_thread(_pii_findings, texts, g)
            kinds = sorted({f["type"] for fs in found for f in fs})
            if kinds:
                ev = _act(g, "pre", f"found {', '.join(kinds)}", 400)
                if g.action == "redact":
                    for i, fs in zip(user_idx, found, strict=True):
                        if fs:
                            res.messages[i] = res.messages[i] | {"content": _redact(texts[user_idx.index(i)], fs)}
                res.events.append(ev)
    return res


def _safety(texts: list[str], g: GuardrailConfig) -> list[tuple[bool, str]]:
    from tunegate.core.example import Example
    from tunegate.core.result import ModelOutput
    from tunegate.evaluators.base import EvalContext
    from tunegate.evaluators.registry import default_registry

    ev = default_registry().create("content_safety", **({"check_refusal": False} | g.options))
    ctxs = [EvalContext(Example(id=f"gw-{i}", input="-"), ModelOutput(text=t)) for i, t in enumerate(texts)]
    return [(r.passed is not False, r.reason) for r in ev.evaluate_batch(ctxs)]


def _json_check(texts: list[str], schema: dict[str, Any]) -> list[tuple[bool, str]]:
    from tunegate.core.example import Example
    from tunegate.core.result import ModelOutput
    from tunegate.evaluators.base import EvalContext
    from tunegate.evaluators.json_validation import JSONValidation

    ev = JSONValidation(strict=True)
    ex = Example.model_validate({"id": "gw", "input": "-", "schema": schema})
    return [(r.status == "ok" and (r.score or 0.0) >= 1.0, r.reason)
            for r in ev.evaluate_batch([EvalContext(ex, ModelOutput(text=t)) for t in texts])]


async def run_post(route: RouteConfig, completion: dict[str, Any]) -> PostResult:
    """Apply the route's post-call guardrails to every choice's text; raises GuardrailBlock."""
    res = PostResult(completion)
    choices = completion.get("choices") or []
    texts = [(c.get("message") or {}).get("content") or "" for c in choices]
    for g in route.guardrails.post:
        if g.check == "json_validation":
            schema = g.options.get("schema") or route.json_schema
            if schema is None:
                continue
            verdicts = _json_check(texts, schema)
        elif g.check == "content_safety":
            verdicts = await asyncio.to_thread(_safety, texts, g)
        else:  # pii
            found = await asyncio.to_thread(_pii_findings, texts, g)
            verdicts = [(not fs, ", ".join(sorted({f["type"] for f in fs}))) for fs in found]
            if g.action == "redact" and any(found):
                new_choices = []
                for c, t, fs in zip(choices, texts, found, strict=True):
                    msg = dict(c.get("message") or {})
                    if fs:
                        msg["content"] = _redact(t, fs)
                    new_choices.append(c | {"message": msg})
                res.completion = completion | {"choices": new_choices}
        bad = next(((i, why) for i, (ok, why) in enumerate(verdicts) if not ok), None)
        if bad is None:
            continue
        ev = _act(g, "post", f"choice {bad[0]}: {bad[1]}"[:300], 422)
        res.events.append(ev)
        if g.action == "fallback":
            res.fallback = ev
            return res
    return res
