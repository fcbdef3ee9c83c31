"""``tunegate runs`` and ``tunegate show``: what is in the store."""

from __future__ import annotations

import json

import click
from rich.table import Table

from tunegate.cli import common
from tunegate.core.hashing import short
from tunegate.engine.run.aggregate import aggregate_row, summarise

__all__ = ["register"]


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
@click.option("--failed", is_flag=True, help="Only rows where some evaluator did not pass.")
@click.pass_obj
def show_command(obj: common.Context, run_id: str, as_json: bool, failed: bool) -> int:
    """Per-row results of RUN_ID (a run id, a unique prefix, or 'latest')."""
    with obj.store() as store:
        rec = store.run(run_id)
        rows = store.rows(rec.id)
        data = store.dataset_rows(rec.dataset_hash)
    names = [e["name"] for e in rec.evaluators]
    out_rows = []
    for r in rows:
        first = r.outputs[0] if r.outputs else None
        evals = {}
        for n in names:
            agg = aggregate_row(r.scores.get(n, []))
            evals[n] = {"score": agg.score, "status": agg.status, "reason": agg.reason}
        if failed and all(v["status"] != "ok" or (v["score"] or 0) >= 0.5 for v in evals.values()):
            continue
        out_rows.append({
            "id": r.row_id, "cohorts": data.get(r.row_id, {}).get("cohorts", []),
            "output": first.text if first else None,
            "tool_calls": [c.model_dump() for c in first.tool_calls] if first else [],
            "error": r.error, "samples": len(r.outputs), "evaluators": evals,
        })
    if as_json:
        for o in out_rows:
            common.print_json(o)
        return 0
    con = common.out_console()
    summ = summarise([r.scores for r in rows], names)
    con.print(f"[bold]{rec.id}[/] {rec.status} · {len(rows)}/{rec.n_rows} rows · dataset {short(rec.dataset_hash)} · "
              f"candidate {short(rec.candidate_hash)} · {rec.model_calls} calls / {rec.cache_hits} hits")
    con.print("  " + "  ".join(f"{n}={'—' if v['mean'] is None else format(v['mean'], '.3f')}" for n, v in summ.items()))
    t = Table(header_style="bold", show_lines=False, show_edge=False)
    t.add_column("id")
    t.add_column("cohorts")
    t.add_column("output", max_width=60, overflow="ellipsis", no_wrap=True)
    for n in names:
        t.add_column(n, justify="right")
    for o in out_rows:
        cells = []
        for n in names:
            v = o["evaluators"][n]
            cells.append(f"{v['score']:.2f}" if v["status"] == "ok" else v["status"])
        text = o["output"] if o["output"] is not None else f"[red]{o['error']}[/]"
        if o["tool_calls"]:
            text = json.dumps(o["tool_calls"])[:200]
        t.add_row(o["id"], ",".join(o["cohorts"]), common.escape(text or ""), *cells)
    con.print(t)
    return 0


def register(group: click.Group) -> None:
    group.add_command(runs_command)
    group.add_command(show_command)
