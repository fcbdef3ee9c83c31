"""Prompt registry: immutable, numbered prompt versions, movable labels, history, diff, strict compile.

>>> from tunegate.store.sqlite import Store                                 # doctest: +SKIP
>>> reg = PromptRegistry(Store("tunegate.db"))                             # doctest: +SKIP
>>> v = reg.commit("support-agent", PromptTemplate(system="Be brief."), "first cut",
...                labels=["staging"])                                      # doctest: +SKIP
>>> reg.get("support-agent@staging").ref                                  # doctest: +SKIP
'support-agent@v1'

Candidates refer to a version with ``prompt: support-agent@production``; :func:`resolve_candidate`
turns that into content before a run. See docs/prompts.md.
"""

from tunegate.prompts.compiler import compile_template, diff_templates
from tunegate.prompts.files import load_prompt_file
from tunegate.prompts.models import (
    LATEST,
    CompiledPrompt,
    HistoryEvent,
    LabelMove,
    PromptRef,
    PromptStore,
    PromptVersion,
    parse_ref,
    prompt_hash,
)
from tunegate.prompts.registry import PromptRegistry
from tunegate.prompts.resolve import apply_version, is_resolved, resolve_candidate

__all__ = [
    "LATEST",
    "CompiledPrompt",
    "HistoryEvent",
    "LabelMove",
    "PromptRef",
    "PromptRegistry",
    "PromptStore",
    "PromptVersion",
    "apply_version",
    "compile_template",
    "diff_templates",
    "is_resolved",
    "load_prompt_file",
    "parse_ref",
    "prompt_hash",
    "resolve_candidate",
]
