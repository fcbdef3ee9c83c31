"""Are the online gates anytime-valid? A/A rollouts checked after every observation, and power.

Why: the release controller reads its bounds after every request. A fixed-n test peeked at that
often rolls back an identical candidate sooner or later (shown here as the "naive" row); a
confidence sequence keeps the false-rollback rate ≤ α over the whole rollout, however often it is
checked. Scenarios (each rollout independent, truth known):

* A/A paired (mirrored pairs, base fail rate 10%): rollback rule "lower bound of Δ > 0" checked after
  every pair, horizon N pairs — false-rollback rate with a Clopper-Pearson 95% interval.
* A/A canary (unpaired, 10% share): the same rule on two sequences at α/2 each, every request.
* A/A p99 latency ratio (log-normal latencies, 50/50): "lower bound of ratio > 1", every 10 requests.
* Naive: a fixed-n 95% z-interval of the paired Δ, re-checked after every pair (what we avoid).
* Time to detect a 3-point regression (10% → 13% fail rate) at a stated traffic rate:
  mirrored pairs at ``--pair-rate`` pairs/s (independent failures = worst case, shared = requests
  hard for both arms fail on both), and live canary at ``--rps`` requests/s with a 5% / 25% share.

All at α = 0.05 per test (the release policy divides its α over its tests; see
docs/decisions/0006-anytime-valid-rollback.md). Run: ``python bench/online_calibration.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from tunegate.engine.online.simulate import (
    SimResult,
    simulate_canary,
    simulate_naive_paired,
    simulate_p99,
    simulate_paired,
)
from tunegate.engine.stats.inference import clopper_pearson

ALPHA = 0.05


def rate(r: SimResult, n: int) -> str:
    k = round(r.alarm_rate * n)
    lo, hi = clopper_pearson(k, n)
    return f"{r.alarm_rate:.4f} [{lo:.4f}, {hi:.4f}] ({k}/{n})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="fewer rollouts (a few seconds)")
    ap.add_argument("--pair-rate", type=float, default=10.0, help="mirrored pairs per second")
    ap.add_argument("--rps", type=float, default=100.0, help="route requests per second (canary)")
    ap.add_argument("--out", default="bench/results/online_calibration.json")
    args = ap.parse_args()
    k_aa, horizon = (500, 5000) if args.quick else (2000, 20000)
    k_det = 200 if args.quick else 1000
    out: dict[str, object] = {"alpha": ALPHA, "load": os.getloadavg()[0], "rollouts_aa": k_aa,
                              "horizon": horizon}
    t0 = time.perf_counter()
    print(f"A/A, α = {ALPHA}, checked after every observation, {k_aa} rollouts × {horizon} observations")
    rows = {
        "aa_paired": simulate_paired(0.10, 0.10, n_streams=k_aa, horizon=horizon, alpha=ALPHA, seed=1),
        "aa_paired_shared": simulate_paired(0.10, 0.10, n_streams=k_aa, horizon=horizon, alpha=ALPHA,
                                            coupling="shared", seed=2),
        "aa_canary_10pct": simulate_canary(0.10, 0.10, share=0.10, n_streams=k_aa, horizon=horizon, alpha=ALPHA,
                                           seed=3),
        "naive_fixed_n_paired": simulate_naive_paired(0.10, 0.10, n_streams=k_aa, horizon=horizon, seed=4),
    }
    n_p99 = 40 if args.quick else 200
    rows["aa_p99_ratio"] = simulate_p99(1.0, n_streams=n_p99, horizon=4000, alpha=ALPHA, check_every=10, seed=5)
    for name, r in rows.items():
        n = n_p99 if name == "aa_p99_ratio" else k_aa
        print(f"  {name:24s} false-rollback rate {rate(r, n)}")
        out[name] = {"false_rollback_rate": r.alarm_rate, "rollouts": n, "horizon": r.horizon}

    print(f"\nTime to detect 10% → 13% fail rate (α = {ALPHA}), {k_det} rollouts")
    det = {
        "paired_independent": (simulate_paired(0.10, 0.13, n_streams=k_det, horizon=40000, alpha=ALPHA, seed=6),
                               args.pair_rate),
        "paired_shared": (simulate_paired(0.10, 0.13, n_streams=k_det, horizon=40000, alpha=ALPHA,
                                          coupling="shared", seed=7), args.pair_rate),
        "canary_5pct": (simulate_canary(0.10, 0.13, share=0.05, n_streams=k_det, horizon=400000, alpha=ALPHA,
                                        seed=8), args.rps),
        "canary_25pct": (simulate_canary(0.10, 0.13, share=0.25, n_streams=k_det, horizon=120000, alpha=ALPHA,
                                         seed=9), args.rps),
    }
    for name, (r, per_s) in det.items():
        med, p90 = r.quantile_time(0.5), r.quantile_time(0.9)
        unit = "pairs" if name.startswith("paired") else "requests"
        print(f"  {name:20s} detected {r.alarm_rate:.3f}; median {med:,.0f} {unit} = {med / per_s:,.0f} s, "
              f"p90 {p90:,.0f} = {p90 / per_s:,.0f} s at {per_s:g} {unit}/s")
        out[f"detect_{name}"] = {"detected": r.alarm_rate, "median_obs": med, "p90_obs": p90,
                                 "rate_per_s": per_s, "median_s": med / per_s, "p90_s": p90 / per_s}
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"\n({out['wall_s']} s, load {out['load']:.2f})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
