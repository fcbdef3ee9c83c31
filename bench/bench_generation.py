"""Generation throughput of the ``local`` backend next to what a user would write by hand.

* **tunegate local**: ``LocalBackend`` with its default engine (``fast``, int8 W8A8 since decision
  0014; ``--engine transformers`` for fp32 HF generate with length-sorted left-padded batches), greedy, ``max_tokens=64``, 16 fixed prompts; batch 1 (one request per call) and batch 8
  (all 16 in one call → two batches of 8).
* **peer, plain HF loop**: ``AutoModelForCausalLM.from_pretrained`` + ``model.generate`` per prompt,
  fp32, batch 1, no ``inference_mode`` — the loop from the transformers docs.

Tokens are generated tokens up to (not including) end-of-sequence, the same count for both; rows
of a batch that finish early still cost compute until the batch ends, which is honest throughput.
The table also says whether the greedy texts agree across the three runs (b1 and b8 must agree:
both engines are batch-invariant; the int8 engine's text differs from the fp32 peer's).
``bench/engine.py`` is the engine-vs-fp32 comparison at batch 1 and 16 (results/engine.json). Timings are from this one run on a shared 2-core machine — other processes
skew them; read the ratios, measured back to back in the same process.
Run: ``python bench/bench_generation.py [--engine transformers [--dtype bfloat16]] [--threads N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from rich.console import Console
from rich.table import Table

from tunegate.backends.base import GenerationRequest
from tunegate.backends.local import LocalBackend
from tunegate.backends.models import resolve_model
from tunegate.core.candidate import DecodingParams
from tunegate.core.example import Message
from tunegate.core.result import ModelOutput

__all__ = ["PROMPTS", "main"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MAX_TOKENS = 64
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "List three prime numbers.",
    "What is 12 times 7?",
    "Give me a synonym for happy.",
    "Who wrote Hamlet?",
    "Translate 'good morning' to Spanish.",
    "Describe a cat in two sentences.",
    "What does a thermometer measure?",
    "Name the largest planet in the solar system and one fact about it.",
    "How many days are in a leap year?",
    "Suggest a name for a bakery.",
    "Why do leaves change colour in autumn?",
    "Summarise the plot of Cinderella in one sentence.",
    "What is the boiling point of water at sea level in Celsius?",
]


def _requests() -> list[GenerationRequest]:
    params = DecodingParams(max_tokens=MAX_TOKENS)
    return [GenerationRequest(messages=(Message(role="user", content=p),), params=params) for p in PROMPTS]


def _local(backend: LocalBackend, batch: bool) -> tuple[float, int, list[str]]:
    reqs = _requests()
    t0 = time.perf_counter()
    if batch:
        outs = asyncio.run(backend.generate(reqs))
    else:
        outs = [o for r in reqs for o in asyncio.run(backend.generate([r]))]
    dt = time.perf_counter() - t0
    assert all(isinstance(o, ModelOutput) for o in outs), outs
    return dt, sum(o.usage.completion_tokens for o in outs), [o.text for o in outs]  # type: ignore[union-attr]


def _peer() -> tuple[float, int, list[str]]:
    """The plain loop a user would write (fp32, batch 1, autograd not disabled)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.generate(**tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                             return_tensors="pt", return_dict=True), max_new_tokens=2)
    texts, tokens = [], 0
    t0 = time.perf_counter()
    for p in PROMPTS:
        inputs = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                         return_tensors="pt", return_dict=True)
        out = model.generate(**inputs, max_new_tokens=MAX_TOKENS)
        new = out[0, inputs["input_ids"].shape[1]:].tolist()
        if new and new[-1] == tok.eos_token_id:
            new = new[:-1]
        tokens += len(new)
        texts.append(tok.decode(new, skip_special_tokens=True))
    return time.perf_counter() - t0, tokens, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="auto", help="transformers engine dtype (auto = float32)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--engine", default="fast", help="LocalBackend engine: fast (default) or transformers")
    args = ap.parse_args()

    backend = LocalBackend(batch_size=8, dtype=args.dtype, threads=args.threads, engine=args.engine)
    t0 = time.perf_counter()
    backend.load()
    load_s = time.perf_counter() - t0
    asyncio.run(backend.generate(_requests()[:2]))  # warm-up: first-call allocations, kernels
    rows = [
        ("peer: HF generate loop, fp32, b1", *_peer()),
        (f"tunegate local, {backend.engine_label}, b1", *_local(backend, batch=False)),
        (f"tunegate local, {backend.engine_label}, b8", *_local(backend, batch=True)),
    ]
    peer_rate = rows[0][2] / rows[0][1]
    table = Table(title=f"Greedy, SmolLM2-135M-Instruct, {len(PROMPTS)} prompts, max_tokens={MAX_TOKENS}")
    for col in ("run", "s", "tokens", "tok/s", "vs peer", "same text"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for name, dt, tokens, texts in rows:
        same = sum(a == b for a, b in zip(texts, rows[0][3], strict=True))
        table.add_row(name, f"{dt:.1f}", str(tokens), f"{tokens / dt:.1f}", f"{tokens / dt / peer_rate:.2f}x",
                      f"{same}/{len(texts)}")
    console = Console()
    console.print(table)
    console.print(f"model load (safetensors, cached): {load_s:.1f}s · torch threads: {args.threads or 'default'} · "
                  "shared 2-core machine: timings are noisy, ratios are from this one run")


if __name__ == "__main__":
    main()
