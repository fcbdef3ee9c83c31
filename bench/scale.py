"""Scale-out figures, as ratios measured in one run on this machine.

1. **Executors**: rows/s of a stored run (generate through a loopback OpenAI-compatible server,
   evaluate, commit each row) for the deterministic suite (exact_match, contains, token_f1) and the
   model-based suite (answer_relevancy: all-MiniLM embeddings) on the local executor, Ray with one
   worker and Ray with two workers (a local Ray instance with 2 CPUs, started before timing; actor
   start-up — imports, model loading — is inside the timing, as a user sees it).
2. **Store writes**: rows/s committed by 4 concurrent writer processes (one ``write_row``
   transaction per row, 2 samples x 2 evaluators) into SQLite (WAL, synchronous=NORMAL) and
   PostgreSQL 15 in a temp dir, durable (fsync on): with an fsync at every commit (its default), and
   with ``synchronous_commit=off`` (crash-safe, may lose the last commits on an OS crash — the
   durability class of SQLite's WAL with synchronous=NORMAL, so the like-for-like row).
3. **Gate compute**: ``compare_arrays`` + ``decide`` for 12 evaluators x 20 cohorts, 2,000
   resamples, at 10,000 / 30,000 / 100,000 rows (input built as in bench/gate_speed.py), and how
   the time grows with rows.

Run: ``python bench/scale.py [--quick]`` (written to bench/results/scale.json). On a 2-core VM
shared with other work, read the ratios, and the load average printed beside them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tunegate.core.candidate import load_candidate  # noqa: E402
from tunegate.core.loading import load_dataset  # noqa: E402
from tunegate.core.result import EvalResult, ModelOutput  # noqa: E402
from tunegate.engine.run.executor import run_plan  # noqa: E402
from tunegate.engine.run.factory import make_backend  # noqa: E402
from tunegate.engine.run.plan import RunPlan, plan_run  # noqa: E402
from tunegate.engine.run.ray_executor import RayOptions, run_plan_ray  # noqa: E402
from tunegate.engine.run.suite import resolve_suite  # noqa: E402
from tunegate.store.sqlite import Store  # noqa: E402

SUITES = {"deterministic": "exact_match,contains,token_f1", "model-based": "answer_relevancy"}


def _load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def _plan(tmp: Path, rows: int, suite: str, base_url: str) -> RunPlan:
    data = [{"id": f"q{i:04d}", "input": f"What is item {i}?" + " Be precise." * (i % 4),
             "expected": f"echo: What is item {i}?"} for i in range(rows)]
    (tmp / "d.jsonl").write_text("\n".join(json.dumps(r) for r in data) + "\n")
    (tmp / "c.yaml").write_text(f"name: echo\nbackend: openai\nmodel: test-model\nbase_url: {base_url}\n"
                                "options: {concurrency: 8}\n")
    ds = load_dataset(tmp / "d.jsonl")
    return plan_run(ds, resolve_suite(suite, ds), candidate=load_candidate(tmp / "c.yaml"))


def bench_executors(rows: int) -> list[dict[str, Any]]:
    import ray
    from tests.support.openai_server import Echo, OpenAIServer

    out = []
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with OpenAIServer() as srv:
            srv.default = Echo(delay_s=0.005)
            for suite_name, suite in SUITES.items():
                for label, workers in (("local", 0), ("ray, 1 worker", 1), ("ray, 2 workers", 2)):
                    with tempfile.TemporaryDirectory() as d:
                        plan = _plan(Path(d), rows, suite, srv.base_url)
                        with Store(Path(d) / "s.db") as store:
                            t0 = time.perf_counter()
                            if workers:
                                s = run_plan_ray(plan, store, options=RayOptions(workers=workers))
                            else:
                                s = run_plan(plan, store, make_backend(plan.candidate))  # type: ignore[arg-type]
                            wall = time.perf_counter() - t0
                    assert s.rows == rows
                    out.append({"suite": suite_name, "executor": label, "rows": rows, "wall_s": round(wall, 2),
                                "rows_per_s": round(rows / wall, 1), "machine": _load()})
                    print(f"  {suite_name:13s} {label:15s} {rows / wall:8.1f} rows/s ({wall:.1f} s, {_load()})",
                          flush=True)
    finally:
        ray.shutdown()
    return out


def _writer(target: str, run_id: str, w: int, n: int, barrier: Any, q: Any) -> None:
    with Store(target) as s:
        barrier.wait()
        t0 = time.time()
        for i in range(n):
            s.write_row(run_id, f"w{w}-r{i}", i, [ModelOutput(text=f"out {i}"), ModelOutput(text="b")],
                        [None, None], {"e": [EvalResult.ok("e", "1", 0.5), EvalResult.ok("e", "1", 1.0)],
                                       "f": [EvalResult.ok("f", "1", 0.0), EvalResult.ok("f", "1", 0.25)]},
                        model_calls=1, cache_hits=0)
        q.put((t0, time.time()))


def _write_rate(target: str, writers: int, n: int) -> float:
    with Store(target) as s:
        runs = [s.create_run(identity=f"i{w}", dataset_hash="d", candidate_hash="c", selection={},
                             evaluators=[], n_rows=n, meta={}) for w in range(writers)]
    ctx = mp.get_context("fork")
    barrier, q = ctx.Barrier(writers), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(target, runs[w], w, n, barrier, q)) for w in range(writers)]
    for p in procs:
        p.start()
    spans = [q.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    with Store(target) as s:
        assert all(s.count_rows(r) == (n, n) for r in runs)
    return float(writers * n / (max(e for _, e in spans) - min(b for b, _ in spans)))


def bench_store(n: int, writers: int = 4) -> list[dict[str, Any]]:
    from tests.store.pgserver import PgServer

    out = []
    with tempfile.TemporaryDirectory() as d:
        rate = _write_rate(str(Path(d) / "s.db"), writers, n)
        out.append({"store": "sqlite (WAL, synchronous=NORMAL)", "writers": writers, "rows": writers * n, "rows_per_s": round(rate, 1),
                    "machine": _load()})
        print(f"  {'sqlite (WAL, synchronous=NORMAL)':40s} {rate:8.1f} rows/s ({writers} writers x {n} rows, {_load()})", flush=True)
    # fsync at every commit (PostgreSQL's default), and synchronous_commit=off: crash-safe but may lose
    # the last commits on an OS crash — the durability class of SQLite's WAL with synchronous=NORMAL.
    for label, settings in (("postgresql 15 (fsync every commit)", {}),
                            ("postgresql 15 (synchronous_commit=off)", {"synchronous_commit": "off"})):
        with PgServer(durable=True, settings=settings) as pg:
            rate = _write_rate(pg.new_database(), writers, n)
        out.append({"store": label, "writers": writers, "rows": writers * n, "rows_per_s": round(rate, 1),
                    "machine": _load()})
        print(f"  {label:40s} {rate:8.1f} rows/s ({writers} writers x {n} rows, {_load()})", flush=True)
    return out


def bench_gate(sizes: list[int]) -> list[dict[str, Any]]:
    import gate_speed
    from tunegate.engine.gate.decide import decide
    from tunegate.engine.stats.compare import compare_arrays

    out = []
    for n in sizes:
        gate_speed.N_ROWS = n  # same generator and policy as bench/gate_speed.py, at this size
        inp, policy = gate_speed.build_input(), gate_speed._policy()
        t0 = time.perf_counter()
        decide(compare_arrays(inp, **policy.compare_options()), policy)
        wall = time.perf_counter() - t0
        out.append({"rows": n, "evaluators": gate_speed.N_EVALUATORS, "cohorts": gate_speed.N_COHORTS,
                    "resamples": gate_speed.N_RESAMPLES, "wall_s": round(wall, 2), "machine": _load()})
        print(f"  gate {n:>7,} rows: {wall:.2f} s ({_load()})", flush=True)
    return out


def _ratio_table(console: Console, res: dict[str, Any]) -> None:
    t = Table(title="Executors: rows/s (ratio to local, same suite)")
    for c in ("suite", "executor", "rows/s", "vs local"):
        t.add_column(c, justify="right" if c in ("rows/s", "vs local") else "left")
    for e in res["executors"]:
        local = next(x for x in res["executors"] if x["suite"] == e["suite"] and x["executor"] == "local")
        t.add_row(e["suite"], e["executor"], f"{e['rows_per_s']:.1f}", f"{e['rows_per_s'] / local['rows_per_s']:.2f}x")
    console.print(t)
    t = Table(title="Store: rows/s under 4 concurrent writers")
    for c in ("store", "rows/s", "vs sqlite"):
        t.add_column(c)
    base = res["store"][0]["rows_per_s"]
    for s in res["store"]:
        t.add_row(s["store"], f"{s['rows_per_s']:.1f}", f"{s['rows_per_s'] / base:.2f}x")
    console.print(t)
    t = Table(title="Gate compute: 12 evaluators x 20 cohorts, 2,000 resamples")
    for c in ("rows", "seconds", "time ratio", "row ratio"):
        t.add_column(c, justify="right")
    g0 = res["gate"][0]
    for g in res["gate"]:
        t.add_row(f"{g['rows']:,}", f"{g['wall_s']:.2f}", f"{g['wall_s'] / g0['wall_s']:.1f}x",
                  f"{g['rows'] / g0['rows']:.0f}x")
    console.print(t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rows (a smoke run)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "scale.json"))
    ap.add_argument("--only", default="executors,store,gate",
                    help="comma-separated parts to re-measure; the others are kept from --out")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    rows, writes = (120, 100) if args.quick else (400, 300)
    sizes = [10_000, 30_000] if args.quick else [10_000, 30_000, 100_000]
    console = Console(width=140)
    console.print(f"[bold]scale-out bench[/] · {os.cpu_count()} cores · {_load()}")
    out = Path(args.out)
    res: dict[str, Any] = json.loads(out.read_text()) if out.exists() and parts != {"executors", "store", "gate"} \
        else {}
    res.update({"cores": os.cpu_count(), "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    if "executors" in parts:
        console.print("executors:")
        res["executors"] = bench_executors(rows)
    if "store" in parts:
        console.print("store writes:")
        res["store"] = bench_store(writes)
    if "gate" in parts:
        console.print("gate compute:")
        res["gate"] = bench_gate(sizes)
    _ratio_table(console, res)
    out.write_text(json.dumps(res, indent=2) + "\n")
    console.print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
