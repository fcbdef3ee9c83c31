"""``tunegate compare`` and ``tunegate gate``."""

from __future__ import annotations

import click

from tunegate.cli import common
from tunegate.cli.gate_view import print_comparison, print_verdict
from tunegate.errors import UserError

__all__ = ["register"]


@click.command("compare")
@click.argument("baseline_run")
@click.argument("candidate_run")
@click.option("--correction", type=click.Choice(["holm", "bh"]), default="holm", help="Multiplicity correction.")
@click.option("--resamples", type=int, default=2000, help="Bootstrap resamples.")
@click.option("--seed", type=int, default=0)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def compare_command(obj: common.Context, baseline_run: str, candidate_run: str, correction: str, resamples: int,
                    seed: int, as_json: bool) -> int:
    """Paired per-row statistics of CANDIDATE_RUN against BASELINE_RUN (no policy, no verdict)."""
    from tunegate.engine.gate.runs import compare_runs

    with obj.store() as store:
        paired, comp = compare_runs(store, baseline_run, candidate_run, n_resamples=resamples, seed=seed,
                                    correction=correction)
    if as_json:
        common.print_json({"baseline_run": paired.baseline.id, "candidate_run": paired.candidate.id,
                           "dataset_hash": paired.baseline.dataset_hash,
                           "only_in_baseline": paired.only_in_baseline, "only_in_candidate": paired.only_in_candidate,
                           "comparison": comp.to_dict()})
        return 0
    con = common.out_console()
    con.print(f"[bold]{paired.candidate.id}[/] vs baseline [bold]{paired.baseline.id}[/] · {len(paired.row_ids)} rows · "
              f"{comp.method}; correction {correction}")
    print_comparison(con, comp)
    return 0


@click.command("gate")
@click.option("--baseline", help="Baseline run id (or, with --dataset, use --baseline-candidate).")
@click.option("--candidate", help="Candidate run id, or with --dataset a candidate YAML file.")
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False), help="Gate policy YAML.")
@click.option("--dataset", "dataset_path", type=click.Path(dir_okay=False),
              help="One-shot mode: run what is missing (cached) on this dataset, then gate.")
@click.option("--baseline-candidate", "baseline_candidate", type=click.Path(dir_okay=False),
              help="One-shot mode: the incumbent's candidate YAML.")
@click.option("--evaluators", default=None, help="One-shot mode: evaluators (default: those the policy names).")
@click.option("--split", type=click.Choice(["train", "dev", "test"]), default=None, help="One-shot: only this split.")
@click.option("--cohort", "cohorts", multiple=True, help="One-shot: only rows with this cohort tag.")
@click.option("--limit", type=int, default=None, help="One-shot: only the first N rows.")
@click.option("--report-dir", type=click.Path(file_okay=False), default=None,
              help="Write summary.md, junit.xml, verdict.json, rows.jsonl here.")
@click.option("--json", "as_json", is_flag=True, help="Print verdict.json to stdout.")
@click.option("--junit-inconclusive", type=click.Choice(["failure", "skipped"]), default="failure", show_default=True,
              help="How undecided rules appear in junit.xml: a failure (CI red), or skipped (CI warns).")
@click.option("--allow-contaminated", is_flag=True,
              help="Keep gated rows that overlap the candidate's tuning data (they are still reported).")
@click.option("--mirror", "mirror", default=None, metavar="ROUTE",
              help="Gate the gateway route's mirrored, scored pairs (baseline vs shadow candidate).")
@click.pass_obj
def gate_command(obj: common.Context, baseline: str | None, candidate: str | None, policy_path: str,
                 dataset_path: str | None, baseline_candidate: str | None, evaluators: str | None, split: str | None,
                 cohorts: tuple[str, ...], limit: int | None, report_dir: str | None, as_json: bool,
                 junit_inconclusive: str, allow_contaminated: bool, mirror: str | None = None) -> int:
    """Decide PROMOTE (exit 0), BLOCK (1) or INCONCLUSIVE (3) under a versioned policy.

    \b
    Two stored runs:  tunegate gate --baseline RUN_A --candidate RUN_B --policy P --report-dir out/
    One shot:         tunegate gate --dataset D --baseline-candidate inc.yaml --candidate cand.yaml --policy P
    """
    from tunegate.api import gate_detailed
    from tunegate.cli.prompts_cmd import resolve_candidates
    from tunegate.core.candidate import load_candidate
    from tunegate.core.loading import load_dataset
    from tunegate.core.policy import load_policy
    from tunegate.report.files import write_report

    policy = load_policy(policy_path)
    if mirror is not None:  # the route's mirrored pairs, stored as two runs (tunegate.gateway.online)
        from tunegate.gateway.online import store_mirror_runs

        with obj.store() as store:
            baseline, candidate = store_mirror_runs(store, mirror)
    if dataset_path is not None:
        if not baseline_candidate or not candidate:
            raise UserError("one-shot mode needs --baseline-candidate FILE and --candidate FILE", field="--dataset")
        if baseline:
            raise UserError("give --baseline RUN or --baseline-candidate FILE, not both", field="--baseline")
        ds = load_dataset(dataset_path)
        base_c, cand_c = load_candidate(baseline_candidate), load_candidate(candidate)
        base_c, cand_c = resolve_candidates(obj, base_c, cand_c)  # prompt: name@label → registry content
        from tunegate.engine.run.plan import plan_run
        from tunegate.engine.run.suite import resolve_suite

        evs = evaluators if evaluators is not None else \
            list(dict.fromkeys(policy.gated_evaluators() + policy.cohort_evaluators()))
        suite = resolve_suite(evs, ds)
        for c in (base_c, cand_c):  # validate both fully before anything is written
            plan_run(ds, suite, candidate=c, split=split, cohorts=list(cohorts) or None, limit=limit)  # type: ignore[arg-type]
        with common.progress_bar("running", 1) as hook:
            res = gate_detailed(baseline=base_c, candidate=cand_c, policy=policy, dataset=ds, evaluators=evs,
                                split=split, cohorts=list(cohorts) or None, limit=limit, db=obj.db,  # type: ignore[arg-type]
                                progress=hook, allow_contaminated=allow_contaminated)
    else:
        if not baseline or not candidate:
            raise UserError("give --baseline RUN and --candidate RUN (or --dataset for one-shot mode)",
                            field="--baseline")
        import contextlib

        # the forgetting probe may run both candidates (specs recovered from the store): show it
        with common.progress_bar("probe", 1) if policy.forgetting else contextlib.nullcontext() as hook:
            res = gate_detailed(baseline=baseline, candidate=candidate, policy=policy, db=obj.db,
                                allow_contaminated=allow_contaminated, progress=hook)
    paths = write_report(res, report_dir, junit_inconclusive=junit_inconclusive) if report_dir else {}  # type: ignore[arg-type]
    if as_json:
        common.print_json(res.to_dict())
    else:
        con = common.out_console()
        print_verdict(con, res)
        if paths:
            con.print(f"report: {paths['summary.md'].parent}/ ({', '.join(paths)})")
    return res.exit_code


def register(group: click.Group) -> None:
    group.add_command(compare_command)
    group.add_command(gate_command)
