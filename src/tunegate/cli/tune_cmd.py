"""``tunegate tune ...``: produce candidates (prompt optimizers, LoRA/DPO/soft-prompt adapters).

Each method lives in its own module ``tunegate/cli/tune_<method>.py`` exposing ``register(group)``;
they are discovered like the top-level commands so methods can be added independently.
"""

from __future__ import annotations

import importlib
import pkgutil

import click

__all__ = ["register", "tune_group"]


@click.group("tune")
def tune_group() -> None:
    """Tune a candidate (prompt optimizers or adapters); every result is gated like any candidate."""


def register(cli: click.Group) -> None:
    import tunegate.cli as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("tune_") and info.name != "tune_cmd":
            importlib.import_module(f"tunegate.cli.{info.name}").register(tune_group)
    cli.add_command(tune_group)
