"""``tunegate tune prompt``: optimise a candidate's prompt on train/dev, then gate it on test.

The command is the whole release step for a prompt: the optimizer spends a metric-call budget on
the train and dev splits only, every accepted proposal becomes a prompt version in the registry
with its lineage, and the best one is gated against the seed on the **test** split with the
policy given — same verdict, report and exit codes as ``tunegate gate``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from tunegate.cli import common
from tunegate.errors import UserError

__all__ = ["TunePlan", "plan_tune", "register", "tune_and_gate"]


def _floors(items: tuple[str, ...]) -> dict[str, float]:
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


def _settings(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    from tunegate.core.loading import read_yaml

    _, data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError("optimizer settings must be a mapping", file=path)
    return data


def _progress(bar: Any, task: Any, budget: int) -> Any:
    def hook(history: Any, meter: Any) -> None:
        best = history.best()
        seed = history.proposals[0].dev_mean or 0.0
        bar.update(task, completed=min(meter.metric_calls, budget),
                   description=f"best dev {best.dev_mean:.3f} (seed {seed:.3f}) · {len(history.proposals)} "
                               f"proposals · {len(history.rejections)} rejected replies")
    return hook


@click.command("prompt")
@click.option("--method", type=click.Choice(["gepa", "protegi", "promptwizard"]), required=True)
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
    plan = plan_tune(method=method, dataset_path=dataset_path, candidate_path=candidate_path, objective=objective,
                     evaluators=evaluators, policy_path=policy_path, budget=budget, max_wall=max_wall,
                     max_tokens=max_tokens, floors=_floors(floors), max_prompt_tokens=max_prompt_tokens,
                     reflection_path=reflection_path, reflection_max_tokens=reflection_max_tokens,
                     settings_path=settings_path, random_seed=random_seed, prompt_name=prompt_name,
                     report_dir=report_dir)
    return tune_and_gate(obj, plan, as_json=as_json)


@dataclass
class TunePlan:
    """Everything ``tune prompt`` needs, validated before any model call or store write."""

    method: str
    ds: Any
    seed: Any
    reflection: Any
    policy: Any
    objective: Any
    gate_evaluators: list[str]
    suite: Any
    settings: dict[str, Any]
    budget: Any
    reflection_params: Any
    random_seed: int
    prompt_name: str | None
    out: Path


def plan_tune(*, method: str, dataset_path: str | Path, candidate_path: str | Path, objective: str | None,
              evaluators: str | None, policy_path: str | Path, budget: int, max_wall: float | None = None,
              max_tokens: int | None = None, floors: dict[str, float] | None = None,
              max_prompt_tokens: int | None = None, reflection_path: str | None = None,
              reflection_max_tokens: int = 384, settings_path: str | Path | None = None, random_seed: int = 0,
              prompt_name: str | None = None, report_dir: str | Path) -> TunePlan:
    """Load and validate every input (exit 2 on the first problem, nothing written)."""
    from tunegate.core.candidate import DecodingParams, load_candidate
    from tunegate.core.loading import load_dataset
    from tunegate.core.policy import load_policy
    from tunegate.engine.run.suite import resolve_suite
    from tunegate.tuning.base import load_optimizer
    from tunegate.tuning.budget import Budget
    from tunegate.tuning.objective import Objective

    ds = load_dataset(dataset_path)
    seed = load_candidate(candidate_path)
    reflection = load_candidate(reflection_path) if reflection_path else None
    policy = load_policy(policy_path)
    objective_ = Objective.parse(objective or policy.headline.evaluator, floors=floors or {},
                                 max_prompt_tokens=max_prompt_tokens)
    gate_evs = list(dict.fromkeys(policy.gated_evaluators() + policy.cohort_evaluators()))
    suite = resolve_suite(evaluators or list(dict.fromkeys(objective_.evaluators + gate_evs)), ds)
    settings = _settings(str(settings_path) if settings_path else None)
    load_optimizer(method, settings, source=str(settings_path) if settings_path else None)
    if budget < 1:
        raise UserError("must be at least 1", field="--budget")
    return TunePlan(method=method, ds=ds, seed=seed, reflection=reflection, policy=policy, objective=objective_,
                    gate_evaluators=gate_evs, suite=suite, settings=settings,
                    budget=Budget(metric_calls=budget, wall_s=max_wall, tokens=max_tokens),
                    reflection_params=DecodingParams(temperature=0.7, top_p=0.95, max_tokens=reflection_max_tokens,
                                                     seed=random_seed),
                    random_seed=random_seed, prompt_name=prompt_name, out=Path(report_dir))


def tune_and_gate(obj: common.Context, plan: TunePlan, *, as_json: bool = False) -> int:
    """Optimise, record (history, plot, registry versions, candidate.yaml), gate best vs seed on test."""
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    with obj.store() as store:
        seed = _resolve(plan.seed, store)
        outcome = _optimise(store, plan.ds, seed, plan.suite, plan.objective, plan.method, plan.budget,
                            plan.reflection, plan.reflection_params, plan.settings, plan.random_seed)
        versions, best_ref = _commit_versions(store, outcome, plan.prompt_name or seed.name, plan.method)
    from tunegate.tuning.plot import plot_history

    hist_path = outcome.history.write(out / "history.json")
    plot_path = plot_history(outcome.history, out / "score-vs-calls.png",
                             title=f"{plan.method} on {_where(plan.ds.source, plan.ds.name)}: dev score vs metric calls")
    best = with_version(outcome.candidate, best_ref)
    cand_path = _write_candidate(best, out / "candidate.yaml")
    con = common.out_console()
    if not as_json:
        _print_outcome(con, outcome, versions, hist_path, plot_path, cand_path)
    if not outcome.improved:
        msg = ("no proposal beat the seed on dev, so there is no new candidate to gate "
               f"({len(outcome.history.proposals) - 1} proposals, {len(outcome.history.rejections)} rejected replies; "
               "a stronger --reflection model or a larger --budget may help)")
        if as_json:
            common.print_json({"outcome": _outcome_json(outcome, versions, hist_path, plot_path, cand_path),
                               "verdict": None, "decision": "INCONCLUSIVE", "reason": msg})
        else:
            con.print(f"[bold yellow]INCONCLUSIVE[/]: {msg}")
        return 3
    from tunegate.api import gate_detailed
    from tunegate.report.files import write_report

    with common.progress_bar("gating on test", 1) as hook:
        res = gate_detailed(baseline=seed, candidate=best, policy=plan.policy, dataset=plan.ds,
                            evaluators=plan.gate_evaluators, split="test", db=obj.db, progress=hook)
    paths = write_report(res, out / "gate")
    if as_json:
        common.print_json({"outcome": _outcome_json(outcome, versions, hist_path, plot_path, cand_path),
                           "verdict": res.to_dict()})
    else:
        from tunegate.cli.gate_view import print_verdict

        con.print("\n[bold]Gate on the test split[/] (best vs seed)")
        print_verdict(con, res)
        con.print(f"report: {paths['summary.md'].parent}/")
    return res.exit_code


def _resolve(seed: Any, store: Any) -> Any:
    """Fill a ``prompt: name@label`` reference from the registry (when the registry is available)."""
    if seed.prompt.ref is None:
        return seed
    from tunegate.prompts import PromptRegistry, resolve_candidate

    return resolve_candidate(seed, PromptRegistry(store))


def _optimise(store: Any, ds: Any, seed: Any, suite: Any, objective: Any, method: str, budget: Any,
              reflection: Any, refl_params: Any, settings: dict[str, Any], random_seed: int) -> Any:
    from tunegate.backends.models import resolve_model
    from tunegate.engine.run.factory import make_backend
    from tunegate.tuning.session import optimize_prompt

    if seed.backend == "local":
        with common.err_console().status("preparing the local model"):
            resolve_model(seed.model)
    task = make_backend(seed)
    refl = make_backend(reflection) if reflection is not None else None
    if reflection is not None:
        refl_params = reflection.params.model_copy(update={"max_tokens": refl_params.max_tokens}) \
            if reflection.params.temperature > 0 else refl_params
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("[bold]calls"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.description}"), console=common.err_console())
    with bar:
        t = bar.add_task("scoring the seed on dev", total=budget.metric_calls)
        return asyncio.run(optimize_prompt(dataset=ds, seed=seed, evaluators=suite, objective=objective,
                                           method=method, budget=budget, task_backend=task, cache=store,
                                           reflection_backend=refl, reflection_params=refl_params,
                                           settings=settings, random_seed=random_seed,
                                           progress=_progress(bar, t, budget.metric_calls)))


def _commit_versions(store: Any, outcome: Any, name: str, method: str) -> tuple[list[str], str | None]:
    """Seed and every accepted proposal become prompt versions (lineage: parent, optimizer, hashes)."""
    from tunegate.prompts import PromptRegistry

    reg = PromptRegistry(store)
    refs: dict[str, str] = {}
    meta = outcome.history.meta
    for p in outcome.history.proposals:
        if p.status == "rejected":
            continue
        parent = next((refs[x] for x in p.parents if x in refs), None)
        lineage = {"parent_version": parent, "optimizer": method, "proposal": p.id, "operator": p.operator,
                   "config_hash": outcome.config_hash, "dataset_hash": meta.get("dataset_hash"),
                   "dev_mean": p.dev_mean, "calls_at": p.calls_at}
        dev = f"dev {p.dev_mean:.3f}" if p.dev_mean is not None else "scored on minibatches only"
        msg = "seed prompt" if p.status == "seed" else f"{method} {p.id} ({p.operator}), {dev}"
        v = reg.commit(name, p.prompt.model_copy(update={"ref": None}), msg, author="tunegate tune prompt",
                       lineage=lineage)
        refs[p.id] = v.ref
    best = refs.get(outcome.best.id)
    if best is not None and outcome.improved:
        reg.label(name, "candidate", int(best.rsplit("@v", 1)[1]))
    return list(dict.fromkeys(refs.values())), best


def with_version(cand: Any, ref: str | None) -> Any:
    """The tuned candidate, self-contained (prompt text inline, no registry ref) with the version
    it was committed as recorded in its lineage (the seed's own version is not carried over)."""
    lineage = {k: v for k, v in cand.lineage.items() if k not in ("prompt_version", "prompt_ref", "prompt_hash")}
    if ref is not None:
        lineage["prompt_version"] = ref
    return cand.model_copy(update={"prompt": cand.prompt.model_copy(update={"ref": None}), "lineage": lineage})


def _write_candidate(spec: Any, path: Path) -> Path:
    import yaml

    data = spec.model_dump(mode="json", exclude={"source"}, exclude_defaults=False)
    data["prompt"].pop("ref", None)
    path.write_text("# written by tunegate tune prompt (best proposal); gate it like any candidate\n"
                    + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _outcome_json(outcome: Any, versions: list[str], hist: Path, plot: Path, cand: Path) -> dict[str, Any]:
    return {"best": outcome.best.id, "best_dev_mean": outcome.best.dev_mean, "seed_dev_mean": outcome.seed.dev_mean,
            "stopped": outcome.stopped, "spent": outcome.spent, "config_hash": outcome.config_hash,
            "versions": versions, "history": str(hist), "plot": str(plot), "candidate": str(cand)}


def _print_outcome(con: Any, outcome: Any, versions: list[str], hist: Path, plot: Path, cand: Path) -> None:
    s = outcome.spent
    best, seed = outcome.best, outcome.seed
    con.print(f"[bold]{outcome.history.meta['config']['method']}[/]: stopped ({outcome.stopped}); "
              f"{s['metric_calls']} metric calls, {s['cached_rows']} cached rows free, "
              f"{s['reflection_calls']} reflection calls, {s['wall_s']:.0f}s")
    con.print(f"dev objective: seed {seed.dev_mean:.3f} → best {best.dev_mean:.3f} ({best.id}, {best.operator}); "
              f"{len(outcome.history.proposals)} proposals, {len(outcome.history.rejections)} rejected replies")
    if versions:
        con.print(f"prompt versions: {', '.join(versions)}")
    con.print(f"history {hist} · plot {plot} · candidate {cand}")
    if best.prompt.system:
        con.print("best instruction:\n  " + json.dumps(best.prompt.system, ensure_ascii=False)[:600])


def register(group: click.Group) -> None:
    group.add_command(tune_prompt_command)


def _where(source: str | None, name: str) -> str:
    """``examples/support/dataset.jsonl`` → ``support/dataset.jsonl`` (a file stem alone says little)."""
    if not source:
        return name
    parts = Path(source).parts
    return "/".join(parts[-2:])
