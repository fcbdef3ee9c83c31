"""Agreement of every evaluator with human (or specification) labels on public sets.

Aggregates the per-family agreement benches (``bench/agreement_*.py``, each exposing
``results() -> list[dict]``) into one table, printed next to each target, so the docs table
(`docs/evaluators.md`) can be regenerated from one command: ``python bench/evaluator_agreement.py``.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
FAMILIES = ["groundedness", "relevancy", "ifeval", "safety", "pii", "judge"]


def _load(name: str) -> Any:
    path = HERE / f"agreement_{name}.py"
    spec = importlib.util.spec_from_file_location(f"agreement_{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "—" if v is None else str(v)


def main() -> None:
    con = Console()
    only = sys.argv[1:]
    table = Table(title="evaluator agreement with labels", header_style="bold", show_edge=False)
    for col in ("evaluator", "dataset", "slice", "metric", "value", "target", "met", "n", "rows/s"):
        table.add_column(col, justify="right" if col in ("value", "target", "n", "rows/s") else "left")
    for fam in FAMILIES:
        if only and fam not in only:
            continue
        path = HERE / f"agreement_{fam}.py"
        if not path.exists():
            continue
        t0 = time.perf_counter()
        try:
            rows = _load(fam).results()
        except Exception as e:  # one family failing must not hide the others
            con.print(f"[red]{fam}: {type(e).__name__}: {e}[/]")
            continue
        for r in rows:
            target = r.get("target")
            met = "" if target is None or r.get("value") is None else ("yes" if r["value"] >= target else "NO")
            table.add_row(str(r.get("evaluator")), str(r.get("dataset")), str(r.get("slice", "")),
                          str(r.get("metric")), _fmt(r.get("value")), _fmt(target), met, _fmt(r.get("n")),
                          _fmt(r.get("rows_per_s")))
        con.print(f"{fam}: {time.perf_counter() - t0:.1f}s")
    con.print(table)


if __name__ == "__main__":
    main()
