"""A packed, int8 forward for the BERT cross-encoder: batch-invariant by construction, ~2x fp32 on CPU.

WHY a hand-written forward instead of ``AutoModelForSequenceClassification`` (issue 16: groundedness
must reach 50 rows/s on ~300-token contexts on 2 CPU cores, and a gate needs a pair's score to be
the same whoever its batch neighbours are):

* **Ragged packing, no padding.** Every pair's tokens are concatenated along one axis for the
  linear layers (most of the compute), and attention runs per pair on its own slice
  (``scaled_dot_product_attention``, non-causal, no mask). Length-sorted batches still pad; a packed
  batch computes exactly the tokens that exist.
* **W8A8 with a per-token activation scale.** Each linear layer quantizes its input row by row
  (scale = that token's absolute maximum / 127: a maximum is exact whatever the reduction order)
  and multiplies with per-output-channel int8 weights in integer arithmetic (``torch._int_mm``,
  int32 accumulation, exact). A token's output bits therefore do not depend on how many other
  tokens share the multiply, which an fp32 GEMM does not promise (its blocking depends on M).
  torch's ``quantize_dynamic`` scales activations per *batch* instead, so a pair moved by up to
  0.065 with its neighbours; that is why it was rejected. On this AVX512-VNNI CPU int8 GEMMs run
  ~4x the fp32 rate.
* **fp32 where precision matters and compute does not:** embeddings, LayerNorm, GELU, softmax
  (inside SDPA), the pooler and the 3-way classifier (run one pair at a time, so their fp32 matmul
  never sees a neighbour either).

The engine is an alternative *inference* of the same shipped weights; the grounding head is fitted
on its outputs (``inference.engine`` in the model manifest), and :mod:`tunegate.evaluators.nli`
selects it. Everything heavy (torch, safetensors) is imported lazily.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunegate.int8 import per_channel_int8, per_token_int8, read_safetensors_folder

__all__ = ["ENGINE", "PackedBert", "load_packed_bert"]

#: The name recorded in manifests and cache keys; bump the suffix when numerics change.
ENGINE = "packed-w8a8-v1"
#: Tokens per packed forward: big enough that each int8 GEMM runs at full rate (M ≥ 256), small
#: enough that the [tokens, 1536] intermediate stays in cache-friendly sizes (~25 MB fp32).
MAX_TOKENS = 1024
#: One inference at a time per process: the workers own the CPU (and torch's thread setting).
_RUN = threading.Lock()


#: Per-output-channel symmetric int8 (tunegate.int8, shared with the generation engine). Kept
#: [N, K] and passed to ``_int_mm`` transposed: ~5% faster than a [K, N] copy here (same result).
_q8 = per_channel_int8


class PackedBert:
    """BERT sequence classifier (post-LN, absolute positions, GELU) over packed pairs."""

    def __init__(self, config: dict[str, Any], state: dict[str, Any], int8: bool = True) -> None:
        import torch

        if config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("the packed engine runs BERT models with absolute positions only")
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"the packed engine implements GELU only, not {config.get('hidden_act')!r}")
        self.int8 = int8
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.head_dim = self.hidden // self.heads
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_positions = int(config.get("max_position_embeddings", 512))
        s = {k.removeprefix("bert."): v.float().contiguous() for k, v in state.items()}
        e = "embeddings."
        self.word = s[e + "word_embeddings.weight"]
        self.pos = s[e + "position_embeddings.weight"]
        self.type = s[e + "token_type_embeddings.weight"]
        self.emb_ln = (s[e + "LayerNorm.weight"], s[e + "LayerNorm.bias"])
        self.lin: dict[str, tuple[Any, Any, Any]] = {}  # name -> (int8 [N, K] + scale, or fp32 [K, N]; bias)
        self.ln: dict[str, tuple[Any, Any]] = {}
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            a = p + "attention.self."
            # The attention scale head_dim^-0.5 is folded into the query projection (one multiply less).
            scale = (self.hidden // self.heads) ** -0.5
            qkv_w = torch.cat([s[a + "query.weight"] * scale, s[a + "key.weight"], s[a + "value.weight"]])
            qkv_b = torch.cat([s[a + "query.bias"] * scale, s[a + "key.bias"], s[a + "value.bias"]])
            for name, w, b in ((f"{i}.qkv", qkv_w, qkv_b),
                               (f"{i}.o", s[p + "attention.output.dense.weight"], s[p + "attention.output.dense.bias"]),
                               (f"{i}.up", s[p + "intermediate.dense.weight"], s[p + "intermediate.dense.bias"]),
                               (f"{i}.down", s[p + "output.dense.weight"], s[p + "output.dense.bias"])):
                if int8:
                    q, sc = _q8(w)
                    self.lin[name] = (q, sc, b)
                else:
                    self.lin[name] = (w.t().contiguous(), None, b)
            self.ln[f"{i}.attn"] = (s[p + "attention.output.LayerNorm.weight"], s[p + "attention.output.LayerNorm.bias"])
            self.ln[f"{i}.out"] = (s[p + "output.LayerNorm.weight"], s[p + "output.LayerNorm.bias"])
        self.pool = (s["pooler.dense.weight"], s["pooler.dense.bias"])
        self.cls = (state["classifier.weight"].float().contiguous(), state["classifier.bias"].float().contiguous())

    # -- building blocks -------------------------------------------------------------------------
    def _linear(self, x: Any, name: str) -> Any:
        """x [T, K] -> [T, N]: int8 x int8 -> int32 with a per-token scale (exact, batch-invariant),
        or plain fp32 (``int8=False``, for comparisons only)."""
        import torch

        w, ws, b = self.lin[name]
        if ws is None:
            return torch.addmm(b, x, w)
        q, s = per_token_int8(x)
        y = torch._int_mm(q, w.t()).float().mul_(s)
        return torch.addcmul(b, y, ws, out=y)

    def _forward(self, ids: Any, pos: Any, types: Any, spans: Sequence[tuple[int, int]]) -> Any:
        """Final hidden states [T, H] of packed tokens; spans = (first token, n tokens) per pair."""
        import torch
        import torch.nn.functional as F

        H, nh, hd = self.hidden, self.heads, self.head_dim
        x = F.layer_norm(self.word[ids] + self.pos[pos] + self.type[types], (H,), *self.emb_ln, self.eps)
        n_tok = ids.shape[0]
        for i in range(self.layers):
            qkv = self._linear(x, f"{i}.qkv")
            attn = torch.empty(n_tok, H)
            for first, n in spans:
                # [3, heads, n, head_dim] for this pair only: its attention never sees a neighbour.
                # (q arrives pre-scaled by head_dim^-0.5: folded into the query weights.)
                q, k, v = qkv[first:first + n].view(n, 3, nh, hd).permute(1, 2, 0, 3)
                p = torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1)
                attn[first:first + n].view(n, nh, hd).copy_(torch.bmm(p, v).transpose(0, 1))
            x = F.layer_norm(x + self._linear(attn, f"{i}.o"), (H,), *self.ln[f"{i}.attn"], self.eps)
            h = F.gelu(self._linear(x, f"{i}.up"))
            x = F.layer_norm(x + self._linear(h, f"{i}.down"), (H,), *self.ln[f"{i}.out"], self.eps)
        return x

    def _head(self, cls: Any) -> Any:
        """Pooler + classifier on one [CLS] vector (one pair per call: an fp32 matvec of fixed shape)."""
        import torch

        pooled = torch.tanh(torch.addmv(self.pool[1], self.pool[0], cls))
        return torch.addmv(self.cls[1], self.cls[0], pooled)

    def _pack(self, input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]],
              first: int, last: int) -> Any:
        """Logits [last - first, labels] of pairs first..last-1, run as one packed forward."""
        import torch

        ids: list[int] = []
        types: list[int] = []
        pos: list[int] = []
        spans: list[tuple[int, int]] = []
        for k in range(first, last):
            m = len(input_ids[k])
            if not 0 < m <= self.max_positions:
                raise ValueError(f"pair {k} has {m} tokens (1..{self.max_positions} allowed)")
            spans.append((len(ids), m))
            ids.extend(input_ids[k])
            types.extend(token_type_ids[k])
            pos.extend(range(m))
        with torch.inference_mode():
            x = self._forward(torch.tensor(ids), torch.tensor(pos), torch.tensor(types), spans)
            return torch.stack([self._head(x[f]) for f, _ in spans])

    def logits(self, input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]],
               max_tokens: int = MAX_TOKENS, threads: int | None = None) -> Any:
        """(n, labels) fp32 logits of tokenized pairs (no padding), packed ``max_tokens`` at a time.
        A pair's logits are the same whichever pairs share its pack.

        Packs run on ``threads`` worker threads (default ``torch.get_num_threads()``), each with
        single-threaded kernels. WHY not torch's intra-op threads: per-pair attention is many small
        ops, and an OpenMP barrier per small op cost 7x the CPU time on the loaded 2-core VM
        (61 vs 9 CPU-seconds for 398 pairs); whole packs per thread never wait on each other. And
        every kernel then runs single-threaded whatever the thread setting, so even an elementwise
        kernel's split between threads cannot depend on the batch. torch's (process-wide) thread
        count is 1 for the duration of the call and restored afterwards; calls are serialised.
        """
        import torch

        n = len(input_ids)
        bounds: list[tuple[int, int]] = []
        i = 0
        while i < n:
            j, total = i, 0
            while j < n and (j == i or total + len(input_ids[j]) <= max_tokens):
                total += len(input_ids[j])
                j += 1
            bounds.append((i, j))
            i = j
        if not bounds:
            return torch.zeros(0, self.cls[0].shape[0])
        workers = min(len(bounds), threads or torch.get_num_threads())
        with _RUN:
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                if workers <= 1:
                    parts = [self._pack(input_ids, token_type_ids, f, t) for f, t in bounds]
                else:
                    from concurrent.futures import ThreadPoolExecutor

                    def run(b: tuple[int, int]) -> Any:
                        torch.set_num_threads(1)  # OpenMP's thread count is per calling thread
                        return self._pack(input_ids, token_type_ids, *b)

                    with ThreadPoolExecutor(workers) as pool:
                        parts = list(pool.map(run, bounds))
            finally:
                torch.set_num_threads(before)
        return torch.cat(parts)


def load_packed_bert(folder: Path, int8: bool = True) -> PackedBert:
    """The packed engine for the HF BERT folder ``folder`` (``config.json`` + ``model.safetensors``)."""
    config, state = read_safetensors_folder(folder)
    return PackedBert(config, state, int8=int8)
