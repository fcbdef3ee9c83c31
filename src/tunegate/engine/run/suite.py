"""Choosing evaluators: the explicit suite a user names, or a default inferred from the rows."""

from __future__ import annotations

from collections.abc import Sequence

from tunegate.core.dataset import Dataset
from tunegate.engine.run.factory import make_judge_backend
from tunegate.errors import UserError
from tunegate.evaluators.base import Evaluator
from tunegate.evaluators.registry import default_registry, load_suite

__all__ = ["DEFAULT_CANDIDATES", "resolve_suite"]

#: Evaluators used when none are named, each kept only if some selected row can feed it.
DEFAULT_CANDIDATES = ("json_validation", "tool_selection", "token_f1")


def resolve_suite(spec: str | Sequence[str] | None, dataset: Dataset) -> list[Evaluator]:
    """``spec`` (names or YAML file) or, when None, the default evaluators that apply to ``dataset``.

    Judge evaluators receive the engine's backend factory here (injection, no global setter).
    """
    if spec is not None:
        return load_suite(spec, judge_backends=make_judge_backend)
    reg = default_registry()
    out = []
    for name in DEFAULT_CANDIDATES:
        if name not in reg.names():
            continue
        ev = reg.create(name, judge_backends=make_judge_backend)
        if any(not ev.missing(ex) for ex in dataset):
            out.append(ev)
    if not out:
        raise UserError("no default evaluator applies to these rows (no schema, expected tool calls or "
                        "expected answers); name evaluators with --evaluators", file=dataset.source,
                        field="evaluators")
    return out
