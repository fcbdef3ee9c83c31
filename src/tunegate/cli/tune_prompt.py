"""``tunegate tune prompt``: optimise a candidate's prompt on train/dev, then gate it on test.

The command is the whole release step for a prompt: the optimizer spends a metric-call budget on
the train and dev splits only, every accepted proposal becomes a prompt version in the registry
with its lineage, and the best one is gated against the seed on the **test** split with the
policy given — same verdict, report and exit codes as ``tunegate gate``. The workflow itself is
the library's (:mod:`tunegate.tuning.workflow`, also :func:`tunegate.tune_prompt`); this module
only parses options and shows progress and results.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from tunegate.cli import common
from tunegate.errors import UserError

if TYPE_CHECKING:  # the library is imported when the command runs (``tunegate --help`` stays fast)
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from tunegate.tuning.budget import BudgetMeter
    from tunegate.tuning.history import History
    from tunegate.tuning.workflow import PromptTunePlan, PromptTuneResult

__all__ = ["parse_floors", "register", "tune_and_gate"]


def parse_floors(items: tuple[str, ...]) -> dict[str, float]:
    """``--floor NAME=MIN`` options → {name: min}."""
    out = {}
    for item in items:
        name, sep, val = item.partition("=")
        try:
            out[name.strip()] = float(val)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise UserError(f"expected NAME=VALUE, got {item!r}", field="--floor")
    return out


def _progress(bar: Progress, task: TaskID, budget: int) -> Callable[[History, BudgetMeter], None]:
    def hook(history: History, meter: BudgetMeter) -> None:
        best = history.best()
        seed = history.proposals[0].dev_mean or 0.0
        bar.update(task, completed=min(meter.metric_calls, budget),
                   description=f"best dev {best.dev_mean or 0.0:.3f} (seed {seed:.3f}) · {len(history.proposals)} "
                               f"proposals · {len(history.rejections)} rejected replies")
    return hook


@click.command("prompt")
@click.option("--method", required=True,
              help="Prompt optimizer: gepa, protegi, promptwizard, or one a plugin registers (entry-point group "
                   "tunegate.optimizers).")
@click.option("--dataset", "dataset_path", required=True, type=click.Path(dir_okay=False))
@click.option("--candidate", "candidate_path", required=True, type=click.Path(dir_okay=False),
              help="Seed candidate YAML (its prompt is what gets optimised).")
@click.option("--objective", default=None,
              help="Evaluator or weighted mix: json_validation or 'json_validation=0.7,tool_selection=0.3' "
                   "(default: the policy's headline evaluator).")
@click.option("--evaluators", default=None, help="Suite (names or YAML file; default: objective + policy evaluators).")
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False),
              help="Gate policy for the final test-split gate.")
@click.option("--budget", type=int, required=True, help="Metric calls (uncached row evaluations) the optimizer may spend.")
@click.option("--max-wall", type=float, default=None, help="Also stop after this many seconds.")
@click.option("--max-tokens", type=int, default=None, help="Also stop after this many tokens (task + reflection).")
@click.option("--floor", "floors", multiple=True, help="Constraint NAME=MIN on a dev mean (e.g. content_safety=0.9).")
@click.option("--max-prompt-tokens", type=int, default=None, help="Constraint: prompt size (≈ chars/4).")
@click.option("--reflection", "reflection_path", type=click.Path(dir_okay=False), default=None,
              help="Candidate YAML of the reflection model (default: the task model).")
@click.option("--reflection-max-tokens", type=int, default=384, show_default=True)
@click.option("--settings", "settings_path", type=click.Path(dir_okay=False), default=None,
              help="Optimizer settings YAML (see docs/prompt-optimizers/).")
@click.option("--seed", "random_seed", type=int, default=0, show_default=True)
@click.option("--prompt-name", default=None, help="Registry name for accepted versions (default: candidate name).")
@click.option("--report-dir", required=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the outcome and verdict as JSON.")
@click.pass_obj
def tune_prompt_command(obj: common.Context, method: str, dataset_path: str, candidate_path: str,
                        objective: str | None, evaluators: str | None, policy_path: str, budget: int,
                        max_wall: float | None, max_tokens: int | None, floors: tuple[str, ...],
                        max_prompt_tokens: int | None, reflection_path: str | None, reflection_max_tokens: int,
                        settings_path: str | None, random_seed: int, prompt_name: str | None, report_dir: str,
                        as_json: bool) -> int:
    """Optimise the prompt of CANDIDATE on DATASET's train/dev rows, then gate the best on test."""
    from tunegate.tuning.workflow import plan_prompt_tune

    plan = plan_prompt_tune(method=method, dataset=dataset_path, candidate=candidate_path, objective=objective,
                            evaluators=evaluators, policy=policy_path, budget=budget, max_wall=max_wall,
                            max_tokens=max_tokens, floors=parse_floors(floors), max_prompt_tokens=max_prompt_tokens,
                            reflection=reflection_path, reflection_max_tokens=reflection_max_tokens,
                            settings=settings_path, random_seed=random_seed, prompt_name=prompt_name,
                            out=report_dir)
    return tune_and_gate(obj, plan, as_json=as_json)


def tune_and_gate(obj: common.Context, plan: PromptTunePlan, *, as_json: bool = False) -> int:
    """Run the workflow with progress bars, print the outcome and the verdict, write the gate report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tunegate.report.files import write_report
    from tunegate.tuning.workflow import gate_on_test, run_prompt_tune

    con = common.out_console()
    if plan.seed.backend == "local":
        from tunegate.backends.models import resolve_model

        with common.err_console().status("preparing the local model"):
            resolve_model(plan.seed.model)
    bar = Progress(TextColumn("[bold]calls"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.description}"), console=common.err_console())
    with obj.store() as store:
        with bar:
            t = bar.add_task("scoring the seed on dev", total=plan.budget.metric_calls)
            res = run_prompt_tune(plan, store, gate=False, progress=_progress(bar, t, plan.budget.metric_calls))
        if not as_json:
            _print_outcome(con, res)
        if res.outcome.improved:
            with common.progress_bar("gating on test", 1) as hook:
                res.gate = gate_on_test(store, plan.dataset, res.baseline, res.candidate, plan.policy,
                                        plan.gate_evaluators, progress=hook)
    if res.gate is None:
        if as_json:
            common.print_json(res.to_dict())
        else:
            con.print(f"[bold yellow]INCONCLUSIVE[/]: {res.reason}")
        return 3
    paths = write_report(res.gate, plan.out / "gate")
    if as_json:
        common.print_json(res.to_dict())
    else:
        from tunegate.cli.gate_view import print_verdict

        con.print("\n[bold]Gate on the test split[/] (best vs seed)")
        print_verdict(con, res.gate)
        con.print(f"report: {paths['summary.md'].parent}/")
    return res.exit_code


def _print_outcome(con: Console, res: PromptTuneResult) -> None:
    outcome = res.outcome
    s = outcome.spent
    best, seed = outcome.best, outcome.seed
    con.print(f"[bold]{outcome.history.meta['config']['method']}[/]: stopped ({outcome.stopped}); "
              f"{s['metric_calls']} metric calls, {s['cached_rows']} cached rows free, "
              f"{s['reflection_calls']} reflection calls, {s['wall_s']:.0f}s")
    con.print(f"dev objective: seed {seed.dev_mean or 0.0:.3f} → best {best.dev_mean or 0.0:.3f} ({best.id}, "
              f"{best.operator}); {len(outcome.history.proposals)} proposals, "
              f"{len(outcome.history.rejections)} rejected replies")
    if res.versions:
        con.print(f"prompt versions: {', '.join(res.versions)}")
    con.print(f"history {res.history_path} · plot {res.plot_path} · candidate {res.candidate_path}")
    if best.prompt.system:
        con.print("best instruction:\n  " + json.dumps(best.prompt.system, ensure_ascii=False)[:600])


def register(group: click.Group) -> None:
    group.add_command(tune_prompt_command)
