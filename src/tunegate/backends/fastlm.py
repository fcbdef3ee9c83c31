"""The ``fast`` engine: a hand-written Llama forward in torch, int8 weights *and* activations.

Why it is built this way (measurements in ``docs/decisions/0014-embedded-engine.md``):

* **Batch-invariant by construction.** Every linear layer quantizes its input *per token* to int8
  (scale = that token's absolute maximum / 127; a maximum is exact whatever the reduction order)
  and multiplies with per-output-channel int8 weights in integer arithmetic (``torch._int_mm``):
  an int32 sum is exact, so a token's output bits do not depend on how many other tokens share the
  matrix multiply. fp32 GEMMs give no such guarantee (kernel and blocking choices depend on M).
  Attention runs **per row** on that row's own KV cache (no padding, no neighbours); norms, RoPE
  and activations are per-token elementwise or inner-dimension reductions. A row's tokens are thus
  the same alone, in a batch of 16, or next to a 1,000-token tool prompt.
* **Fast on a 2-core AVX512-VNNI CPU.** int8 GEMMs run ~4x faster than fp32 there; weights are
  4x smaller (the 49k-vocabulary head alone is 113 MB in fp32). No padding: rows are packed
  (ragged) for the linear layers, prefill processes all rows' prompts in one pass, and a row that
  hits end-of-sequence or a stop string leaves the batch at once instead of costing compute
  until the longest row ends (HF ``generate`` keeps it).
* **Text is not identical to fp32** (W8A8 rounding); the release example checks that scores are
  not worse. The transformers engine stays for training and for exact fp32 output.

Only Llama-architecture models (SmolLM2 and friends) are supported; others must use
``engine: transformers``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.engines import FAST_FORMAT
from tunegate.int8 import per_channel_int8, per_token_int8, read_safetensors_folder

__all__ = ["FORMAT", "FastLlama", "RowSpec", "load_engine", "load_state_dict", "quantize_state", "sample_token"]


@dataclass(frozen=True)
class RowSpec:
    """One row to generate: prompt token ids and its own decoding settings."""

    prompt: list[int]
    max_new: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    #: Called with the row's generated ids so far; True ends the row (stop strings).
    stop: Callable[[list[int]], bool] | None = None


def load_state_dict(folder: Path, adapter: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, fp32 state dict) of an HF Llama folder; a LoRA adapter is merged into the weights."""
    import torch

    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise ValueError(f"the fast engine runs Llama models only, not {config.get('model_type')!r}; "
                         "use engine: transformers")
    if adapter is None:
        config, state = read_safetensors_folder(folder)
        return config, {k: v.float() for k, v in state.items()}
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    merged = PeftModel.from_pretrained(model, adapter, is_trainable=False).merge_and_unload()
    return config, {k: v.detach().float() for k, v in merged.state_dict().items()}


#: Per-output-channel symmetric int8 (tunegate.int8, shared with the cross-encoder engine).
_q8 = per_channel_int8


def quantize_state(config: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """The engine's tensors: fused int8 QKV / gate-up, int8 O / down / head, fp32 norms and embedding."""
    import torch

    out: dict[str, Any] = {"embed": state["model.embed_tokens.weight"].contiguous(),
                           "norm": state["model.norm.weight"].contiguous()}
    head = state.get("lm_head.weight", state["model.embed_tokens.weight"])
    out["head.q"], out["head.s"] = _q8(head)
    for i in range(int(config["num_hidden_layers"])):
        p = f"model.layers.{i}."
        qkv = torch.cat([state[p + f"self_attn.{n}_proj.weight"] for n in ("q", "k", "v")])
        gu = torch.cat([state[p + f"mlp.{n}_proj.weight"] for n in ("gate", "up")])
        for name, w in (("qkv", qkv), ("o", state[p + "self_attn.o_proj.weight"]), ("gu", gu),
                        ("down", state[p + "mlp.down_proj.weight"])):
            out[f"{i}.{name}.q"], out[f"{i}.{name}.s"] = _q8(w)
        out[f"{i}.ln1"] = state[p + "input_layernorm.weight"].contiguous()
        out[f"{i}.ln2"] = state[p + "post_attention_layernorm.weight"].contiguous()
    return out


class FastLlama:
    """A quantized Llama ready to generate; not thread-safe (the backend runs it on one thread)."""

    def __init__(self, config: dict[str, Any], tensors: dict[str, Any]) -> None:
        import torch

        self._t = tensors
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.kv_heads = int(config.get("num_key_value_heads", self.heads))
        hidden = int(config["hidden_size"])
        self.head_dim = int(config.get("head_dim") or hidden // self.heads)
        self.eps = float(config.get("rms_norm_eps", 1e-6))
        self.context = int(config.get("max_position_embeddings", 2048))
        rope = config.get("rope_parameters") or {}
        theta = float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
        if (rope.get("rope_type") or "default") != "default" or config.get("rope_scaling"):
            raise ValueError("the fast engine supports default RoPE only; use engine: transformers")
        inv = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.int64).float() / self.head_dim))
        freqs = torch.arange(self.context, dtype=torch.float32)[:, None] * inv[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        self._cos, self._sin = emb.cos(), emb.sin()
        self._q_dim = self.heads * self.head_dim
        self._kv_dim = self.kv_heads * self.head_dim
        self._scale = 1.0 / math.sqrt(self.head_dim)

    # -- building blocks -------------------------------------------------------------------------

    def _lin(self, x: Any, name: str) -> Any:
        """int8 x int8 -> int32 matmul with per-token activation scale (exact, batch-invariant)."""
        import torch

        q, s = per_token_int8(x)
        y = torch._int_mm(q, self._t[name + ".q"].t())
        return y.float().mul_(s).mul_(self._t[name + ".s"])

    def _norm(self, x: Any, w: Any) -> Any:
        import torch

        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + self.eps) * w

    def _rope(self, x: Any, cos: Any, sin: Any) -> Any:
        """x [T, H, D]; cos/sin [T, 1, D] (HF's rotate_half convention)."""
        import torch

        half = self.head_dim // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rot * sin

    # -- forward ---------------------------------------------------------------------------------

    def _forward(self, ids: Any, pos: Any, slots: Any, spans: list[tuple[int, int, int, int]],
                 cache: list[tuple[Any, Any]], last: Any) -> Any:
        """Logits of the tokens at ``last``. spans: per row (first token, n tokens, cache base, len after).

        Tokens of all rows are packed along T; the KV cache is [kv_heads, slots, head_dim] per layer,
        each row owning a contiguous slot range.
        """
        import torch
        import torch.nn.functional as F

        t = self._t
        x = t["embed"][ids]
        cos, sin = self._cos[pos][:, None, :], self._sin[pos][:, None, :]
        n_tok = ids.shape[0]
        for i in range(self.layers):
            h = self._norm(x, t[f"{i}.ln1"])
            qkv = self._lin(h, f"{i}.qkv")
            q = self._rope(qkv[:, :self._q_dim].view(n_tok, self.heads, self.head_dim), cos, sin)
            k = self._rope(qkv[:, self._q_dim:self._q_dim + self._kv_dim].view(n_tok, self.kv_heads, self.head_dim),
                           cos, sin)
            v = qkv[:, self._q_dim + self._kv_dim:].view(n_tok, self.kv_heads, self.head_dim)
            kc, vc = cache[i]
            kc.index_copy_(1, slots, k.transpose(0, 1))
            vc.index_copy_(1, slots, v.transpose(0, 1))
            attn = torch.empty(n_tok, self.heads, self.head_dim)
            for first, n, base, length in spans:
                qr = q[first:first + n].transpose(0, 1).unsqueeze(0)
                kr = kc[:, base:base + length].unsqueeze(0)
                vr = vc[:, base:base + length].unsqueeze(0)
                o = F.scaled_dot_product_attention(qr, kr, vr, is_causal=n > 1, enable_gqa=True,
                                                   scale=self._scale)
                attn[first:first + n] = o[0].transpose(0, 1)
            x = x + self._lin(attn.view(n_tok, self._q_dim), f"{i}.o")
            h = self._norm(x, t[f"{i}.ln2"])
            gu = self._lin(h, f"{i}.gu")
            inter = gu.shape[1] // 2
            x = x + self._lin(F.silu(gu[:, :inter]) * gu[:, inter:], f"{i}.down")
        x = self._norm(x[last], t["norm"])
        return self._lin(x, "head")

    # -- generation ------------------------------------------------------------------------------

    def generate(self, rows: Sequence[RowSpec], eos: set[int],
                 trace: Callable[[int, Any], None] | None = None) -> list[tuple[list[int], bool]]:
        """Per row: (generated ids without the end token, ended by eos/stop rather than length).

        ``trace(row index, logits)`` sees every next-token distribution (tests compare them bitwise).
        """
        import torch

        for r in rows:
            if not r.prompt:
                raise ValueError("empty prompt")
            if len(r.prompt) + r.max_new > self.context:
                raise ValueError(f"prompt ({len(r.prompt)} tokens) + max_tokens ({r.max_new}) exceeds the "
                                 f"model context ({self.context})")
        caps = [len(r.prompt) + r.max_new for r in rows]
        bases = [sum(caps[:j]) for j in range(len(rows))]
        cache = [(torch.empty(self.kv_heads, sum(caps), self.head_dim),
                  torch.empty(self.kv_heads, sum(caps), self.head_dim)) for _ in range(self.layers)]
        gens = [torch.Generator().manual_seed(r.seed) if r.temperature > 0 else None for r in rows]
        out: list[list[int]] = [[] for _ in rows]
        done = [False] * len(rows)
        lengths = [0] * len(rows)
        active = list(range(len(rows)))
        feed = {j: list(r.prompt) for j, r in enumerate(rows)}
        with torch.inference_mode():
            while active:
                ids: list[int] = []
                pos: list[int] = []
                slots: list[int] = []
                spans: list[tuple[int, int, int, int]] = []
                last: list[int] = []
                for j in active:
                    toks = feed[j]
                    start = lengths[j]
                    spans.append((len(ids), len(toks), bases[j], start + len(toks)))
                    ids.extend(toks)
                    pos.extend(range(start, start + len(toks)))
                    slots.extend(range(bases[j] + start, bases[j] + start + len(toks)))
                    lengths[j] = start + len(toks)
                    last.append(len(ids) - 1)
                logits = self._forward(torch.tensor(ids), torch.tensor(pos), torch.tensor(slots), spans, cache,
                                       torch.tensor(last))
                greedy = logits.argmax(dim=-1).tolist()  # one call for all rows (argmax is exact per row)
                still: list[int] = []
                for k, j in enumerate(active):
                    if trace is not None:
                        trace(j, logits[k])
                    gen = gens[j]
                    tok = greedy[k] if gen is None else sample_token(logits[k], rows[j].temperature,
                                                                     rows[j].top_p, gen)
                    if tok in eos:
                        done[j] = True
                        continue
                    out[j].append(tok)
                    stop = rows[j].stop
                    if stop is not None and stop(out[j]):
                        done[j] = True
                        continue
                    if len(out[j]) < rows[j].max_new:
                        feed[j] = [tok]
                        still.append(j)
                active = still
        return [(o, d) for o, d in zip(out, done, strict=True)]


def sample_token(logits: Any, temperature: float, top_p: float, gen: Any) -> int:
    """One token drawn from ``gen`` (the row's own generator): temperature, then top-p (the smallest
    set of tokens reaching ``top_p``, at least one), as in the OpenAI API; no top-k. Both engines
    draw with this, so a seeded request samples the same way on either."""
    import torch

    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        p_sorted, order = probs.sort(descending=True)
        keep = (p_sorted.cumsum(0) - p_sorted) < top_p
        return int(order[torch.multinomial(p_sorted * keep, 1, generator=gen)])
    return int(torch.multinomial(probs, 1, generator=gen))


#: Bumped when the quantized format changes (it is part of the on-disk cache key and the identity).
FORMAT = FAST_FORMAT  # defined in core: the candidate hash names it without importing torch


def load_engine(folder: Path, adapter: str | None, key: str, cache_dir: Path | None) -> FastLlama:
    """The quantized engine for ``folder`` (+ merged ``adapter``), from ``cache_dir/<key>`` when there.

    The cache matters for LoRA candidates: merging needs transformers + PEFT (seconds); reading
    the int8 safetensors back takes a fraction of that. Written to a temporary file and renamed,
    so a concurrent reader never sees half a file.
    """
    import os
    import tempfile

    from safetensors.torch import load_file, save_file

    config = json.loads((folder / "config.json").read_text())
    path = cache_dir / f"{key}.safetensors" if cache_dir is not None else None
    if path is not None and path.exists():
        return FastLlama(config, load_file(str(path)))
    config, state = load_state_dict(folder, adapter)
    tensors = quantize_state(config, state)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file(tensors, tmp, metadata={"format": FORMAT})
        os.replace(tmp, path)
        _prune(path.parent, keep=KEEP)
    return FastLlama(config, tensors)


#: Converted engines kept on disk (~140 MB each for SmolLM2); older ones are removed.
KEEP = 8


def _prune(folder: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently written engines (a tuning run makes many adapters)."""
    files = sorted(folder.glob("fast-*.safetensors"), key=lambda f: f.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        old.unlink(missing_ok=True)
