"""Pure domain types. Depends on stdlib, pydantic, numpy, PyYAML and jsonschema only."""

from tunegate.core.candidate import DEFAULT_MODEL, CandidateSpec, DecodingParams, load_candidate
from tunegate.core.dataset import DEFAULT_SPLIT_RATIOS, Dataset, SplitRatios, assign_split
from tunegate.core.example import Example, ExpectedToolCall, Message, Split, ToolCall
from tunegate.core.hashing import canonical_json, content_hash, file_digest, short
from tunegate.core.loading import load_dataset
from tunegate.core.prompt import FewShot, PromptTemplate, placeholders, render_text, row_variables
from tunegate.core.request import GenerationRequest
from tunegate.core.result import EvalResult, EvalStatus, ModelOutput, Usage

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_SPLIT_RATIOS",
    "CandidateSpec",
    "Dataset",
    "DecodingParams",
    "EvalResult",
    "EvalStatus",
    "Example",
    "ExpectedToolCall",
    "FewShot",
    "GenerationRequest",
    "Message",
    "ModelOutput",
    "PromptTemplate",
    "Split",
    "SplitRatios",
    "ToolCall",
    "Usage",
    "assign_split",
    "canonical_json",
    "content_hash",
    "file_digest",
    "load_candidate",
    "load_dataset",
    "placeholders",
    "render_text",
    "row_variables",
    "short",
]
