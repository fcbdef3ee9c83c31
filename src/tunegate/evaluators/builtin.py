"""Registration of the built-in evaluators.

Built-ins go through the same ``tunegate.evaluators`` entry point a plugin uses (declared in
pyproject as ``builtin``), so there is one registration path to test. ``default_registry()`` also
calls ``register`` directly so a source tree without installed metadata still has them.
Add a new built-in family by appending its classes to ``BUILTINS``.
"""

from __future__ import annotations

from tunegate.evaluators.adherence import PromptAdherence
from tunegate.evaluators.base import Evaluator
from tunegate.evaluators.factual import FactualAccuracy
from tunegate.evaluators.groundedness import Faithfulness, Groundedness, HallucinationScore
from tunegate.evaluators.json_validation import JSONValidation
from tunegate.evaluators.llm_judges import CustomEvaluation, TaskCompletion
from tunegate.evaluators.pii import PII
from tunegate.evaluators.refusal import Refusal
from tunegate.evaluators.registry import Registry
from tunegate.evaluators.relevancy import AnswerRelevancy
from tunegate.evaluators.safety import ContentSafety
from tunegate.evaluators.text_match import Contains, ExactMatch, NumericMatch, Regex, TokenF1
from tunegate.evaluators.tool_selection import ToolSelection

__all__ = ["BUILTINS", "register"]

#: Every built-in evaluator class, in the order ``tunegate evaluators`` lists families.
BUILTINS: list[type[Evaluator]] = [
    JSONValidation,
    ToolSelection,
    ExactMatch,
    NumericMatch,
    TokenF1,
    Regex,
    Contains,
    PromptAdherence,
    AnswerRelevancy,
    FactualAccuracy,
    Groundedness,
    Faithfulness,
    HallucinationScore,
    ContentSafety,
    Refusal,
    PII,
    TaskCompletion,
    CustomEvaluation,
]


def register(registry: Registry) -> None:
    """Entry point ``tunegate.evaluators:builtin``: add every built-in class to ``registry``."""
    for cls in BUILTINS:
        registry.add(cls)
