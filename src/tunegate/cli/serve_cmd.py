"""``tunegate serve --config gateway.yaml``: run the OpenAI-compatible rollout gateway (extra ``gateway``).

uvicorn with uvloop and httptools (docs/decisions/0004-gateway-server.md says why). The config is
validated before the server starts, so a bad file is exit 2 with ``file:line: field: problem``.
``--hash-key`` prints the SHA-256 to put in ``auth.keys[].sha256`` (the key is read from stdin and
never written anywhere).
"""

from __future__ import annotations

import sys

import click

from tunegate.cli import common
from tunegate.errors import UserError

__all__ = ["register", "serve_cmd"]


@click.command("serve")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None, help="gateway.yaml")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--no-store", is_flag=True, help="No rollout state or request log: every route serves its baseline.")
@click.option("--check", is_flag=True, help="Validate the config (and resolve prompt versions), then exit.")
@click.option("--hash-key", is_flag=True, help="Read a gateway API key on stdin and print its SHA-256.")
@click.option("--release", "release", type=click.Path(dir_okay=False), default=None,
              help="release.yaml: run the release controller (mirroring, online gates, auto-rollback/ramp, traces).")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.pass_obj
def serve_cmd(obj: common.Context, config: str | None, host: str, port: int, no_store: bool, check: bool,
              hash_key: bool, log_level: str, release: str | None = None) -> None:
    """Serve POST /v1/chat/completions, GET /v1/models, /v1/rollout, /healthz, /metrics, /openapi.json."""
    if hash_key:
        from tunegate.gateway.auth import hash_key as h

        key = sys.stdin.readline().strip()
        if not key:
            raise UserError("no key on stdin", field="--hash-key")
        click.echo(h(key))
        return
    if config is None:
        raise UserError("--config gateway.yaml is required", field="--config")
    from tunegate.gateway.config import load_gateway_config
    from tunegate.gateway.service import resolve_specs

    cfg, specs = load_gateway_config(config)
    if no_store:
        resolve_specs(None, specs)
    else:
        with obj.store() as store:
            resolve_specs(store, specs)
    if check:
        hashes = {r: {a: s.hash for a, s in arms.items()} for r, arms in specs.items()}
        common.out_console().print(f"{config}: ok, {len(cfg.routes)} route(s), "
                                   f"config {cfg.model_copy(update={'candidate_hashes': hashes}).hash[:15]}")
        return
    try:
        import uvicorn

        from tunegate.gateway.app import create_app
    except ImportError as e:
        raise UserError(f"the gateway needs the 'gateway' extra: pip install 'tunegate[gateway]' ({e.name} missing)",
                        field="serve") from None
    app = create_app(config, db=obj.db, use_store=not no_store)
    if release is not None:  # tunegate.gateway.release_config (issue 14)
        from tunegate.gateway.release_config import install_release_control

        install_release_control(app, release, obj.db)
    common.err_console().print(f"tunegate gateway on http://{host}:{port}/v1 ({len(cfg.routes)} routes)")
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", log_level=log_level,
                access_log=False, lifespan="on")


def register(cli: click.Group) -> None:
    cli.add_command(serve_cmd)
