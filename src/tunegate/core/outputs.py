"""Outputs produced elsewhere (production logs, another harness), scored like any run.

A JSONL file of ``{"id": ..., "output": "text"}`` and/or ``{"id": ..., "tool_calls": [...]}``
(optionally ``"sample_index"`` for several samples per row). The run's candidate identity is the
file's digest, so re-scoring the same file is recognised as the same candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from tunegate.core.dataset import Dataset
from tunegate.core.example import ToolCall
from tunegate.core.hashing import file_digest
from tunegate.core.jsonl import jsonl_objects
from tunegate.core.loading import read_text
from tunegate.core.result import ModelOutput
from tunegate.errors import UserError, field_path

__all__ = ["OutputsFile", "load_outputs"]

_ALLOWED = {"id", "output", "tool_calls", "sample_index", "model", "latency_s", "usage"}


@dataclass(frozen=True)
class OutputsFile:
    """Parsed outputs: row id → samples in index order."""

    path: str
    digest: str
    outputs: dict[str, list[ModelOutput]]

    @property
    def hash(self) -> str:
        return "out-" + self.digest

    def check_against(self, ds: Dataset) -> None:
        """Every output must belong to a dataset row (a stray id is usually a wrong file)."""
        for rid in self.outputs:
            if rid not in ds:
                raise UserError(f"output for id {rid!r} which is not in the dataset", file=self.path, field="id")


def load_outputs(path: str | Path) -> OutputsFile:
    file = str(path)
    text = read_text(Path(path))
    if not text.strip():
        raise UserError("outputs file is empty", file=file)
    found: dict[str, dict[int, ModelOutput]] = {}
    for ln, rec in jsonl_objects(file, text=text, what="each line {id, output}"):
        unknown = set(rec) - _ALLOWED
        if unknown:
            raise UserError(f"unknown field(s) {sorted(unknown)}", file=file, line=ln, field=sorted(unknown)[0])
        rid = rec.get("id")
        if isinstance(rid, int) and not isinstance(rid, bool):
            rid = str(rid)
        if not isinstance(rid, str) or not rid:
            raise UserError("missing or invalid id", file=file, line=ln, field="id")
        if "output" not in rec and "tool_calls" not in rec:
            raise UserError("needs 'output' or 'tool_calls'", file=file, line=ln, field="output")
        out = rec.get("output", "")
        if out is None:
            out = ""
        if not isinstance(out, str):
            raise UserError("must be a string", file=file, line=ln, field="output")
        idx = rec.get("sample_index", 0)
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
            raise UserError("must be a non-negative integer", file=file, line=ln, field="sample_index")
        try:
            calls = [ToolCall.model_validate(c) for c in rec.get("tool_calls") or []]
        except ValidationError as e:
            raise UserError(e.errors()[0]["msg"], file=file, line=ln,
                            field=field_path(("tool_calls", *e.errors()[0]["loc"]), "tool_calls")) from None
        if idx in found.get(rid, {}):
            raise UserError(f"duplicate output for id {rid!r} sample {idx}", file=file, line=ln, field="id")
        found.setdefault(rid, {})[idx] = ModelOutput(text=out, tool_calls=calls, model=rec.get("model"))
    outputs = {}
    for rid, samples in found.items():
        if sorted(samples) != list(range(len(samples))):
            raise UserError(f"samples of id {rid!r} must be numbered 0..n-1", file=file, field="sample_index")
        outputs[rid] = [samples[i] for i in range(len(samples))]
    return OutputsFile(path=file, digest=file_digest(path), outputs=outputs)
