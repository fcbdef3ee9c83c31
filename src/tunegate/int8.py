"""Exact int8 arithmetic shared by tunegate's two hand-written torch engines (the ``fast`` generation
engine, ``backends.fastlm``, and the packed cross-encoder of the groundedness family,
``evaluators.nli_engine``).

Why one module: both engines rest on the same argument for batch invariance, and it must hold in
both or neither.

* **Weights:** symmetric int8 per output channel (scale = the row's absolute maximum / 127).
* **Activations:** symmetric int8 per *token* (scale = that token's absolute maximum / 127). A
  maximum is exact in any reduction order, so a token's scale and codes do not depend on the other
  tokens in the matrix.
* The matmul ``torch._int_mm`` accumulates int8 products in int32, which is exact: a token's result
  does not depend on how many tokens share the GEMM or on the kernel's blocking. fp32 GEMMs make no
  such promise (MKL picks kernels by shape).

It sits below ``evaluators`` and ``backends`` (which may not import each other) and above ``core``
(which may not import torch); torch is imported inside the functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["per_channel_int8", "per_token_int8", "read_safetensors_folder"]


def per_channel_int8(w: Any) -> tuple[Any, Any]:
    """Weights ``[N, K]`` → (int8 ``[N, K]``, fp32 scale ``[N]``), symmetric per output channel."""
    import torch

    scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.contiguous(), scale.float().contiguous()


def per_token_int8(x: Any) -> tuple[Any, Any]:
    """Activations ``[T, K]`` → (int8 ``[T, K]``, fp32 scale ``[T, 1]``), symmetric per token."""
    import torch

    s = x.abs().amax(dim=-1, keepdim=True).clamp_min_(1e-12).div_(127.0)
    return torch.round(x / s).to(torch.int8), s


def read_safetensors_folder(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``config.json``, every ``*.safetensors`` tensor) of a Hugging Face model folder."""
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"no .safetensors weights in {folder}")
    state: dict[str, Any] = {}
    for f in files:
        state.update(load_file(str(f)))
    return config, state
