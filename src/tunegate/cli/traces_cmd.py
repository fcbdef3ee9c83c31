"""``tunegate traces``: what the span store says — latency, tokens, cost, eval-fail-rate, by group.

Reads the ``spans`` table (written by the default span-store exporter of the gateway and of offline
runs) over a time window and prints, per group (model, prompt version, route, arm, cohort...):
traces, p50/p99 latency, tokens and cost per trace, error rate, and the eval-fail-rate of the
evaluated spans. Grouping by two keys (``--by model --by prompt_version``) is how a model
regression is told apart from a prompt or gateway change.
"""

from __future__ import annotations

import time

import click

from tunegate.cli import common
from tunegate.errors import UserError

__all__ = ["register", "traces_cmd"]


def _fmt(v: object, spec: str) -> str:
    return "-" if v is None else format(v, spec)


@click.command("traces")
@click.option("--since", default="1h", show_default=True, help="Window ending now: 15m, 24h, 7d.")
@click.option("--by", "by", multiple=True, default=("model",), show_default=True,
              help="Group by (repeatable): model, prompt_version, route, arm, cohort, candidate, source, response_model.")
@click.option("--route", default=None, help="Only spans of this route.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def traces_cmd(obj: common.Context, since: str, by: tuple[str, ...], route: str | None, as_json: bool) -> None:
    """Latency (p50/p99), tokens and cost per trace, eval-fail-rate, grouped, over a time window."""
    from tunegate.store import online as q
    from tunegate.tracing.summary import GROUP_KEYS, summarize, window_ns

    now = time.time_ns()
    try:
        start = window_ns(since, now)
    except ValueError as e:
        raise UserError(str(e), field="--since") from None
    bad = [k for k in by if k not in GROUP_KEYS]
    if bad:
        raise UserError(f"cannot group by {bad[0]!r}; use {', '.join(GROUP_KEYS)}", field="--by")
    with obj.store() as store:
        rows = q.span_rows(store, since_ns=start, until_ns=now, route=route)
    groups = summarize(rows, list(by))
    if as_json:
        common.print_json({"since": since, "by": list(by), "spans": len(rows), "groups": groups})
        return
    from rich.table import Table

    t = Table(title=f"traces, last {since} ({len(rows)} spans)")
    for k in by:
        t.add_column(k)
    for col in ("traces", "p50 ms", "p99 ms", "tokens/trace", "cost/trace", "errors", "evaluated", "eval fail"):
        t.add_column(col, justify="right")
    for g in groups:
        t.add_row(*[str(g[k]) if g[k] is not None else "-" for k in by], str(g["traces"]), _fmt(g["p50_ms"], ".1f"),
                  _fmt(g["p99_ms"], ".1f"), _fmt(g["tokens_per_trace"], ".1f"), _fmt(g["cost_per_trace"], ".6f"),
                  _fmt(g["error_rate"], ".1%"), str(g["evaluated"]), _fmt(g["eval_fail_rate"], ".1%"))
    common.out_console().print(t)


def register(cli: click.Group) -> None:
    cli.add_command(traces_cmd)
