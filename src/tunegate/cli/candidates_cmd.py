"""``tunegate candidates list|show``: stored candidates and their lineage (base, method, data, config, parent)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from tunegate.cli import common
from tunegate.core.hashing import short
from tunegate.errors import UserError

__all__ = ["register"]


def _summary(c: dict[str, Any]) -> dict[str, Any]:
    """The lineage fields worth a column (tuned candidates carry them; others show blanks)."""
    lin = c.get("lineage") or {}
    base = lin.get("base_model")
    data = lin.get("tuning_data") or {}
    metrics = lin.get("metrics") or {}
    return {
        "hash": c["hash"], "name": c["name"], "kind": c["kind"], "created_at": c["created_at"],
        "method": lin.get("method"),
        "base_model": base.get("ref") if isinstance(base, dict) else base,
        "base_digest": base.get("digest") if isinstance(base, dict) else None,
        "data_hash": data.get("hash"), "data_rows": data.get("rows"), "split": data.get("split"),
        "config_hash": lin.get("config_hash"), "parent": lin.get("parent"),
        "adapter_digest": lin.get("adapter_digest"),
        "train_loss": metrics.get("train_loss"), "steps": metrics.get("steps"),
    }


def _find(store: Any, ref: str) -> dict[str, Any]:
    """A candidate by full hash or unique prefix (with or without the ``cand-`` prefix)."""
    c = store.candidate(ref)
    if c is not None:
        return dict(c)
    want = ref if ref.startswith("cand-") else "cand-" + ref
    hits = [h for (h,) in store.db.execute("SELECT hash FROM candidates WHERE hash LIKE ? LIMIT 3",
                                           (want.replace("%", "") + "%",))]
    if not hits:
        raise UserError(f"no candidate {ref!r} in {store.path}", field="candidate")
    if len(hits) > 1:
        raise UserError(f"candidate prefix {ref!r} is ambiguous ({', '.join(short(h) for h in hits)})",
                        field="candidate")
    return dict(store.candidate(hits[0]))


@click.group("candidates")
def candidates_group() -> None:
    """Stored candidates and their lineage."""


@candidates_group.command("list")
@click.option("--limit", type=int, default=50, help="How many of the newest candidates.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per candidate (JSON Lines).")
@click.pass_obj
def list_command(obj: common.Context, limit: int, as_json: bool) -> int:
    """Candidates, newest first, with method, base model, tuning-data hash, config hash and parent."""
    with obj.store() as store:
        rows = [_summary(c) for c in store.candidates(limit)]
    if as_json:
        for r in rows:
            common.print_json(r)
        return 0
    t = Table(header_style="bold", show_edge=False)
    for col in ("candidate", "name", "method", "base", "data", "config", "parent", "loss", "created"):
        t.add_column(col)
    for r in rows:
        t.add_row(short(r["hash"], 10), r["name"], r["method"] or "—", r["base_model"] or "—",
                  short(r["data_hash"], 8) if r["data_hash"] else "—",
                  short(r["config_hash"], 8) if r["config_hash"] else "—",
                  short(r["parent"], 8) if r["parent"] else "—",
                  "—" if r["train_loss"] is None else f"{r['train_loss']:.3f}", r["created_at"][:19])
    common.out_console().print(t if rows else "no candidates yet")
    return 0


@candidates_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="The full stored record (spec + lineage).")
@click.pass_obj
def show_command(obj: common.Context, ref: str, as_json: bool) -> int:
    """One candidate (HASH or unique prefix): spec and full lineage."""
    with obj.store() as store:
        c = _find(store, ref)
        parent = store.candidate(c["lineage"]["parent"]) if (c.get("lineage") or {}).get("parent") else None
    if as_json:
        common.print_json(c)
        return 0
    s, con = _summary(c), common.out_console()
    spec = c["spec"]
    con.print(f"[bold]{c['name']}[/] {c['hash']} ({c['kind']}, stored {c['created_at'][:19]})")
    con.print(f"  backend {spec.get('backend', '—')} · model {spec.get('model', '—')} · "
              f"adapter {spec.get('adapter') or '—'}")
    if s["method"]:
        lin = c["lineage"]
        data = lin.get("tuning_data", {})
        con.print(f"  method      {s['method']}")
        con.print(f"  base model  {s['base_model']} ({s['base_digest']})")
        con.print(f"  data        {data.get('path')} · {data.get('hash')} · split {data.get('split')} · "
                  f"{data.get('rows')} rows (skipped: {json.dumps(data.get('skipped', {}))})")
        con.print(f"  config      {s['config_hash']}")
        con.print(f"  parent      {s['parent']}" + (f" ({parent['name']})" if parent else " (not in this store)"))
        con.print(f"  adapter     {s['adapter_digest']}")
        con.print(f"  metrics     {json.dumps(lin.get('metrics', {}))}")
        con.print(f"  libraries   {json.dumps(lin.get('libraries', {}))}")
    elif c.get("lineage"):
        con.print(f"  lineage     {json.dumps(c['lineage'])}")
    return 0


def register(cli: click.Group) -> None:
    cli.add_command(candidates_group)
