"""``tunegate`` entry point: the command map and the one place errors become exit codes.

Exit codes: 0 ok / PROMOTE, 1 BLOCK, 2 usage or input error (one clear line, no traceback),
3 INCONCLUSIVE, 4 runtime failure (a backend or store problem that is not the user's input).
"""

from __future__ import annotations

import sys

import click

from tunegate._version import __version__
from tunegate.cli import common
from tunegate.errors import TunegateError, UserError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tunegate")
@click.option("--db", type=click.Path(dir_okay=False), envvar="TUNEGATE_DB", default=None,
              help="Store: a SQLite path or a postgresql:// URL (default $TUNEGATE_DB or ~/.cache/tunegate/tunegate.db).")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """Decide, with evidence, whether a tuned LLM candidate may replace the model in production.

    \b
    Typical loop:
      tunegate run  --dataset D --candidate incumbent.yaml     # generate + evaluate, cached
      tunegate run  --dataset D --candidate candidate.yaml
      tunegate gate --baseline RUN_A --candidate RUN_B --policy policy.yaml --report-dir out/
    """
    ctx.obj = common.Context(db=db)


def _register() -> None:
    """Attach every ``tunegate/cli/*_cmd.py`` module (each exposes ``register(cli)``).

    Discovery instead of a hand-kept list: a command module is added by creating it, and two
    commands developed at the same time never edit the same line here.
    """
    import importlib
    import pkgutil

    import tunegate.cli as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.endswith("_cmd"):
            importlib.import_module(f"tunegate.cli.{info.name}").register(cli)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map errors to exit codes. Returns the code (also used by tests)."""
    try:
        rv = cli.main(args=argv, prog_name="tunegate", standalone_mode=False)
    except UserError as e:
        common.err_console().print(f"[bold red]error:[/] {common.escape(str(e))}", soft_wrap=True)
        return 2
    except click.exceptions.Abort:
        common.err_console().print("aborted")
        return 130
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show()
        return 2 if e.exit_code in (1, 2) else e.exit_code
    except TunegateError as e:
        common.err_console().print(f"[bold red]error:[/] {common.escape(str(e))}", soft_wrap=True)
        return 4
    except KeyboardInterrupt:
        return 130
    return int(rv) if isinstance(rv, int) else 0


def entry() -> None:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
