"""``tunegate run``: generate + evaluate a candidate (or score existing outputs) on a dataset."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import click
from rich.table import Table

from tunegate.cli import common
from tunegate.cli.prompts_cmd import resolve_candidates
from tunegate.core.candidate import load_candidate
from tunegate.core.dataset import DEFAULT_SPLIT_RATIOS, SplitRatios
from tunegate.core.hashing import short
from tunegate.core.loading import load_dataset
from tunegate.core.outputs import load_outputs
from tunegate.engine.run.executor import RunSummary, execute
from tunegate.engine.run.factory import make_backend
from tunegate.engine.run.plan import plan_run
from tunegate.engine.run.suite import resolve_suite
from tunegate.errors import BackendError, UserError
from tunegate.store.sqlite import Store

__all__ = ["DEFAULT_MAX_ERROR_RATE", "check_generation_errors", "print_summary", "register"]

#: Fraction of rows whose model call may fail (after the backend's retries) before ``tunegate run``
#: exits 4. Zero: a run with failed calls is not a clean run, and saying "finished" with exit 0
#: hid an unreachable server. Raise it (``--max-error-rate 0.05``) for flaky endpoints; the gate
#: still counts errored rows against its own error budget.
DEFAULT_MAX_ERROR_RATE = 0.0


def check_generation_errors(store: Store, summary: RunSummary, max_error_rate: float) -> None:
    """Raise ``BackendError`` (exit 4) naming the count and the first cause when too many rows failed."""
    if summary.rows == 0 or summary.errors / summary.rows <= max_error_rate:
        return
    causes = [r.error for r in store.rows(summary.run_id) if r.error]
    first = causes[0] if causes else "unknown cause"
    distinct = len(set(causes))
    more = f" ({distinct} distinct messages)" if distinct > 1 else ""
    raise BackendError(
        f"{summary.errors} of {summary.rows} rows failed to generate (limit {max_error_rate:.0%}, "
        f"--max-error-rate); first error: {first}{more}. Run {summary.run_id} is stored; fix the cause "
        "and run again (calls that succeeded are served from the cache).")


def print_summary(s: RunSummary) -> None:
    con = common.out_console()
    note = " (resumed)" if s.resumed else ""
    con.print(f"[bold]run[/] {s.run_id}{note}: {s.rows} rows, {s.model_calls} model calls, "
              f"{s.cache_hits} cache hits, {s.errors} generation errors, {s.wall_s:.1f}s")
    t = Table(show_edge=False, header_style="bold")
    for col in ("evaluator", "mean", "pass rate", "ok", "error", "skipped"):
        t.add_column(col, justify="left" if col == "evaluator" else "right")
    for name, v in s.evaluators.items():
        mean = "—" if v["mean"] is None else f"{v['mean']:.3f}"
        pr = "—" if v["pass_rate"] is None else f"{v['pass_rate']:.1%}"
        t.add_row(name, mean, pr, str(v["n_ok"]), str(v["n_error"]), str(v["n_skipped"]))
    con.print(t)


@click.command("run")
@click.option("--dataset", "dataset_path", required=True, type=click.Path(dir_okay=False),
              help="Golden dataset (.jsonl, .csv, .yaml).")
@click.option("--candidate", "candidate_path", type=click.Path(dir_okay=False), help="Candidate YAML.")
@click.option("--outputs", "outputs_path", type=click.Path(dir_okay=False),
              help="JSONL of {id, output|tool_calls} produced elsewhere, scored instead of a candidate.")
@click.option("--evaluators", default=None, help="Comma-separated names, or a YAML file with options.")
@click.option("--split", type=click.Choice(["train", "dev", "test"]), default=None, help="Only this split.")
@click.option("--split-ratios", default=None, help="train,dev,test fractions (default 0.6,0.2,0.2).")
@click.option("--cohort", "cohorts", multiple=True, help="Only rows with this cohort tag (repeatable).")
@click.option("--limit", type=int, default=None, help="Only the first N selected rows.")
@click.option("--resume", is_flag=True, help="Continue the latest unfinished run with the same identity.")
@click.option("--no-cache", is_flag=True, help="Bypass the model-call cache (no reads, no writes).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: Ray workers (cluster at RAY_ADDRESS, else a local Ray instance).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Ray workers (default: one per CPU of the cluster).")
@click.option("--max-error-rate", type=click.FloatRange(0.0, 1.0), default=DEFAULT_MAX_ERROR_RATE,
              show_default=True,
              help="Fraction of rows whose model call may fail before the run exits 4 (candidate runs).")
@click.option("--trace", is_flag=True,
              help="One OpenTelemetry span per row, in the gateway's vocabulary, to the span store (`tunegate "
                   "traces`) and to OTLP/HTTP when TUNEGATE_OTLP_ENDPOINT is set (TUNEGATE_TRACE_* configure it).")
@click.pass_obj
def run_command(obj: common.Context, dataset_path: str, candidate_path: str | None, outputs_path: str | None,
                evaluators: str | None, split: str | None, split_ratios: str | None, cohorts: tuple[str, ...],
                limit: int | None, resume: bool, no_cache: bool, as_json: bool, executor: str = "local",
                workers: int | None = None, max_error_rate: float = DEFAULT_MAX_ERROR_RATE, trace: bool = False) -> int:
    """Generate and evaluate every selected row; prints the run id and a per-evaluator summary.

    Exit 4 when more than --max-error-rate of the rows' model calls failed (default: any), naming
    the count and the first error; the run is stored either way.
    """
    if (candidate_path is None) == (outputs_path is None):
        raise UserError("give exactly one of --candidate and --outputs", field="--candidate")
    ratios = SplitRatios.parse(split_ratios) if split_ratios else DEFAULT_SPLIT_RATIOS
    ds = load_dataset(dataset_path, ratios=ratios)
    cand = load_candidate(candidate_path) if candidate_path else None
    if cand is not None:  # prompt: name@label → registry content (the store is opened only then)
        cand = resolve_candidates(obj, cand)[0]
    outs = load_outputs(outputs_path) if outputs_path else None
    suite = resolve_suite(evaluators, ds)
    plan = plan_run(ds, suite, candidate=cand, outputs=outs, split=split,  # type: ignore[arg-type]
                    cohorts=list(cohorts) or None, limit=limit)
    backend = make_backend(cand) if cand is not None else None
    label = f"{cand.name if cand else 'outputs'} · {short(plan.candidate_hash)}"
    tracing, row_hook = _tracing(obj, cand, executor) if trace else (None, None)
    try:
        with obj.store() as store, common.progress_bar(label, len(plan.rows)) as hook:
            if executor == "ray":
                from tunegate.engine.run.ray_executor import RayOptions, run_plan_ray

                summary = run_plan_ray(plan, store, resume=resume, use_cache=not no_cache, progress=hook,
                                       options=RayOptions(workers=workers))
            else:
                summary = asyncio.run(execute(plan, store, backend, resume=resume, use_cache=not no_cache,
                                              progress=hook, row_hook=row_hook))
    finally:
        if tracing is not None:
            tracing.shutdown()   # flushes the batch exporter: every row's span is stored before we exit
    if as_json:
        common.print_json(summary.to_dict())
    else:
        print_summary(summary)
    if cand is not None:
        with obj.store() as store:
            check_generation_errors(store, summary, max_error_rate)
    return 0


def _tracing(obj: common.Context, cand: Any, executor: str) -> tuple[Any, Callable[[str, Any], None]]:
    """The ``--trace`` exporter and row hook: tracing/offline.py's spans (the gateway's attribute
    mapping, no copy of it), written to the store the run uses by the gateway's span-store sink."""
    if executor != "local":
        raise UserError("--trace needs the local executor (Ray workers do not report rows one by one)",
                        field="--trace")
    from tunegate.gateway.tracing_hook import store_sink
    from tunegate.tracing import Tracing, TracingConfig
    from tunegate.tracing.offline import run_row_hook

    tracing = Tracing(TracingConfig.from_env(), sink=store_sink(obj.db))
    return tracing, run_row_hook(tracing, cand)


def register(group: click.Group) -> None:
    group.add_command(run_command)
