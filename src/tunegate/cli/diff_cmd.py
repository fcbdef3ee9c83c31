"""``tunegate diff RUN_A RUN_B``: the rows two runs disagree on, side by side in the terminal.

``compare`` and ``gate`` say *whether* B is better; ``diff`` shows *where*: per row the expected
value, A's and B's replies next to each other and each evaluator's verdict with its reason.
``--broke`` keeps rows some evaluator passed in A and failed in B, ``--fixed`` the reverse.
Rows are paired by id; rows only one run has are counted, not hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from tunegate.cli import common
from tunegate.cli.row_view import Cell, RowView, cell_text, row_views
from tunegate.store.base import RunRecord

__all__ = ["RowDiff", "diff_rows", "register"]


@dataclass(frozen=True)
class RowDiff:
    """One row id present in both runs, with what changed."""

    a: RowView
    b: RowView
    broke: list[str]    #: evaluators that passed in A and failed in B
    fixed: list[str]    #: evaluators that failed in A and passed in B
    changed: list[str]  #: evaluators whose status or score differ at all

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.a.id, "cohorts": self.a.cohorts, "expected": self.a.expected,
                "a": self.a.to_dict(), "b": self.b.to_dict(), "broke": self.broke, "fixed": self.fixed,
                "changed": self.changed}


def _fails(c: Cell) -> bool:
    return c.status == "error" or (c.status == "ok" and not c.passed)


def diff_rows(a: list[RowView], b: list[RowView], names: list[str]) -> list[RowDiff]:
    """Pair rows by id (A's order) and classify each evaluator's change."""
    by_id = {v.id: v for v in b}
    out = []
    for va in a:
        vb = by_id.get(va.id)
        if vb is None:
            continue
        broke, fixed, changed = [], [], []
        for n in names:
            ca, cb = va.cells.get(n), vb.cells.get(n)
            if ca is None or cb is None:
                continue
            if ca.passed and _fails(cb):
                broke.append(n)
            elif cb.passed and _fails(ca):
                fixed.append(n)
            if (ca.status, ca.score) != (cb.status, cb.score):
                changed.append(n)
        if va.error is None and vb.error is not None and not broke:
            broke.append("generation")
        out.append(RowDiff(va, vb, broke, fixed, changed))
    return out


def _header(con: Console, label: str, rec: RunRecord, name: str) -> None:
    con.print(f"[bold]{label}[/] {rec.id} · {common.escape(name)} · {rec.rows_done}/{rec.n_rows} rows")


def _print_row(con: Console, d: RowDiff, names: list[str]) -> None:
    tag = ("[red]broke[/] " + ", ".join(d.broke)) if d.broke else ""
    if d.fixed:
        tag += (" · " if tag else "") + "[green]fixed[/] " + ", ".join(d.fixed)
    cohorts = f" [dim][{', '.join(d.a.cohorts)}][/]" if d.a.cohorts else ""
    con.print(f"\n[bold]{common.escape(d.a.id)}[/]{cohorts} {tag}")
    con.print(f"[bold]expected[/] {common.escape(d.a.expected)}")
    t = Table(show_edge=False, expand=True, header_style="bold", padding=(0, 1))
    t.add_column("A", ratio=1, overflow="fold")
    t.add_column("B", ratio=1, overflow="fold")
    t.add_row(common.escape(d.a.shown_output()), common.escape(d.b.shown_output()))
    for n in names:
        ca, cb = d.a.cells.get(n), d.b.cells.get(n)
        if ca is None or cb is None:
            continue
        style = "red" if n in d.broke else ("green" if n in d.fixed else "")
        head = f"[{style}]{n}[/]" if style else n
        left = f"{head} {cell_text(ca)}\n[dim]{common.escape(ca.reason)}[/]"
        right = f"{head} {cell_text(cb)}\n[dim]{common.escape(cb.reason)}[/]"
        t.add_row(left, right)
    con.print(t)


@click.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--broke", is_flag=True, help="Only rows some evaluator passed in A and failed in B.")
@click.option("--fixed", is_flag=True, help="Only rows some evaluator failed in A and passed in B.")
@click.option("--all", "show_all", is_flag=True, help="Every paired row, changed or not.")
@click.option("--cohort", default=None, help="Only rows with this cohort tag.")
@click.option("--evaluator", "evaluators", multiple=True, help="Only these evaluators (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Print at most N rows.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row (JSON Lines).")
@click.pass_obj
def diff_command(obj: common.Context, run_a: str, run_b: str, broke: bool, fixed: bool, show_all: bool,
                 cohort: str | None, evaluators: tuple[str, ...], limit: int | None, as_json: bool) -> int:
    """Rows where RUN_A and RUN_B differ, side by side: expected, both replies, each verdict and reason.

    Run ids may be any unique part of an id, or 'latest'. By default every row whose score or status
    changed for some evaluator is shown; --broke / --fixed narrow to regressions / fixes.
    """
    with obj.store() as store:
        ra, rb = store.run(run_a), store.run(run_b)
        rows_a, rows_b = store.rows(ra.id), store.rows(rb.id)
        data = store.dataset_rows(ra.dataset_hash)
        if rb.dataset_hash != ra.dataset_hash:
            data = {**store.dataset_rows(rb.dataset_hash), **data}
        name_a = (store.candidate(ra.candidate_hash) or {}).get("name", "?")
        name_b = (store.candidate(rb.candidate_hash) or {}).get("name", "?")
    ids_a = {e["name"]: e for e in ra.evaluators}
    ids_b = {e["name"]: e for e in rb.evaluators}
    names = [n for n in ids_a if n in ids_b]
    if evaluators:
        unknown = sorted(set(evaluators) - set(names))
        if unknown:
            raise click.UsageError(f"--evaluator {', '.join(unknown)}: not scored by both runs "
                                   f"(both have: {', '.join(names) or 'none'})")
        names = [n for n in names if n in evaluators]
    all_diffs = diff_rows(row_views(rows_a, data, names), row_views(rows_b, data, names), names)
    diffs, n_paired = all_diffs, len(all_diffs)
    if cohort:
        diffs = [d for d in diffs if cohort in d.a.cohorts]
    if broke or fixed:
        diffs = [d for d in diffs if (broke and d.broke) or (fixed and d.fixed)]
    elif not show_all:
        diffs = [d for d in diffs if d.changed or d.a.error != d.b.error]
    if limit is not None:
        diffs = diffs[:limit]
    if as_json:
        for d in diffs:
            common.print_json(d.to_dict())
        return 0
    con = common.out_console()
    _header(con, "A", ra, name_a)
    _header(con, "B", rb, name_b)
    notes = []
    if ra.dataset_hash != rb.dataset_hash:
        notes.append("the runs used different datasets (rows paired by id)")
    versions = [n for n in names if ids_a[n] != ids_b[n]]
    if versions:
        notes.append(f"evaluator identity differs for {', '.join(versions)} (version or config)")
    only = {v.row_id for v in rows_a} ^ {v.row_id for v in rows_b}
    if only:
        notes.append(f"{len(only)} row(s) are in only one run")
    for note in notes:
        con.print(f"[yellow]note:[/] {note}")
    n_broke = sum(1 for d in all_diffs if d.broke)
    n_fixed = sum(1 for d in all_diffs if d.fixed)
    con.print(f"{n_paired} paired rows · [red]{n_broke} broke[/] · [green]{n_fixed} fixed[/] · "
              f"{len(diffs)} shown")
    for d in diffs:
        _print_row(con, d, names)
    return 0


def register(group: click.Group) -> None:
    group.add_command(diff_command)
