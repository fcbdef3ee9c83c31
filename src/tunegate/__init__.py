"""tunegate: decide, with evidence, whether a tuned LLM candidate may replace the model in production.

The domain types import eagerly (they are light); the API functions (``run``, ``gate``,
``gate_detailed``, ``tune_prompt``) import the engine on first use so ``import tunegate`` stays cheap.
"""

from __future__ import annotations

from typing import Any

from tunegate._version import __version__
from tunegate.core import (
    CandidateSpec,
    Dataset,
    DecodingParams,
    EvalResult,
    Example,
    ModelOutput,
    PromptTemplate,
    ToolCall,
    load_candidate,
    load_dataset,
)
from tunegate.core.policy import GatePolicy, load_policy
from tunegate.core.verdict import RuleResult, Verdict
from tunegate.errors import TunegateError, UserError

__all__ = [
    "CandidateSpec",
    "Dataset",
    "DecodingParams",
    "EvalResult",
    "Example",
    "GatePolicy",
    "ModelOutput",
    "PromptTemplate",
    "RuleResult",
    "ToolCall",
    "TunegateError",
    "UserError",
    "Verdict",
    "__version__",
    "gate",
    "gate_detailed",
    "load_candidate",
    "load_dataset",
    "load_policy",
    "run",
    "tune_prompt",
]

_LAZY = {"run", "gate", "gate_detailed", "tune_prompt"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from tunegate import api

        return getattr(api, name)
    raise AttributeError(f"module 'tunegate' has no attribute {name!r}")
