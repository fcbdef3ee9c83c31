"""Run every benchmark in bench/ (``make bench``). Each prints its own table with ratios against a
named peer measured in the same run. Machine facts are printed first so figures can be quoted."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "bench_evaluators.py",
    "gate_speed.py",
    "gate_calibration.py",
    "bench_generation.py",
    "evaluator_agreement.py",
    "demo_time.py",  # two full `tunegate demo` runs (fresh model cache + store, then cached): ~10 min here
]
# Modules imported by a benchmark, not benchmarks themselves.
HELPERS = {"run_all.py", "prompt_opt_tasks.py", "prompt_opt_dspy.py", "prompt_opt_report.py", "openloop.py"}
# Arguments for benchmarks whose full run takes hours here; the full commands are in their docstrings.
ARGS = {
    "prompt_opt.py": ["--quick", "--out", "bench/results/prompt_opt_quick.json"],
    # full size: 2,000 A/A rollouts of 20,000 observations, ~40 min on 2 cores
    "online_calibration.py": ["--quick", "--out", "bench/results/online_calibration_quick.json"],
}


def main() -> int:
    print(f"# tunegate benchmarks — {platform.node()} · {platform.processor() or platform.machine()} · "
          f"{os.cpu_count()} cores · Python {platform.python_version()} · {time.strftime('%Y-%m-%d %H:%M')}")
    only = sys.argv[1:]
    failed = []
    extra = sorted(p.name for p in HERE.glob("*.py")
                   if p.name not in ORDER and p.name not in HELPERS and not p.name.startswith("agreement_"))
    for name in ORDER + extra:
        if only and not any(o in name for o in only):
            continue
        path = HERE / name
        if not path.exists():
            continue
        print(f"\n## {name}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(path), *ARGS.get(name, [])], cwd=HERE.parent)
        print(f"({name}: {time.perf_counter() - t0:.1f}s, exit {rc})", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
