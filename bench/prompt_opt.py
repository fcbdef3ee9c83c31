"""Prompt optimizers head to head: tunegate's GEPA, ProTeGi and PromptWizard next to ``dspy.GEPA`` and
``dspy.MIPROv2`` — same task model, same decoding, same metric, same metric-call budget, several
seeds — scored on held-out **test** rows none of them saw.

* **Task model**: the embedded SmolLM2-135M-Instruct (tunegate ``LocalBackend``, fp32, greedy), or an
  OpenAI-compatible endpoint (``--base-url/--model`` or ``TUNEGATE_BENCH_BASE_URL`` /
  ``TUNEGATE_BENCH_MODEL`` / ``TUNEGATE_BENCH_API_KEY_ENV``). The reflection / proposer model of
  every arm is the same model unless ``--reflection-base-url/--reflection-model`` (or the
  ``TUNEGATE_BENCH_REFLECTION_*`` variables) name another; the header says which.
* **Budget parity**: ours get ``Budget(metric_calls=N)`` (uncached row evaluations); dspy.GEPA gets
  ``max_metric_calls=N`` (with GEPA's own evaluation cache, so re-scoring is free there too);
  MIPROv2 has no such budget, so ``num_trials``/minibatch are chosen to spend about N and the
  count actually spent is printed. The "task gens (uncached)" column counts new task-model
  generations on train/dev for every arm alike — the common unit.
* **Caches**: every arm+seed starts from an empty tunegate cache (a new SQLite file); DSPy's own
  response cache is never consulted for our custom ``dspy.BaseLM`` (and is switched off too).
  Test scoring shares one cache per task: identical prompts are not re-generated there, which
  changes no score.
* **Held-out test**: each arm's final prompt (for DSPy: the compiled program's instruction and
  demos, rendered identically by ``PlainAdapter``) runs through tunegate's run engine on the test
  split with the task's evaluators; DSPy programs are also run natively through DSPy on the same
  rows as a check (its requests must hit the test cache and give the same scores).

Run: ``python bench/prompt_opt.py --quick`` (smoke check: 12/8/12 rows, budget 24, 1 seed, all arms;
16.5 min measured on the 2-core VM at load ~1, most of it SmolLM2 reflections) or
``python bench/prompt_opt.py --tasks banking6,ifeval_short --seeds 3 --budget 300``. Results go to
``bench/results/prompt_opt.json`` (rewritten after every run). Needs DSPy for the dspy arms:
``pip install 'torch==2.13.0' 'dspy[optuna]==3.4.1'``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from prompt_opt_report import PEER, machine_facts, render_task, summarise, write_json
from prompt_opt_tasks import TASKS, BenchTask, build_task
from tunegate.backends.base import Backend, GenerationRequest, GenerationResult
from tunegate.core.candidate import CandidateSpec, DecodingParams
from tunegate.core.prompt import PromptTemplate
from tunegate.engine.run.executor import execute
from tunegate.engine.run.factory import make_backend
from tunegate.engine.run.plan import plan_run
from tunegate.store.sqlite import Store
from tunegate.tuning.budget import Budget
from tunegate.tuning.session import optimize_prompt

__all__ = ["ARMS", "main", "run_benchmark"]

#: Arm name → (short CLI name, kind). Ours by optimizer method; the peers by DSPy class.
ARMS = {"tunegate.gepa": "gepa", "tunegate.protegi": "protegi", "tunegate.promptwizard": "promptwizard",
        "dspy.GEPA": "dspy_gepa", "dspy.GEPA+paper-prompt": "dspy_gepa_paper", "dspy.MIPROv2": "dspy_mipro"}
#: Reflection decoding for every arm: tunegate Reflector's defaults.
REFLECTION = DecodingParams(temperature=0.7, top_p=0.95, max_tokens=512, seed=0)
QUICK = {"tasks": ["banking6"], "seeds": 1, "budget": 24, "reflection_max_tokens": 192, "sizes": (12, 8, 12)}
RESULTS = Path(__file__).resolve().parent / "results" / "prompt_opt.json"


class KeepAlive:
    """Shares one loaded backend between arms: ``aclose`` from a finished arm must not unload it."""

    def __init__(self, inner: Backend) -> None:
        self.inner, self.kind, self.max_batch = inner, inner.kind, inner.max_batch

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return await self.inner.generate(requests)

    async def aclose(self) -> None:
        return None


def _endpoint(args: argparse.Namespace, prefix: str) -> dict[str, str] | None:
    env = "TUNEGATE_BENCH_" + ("REFLECTION_" if prefix else "")
    url = getattr(args, f"{prefix}base_url") or os.environ.get(env + "BASE_URL")
    if not url:
        return None
    model = getattr(args, f"{prefix}model") or os.environ.get(env + "MODEL") or "default"
    key = getattr(args, f"{prefix}api_key_env") or os.environ.get(env + "API_KEY_ENV")
    return {"base_url": url, "model": model, **({"api_key_env": key} if key else {})}


def _spec(ep: dict[str, str] | None, threads: int) -> CandidateSpec:
    if ep is None:
        return CandidateSpec(name="bench", backend="local", options={"threads": threads})
    return CandidateSpec(name="bench", backend="openai", **ep)  # type: ignore[arg-type]


async def _test_eval(task: BenchTask, prompt: PromptTemplate, backend: Backend, store: Store,
                     split: str = "test") -> dict[str, Any]:
    """Score ``prompt`` on a split through the run engine (the path the gate uses)."""
    cand = task.seed.model_copy(update={"prompt": prompt})
    plan = plan_run(task.dataset, task.evaluators, candidate=cand, split=split)  # type: ignore[arg-type]
    summary = await execute(plan, store, KeepAlive(backend))
    per_row: dict[str, float] = {}
    for r in store.rows(summary.run_id):
        vals = []
        for s in range(max(len(v) for v in r.scores.values())):
            ro = task.objective.row({n: rs[s] for n, rs in r.scores.items()})
            vals.append(ro.value if ro.value is not None else task.objective.error_value)
        per_row[r.row_id] = sum(vals) / len(vals)
    also = {k: summary.evaluators.get(k, {}).get("mean") for k in task.also_report}
    return {"test": sum(per_row.values()) / len(per_row), "rows": per_row, "also": also,
            "model_calls": summary.model_calls, "run_id": summary.run_id}


async def _run_ours(method: str, task: BenchTask, budget: int, seed: int, backend: Backend,
                    refl: Backend | None, rparams: DecodingParams, cache: Path, console: Console) -> dict[str, Any]:
    t0 = time.perf_counter()
    with Store(cache) as store, Progress(TextColumn("    {task.description}"), BarColumn(), MofNCompleteColumn(),
                                         TimeElapsedColumn(), console=console, transient=True) as bar:
        job = bar.add_task(f"{method}: metric calls", total=budget)

        def progress(history: Any, meter: Any) -> None:
            bar.update(job, completed=meter.metric_calls, description=f"{method}: {len(history.proposals)} proposals, "
                       f"{meter.reflection_calls} reflections; metric calls")

        out = await optimize_prompt(dataset=task.dataset, seed=task.seed, evaluators=task.evaluators,
                                    objective=task.objective, method=method, budget=Budget(metric_calls=budget),
                                    task_backend=KeepAlive(backend), cache=store,
                                    reflection_backend=KeepAlive(refl) if refl else None,
                                    reflection_params=rparams, random_seed=seed, progress=progress)
    sp = out.spent
    return {"prompt": out.best.prompt, "dev_best": out.best.dev_mean, "metric_calls": sp["metric_calls"],
            "task_uncached": sp["metric_calls"], "task_cached": sp["cached_rows"],
            "reflection_calls": sp["reflection_calls"] + sp["cached_reflections"], "wall_s": time.perf_counter() - t0,
            "settings": out.history.meta["config"]["settings"], "stopped": out.stopped,
            "proposals": len(out.history.proposals), "rejected_reflections": len(out.history.rejections), "notes": []}


def _run_dspy(kind: str, task: BenchTask, budget: int, seed: int, backend: Backend, refl: Backend | None,
              rparams: DecodingParams, cache: Path, threads: int) -> dict[str, Any]:
    import dspy

    from prompt_opt_dspy import ModelClient, TunegateLM, run_dspy_gepa, run_dspy_mipro

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    for noisy in ("dspy", "gepa", "optuna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    client = ModelClient(KeepAlive(backend), cache)
    rclient = ModelClient(KeepAlive(refl), cache.with_suffix(".refl.db")) if refl else client
    task_lm = TunegateLM(client, task.seed.params, "task")
    refl_lm = TunegateLM(rclient, rparams, "reflection", follow_temperature=True)
    train, dev = task.dataset.split("train").examples, task.dataset.split("dev").examples
    kw: dict[str, Any] = dict(train=train, dev=dev, seed=task.seed.prompt, evaluators=task.evaluators,
                              objective=task.objective, task_lm=task_lm, reflection_lm=refl_lm, budget=budget,
                              random_seed=seed, num_threads=threads)
    try:
        if kind == "dspy_mipro":
            r = run_dspy_mipro(**kw)
        else:
            r = run_dspy_gepa(**kw, paper_prompt=kind == "dspy_gepa_paper")
    finally:
        client.close()
        if rclient is not client:
            rclient.close()
    return {"prompt": r.prompt, "dev_best": r.dev_best, "metric_calls": r.metric_calls,
            "task_uncached": r.task_uncached, "task_cached": r.task_cached, "reflection_calls": r.reflection_calls,
            "wall_s": r.wall_s, "settings": r.settings, "notes": r.notes}


def _native_check(task: BenchTask, prompt: PromptTemplate, backend: Backend, test_db: Path,
                  engine_rows: dict[str, float], threads: int) -> dict[str, Any]:
    """Run the DSPy program itself on the test rows and compare with the engine's per-row scores."""
    from prompt_opt_dspy import BenchMetric, ModelClient, TunegateLM, score_native

    client = ModelClient(KeepAlive(backend), test_db)
    try:
        lm = TunegateLM(client, task.seed.params, "task")
        rows = task.dataset.split("test").examples
        native = score_native(prompt, rows, task.seed.prompt, lm, BenchMetric(rows, task.evaluators, task.objective),
                              threads)
    finally:
        client.close()
    same = sum(1 for k, v in native.items() if abs(v - engine_rows.get(k, -1)) < 1e-9)
    return {"native_test": sum(native.values()) / len(native), "rows": len(native), "same_score_rows": same,
            "uncached_generations": lm.stats["uncached"]}


def run_benchmark(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Run every (task, seed, arm) and return the JSON record (also written to ``args.out``)."""
    by_short = {short: a for a, short in ARMS.items()}
    wanted = [by_short[s] for s in args.arms]  # in the order given (interleave peers and ours under a deadline)
    missing = [a for a in wanted if a.startswith("tunegate.")
               and importlib.util.find_spec(f"tunegate.tuning.{ARMS[a]}") is None]
    arms = [a for a in wanted if a not in missing]
    task_ep, refl_ep = _endpoint(args, ""), _endpoint(args, "reflection_")
    backend = make_backend(_spec(task_ep, args.threads))
    refl = make_backend(_spec(refl_ep, args.threads)) if refl_ep else None
    rparams = REFLECTION.model_copy(update={"max_tokens": args.reflection_max_tokens})
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tunegate-promptopt-"))
    record: dict[str, Any] = {
        "bench": "prompt_opt", "machine_start": machine_facts(), "arms": arms, "arms_missing": missing,
        "config": {"budget": args.budget, "seeds": args.seeds, "quick": args.quick, "threads": args.threads,
                   "task_model": task_ep or {"local": "smollm2-135m-instruct", "dtype": "float32", "threads": args.threads},
                   "reflection_model": refl_ep or "same as the task model",
                   "reflection_params": rparams.model_dump(mode="json"), "workdir": str(work)},
        "tasks": {}}
    prior = _prior(args, record)
    record["tasks"].update(prior)  # tasks not re-run this time are kept as they were
    deadline = time.monotonic() + args.deadline_min * 60 if args.deadline_min else None
    for tname in args.tasks:
        task = build_task(tname, quick=args.quick, sizes=args.sizes)
        if task_ep:
            task = BenchTask(**{**task.__dict__, "seed": task.seed.model_copy(update=_spec(task_ep, 1).model_dump(
                include={"backend", "model", "base_url", "api_key_env"}))})
        test_db = work / f"{tname}-test.db"
        before = prior.get(tname, {})
        if before and before["describe"]["dataset_hash"] != task.dataset.hash:
            raise SystemExit(f"--append: {tname} rows differ from {args.out} (other --sizes?)")
        trec: dict[str, Any] = {"describe": task.describe(), "also_report": task.also_report,
                                "runs": list(before.get("runs", []))}
        record["tasks"][tname] = trec
        with Store(test_db) as tstore:
            console.print(f"[bold]{tname}[/bold]: seed prompt on dev and test …")
            base = asyncio.run(_test_eval(task, task.seed.prompt, backend, tstore))
            base_dev = asyncio.run(_test_eval(task, task.seed.prompt, backend, tstore, split="dev"))
            trec["baseline"] = {"test": base["test"], "dev": base_dev["test"], "also": base["also"],
                                "test_rows": base["rows"]}
            console.print(f"  seed prompt: test {base['test']:.3f}, dev {base_dev['test']:.3f}")
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                for arm in arms:
                    if deadline is not None and time.monotonic() > deadline:
                        trec.setdefault("skipped_by_deadline", []).append({"arm": arm, "seed": seed})
                        continue
                    run: dict[str, Any] = {"arm": arm, "seed": seed}
                    cache = work / f"{tname}-{ARMS[arm]}-s{seed}.db"
                    console.print(f"  {arm} seed {seed} (budget {args.budget}) …")
                    try:
                        if arm.startswith("tunegate."):
                            res = asyncio.run(_run_ours(ARMS[arm], task, args.budget, seed, backend, refl, rparams,
                                                        cache, console))
                        else:
                            res = _run_dspy(ARMS[arm], task, args.budget, seed, backend, refl, rparams, cache,
                                            args.threads_dspy)
                        test = asyncio.run(_test_eval(task, res["prompt"], backend, tstore))
                        run.update({k: v for k, v in res.items() if k != "prompt"})
                        run.update({"status": "ok", "test": test["test"], "also": test["also"], "test_rows": test["rows"],
                                    "test_model_calls": test["model_calls"],
                                    "prompt": res["prompt"].model_dump(mode="json", exclude_none=True)})
                        if arm.startswith("dspy."):
                            run["native_check"] = _native_check(task, res["prompt"], backend, test_db, test["rows"],
                                                                args.threads_dspy)
                        dev = "—" if run["dev_best"] is None else f"{run['dev_best']:.3f}"
                        console.print(f"    test {run['test']:.3f} · dev best {dev} · metric calls "
                                      f"{run['metric_calls']} · uncached {run['task_uncached']} · reflections "
                                      f"{run['reflection_calls']} · {run['wall_s']:.0f}s")
                    except Exception as e:  # an arm that crashes is reported, never silently dropped
                        logging.getLogger("prompt_opt").exception("arm failed")
                        run.update({"status": "failed", "error": f"{type(e).__name__}: {e}"[:500], "also": {}})
                        console.print(f"    [red]failed[/red]: {run['error']}")
                    trec["runs"].append(run)
                    trec["summary"] = summarise(trec["runs"], arms, trec["baseline"])
                    record["machine_end"] = machine_facts()
                    write_json(args.out, record)
        trec["summary"] = summarise(trec["runs"], arms, trec["baseline"])
    record["machine_end"] = machine_facts()
    write_json(args.out, record)
    return record


def _prior(args: argparse.Namespace, record: dict[str, Any]) -> dict[str, Any]:
    """With ``--append``: the runs of an earlier invocation with the same configuration (more seeds
    run later are added to them; anything that differs is refused rather than mixed)."""
    if not args.append or not args.out.exists():
        return {}
    old = json.loads(args.out.read_text(encoding="utf-8"))
    keys = ("budget", "task_model", "reflection_model", "reflection_params")
    if any(old["config"].get(k) != record["config"].get(k) for k in keys):
        raise SystemExit(f"--append: {args.out} was made with another configuration ({keys})")
    record["invocations"] = [*old.get("invocations", [old["machine_start"]]), record["machine_start"]]
    return dict(old["tasks"])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma list of {sorted(TASKS)}")
    p.add_argument("--seeds", type=int, default=3, help="random seeds per arm (first-seed .. first-seed+n-1)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--append", action="store_true",
                   help="add these runs to --out when it holds runs of the same configuration")
    p.add_argument("--budget", type=int, default=300, help="metric calls per arm and seed")
    p.add_argument("--arms", default=",".join(ARMS.values()), help=f"comma list of {list(ARMS.values())}")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke configuration: {QUICK} (overrides those options; --sizes still applies)")
    p.add_argument("--sizes", type=lambda v: tuple(int(x) for x in v.split(",")), default=None,
                   help="train,dev,test rows (default: the task's, or 12,8,12 with --quick)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the local model (1 on a busy machine)")
    p.add_argument("--threads-dspy", type=int, default=8, help="DSPy evaluation threads (micro-batched)")
    p.add_argument("--reflection-max-tokens", type=int, default=REFLECTION.max_tokens)
    p.add_argument("--deadline-min", type=float, default=None, help="start no new run after this many minutes")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--workdir", default=None, help="where the per-arm caches go (default: a new temp dir)")
    for pre in ("", "reflection-"):
        p.add_argument(f"--{pre}base-url", default=None, help=f"OpenAI-compatible URL for the {pre or 'task-'}model")
        p.add_argument(f"--{pre}model", default=None)
        p.add_argument(f"--{pre}api-key-env", default=None, help="env var holding the key (never the key)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (importable for ``bench/run_all.py``)."""
    args = _parser().parse_args(argv)
    if args.quick:
        args.tasks, args.seeds, args.budget = ",".join(QUICK["tasks"]), QUICK["seeds"], QUICK["budget"]
        args.reflection_max_tokens, args.sizes = QUICK["reflection_max_tokens"], args.sizes or QUICK["sizes"]
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [t for t in args.tasks if t not in TASKS] + [a for a in args.arms if a not in ARMS.values()]
    if bad:
        print(f"unknown task/arm {bad}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("dspy", "gepa", "optuna", "LiteLLM", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    console = Console(width=None if sys.stdout.isatty() else 200)
    f = machine_facts()
    console.print(f"# prompt optimizers vs {PEER} — {f['host']} · {f['cores']} cores · load {f['loadavg_1_5_15']} · "
                  f"{f['date']} · {f['libraries']}")
    console.print("caches: every arm+seed starts from an empty tunegate cache; DSPy's own cache is off; "
                  "metric calls = uncached row evaluations for ours, the framework's count for DSPy "
                  "(GEPA with evaluation cache on); 'task gens (uncached)' is the common unit.")
    record = run_benchmark(args, console)
    refl = record["config"]["reflection_model"]
    console.print(f"task model: {record['config']['task_model']}; reflection/proposer model of every arm: {refl}")
    if record["arms_missing"]:
        console.print(f"[yellow]not run (optimizer module absent): {record['arms_missing']}[/yellow]")
    for trec in record["tasks"].values():
        render_task(console, trec, trec["summary"], args.budget)
    console.print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
