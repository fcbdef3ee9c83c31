"""``tunegate loop``: tune round by round until the gate promotes (or say which rule never passed)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from tunegate.cli import common

__all__ = ["register"]


@click.command("loop")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Loop config YAML (dataset, candidate, policy, rounds, method, budget...).")
@click.option("--report-dir", required=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def loop_command(obj: common.Context, config_path: str, report_dir: str, as_json: bool) -> int:
    """Each round: tune on train, evaluate on dev, gate on test; stop at the first PROMOTE.

    Exit 0 when a round promoted, else the last gate's code (1 BLOCK, 3 INCONCLUSIVE).
    """
    from tunegate.core.candidate import load_candidate
    from tunegate.core.loading import load_dataset
    from tunegate.core.policy import load_policy
    from tunegate.tuning.loop import load_loop_config, run_loop

    cfg = load_loop_config(config_path)
    ds = load_dataset(cfg.path(cfg.dataset))
    incumbent = load_candidate(cfg.path(cfg.candidate))
    policy = load_policy(cfg.path(cfg.policy))
    if cfg.target_cohort and cfg.target_cohort not in ds.cohort_counts():
        from tunegate.errors import UserError

        raise UserError(f"cohort {cfg.target_cohort!r} not in the dataset ({sorted(ds.cohort_counts())})",
                        file=config_path, field="target_cohort")
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    con = common.out_console()
    gate_evs = list(dict.fromkeys(policy.gated_evaluators() + policy.cohort_evaluators()))

    def tune(r: int, seed: Any) -> Any:
        con.print(f"[bold]round {r}[/]: {cfg.method} from {seed.hash[:16]}")
        if cfg.method == "lora":
            return _tune_lora(cfg, ds, incumbent, policy, out / f"round-{r}", obj, r, gate_evs)
        return _tune_prompt(cfg, ds, seed, policy, out / f"round-{r}", obj, r, gate_evs)

    def gate(r: int, cand: Any, pol: Any) -> Any:
        from tunegate.api import gate_detailed
        from tunegate.report.files import write_report

        with common.progress_bar(f"round {r}: gating on test", 1) as hook:
            res = gate_detailed(baseline=incumbent, candidate=cand, policy=pol, dataset=ds, evaluators=gate_evs,
                                split="test", db=obj.db, progress=hook)
        write_report(res, out / f"round-{r}" / "gate")
        return res

    def on_round(rec: Any) -> None:
        con.print(f"  round {rec.round}: dev {_f(rec.dev_seed)} → {_f(rec.dev_best)} · gate {rec.decision} "
                  f"(alpha {rec.alpha:.4f}, {rec.wall_s:.0f}s)")
        for b in rec.blocking[:3]:
            con.print(f"    blocked by {common.escape(b)}")

    result = run_loop(cfg, policy, incumbent, tune=tune, gate=gate, on_round=on_round)
    (out / "loop.json").write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    if as_json:
        common.print_json(result.to_dict())
    else:
        con.print(f"\n[bold]{result.stopped}[/]; best candidate from round {result.best_round} "
                  f"({result.best.hash if result.best else '-'}); rounds in {out}/loop.json")
    return result.exit_code


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _tune_prompt(cfg: Any, ds: Any, seed: Any, policy: Any, out: Path, obj: common.Context, r: int,
                 gate_evs: list[str]) -> Any:
    from tunegate.backends.models import resolve_model
    from tunegate.engine.run.factory import make_backend
    from tunegate.engine.run.suite import resolve_suite
    from tunegate.tuning.budget import Budget
    from tunegate.tuning.loop import TuneStep
    from tunegate.tuning.objective import Objective
    from tunegate.tuning.plot import plot_history
    from tunegate.tuning.session import optimize_prompt

    rows = ds.with_cohorts([cfg.target_cohort]) if cfg.target_cohort else ds
    objective = Objective.parse(cfg.objective or policy.headline.evaluator)
    suite = resolve_suite(list(dict.fromkeys(objective.evaluators + gate_evs)), rows)
    if seed.backend == "local":
        resolve_model(seed.model)
    with obj.store() as store:
        outcome = asyncio.run(optimize_prompt(dataset=rows, seed=seed, evaluators=suite, objective=objective,
                                              method=cfg.method, budget=Budget(metric_calls=cfg.budget),
                                              task_backend=make_backend(seed), cache=store, settings=cfg.settings,
                                              random_seed=cfg.seed + r))
        from tunegate.cli.tune_prompt import _commit_versions, with_version

        versions, best_ref = _commit_versions(store, outcome, seed.name.split("+")[0], cfg.method)
    outcome.history.write(out / "history.json")
    plot_history(outcome.history, out / "score-vs-calls.png")
    cand = with_version(outcome.candidate, best_ref)
    return TuneStep(cand, outcome.seed.dev_mean, outcome.best.dev_mean,
                    {"spent": outcome.spent, "stopped": outcome.stopped, "versions": versions})


def _tune_lora(cfg: Any, ds: Any, incumbent: Any, policy: Any, out: Path, obj: common.Context, r: int,
               gate_evs: list[str]) -> Any:
    """One LoRA round: train from the incumbent's base weights (seed + r) on the train split of the
    target rows, then score seed and adapter on dev. Rounds do not stack adapters (PEFT adapters on
    an adapter are not a servable candidate); they differ by seed and keep the best."""
    from tunegate.api import ensure_run
    from tunegate.tuning.loop import TuneStep
    from tunegate.tuning.weights.config import load_tune_config
    from tunegate.tuning.weights.manifest import register_candidate
    from tunegate.tuning.weights.run import tune_weights

    rows = ds.with_cohorts([cfg.target_cohort]) if cfg.target_cohort else ds
    assert cfg.lora_config is not None
    tc = load_tune_config(cfg.path(cfg.lora_config), method="lora")
    tc = tc.model_copy(update={"seed": tc.seed + cfg.seed + r})
    res = tune_weights("lora", dataset=rows, candidate=incumbent, out=out / "lora", config=tc)
    with obj.store() as store:
        cand = register_candidate(store, res.candidate_path)
        head = policy.headline.evaluator
        means = []
        for c in (incumbent, cand):
            run_id, _ = ensure_run(store, rows, c, gate_evs, split="dev")
            scores = [x.score for row in store.rows(run_id) for x in row.scores.get(head, [])
                      if x.status == "ok" and x.score is not None]
            means.append(sum(scores) / len(scores) if scores else None)
    return TuneStep(cand, means[0], means[1], {"manifest": res.manifest.get("metrics", {}),
                                               "candidate_yaml": str(res.candidate_path)})


def register(group: click.Group) -> None:
    group.add_command(loop_command)
