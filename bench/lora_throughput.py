"""LoRA SFT throughput and peak memory: ``tunegate tune lora`` vs a plain TRL ``SFTTrainer``.

Same base (SmolLM2-135M-Instruct, fp32, CPU), same rows (prompt/completion texts of a fixed token
length, rendered once), same LoRA config (r=8, alpha=16, q_proj+v_proj), same optimiser settings,
same number of steps. Each side runs in its own subprocess so peak RSS is its own; sides alternate
so machine-load drift hits both. Printed: training tokens/s (non-padding input tokens / train()
wall time), end-to-end wall (load + data + train + save), peak RSS, and tunegate/baseline ratios.

    python bench/lora_throughput.py            # both sizes
    python bench/lora_throughput.py --quick    # 2x128 only
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = [(2, 128), (4, 256)]
STEPS = 6
THREADS = 1  # on a shared 2-core machine 1 thread is faster than 2 (see docs/weight-tuning.md)
LORA = {"rank": 8, "alpha": 16.0, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
LR = 2e-4


def _rows(batch: int, seq: int, tmp: Path) -> tuple[Path, Path]:
    """A golden dataset whose rendered prompt+completion is ~``seq`` tokens, and the seed candidate."""
    from tunegate.core.candidate import CandidateSpec
    from tunegate.tuning.weights.data import Renderer, request_for

    seed_path = tmp / "seed.yaml"
    seed_path.write_text("name: bench\nbackend: local\nmodel: smollm2-135m-instruct\n"
                         "prompt: {system: Answer briefly.}\nparams: {max_tokens: 16}\n")
    renderer, seed = Renderer("smollm2-135m-instruct"), CandidateSpec(prompt={"system": "Answer briefly."})
    from tunegate.core.example import Example, Message

    def length(n_words: int) -> int:
        ex = Example(id="x", input=" ".join(f"w{j}" for j in range(n_words)), expected="fine thanks")
        req = request_for(seed, ex)
        return renderer.n_tokens(renderer.prompt(req) + renderer.completion(req, Message(role="assistant",
                                                                                      content="fine thanks")))
    lo, hi = 1, seq * 2
    while lo < hi:  # most words whose row still fits in seq tokens
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if length(mid) <= seq - 1 else (lo, mid - 1)
    rows = [{"id": f"r{i}", "input": " ".join(f"w{j + i}" for j in range(lo)), "expected": "fine thanks",
             "split": "train"} for i in range(batch * STEPS)]
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data, seed_path


def _tunegate(batch: int, seq: int, tmp: Path) -> dict[str, Any]:
    from tunegate.tuning.weights.config import TuneConfig
    from tunegate.tuning.weights.run import tune_weights

    data, seed = _rows(batch, seq, tmp)
    t0 = time.perf_counter()
    cfg = TuneConfig(method="lora", lr=LR, max_steps=STEPS, batch_size=batch, max_length=seq, threads=THREADS,
                     save_steps=10_000, **LORA)  # type: ignore[arg-type]
    res = tune_weights("lora", dataset=data, candidate=seed, out=tmp / "out", config=cfg, progress=False)
    m = res.manifest["metrics"]
    return {"tok_s": m["tokens_per_s"], "tokens": m["tokens"], "steps": m["steps"], "train_s": m["train_wall_s"],
            "wall_s": time.perf_counter() - t0}


def _baseline(batch: int, seq: int, tmp: Path) -> dict[str, Any]:
    """Plain TRL: the same rendered rows, SFTTrainer + LoraConfig, no tunegate code in the loop."""
    data, seed = _rows(batch, seq, tmp)  # rendering is data prep for both sides; not timed here
    from tunegate.core.candidate import load_candidate
    from tunegate.core.loading import load_dataset
    from tunegate.tuning.weights.data import Renderer, build_sft_rows

    texts = build_sft_rows(load_dataset(data), load_candidate(seed), Renderer("smollm2-135m-instruct"),
                           max_length=seq).rows
    t0 = time.perf_counter()
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tunegate.backends.models import resolve_model

    torch.set_num_threads(THREADS)
    path = resolve_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    args = SFTConfig(output_dir=str(tmp / "base"), per_device_train_batch_size=batch, learning_rate=LR,
                     max_steps=STEPS, max_length=seq, completion_only_loss=True, logging_steps=1,
                     save_strategy="no", report_to=[], use_cpu=True, bf16=False, disable_tqdm=True, seed=0,
                     include_num_input_tokens_seen="non_padding")
    trainer = SFTTrainer(model=model, args=args, processing_class=tok,
                         train_dataset=Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]}
                                                          for r in texts]),
                         peft_config=LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                                target_modules=LORA["target_modules"], task_type="CAUSAL_LM"))
    t1 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t1
    trainer.model.save_pretrained(tmp / "base-adapter")
    tokens = int(trainer.state.num_input_tokens_seen)
    return {"tok_s": round(tokens / train_s, 1), "tokens": tokens, "steps": trainer.state.global_step,
            "train_s": train_s, "wall_s": time.perf_counter() - t0}


def _child(side: str, batch: int, seq: int) -> None:
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="tg-lora-bench-") as td:
        out = (_tunegate if side == "tunegate" else _baseline)(batch, seq, Path(td))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print("RESULT " + json.dumps(out), flush=True)


def _run(side: str, batch: int, seq: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", side, str(batch), str(seq)], capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
                          check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"{side} {batch}x{seq} failed:\n{proc.stderr[-2000:]}")
    return dict(json.loads(line[7:]))


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["--child"]:
        _child(args[1], int(args[2]), int(args[3]))
        return 0
    sizes = SIZES[:1] if "--quick" in args else SIZES
    print(f"LoRA SFT on SmolLM2-135M (fp32, CPU, {THREADS} threads), r={LORA['rank']} {'+'.join(LORA['target_modules'])}, "
          f"{STEPS} steps; load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'size':>7} {'side':>9} {'tok/s':>7} {'train s':>8} {'wall s':>7} {'peak MB':>8}")
    for batch, seq in sizes:
        res = {}
        for side in ("baseline", "tunegate"):
            res[side] = r = _run(side, batch, seq)
            print(f"{batch}x{seq:<5} {side:>9} {r['tok_s']:>7.0f} {r['train_s']:>8.1f} {r['wall_s']:>7.1f} "
                  f"{r['peak_rss_mb']:>8.0f}", flush=True)
        t, b = res["tunegate"], res["baseline"]
        print(f"{batch}x{seq:<5} {'ratio':>9} {t['tok_s'] / b['tok_s']:>7.2f} {t['train_s'] / b['train_s']:>8.2f} "
              f"{t['wall_s'] / b['wall_s']:>7.2f} {t['peak_rss_mb'] / b['peak_rss_mb']:>8.2f}   (tunegate / plain TRL)")
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
