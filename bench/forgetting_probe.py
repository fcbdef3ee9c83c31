"""The general-v1 forgetting probe on the embedded SmolLM2-135M-Instruct: per-cohort scores and time.

    python bench/forgetting_probe.py                      # default spec, greedy, max_tokens 96, batch 8
    python bench/forgetting_probe.py --candidate c.yaml   # any candidate file (its prompt and params)
    python bench/forgetting_probe.py --threads 1 --json

Runs with an empty store and no generation cache, so the time is a real generation time. The load
average is printed before and after: on a shared machine it decides the wall time more than the
model does. docs/forgetting.md quotes these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def measure(candidate: str | None, threads: int, batch_size: int, max_tokens: int | None) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from tunegate import api
    from tunegate.core.candidate import CandidateSpec, DecodingParams, load_candidate
    from tunegate.core.policy import PROBES_DIR
    from tunegate.engine.gate.forgetting import combine_rows
    from tunegate.engine.run.aggregate import aggregate_row
    from tunegate.store.sqlite import Store

    spec = load_candidate(candidate) if candidate else CandidateSpec(name="smollm2-default",
                                                                      params=DecodingParams(max_tokens=96))
    if max_tokens is not None:
        spec = spec.model_copy(update={"params": spec.params.model_copy(update={"max_tokens": max_tokens})})
    spec = spec.model_copy(update={"options": {**spec.options, "threads": threads, "batch_size": batch_size}})
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "probe.db"
        t0 = time.perf_counter()
        summary = api.run(PROBES_DIR / "general-v1.jsonl", spec, db=db, use_cache=False,
                          evaluators=str(PROBES_DIR / "general-v1.evaluators.yaml"))
        wall = time.perf_counter() - t0
        with Store(db) as store:
            run = store.run(summary.run_id)
            rows = store.rows(run.id)
            data = store.dataset_rows(run.dataset_hash)
    names = [e["name"] for e in run.evaluators]
    by: dict[str, list[float]] = defaultdict(list)
    tokens = 0
    for rec in rows:
        aggs = [aggregate_row(rec.scores.get(n, [])) for n in names]
        vals = [np.array([np.nan if a.score is None else a.score]) for a in aggs]
        score, status = combine_rows(vals, [[a.status] for a in aggs])
        if status[0] == "ok":
            for c in data[rec.row_id].get("cohorts", []):
                by[c].append(float(score[0]))
            by["*"].append(float(score[0]))
        tokens += sum(o.usage.completion_tokens for o in rec.outputs if o is not None and o.usage is not None)
    return {"candidate": spec.name, "candidate_hash": spec.hash, "rows": len(rows), "threads": threads,
            "batch_size": batch_size, "max_tokens": spec.params.max_tokens, "wall_s": round(wall, 1),
            "generated_tokens": tokens, "tokens_per_s": round(tokens / wall, 1) if wall else None,
            "overall": round(float(np.mean(by.pop("*"))), 3) if by.get("*") else None,
            "cohorts": {c: {"n": len(v), "mean": round(float(np.mean(v)), 3)} for c, v in sorted(by.items())},
            "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(), "dataset_hash": run.dataset_hash}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candidate", help="Candidate YAML (default: the embedded model, no system prompt).")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=None, help="Override (the default spec uses 96).")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = measure(args.candidate, args.threads, args.batch_size, args.max_tokens)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"general-v1 probe · {res['candidate']} · {res['rows']} rows · threads {res['threads']} · batch "
          f"{res['batch_size']} · max_tokens {res['max_tokens']}")
    print(f"load average before {res['load_before']} after {res['load_after']} on {res['cpus']} cpus")
    print("| cohort | rows | score |\n|---|---:|---:|")
    for c, v in res["cohorts"].items():
        print(f"| {c} | {v['n']} | {v['mean']:.3f} |")
    print(f"| **all** | {res['rows']} | {res['overall']:.3f} |")
    print(f"wall {res['wall_s']} s · {res['generated_tokens']} tokens generated · {res['tokens_per_s']} tok/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
