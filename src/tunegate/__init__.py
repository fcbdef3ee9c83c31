"""tunegate: decide, with evidence, whether a tuned LLM candidate may replace the model in production."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tunegate")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

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
from tunegate.errors import TunegateError, UserError

__all__ = [
    "CandidateSpec",
    "Dataset",
    "DecodingParams",
    "EvalResult",
    "Example",
    "ModelOutput",
    "PromptTemplate",
    "ToolCall",
    "TunegateError",
    "UserError",
    "__version__",
    "load_candidate",
    "load_dataset",
]
