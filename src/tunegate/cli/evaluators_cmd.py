"""``tunegate evaluators``: the registry's map."""

from __future__ import annotations

import click
from rich.table import Table

from tunegate.cli import common
from tunegate.evaluators.registry import default_registry

__all__ = ["register"]


@click.command("evaluators")
@click.option("--json", "as_json", is_flag=True)
def evaluators_command(as_json: bool) -> int:
    """List registered evaluators (built-ins and plugins)."""
    reg = default_registry()
    rows = []
    for n in reg.names():
        cls = reg.get(n)
        rows.append({"name": n, "version": cls.version, "requires": list(cls.requires),
                     "description": cls.description, "module": cls.__module__})
        rows[-1]["requires"] = ["schema" if f == "json_schema" else f for f in rows[-1]["requires"]]
    if as_json:
        for r in rows:
            common.print_json(r)
        return 0
    t = Table(header_style="bold", show_edge=False)
    for col in ("name", "version", "requires", "description"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], r["version"], ",".join(r["requires"]) or "—", r["description"])
    common.out_console().print(t)
    return 0


def register(group: click.Group) -> None:
    group.add_command(evaluators_command)
