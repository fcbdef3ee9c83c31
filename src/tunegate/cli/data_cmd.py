"""``tunegate data inspect``: validate a dataset and show its hash, splits and cohorts.

The QA commands (``data contamination``, ``data check``) live in :mod:`tunegate.cli.data_checks`.
"""

from __future__ import annotations

import click
from rich.table import Table

from tunegate.cli import common
from tunegate.core.dataset import DEFAULT_SPLIT_RATIOS, SplitRatios
from tunegate.core.loading import load_dataset

__all__ = ["register"]


@click.group("data")
def data_group() -> None:
    """Datasets: validate, inspect splits and cohorts, check overlap and preference data."""


@data_group.command("inspect")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--split-ratios", default=None, help="train,dev,test fractions (default 0.6,0.2,0.2).")
@click.option("--json", "as_json", is_flag=True)
def inspect(path: str, split_ratios: str | None, as_json: bool) -> int:
    """Validate PATH (exit 2 with file:line:field on the first bad row) and summarise it."""
    ratios = SplitRatios.parse(split_ratios) if split_ratios else DEFAULT_SPLIT_RATIOS
    ds = load_dataset(path, ratios=ratios)
    splits = ds.split_counts()
    cohorts = ds.cohort_counts()
    fields = {f: sum(1 for ex in ds if getattr(ex, f) not in (None, [], {}))
              for f in ("input", "messages", "context", "expected", "json_schema", "tools", "expected_tool_calls")}
    info = {"path": path, "hash": ds.hash, "rows": len(ds), "splits": dict(splits), "cohorts": dict(cohorts),
            "fields": fields}
    if as_json:
        common.print_json(info)
        return 0
    con = common.out_console()
    con.print(f"[bold]{path}[/]: {len(ds)} rows · {ds.hash}")
    con.print("splits: " + ", ".join(f"{k}={splits.get(k, 0)}" for k in ("train", "dev", "test")))
    con.print("fields: " + ", ".join(f"{k.replace('json_schema', 'schema')}={v}" for k, v in fields.items() if v))
    t = Table(header_style="bold", show_edge=False)
    t.add_column("cohort")
    t.add_column("rows", justify="right")
    for c, n in sorted(cohorts.items(), key=lambda kv: (-kv[1], kv[0])):
        t.add_row(c, str(n))
    con.print(t)
    return 0


def register(group: click.Group) -> None:
    from tunegate.cli import data_checks

    data_checks.register(data_group)
    group.add_command(data_group)
