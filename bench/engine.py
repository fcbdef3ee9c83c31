"""The embedded engines side by side: ``fast`` (int8 W8A8, the default) vs plain transformers fp32.

* **Chat prompts**: the 16 prompts of ``bench_generation.py``, greedy, 64 new tokens, through
  ``LocalBackend`` with ``engine="fast"`` and ``engine="transformers"`` (HF ``generate``, fp32,
  left-padded batches — the loop tunegate used before). Batch 1 = one request per call; batch 16
  = all 16 in one call. Tokens are generated tokens up to end-of-sequence.
* **Release mix**: 16 rows of ``examples/release/dataset.jsonl`` (structured, tool and arithmetic
  rows; the tool rows carry long tool specs, so prefill weighs more), rendered with the release
  incumbent's prompt, 48 new tokens, batch 16.
* **Batch invariance**: the share of prompts whose greedy text is identical at batch 1 and 16, per
  engine, and between the engines (int8 vs fp32: not expected to be identical).

Ratios are from this one run, in one process. On the shared 2-core machine (load 7-11 while this
was written) wall-clock rates swing several-fold with the neighbours' load between two runs a
minute apart, so each run also records the **process CPU time** it used; with ``--threads 1`` (the
default here) CPU seconds are what a quiet core would need, and the ``cpu`` ratio is the one that
does not depend on who else ran meanwhile. Runs are interleaved (fast, transformers, fast, ...) so
load drift hits both engines alike; the load average is recorded next to the figures.
Run: ``python bench/engine.py [--threads N] [--out bench/results/engine.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generation import PROMPTS
from tunegate.backends.base import GenerationRequest
from tunegate.backends.local import LocalBackend
from tunegate.core.candidate import DecodingParams, load_candidate
from tunegate.core.example import Message
from tunegate.core.result import ModelOutput

__all__ = ["main"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
RELEASE = REPO / "examples" / "release"


def _chat() -> list[GenerationRequest]:
    params = DecodingParams(max_tokens=64)
    return [GenerationRequest(messages=(Message(role="user", content=p),), params=params) for p in PROMPTS]


def _release(n: int = 16) -> list[GenerationRequest]:
    """n rows spread over the release dataset (every task type), as the release incumbent renders them."""
    from tunegate.core.loading import load_dataset
    from tunegate.engine.run.rows import requests_for

    cand = load_candidate(RELEASE / "incumbent.yaml")
    rows = list(load_dataset(RELEASE / "dataset.jsonl"))
    step = max(1, len(rows) // n)
    return [requests_for(cand, ex)[0] for ex in rows[::step][:n]]


def _run(backend: LocalBackend, reqs: list[GenerationRequest], batch: bool) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    if batch:
        outs = asyncio.run(backend.generate(reqs))
    else:
        outs = [o for r in reqs for o in asyncio.run(backend.generate([r]))]
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert all(isinstance(o, ModelOutput) for o in outs), outs
    texts = [o.text for o in outs]  # type: ignore[union-attr]
    tokens = sum(o.usage.completion_tokens for o in outs)  # type: ignore[union-attr]
    prompt = sum(o.usage.prompt_tokens for o in outs)  # type: ignore[union-attr]
    return {"s": round(dt, 2), "cpu_s": round(cpu, 2), "tokens": tokens, "prompt_tokens": prompt,
            "tok_s": round(tokens / dt, 2), "tok_per_cpu_s": round(tokens / cpu, 2), "loadavg_1m": os.getloadavg()[0],
            "texts": texts}


def _same(a: list[str], b: list[str]) -> str:
    return f"{sum(x == y for x, y in zip(a, b, strict=True))}/{len(a)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: see the docstring)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "engine.json"))
    args = ap.parse_args()

    load_before = os.getloadavg()
    engines = {e: LocalBackend(engine=e, batch_size=16, threads=args.threads) for e in ("transformers", "fast")}
    load_s = {}
    for name, b in engines.items():
        t0 = time.perf_counter()
        b.load()
        load_s[name] = round(time.perf_counter() - t0, 2)
        asyncio.run(b.generate(_chat()[:2]))  # warm-up
    res: dict[str, dict[str, Any]] = {}
    release = _release()
    for key, reqs, batch in (("b16", _chat(), True), ("release b16", release, True), ("b1", _chat(), False)):
        for name, b in engines.items():  # interleaved: load drift hits both engines
            res[f"{name} {key}"] = _run(b, reqs, batch=batch)
    load_after = os.getloadavg()

    def ratio(key: str, field: str = "tok_per_cpu_s") -> float:
        return round(res[f"fast {key}"][field] / res[f"transformers {key}"][field], 2)

    summary = {
        "ratio_b16_cpu": ratio("b16"), "ratio_b1_cpu": ratio("b1"), "ratio_release_b16_cpu": ratio("release b16"),
        "ratio_b16_wall": ratio("b16", "tok_s"), "ratio_b1_wall": ratio("b1", "tok_s"),
        "ratio_release_b16_wall": ratio("release b16", "tok_s"),
        "fast_b1_vs_b16_identical": _same(res["fast b1"]["texts"], res["fast b16"]["texts"]),
        "fp32_b1_vs_b16_identical": _same(res["transformers b1"]["texts"], res["transformers b16"]["texts"]),
        "fast_vs_fp32_identical_b1": _same(res["fast b1"]["texts"], res["transformers b1"]["texts"]),
        "fast_vs_fp32_identical_release": _same(res["fast release b16"]["texts"],
                                                res["transformers release b16"]["texts"]),
    }
    table = Table(title=f"SmolLM2-135M-Instruct, greedy; chat: {len(PROMPTS)} prompts x 64 tokens; "
                        f"release: {len(release)} rows x 48 tokens")
    for col in ("run", "wall s", "cpu s", "tokens", "prompt tok", "tok/s wall", "tok/cpu-s", "load 1m"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for key, r in res.items():
        table.add_row(key, f"{r['s']:.1f}", f"{r['cpu_s']:.1f}", str(r["tokens"]), str(r["prompt_tokens"]),
                      f"{r['tok_s']:.1f}", f"{r['tok_per_cpu_s']:.1f}", f"{r['loadavg_1m']:.1f}")
    console = Console()
    console.print(table)
    for k, v in summary.items():
        console.print(f"{k}: {v}")
    console.print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (2 cores, shared); "
                  f"threads: {args.threads or 'default'}; model load s: {load_s}")
    record = {
        "bench": "engine", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count(),
        "threads": args.threads, "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after], "model_load_s": load_s, **summary,
        "runs": {k: {kk: vv for kk, vv in v.items() if kk != "texts"} for k, v in res.items()},
        "texts": {k: v["texts"] for k, v in res.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
