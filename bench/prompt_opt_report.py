"""Tables and the JSON record of ``bench/prompt_opt.py``: one rich table per task, ratios against the
named peer (``dspy.GEPA``) measured in the same run, and the machine facts needed to quote them."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["PEER", "machine_facts", "markdown_table", "render_task", "summarise", "write_json"]

#: The named peer every ratio is taken against.
PEER = "dspy.GEPA"


def _v(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    """Host, cores, load, date and library versions (the figures are meaningless without them)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    libs = {p: _v(p) for p in ("tunegate", "dspy", "gepa", "optuna", "torch", "transformers")}
    return {"host": platform.node(), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "loadavg_1_5_15": [round(x, 2) for x in load], "libraries": {k: v for k, v in libs.items() if v}}


def _ms(xs: Sequence[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _vs_seed(rs: Sequence[dict[str, Any]], baseline: dict[str, Any] | None) -> dict[str, Any] | None:
    """Paired test rows against the seed prompt, pooled over seeds: rows better / worse and the exact
    (McNemar) two-sided p-value on those discordant pairs — the gate's test for binary scores."""
    base = (baseline or {}).get("test_rows")
    pairs = [(r["test_rows"][k], v) for r in rs if r.get("test_rows") for k, v in base.items()] if base else []
    if not pairs:
        return None
    from scipy.stats import binomtest

    better = sum(1 for cand, seed in pairs if cand > seed)
    worse = sum(1 for cand, seed in pairs if cand < seed)
    p = binomtest(better, better + worse).pvalue if better + worse else 1.0
    return {"better": better, "worse": worse, "pairs": len(pairs), "p": p}


def summarise(runs: Sequence[dict[str, Any]], arms: Sequence[str],
              baseline: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per arm: mean ± sd over seeds of test score, calls, wall time; paired comparison with the seed
    prompt; ratios vs the peer's means."""
    out = []
    for arm in arms:
        rs = [r for r in runs if r["arm"] == arm and r.get("status") == "ok"]
        failed = [r for r in runs if r["arm"] == arm and r.get("status") != "ok"]
        test_m, test_sd = _ms([r["test"] for r in rs])
        row = {"arm": arm, "seeds": [r["seed"] for r in rs],
               "failed": [" ".join(r.get("error", "").split()) for r in failed],
               "test_mean": test_m, "test_sd": test_sd,
               "dev_best_mean": _ms([r["dev_best"] for r in rs if r.get("dev_best") is not None])[0],
               "metric_calls_mean": _ms([r["metric_calls"] for r in rs])[0],
               "task_uncached_mean": _ms([r["task_uncached"] for r in rs])[0],
               "reflection_calls_mean": _ms([r["reflection_calls"] for r in rs])[0],
               "wall_s_mean": _ms([r["wall_s"] for r in rs])[0], "vs_seed": _vs_seed(rs, baseline),
               "also": {k: _ms([r["also"][k] for r in rs if r["also"].get(k) is not None])[0]
                        for k in (rs[0]["also"] if rs else {})}}
        out.append(row)
    peer = next((r for r in out if r["arm"] == PEER and r["test_mean"] is not None), None)
    for row in out:
        ok = peer is not None and row["test_mean"] is not None
        row["test_vs_peer"] = (row["test_mean"] / peer["test_mean"]) if ok and peer["test_mean"] else None
        row["wall_vs_peer"] = (row["wall_s_mean"] / peer["wall_s_mean"]) if ok and peer["wall_s_mean"] else None
    return out


def _f(x: float | None, fmt: str = "{:.3f}") -> str:
    return "—" if x is None else fmt.format(x)


def _paired(v: dict[str, Any] | None) -> str:
    return "—" if v is None else f"+{v['better']}/−{v['worse']} (p={v['p']:.2f})"


def render_task(console: Console, task: dict[str, Any], summary: Sequence[dict[str, Any]], budget: int) -> None:
    """One table: the seed prompt's test score first, then each arm (mean ± sd over seeds)."""
    d = task["describe"]
    sizes = d["sizes"]
    obj = ", ".join(d["objective"]["weights"])
    t = Table(title=f"{d['name']} — objective {obj} on {sizes['test']} held-out test rows "
                    f"(train {sizes['train']}/dev {sizes['dev']}); budget {budget} metric calls; "
                    f"ratios vs {PEER} in this run")
    for col in ("arm", "seeds", "test (mean ± sd)", *[f"test {k}" for k in task["also_report"]], "dev best",
                "vs seed +/− (p)", "metric calls", "task gens uncached", "reflections", "wall s", "test ÷ peer",
                "wall ÷ peer"):
        t.add_column(col, justify="left" if col == "arm" else "right")
    base = task["baseline"]
    t.add_row("seed prompt (baseline)", "—", _f(base["test"]), *[_f(base["also"].get(k)) for k in task["also_report"]],
              _f(base.get("dev")), "—", "0", "0", "0", "—", "—", "—")
    for row in summary:
        if row["test_mean"] is None:
            why = "; ".join(sorted(set(row["failed"]))) or "not run"
            t.add_row(row["arm"], "0", f"[red]{why[:60]}[/red]", *["—"] * (len(task["also_report"]) + 8))
            continue
        seeds = str(len(row["seeds"])) + (f" (+{len(row['failed'])} failed)" if row["failed"] else "")
        t.add_row(row["arm"], seeds, f"{row['test_mean']:.3f} ± {row['test_sd']:.3f}",
                  *[_f(row["also"].get(k)) for k in task["also_report"]], _f(row["dev_best_mean"]),
                  _paired(row["vs_seed"]), _f(row["metric_calls_mean"], "{:.0f}"), _f(row["task_uncached_mean"], "{:.0f}"),
                  _f(row["reflection_calls_mean"], "{:.0f}"), _f(row["wall_s_mean"], "{:.0f}"),
                  _f(row["test_vs_peer"], "{:.2f}×"), _f(row["wall_vs_peer"], "{:.2f}×"))
    console.print(t)
    skipped = task.get("skipped_by_deadline") or []
    if skipped:
        console.print("  [yellow]not run (--deadline-min reached)[/yellow]: "
                      + ", ".join(f"{s['arm']} seed {s['seed']}" for s in skipped))
    for r in task["runs"]:
        for note in r.get("notes", []):
            console.print(f"  [yellow]note[/yellow] {r['arm']} seed {r['seed']}: {note}")


def markdown_table(task: dict[str, Any]) -> str:
    """The task's table in Markdown (for docs/prompt-optimizers/benchmark.md)."""
    also = task["also_report"]
    head = ["arm", "seeds", "test (mean ± sd)", *[f"test {k}" for k in also], "dev best", "vs seed +/− (p)",
            "metric calls",
            "task gens uncached", "reflections", "wall s", f"test ÷ {PEER}", f"wall ÷ {PEER}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    b = task["baseline"]
    lines.append("| seed prompt (baseline) | — | " + " | ".join(
        [_f(b["test"]), *[_f(b["also"].get(k)) for k in also], _f(b.get("dev")), "—", "0", "0", "0", "—", "—",
         "—"]) + " |")
    for r in task["summary"]:
        if r["test_mean"] is None:
            lines.append(f"| {r['arm']} | 0 | failed: {'; '.join(sorted(set(r['failed'])))[:80] or 'not run'} |"
                         + " — |" * (len(head) - 3))
            continue
        cells = [r["arm"], str(len(r["seeds"])), f"{r['test_mean']:.3f} ± {r['test_sd']:.3f}",
                 *[_f(r["also"].get(k)) for k in also], _f(r["dev_best_mean"]), _paired(r["vs_seed"]),
                 _f(r["metric_calls_mean"], "{:.0f}"),
                 _f(r["task_uncached_mean"], "{:.0f}"), _f(r["reflection_calls_mean"], "{:.0f}"),
                 _f(r["wall_s_mean"], "{:.0f}"), _f(r["test_vs_peer"], "{:.2f}×"), _f(r["wall_vs_peer"], "{:.2f}×")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write atomically (the file is rewritten after every run, so an interrupted bench keeps its data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(path)
