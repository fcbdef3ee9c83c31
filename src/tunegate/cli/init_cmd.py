"""``tunegate init [DIR]``: a working starting point — dataset, two candidates, a policy that fits.

Writes ``dataset.jsonl`` (four cohorts: JSON triage rows with a schema, tool rows, text rows with
context, numeric rows), ``incumbent.yaml`` and ``candidate.yaml`` (the embedded local model, so it
runs with no server and no key) and ``policy.yaml`` (a headline over every row, one guard scoped to
each cohort), then prints the two commands to run. Existing files are never overwritten unless
``--force`` is given.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from tunegate.cli import common
from tunegate.cli.init_scaffold import SCAFFOLD_FILES
from tunegate.errors import UserError

__all__ = ["next_commands", "register", "write_scaffold"]


def write_scaffold(target: Path, *, force: bool = False) -> list[Path]:
    """Write the scaffold into ``target`` (created if missing); returns the files written."""
    if target.exists() and not target.is_dir():
        raise UserError("exists and is not a directory", file=str(target))
    clash = [name for name in SCAFFOLD_FILES if (target / name).exists()]
    if clash and not force:
        raise UserError(f"would overwrite {', '.join(clash)} (use --force, or another directory)",
                        file=str(target))
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in SCAFFOLD_FILES.items():
        path = target / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def next_commands(target: Path) -> list[str]:
    """The two commands a user runs next: check the policy against the data, then gate."""
    d = "" if str(target) in ("", ".") else str(target).rstrip("/") + "/"

    def q(name: str) -> str:
        return shlex.quote(d + name)

    return [
        f"tunegate policy explain {q('policy.yaml')} --dataset {q('dataset.jsonl')}",
        f"tunegate gate --dataset {q('dataset.jsonl')} --baseline-candidate {q('incumbent.yaml')} "
        f"--candidate {q('candidate.yaml')} --policy {q('policy.yaml')} --report-dir {q('report')}",
    ]


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite existing scaffold files.")
def init_command(directory: str, force: bool) -> int:
    """Scaffold a golden dataset, incumbent and candidate YAMLs and a gate policy in DIRECTORY.

    \b
    dataset.jsonl   80 rows in 4 cohorts: triage (JSON schema), tools, policy (text + context), math
    incumbent.yaml  the model in production (embedded SmolLM2; no server or key needed)
    candidate.yaml  the change under test (a more precise system prompt)
    policy.yaml     headline over all rows; one guard scoped to each cohort
    """
    target = Path(directory)
    written = write_scaffold(target, force=force)
    con = common.out_console()
    for p in written:
        con.print(f"wrote {common.escape(str(p))}")
    con.print("\nnext:")
    for cmd in next_commands(target):
        con.print(f"  {common.escape(cmd)}", soft_wrap=True)
    con.print("\nReplace the rows with your own (docs/datasets.md) and point the candidates at your model "
              "(docs/candidates.md).")
    return 0


def register(group: click.Group) -> None:
    group.add_command(init_command)
