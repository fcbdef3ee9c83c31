"""DPO preference files: the format, strict loading, and the QA checks run before anyone trains.

Format (JSONL, one pair per line)::

    {"id": "p-001", "prompt": "...", "chosen": "...", "rejected": "...", "source": "support-logs",
     "margin": 0.7,                       # optional: how much better chosen is (> 0)
     "pair_type": "safety",               # optional: safety (safe chosen vs unsafe rejected) | quality
     "reviews": [{"reviewer": "ana", "preferred": "chosen", "score": 4},   # optional
                 {"reviewer": "bo", "preferred": "tie"}],
     "metadata": {...}}                   # optional, free

``prompt``, ``chosen`` and ``rejected`` may also be TRL's conversational form (lists of
``{"role", "content"}`` messages). A missing or mistyped field is malformed input (file:line:field,
exit 2); everything else is a *check* with a threshold (exit 1 when one fails): see
:mod:`tunegate.checks.preference_qa`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tunegate.core.example import Message, row_id
from tunegate.core.hashing import file_digest
from tunegate.core.jsonl import jsonl_objects
from tunegate.core.loading import pydantic_message
from tunegate.errors import UserError

__all__ = ["PrefFile", "PrefRow", "PreferencePair", "Review", "load_preferences", "side_text"]

Text = str | list[Message]


class Review(BaseModel):
    """One reviewer's judgement of a pair."""

    model_config = ConfigDict(extra="forbid")

    reviewer: str = Field(min_length=1, description="Stable reviewer name or id.")
    preferred: Literal["chosen", "rejected", "tie"] = Field(description="Which side the reviewer prefers.")
    score: float | None = Field(default=None, description="Optional rating the reviewer gave (free scale).")


class PreferencePair(BaseModel):
    """One DPO pair (see the module docstring for the JSONL form)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique row id.")
    prompt: Text = Field(description="The request: text, or a list of chat messages.")
    chosen: Text = Field(description="The preferred reply: text, or assistant message(s).")
    rejected: Text = Field(description="The dispreferred reply: text, or assistant message(s).")
    source: str = Field(min_length=1, description="Where the pair came from (dataset, team, log stream).")
    margin: float | None = Field(default=None, description="How much better chosen is than rejected (> 0).")
    pair_type: Literal["safety", "quality"] | None = Field(
        default=None, description="safety: safe chosen vs unsafe rejected; quality: good vs mediocre.")
    reviews: list[Review] = Field(default_factory=list, description="Human judgements of this pair.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free data, not checked.")

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, v: Any) -> Any:
        return row_id(v)


def side_text(value: Text) -> str:
    """Text of a prompt / reply: the string, or the messages' contents joined."""
    if isinstance(value, str):
        return value
    return "\n".join(m.content or "" for m in value)


@dataclass(frozen=True)
class PrefRow:
    """A validated pair and the line it came from."""

    line: int
    pair: PreferencePair
    raw: dict[str, Any]

    @property
    def prompt(self) -> str:
        return side_text(self.pair.prompt)

    @property
    def chosen(self) -> str:
        return side_text(self.pair.chosen)

    @property
    def rejected(self) -> str:
        return side_text(self.pair.rejected)


@dataclass
class PrefFile:
    """A loaded preference file: rows in file order, and the file's digest (what was checked)."""

    path: str
    rows: list[PrefRow]
    sha256: str
    extra: dict[str, Any] = field(default_factory=dict)

    def where(self, row: PrefRow) -> str:
        return f"{self.path}:{row.line}"


_REQUIRED = ("id", "prompt", "chosen", "rejected", "source")


def load_preferences(path: str | Path) -> PrefFile:
    """Read and validate every line; the first problem raises a UserError naming file:line:field.

    The one reader of preference files: ``tunegate data check`` and ``tunegate tune dpo`` both
    load through it, so they agree on what a valid file is (``source`` required, ids unique).
    """
    file = str(path)
    rows: list[PrefRow] = []
    seen: dict[str, int] = {}
    for i, data in jsonl_objects(path, empty="preference file has no rows"):
        for key in _REQUIRED:
            if key not in data or data[key] is None:
                raise UserError("missing required field", file=file, line=i, field=key)
        try:
            pair = PreferencePair.model_validate(data)
        except ValidationError as e:
            loc, msg = pydantic_message(e)
            raise UserError(msg, file=file, line=i, field=loc) from None
        if pair.id in seen:
            raise UserError(f"duplicate id {pair.id!r} (first on line {seen[pair.id]})", file=file, line=i,
                            field="id")
        seen[pair.id] = i
        rows.append(PrefRow(i, pair, data))
    return PrefFile(file, rows, file_digest(path))
