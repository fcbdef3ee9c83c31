"""``tunegate policy explain``: what a gate policy will decide on, before any model call."""

from __future__ import annotations

import click
from rich.markup import escape

from tunegate.cli import common

__all__ = ["register"]


@click.group("policy")
def policy_group() -> None:
    """Inspect gate policies."""


@policy_group.command("explain")
@click.argument("policy_path", type=click.Path(dir_okay=False))
@click.option("--dataset", "dataset_path", required=True, type=click.Path(dir_okay=False),
              help="Golden dataset the policy will gate on.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@click.pass_obj
def explain_command(obj: common.Context, policy_path: str, dataset_path: str, as_json: bool) -> int:
    """Per rule: rows it applies to, per split and cohort; warns when a rule can never be decided.

    \b
    A warning is a certainty, not a forecast: even a candidate identical to the baseline (or a
    perfect one, for floors) leaves that rule undecided at that many rows. Rows an evaluator skips
    (it does not apply to them) lower these counts further.
    Exit code: 0, or 3 when some rule can never be decided on the whole dataset.
    """
    from tunegate.core.loading import load_dataset
    from tunegate.core.policy import load_policy
    from tunegate.engine.gate.explain import explain_policy

    policy = load_policy(policy_path)
    ds = load_dataset(dataset_path)
    reach = explain_policy(policy, ds)
    blocked = [r for r in reach if any(w.startswith(("all rows", "probe rows")) for w in r.warnings)]
    if as_json:
        common.print_json({"policy": {"name": policy.name, "version": policy.version, "hash": policy.hash},
                           "dataset": {"hash": ds.hash, "rows": len(ds), "splits": dict(ds.split_counts()),
                                       "cohorts": dict(ds.cohort_counts())},
                           "rules": [r.to_dict() for r in reach], "never_decided": [r.name for r in blocked]})
        return 3 if blocked else 0
    con = common.out_console()
    splits = ", ".join(f"{k} {v}" for k, v in sorted(ds.split_counts().items()))
    con.print(f"[bold]policy {escape(policy.name)} v{escape(policy.version)}[/] on {len(ds)} rows "
              f"({splits}), alpha {policy.alpha:g}, min_rows {policy.min_rows}")
    for r in reach:
        con.print(f"\n[bold]{escape(r.name)}[/] · {escape(r.describe)}")
        line = f"  rows {r.rows}"
        if r.by_split:
            line += " · " + " / ".join(f"{k} {v}" for k, v in r.by_split.items())
        con.print(line)
        if r.by_cohort and not r.name.startswith("cohort "):
            con.print("  cohorts: " + escape(", ".join(f"{c} {k}" for c, k in r.by_cohort.items())))
        for w in r.warnings:
            con.print(f"  [yellow]! {escape(w)}[/]")
    n_warn = sum(len(r.warnings) for r in reach)
    con.print(f"\n{len(reach)} rule check(s), {n_warn} warning(s)"
              + (f"; never decidable on the whole dataset: {', '.join(r.name for r in blocked)}" if blocked else ""))
    return 3 if blocked else 0


def register(group: click.Group) -> None:
    group.add_command(policy_group)
