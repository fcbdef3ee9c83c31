"""The optimizer's own LLM: asks for a rewrite, a critique or a list, and parses it strictly.

Reflection output is adopted only when it is complete and in the requested format: a reply cut
off by the token limit (``finish_reason == "length"``), an empty reply or one without the expected
markers is *rejected and logged*, never used. Small models often ramble past their limit; adopting
half an instruction silently is how prompt optimizers ship broken prompts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tunegate.backends.base import Backend
from tunegate.backends.cache import CachedBackend, CacheStore
from tunegate.core.candidate import DecodingParams
from tunegate.core.example import Message
from tunegate.core.prompt import placeholders
from tunegate.core.request import GenerationRequest
from tunegate.errors import BackendError, UserError
from tunegate.tuning.budget import BudgetMeter

__all__ = ["Parser", "Reflection", "Reflector", "check_instruction", "fenced_block", "numbered_items",
           "tagged_block"]

#: Parses a reply; returns the payload or raises ValueError naming what is wrong with the format.
Parser = Callable[[str], "str | list[str]"]

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)


def fenced_block(text: str) -> str:
    """The last complete ``` fenced block (the convention GEPA's reflection prompt asks for)."""
    blocks = [str(b).strip() for b in _FENCE.findall(text)]
    blocks = [b for b in blocks if b]
    if not blocks:
        if text.count("```") % 2 == 1:
            raise ValueError("unterminated ``` block")
        raise ValueError("no ``` fenced block in the reply")
    return blocks[-1]


def tagged_block(tag: str) -> Parser:
    """Parser for the last ``<tag>…</tag>`` block (ProTeGi/PromptWizard-style markers)."""
    pat = re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL | re.IGNORECASE)

    def parse(text: str) -> str:
        found = [str(b).strip() for b in pat.findall(text) if str(b).strip()]
        if not found:
            if re.search(rf"<{tag}>", text, re.IGNORECASE):
                raise ValueError(f"<{tag}> block is not closed")
            raise ValueError(f"no <{tag}>…</{tag}> block in the reply")
        return found[-1]
    return parse


def numbered_items(text: str) -> list[str]:
    """Items of a numbered or bulleted list (``1.``, ``2)``, ``-``, ``*``), continuation lines joined."""
    items: list[str] = []
    for line in text.splitlines():
        m = re.match(r"\s*(?:\d+[.)]|[-*•])\s+(.*\S)", line)
        if m:
            items.append(m.group(1))
        elif items and line.strip() and not line.lstrip().startswith(("#", "<")):
            items[-1] += " " + line.strip()
    items = [i.strip() for i in items if len(i.strip()) > 3]
    if not items:
        raise ValueError("no list items in the reply")
    return items


def check_instruction(new: str, parent: str, *, required: tuple[str, ...] = (), min_chars: int = 20,
                      max_chars: int = 6000) -> str | None:
    """Why a proposed instruction text is unusable, or None.

    ``required`` placeholders (``input`` for a user template) must survive the rewrite, and no new
    placeholder may appear that rows cannot fill — the harness would refuse it later anyway, but
    catching it here records the right reason.
    """
    text = new.strip()
    if len(text) < min_chars:
        return f"too short ({len(text)} characters)"
    if len(text) > max_chars:
        return f"too long ({len(text)} characters, limit {max_chars})"
    if " ".join(text.split()) == " ".join(parent.split()):
        return "identical to the parent"
    try:
        names = placeholders(text)
    except UserError as e:
        return str(e)
    lost = [r for r in required if r not in names]
    if lost:
        return f"lost placeholder(s) {['{{' + r + '}}' for r in lost]}"
    new_names = [n for n in names if n not in placeholders(parent) and n not in required]
    if new_names:
        return f"introduces placeholder(s) {new_names} the rows may not fill"
    return None


@dataclass
class Reflection:
    """One reflection call: the parsed payload, or why it was rejected."""

    payload: str | list[str] | None
    raw: str
    rejected: str | None = None
    cached: bool = False
    tokens: int = 0
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.rejected is None and self.payload is not None


class Reflector:
    """Calls the reflection model (which may be the task model) through the same cache."""

    def __init__(self, backend: Backend, cache: CacheStore, meter: BudgetMeter, *,
                 params: DecodingParams | None = None) -> None:
        self.backend = CachedBackend(backend, cache)
        self.meter = meter
        self.params = params or DecodingParams(temperature=0.7, top_p=0.95, max_tokens=512, seed=0)
        self._draws: dict[str, int] = {}
        self.rejections = 0

    def identity(self) -> dict[str, object]:
        return {"backend": self.backend.identity(), "params": self.params.model_dump(mode="json")}

    async def ask(self, prompt: str, parse: Parser, *, system: str | None = None, key: str = "") -> Reflection:
        """Send ``prompt``; parse the reply. Repeated identical asks draw new samples (sample index
        grows per prompt) so sampling diversity survives the cache while staying reproducible."""
        self.meter.require_reflection()
        msgs = ((Message(role="system", content=system),) if system else ()) + (Message(role="user", content=prompt),)
        slot = key + "\x00" + prompt
        idx = self._draws.get(slot, 0)
        self._draws[slot] = idx + 1
        req = GenerationRequest(msgs, self.params, None, idx)
        [res] = await self.backend.generate([req])
        if isinstance(res, BackendError):
            self.rejections += 1
            return Reflection(None, "", rejected=f"reflection call failed: {res}")
        tokens = res.usage.prompt_tokens + res.usage.completion_tokens
        self.meter.charge_reflection(cached=res.cached, tokens=tokens)
        raw = res.text or ""
        out = Reflection(None, raw, cached=res.cached, tokens=tokens, meta={"sample_index": idx})
        if res.finish_reason == "length":
            out.rejected = f"truncated at max_tokens={self.params.max_tokens}"
        elif not raw.strip():
            out.rejected = "empty reply"
        else:
            try:
                out.payload = parse(raw)
            except ValueError as e:
                out.rejected = f"format: {e}"
        if out.rejected:
            self.rejections += 1
        return out

    async def aclose(self) -> None:
        await self.backend.aclose()
