"""How a local candidate's engine enters its identity, without importing any engine.

Why in core: the candidate hash (``core.candidate``) must name the engine and its quantization,
because they change the text a model writes, and core may not import ``tunegate.backends`` (the
layering contract). So the label is computed here from strings and one small file read; the
backends import these names from here, never the other way round.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunegate.errors import UserError

__all__ = ["AUTO_DTYPE", "DTYPES", "ENGINES", "FAST_FORMAT", "engine_label", "is_prompt_learning"]

DTYPES = ("auto", "float32", "bfloat16", "float16")
#: ``fast``: the int8 Llama engine (tunegate.backends.fastlm); ``transformers``: HF generate.
ENGINES = ("fast", "transformers")
#: What ``dtype="auto"`` means on CPU (see tunegate.backends.local for why not bf16).
AUTO_DTYPE = "float32"
#: The fast engine's weight format; bump it when its numerics change (it is in every local hash).
FAST_FORMAT = "w8a8-v1"


def is_prompt_learning(adapter: str) -> bool:
    """True for PEFT prompt-learning adapters (prompt/prefix/p-tuning), read from adapter_config.json."""
    try:
        cfg = json.loads((Path(adapter) / "adapter_config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and str(cfg.get("peft_type", "")).upper() in {
        "PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "MULTITASK_PROMPT_TUNING", "CPT"}


def engine_label(engine: str, dtype: str, adapter: str | None) -> str:
    """The engine as it enters identities: ``fast-w8a8-v1`` or ``transformers-<dtype>``.

    A prompt-learning adapter forces transformers (the fast engine has no virtual tokens).
    """
    if engine not in ENGINES:
        raise UserError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}", field="engine")
    if engine == "fast" and not (adapter is not None and is_prompt_learning(adapter)):
        return f"fast-{FAST_FORMAT}"
    return f"transformers-{AUTO_DTYPE if dtype == 'auto' else dtype}"
