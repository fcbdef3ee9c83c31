"""The public API is what ``tunegate/__init__.py`` exports; this pins it."""

from __future__ import annotations

import subprocess
import sys

import tunegate


def test_all_is_pinned() -> None:
    assert sorted(tunegate.__all__) == sorted([
        "CandidateSpec", "Dataset", "DecodingParams", "EvalResult", "Example", "GatePolicy", "ModelOutput",
        "PromptTemplate", "RuleResult", "ToolCall", "TunegateError", "UserError", "Verdict", "__version__",
        "gate", "gate_detailed", "load_candidate", "load_dataset", "load_policy", "run", "tune_prompt",
    ])
    for name in tunegate.__all__:
        assert getattr(tunegate, name) is not None


def test_import_is_light() -> None:
    """``import tunegate`` must not pull torch, transformers, httpx or the engine."""
    code = ("import sys, tunegate; heavy = [m for m in ('torch', 'transformers', 'httpx', 'tunegate.engine', "
            "'sentence_transformers', 'presidio_analyzer') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tune_prompt_is_the_library_workflow() -> None:
    """``tunegate.tune_prompt`` is the API function over the tuning workflow (not a CLI import)."""
    import inspect

    from tunegate import api

    assert tunegate.tune_prompt is api.tune_prompt
    params = inspect.signature(tunegate.tune_prompt).parameters
    for name in ("dataset", "candidate", "policy", "method", "budget", "out_dir", "objective", "db"):
        assert name in params
    assert "tunegate.cli" not in inspect.getsource(api)
