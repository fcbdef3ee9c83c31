"""Value types of the prompt registry and the grammar of references (``name@label``, ``name@v7``).

A reference names one immutable version: ``name`` / ``name@latest`` (the newest version),
``name@v7`` or ``name@7`` (version 7), ``name@production`` (wherever that label points now).
Names and labels share one spelling, ``[a-z0-9][a-z0-9._-]*``, so a reference survives shells,
YAML and URLs unquoted. A label may not look like a version (``v7``, ``7``) or be ``latest``:
those spellings already mean something in a reference, and an ambiguous reference is a way to
ship the wrong prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from tunegate.core.example import Message
from tunegate.core.hashing import content_hash
from tunegate.core.prompt import PromptTemplate
from tunegate.errors import UserError

__all__ = [
    "LATEST",
    "NAME_PATTERN",
    "CompiledPrompt",
    "HistoryEvent",
    "LabelMove",
    "PromptRef",
    "PromptStore",
    "PromptVersion",
    "check_label",
    "check_name",
    "parse_ref",
    "parse_version",
    "prompt_hash",
]

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
_VERSION = re.compile(r"v?([0-9]+)")
#: The implicit label that always means "the newest version"; it cannot be set by hand.
LATEST = "latest"
_MAX_LEN = 100


def check_name(name: str, *, what: str = "prompt name") -> str:
    """``name`` if it is a valid prompt name, else a UserError saying what is allowed."""
    if not isinstance(name, str) or len(name) > _MAX_LEN or not NAME_PATTERN.fullmatch(name):
        raise UserError(f"invalid {what} {name!r}: use lower-case letters, digits, '.', '_' and '-', "
                        f"starting with a letter or digit (at most {_MAX_LEN} characters)", field="prompt")
    return name


def check_label(label: str) -> str:
    """``label`` if it can be set by hand: a valid name that is neither ``latest`` nor version-like."""
    check_name(label, what="label")
    if label == LATEST:
        raise UserError("'latest' is reserved: it always means the newest version", field="label")
    if _VERSION.fullmatch(label):
        raise UserError(f"label {label!r} looks like a version number; choose a word (production, staging...)",
                        field="label")
    return label


def parse_version(text: str | int) -> int:
    """``7``, ``"7"`` or ``"v7"`` → 7."""
    if isinstance(text, int) and not isinstance(text, bool):
        n = text
    else:
        m = _VERSION.fullmatch(str(text).strip())
        if m is None:
            raise UserError(f"invalid version {text!r}: use a number like 3 or v3", field="version")
        n = int(m.group(1))
    if n < 1:
        raise UserError(f"invalid version {text!r}: versions start at v1", field="version")
    return n


@dataclass(frozen=True)
class PromptRef:
    """A parsed reference: exactly one of ``version`` and ``label`` is set (``latest`` is a label)."""

    name: str
    version: int | None = None
    label: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@v{self.version}" if self.version is not None else f"{self.name}@{self.label}"


def parse_ref(ref: str) -> PromptRef:
    """Parse ``name``, ``name@latest``, ``name@vN``, ``name@N`` or ``name@label``."""
    if not isinstance(ref, str) or not ref.strip():
        raise UserError("empty prompt reference; use name@label, name@vN or name", field="prompt")
    name, sep, tail = ref.strip().partition("@")
    check_name(name)
    if not sep or tail == LATEST:
        return PromptRef(name, label=LATEST)
    if _VERSION.fullmatch(tail):
        return PromptRef(name, version=parse_version(tail))
    check_name(tail, what="label")
    return PromptRef(name, label=tail)


def prompt_hash(template: PromptTemplate) -> str:
    """Content hash of a template (``ref`` excluded): the same dict a candidate's identity hashes."""
    return content_hash(template.model_dump(mode="json", exclude={"ref"}), prefix="prompt-")


class PromptVersion(BaseModel):
    """One immutable, numbered version of a named prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Prompt name.")
    version: int = Field(ge=1, description="1, 2, ... in commit order.")
    template: PromptTemplate = Field(description="The prompt content (its ref is unset).")
    hash: str = Field(description="Content hash of the template (prompt-...).")
    message: str = Field(description="Why this version exists (the commit message).")
    author: str | None = Field(default=None, description="Who or what committed it (a user, an optimizer).")
    lineage: dict[str, Any] = Field(default_factory=dict,
                                    description="Free-form JSON: parent version, optimizer, config and dataset hashes.")
    labels: list[str] = Field(default_factory=list, description="Labels pointing at this version now.")
    created_at: str = Field(description="Commit time (UTC, ISO 8601).")
    reused: bool = Field(default=False, description="True when a commit found identical content at the latest "
                         "version and stored nothing new (no empty commits).")

    @property
    def ref(self) -> str:
        """The exact, never-moving reference ``name@vN``."""
        return f"{self.name}@v{self.version}"


class LabelMove(BaseModel):
    """A label set or moved (``previous`` is None when the label is new)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Prompt name.")
    label: str = Field(description="The label moved.")
    version: int = Field(description="Version it points at after the move.")
    previous: int | None = Field(default=None, description="Version it pointed at before.")
    moved_at: str | None = Field(default=None, description="When; None when nothing moved.")
    moved: bool = Field(default=True, description="False when the label already pointed at this version.")


class HistoryEvent(BaseModel):
    """One entry of a prompt's history: a commit or a label move."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["commit", "label"] = Field(description="commit = new version; label = a label moved.")
    at: str = Field(description="When (UTC, ISO 8601).")
    version: int = Field(description="Version committed, or the label's new target.")
    message: str | None = Field(default=None, description="Commit message (commits).")
    author: str | None = Field(default=None, description="Commit author (commits).")
    hash: str | None = Field(default=None, description="Content hash (commits).")
    label: str | None = Field(default=None, description="Label moved (label events).")
    previous: int | None = Field(default=None, description="Label's previous target (label events).")


class CompiledPrompt(BaseModel):
    """A template filled with variables: the messages a model would receive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ref: str | None = Field(default=None, description="name@vN when compiled from the registry.")
    hash: str = Field(description="Content hash of the template compiled.")
    messages: list[Message] = Field(description="Rendered chat messages, in order.")
    variables: list[str] = Field(description="Variables the template uses.")
    unused: list[str] = Field(default_factory=list, description="Variables given but not used by the template.")
    row: str | None = Field(default=None, description="Dataset row id when compiled against a row.")


class PromptStore(Protocol):
    """The raw store methods the registry needs (``tunegate.store.sqlite.Store`` implements them).

    A protocol rather than an import keeps ``prompts`` independent of the store module: the
    registry can sit beside the store or above it in the layering without changing.
    """

    def prompt_commit(self, name: str, template: dict[str, Any], content_hash: str, message: str,
                      author: str | None, lineage: dict[str, Any],
                      labels: Sequence[str] = ...) -> tuple[dict[str, Any], bool, list[dict[str, Any]]]: ...

    def prompt_move_label(self, name: str, label: str, version: int) -> dict[str, Any] | None: ...

    def prompt_version(self, name: str, version: int | None = None) -> dict[str, Any] | None: ...

    def prompt_versions(self, name: str) -> list[dict[str, Any]]: ...

    def prompt_names(self) -> list[dict[str, Any]]: ...

    def prompt_labels(self, name: str) -> dict[str, int]: ...

    def prompt_label_events(self, name: str) -> list[dict[str, Any]]: ...
