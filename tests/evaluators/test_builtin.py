"""The built-in registration: every deterministic evaluator is reachable by name, with metadata."""

from __future__ import annotations

from tunegate.evaluators.base import ROW_FIELDS
from tunegate.evaluators.builtin import BUILTINS, register
from tunegate.evaluators.registry import Registry, default_registry, load_suite

NAMES = ["answer_relevancy", "contains", "content_safety", "custom", "exact_match", "factual_accuracy",
         "faithfulness", "groundedness", "hallucination", "json_validation", "numeric_match", "pii",
         "prompt_adherence", "refusal", "regex", "task_completion", "token_f1", "tool_selection"]


def test_register_adds_every_builtin() -> None:
    reg = Registry()
    register(reg)
    assert reg.names() == NAMES
    assert set(NAMES) <= set(default_registry().names())


def test_builtins_declare_name_version_description_requires() -> None:
    for cls in BUILTINS:
        assert cls.name and cls.version and cls.description, cls
        assert set(cls.requires) <= ROW_FIELDS, cls


def test_load_suite_with_options() -> None:
    suite = load_suite(["json_validation", "tool_selection", "numeric_match"])
    assert [e.name for e in suite] == ["json_validation", "tool_selection", "numeric_match"]
    assert all(e.hash.startswith("ev-") for e in suite)
