"""``tunegate runs`` and ``tunegate show``: what is in the store."""

from __future__ import annotations

from collections.abc import Sequence

import click
from rich.console import Console
from rich.table import Table

from tunegate.cli import common
from tunegate.cli.row_view import RowView, cell_text, row_views
from tunegate.core.hashing import short
from tunegate.core.result import EvalResult
from tunegate.engine.run.aggregate import summarise

__all__ = ["print_row_block", "register"]


@click.command("runs")
@click.option("--limit", type=int, default=30, help="How many of the newest runs.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def runs_command(obj: common.Context, limit: int, as_json: bool) -> int:
    """List runs, newest first."""
    with obj.store() as store:
        runs = store.runs(limit)
        names = {r.candidate_hash: (store.candidate(r.candidate_hash) or {}).get("name", "?") for r in runs}
    if as_json:
        for r in runs:
            common.print_json({"run_id": r.id, "status": r.status, "rows": r.rows_done, "n_rows": r.n_rows,
                               "dataset_hash": r.dataset_hash, "candidate_hash": r.candidate_hash,
                               "candidate": names[r.candidate_hash], "model_calls": r.model_calls,
                               "cache_hits": r.cache_hits, "started_at": r.started_at,
                               "finished_at": r.finished_at, "evaluators": [e["name"] for e in r.evaluators]})
        return 0
    t = Table(header_style="bold", show_edge=False)
    for col in ("run", "status", "rows", "candidate", "dataset", "evaluators", "calls", "hits", "started"):
        t.add_column(col)
    for r in runs:
        t.add_row(r.id, r.status, f"{r.rows_done}/{r.n_rows}", f"{names[r.candidate_hash]} {short(r.candidate_hash, 8)}",
                  short(r.dataset_hash, 8), ",".join(e["name"] for e in r.evaluators), str(r.model_calls),
                  str(r.cache_hits), r.started_at[:19])
    common.out_console().print(t if runs else "no runs yet")
    return 0


@click.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row (JSON Lines).")
@click.option("--failed", is_flag=True, help="Only rows where some evaluator did not pass, with the reasons.")
@click.option("--reasons", is_flag=True, help="Every row as a block: expected, output, each verdict's reason.")
@click.option("--cohort", "cohort", default=None, help="Only rows with this cohort tag.")
@click.option("--row", "row_ids", multiple=True, help="Only this row id (repeatable).")
@click.pass_obj
def show_command(obj: common.Context, run_id: str, as_json: bool, failed: bool, reasons: bool,
                 cohort: str | None, row_ids: tuple[str, ...]) -> int:
    """Per-row results of RUN_ID: expected value, output and each evaluator's score and reason.

    RUN_ID is a run id, any unique part of one (the random suffix is enough) or 'latest'. The
    table gives one line per row; --failed and --reasons print a block per row with the expected
    value and why each evaluator decided what it did.
    """
    with obj.store() as store:
        rec = store.run(run_id)
        rows = store.rows(rec.id)
        data = store.dataset_rows(rec.dataset_hash)
    names = [e["name"] for e in rec.evaluators]
    views = row_views(rows, data, names)
    if failed:
        views = [v for v in views if v.failed]
    if cohort:
        views = [v for v in views if cohort in v.cohorts]
    if row_ids:
        views = [v for v in views if v.id in set(row_ids)]
    if as_json:
        for v in views:
            common.print_json(v.to_dict(data.get(v.id, {}).get("expected")))
        return 0
    con = common.out_console()
    scores: list[dict[str, Sequence[EvalResult]]] = [dict(r.scores) for r in rows]
    summ = summarise(scores, names)
    con.print(f"[bold]{rec.id}[/] {rec.status} · {len(rows)}/{rec.n_rows} rows · dataset {short(rec.dataset_hash)} · "
              f"candidate {short(rec.candidate_hash)} · {rec.model_calls} calls / {rec.cache_hits} hits")
    con.print("  " + "  ".join(f"{n}={'—' if v['mean'] is None else format(v['mean'], '.3f')}" for n, v in summ.items()))
    errors = sum(1 for r in rows if r.error)
    if errors:
        first = next(r.error for r in rows if r.error)
        con.print(f"[red]{errors} row(s) failed to generate[/]; first: {common.escape(first or '')}")
    if failed or reasons:
        con.print(f"{len(views)} row(s){' that did not pass' if failed else ''}")
        for v in views:
            print_row_block(con, v)
        return 0
    # Score columns never shrink (no_wrap); expected and output give way, clipped to two lines.
    t = Table(header_style="bold", show_lines=False, show_edge=False)
    t.add_column("id", no_wrap=True, max_width=24, overflow="ellipsis")
    t.add_column("expected", min_width=8)
    t.add_column("output", min_width=8)
    for n in names:
        t.add_column(n, justify="right", no_wrap=True, min_width=6)
    id_w = min(24, max((len(v.id) for v in views), default=2))
    fixed = id_w + 3 + sum(max(len(n), 7) + 3 for n in names)
    text_w = max(8, (con.width - fixed) // 2 - 3)
    for v in views:
        out = _two_lines(v.shown_output().replace("\n", " "), 2 * text_w)
        out = f"[red]{common.escape(out)}[/]" if v.error else common.escape(out)
        t.add_row(common.escape(v.id), common.escape(_two_lines(v.expected, 2 * text_w)), out, *(cell_text(v.cells[n]) for n in names))
    con.print(t)
    return 0


def _two_lines(text: str, n: int = 60) -> str:
    """Clip a table cell so a row takes at most about two lines at 80 columns (--reasons has it all)."""
    return text if len(text) <= n else text[: n - 1] + "…"


def print_row_block(con: Console, v: RowView) -> None:
    """One row: header, expected, output, then one line per evaluator with its reason."""
    cohorts = f" [dim][{', '.join(v.cohorts)}][/]" if v.cohorts else ""
    con.print(f"\n[bold]{common.escape(v.id)}[/]{cohorts}")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("expected", common.escape(v.expected))
    out = v.shown_output()
    grid.add_row("output", f"[red]{common.escape(out)}[/]" if v.error else common.escape(out))
    for n, c in v.cells.items():
        mark = cell_text(c)
        style = "green" if c.passed else ("yellow" if c.status == "skipped" else "red")
        grid.add_row(n, f"[{style}]{mark}[/] {common.escape(c.reason)}")
    con.print(grid)


def register(group: click.Group) -> None:
    group.add_command(runs_command)
    group.add_command(show_command)
