"""``tunegate loop``: tune round by round until the gate promotes (or say which rule never passed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tunegate.cli import common

if TYPE_CHECKING:
    from tunegate.core.candidate import CandidateSpec
    from tunegate.core.dataset import Dataset
    from tunegate.core.policy import GatePolicy
    from tunegate.engine.gate.runs import GateResult
    from tunegate.tuning.loop import LoopConfig, RoundRecord, TuneStep

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
    from tunegate.tuning.workflow import gate_evaluators

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
    gate_evs = gate_evaluators(policy)

    def tune(r: int, seed: CandidateSpec) -> TuneStep:
        con.print(f"[bold]round {r}[/]: {cfg.method} from {seed.hash[:16]}")
        if cfg.method == "lora":
            return _tune_lora(cfg, ds, incumbent, policy, out / f"round-{r}", obj, r, gate_evs)
        return _tune_prompt(cfg, ds, seed, policy, out / f"round-{r}", obj, r)

    def gate(r: int, cand: CandidateSpec, pol: GatePolicy) -> GateResult:
        from tunegate.prompts import PromptRegistry, resolve_candidate
        from tunegate.report.files import write_report
        from tunegate.tuning.workflow import gate_on_test

        with obj.store() as store, common.progress_bar(f"round {r}: gating on test", 1) as hook:
            base = resolve_candidate(incumbent, PromptRegistry(store))
            res = gate_on_test(store, ds, base, cand, pol, gate_evs, progress=hook)
        write_report(res, out / f"round-{r}" / "gate")
        return res

    def on_round(rec: RoundRecord) -> None:
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


def _tune_prompt(cfg: LoopConfig, ds: Dataset, seed: CandidateSpec, policy: GatePolicy, out: Path,
                 obj: common.Context, r: int) -> TuneStep:
    """One prompt round through the library workflow (no gate here: the loop gates every round)."""
    from tunegate.tuning.loop import TuneStep
    from tunegate.tuning.workflow import plan_prompt_tune, run_prompt_tune

    rows = ds.with_cohorts([cfg.target_cohort]) if cfg.target_cohort else ds
    plan = plan_prompt_tune(method=cfg.method, dataset=rows, candidate=seed, policy=policy, budget=cfg.budget,
                            objective=cfg.objective, settings=cfg.settings, random_seed=cfg.seed + r,
                            reflection_max_tokens=None, prompt_name=seed.name.split("+")[0], out=out)
    with obj.store() as store:
        res = run_prompt_tune(plan, store, gate=False)
    o = res.outcome
    return TuneStep(res.candidate, o.seed.dev_mean, o.best.dev_mean,
                    {"spent": o.spent, "stopped": o.stopped, "versions": res.versions})


def _tune_lora(cfg: LoopConfig, ds: Dataset, incumbent: CandidateSpec, policy: GatePolicy, out: Path,
               obj: common.Context, r: int, gate_evs: list[str]) -> TuneStep:
    """One LoRA round: train from the incumbent's base weights (seed + r) on the train split of the
    target rows, then score seed and adapter on dev. Rounds do not stack adapters (PEFT adapters on
    an adapter are not a servable candidate); they differ by seed and keep the best."""
    from tunegate.engine.run.ensure import ensure_run
    from tunegate.tuning.loop import TuneStep
    from tunegate.tuning.weights.config import load_tune_config
    from tunegate.tuning.weights.manifest import register_candidate
    from tunegate.tuning.weights.run import tune_weights
    from tunegate.tuning.workflow import default_objective

    rows = ds.with_cohorts([cfg.target_cohort]) if cfg.target_cohort else ds
    assert cfg.lora_config is not None
    tc = load_tune_config(cfg.path(cfg.lora_config), method="lora")
    tc = tc.model_copy(update={"seed": tc.seed + cfg.seed + r})
    res = tune_weights("lora", dataset=rows, candidate=incumbent, out=out / "lora", config=tc)
    with obj.store() as store:
        cand = register_candidate(store, res.candidate_path)
        # dev score: the objective a prompt round would use (headline, else every gated evaluator)
        heads = [n.split("=")[0] for n in (cfg.objective or default_objective(policy)).split(",")]
        means: list[float | None] = []
        for c in (incumbent, cand):
            run_id, _ = ensure_run(store, rows, c, gate_evs, split="dev")
            scores = [x.score for row in store.rows(run_id) for h in heads for x in row.scores.get(h, [])
                      if x.status == "ok" and x.score is not None]
            means.append(sum(scores) / len(scores) if scores else None)
    return TuneStep(cand, means[0], means[1], {"manifest": res.manifest.get("metrics", {}),
                                               "candidate_yaml": str(res.candidate_path)})


def register(group: click.Group) -> None:
    group.add_command(loop_command)
