"""Terminal rendering of comparisons and verdicts (rich tables)."""

from __future__ import annotations

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from tunegate.engine.gate.runs import GateResult
from tunegate.engine.stats.results import OVERALL, Comparison

__all__ = ["print_comparison", "print_verdict"]

_STYLE = {"PROMOTE": "bold green", "BLOCK": "bold red", "INCONCLUSIVE": "bold yellow"}
_RULE = {"pass": "[green]pass[/]", "fail": "[red]fail[/]", "undecided": "[yellow]undecided[/]",
         "skipped": "[dim]skipped[/]"}


def _pt(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "—"
    return f"{x * 100:+.1f}" if signed else f"{x * 100:.1f}"


def print_comparison(con: Console, comp: Comparison, *, cohorts: bool = True) -> None:
    t = Table(title="eval delta by evaluator (points)", header_style="bold", show_edge=False)
    for col in ("evaluator", "test", "n", "baseline", "candidate", "Δ", "95% CI", "p adj", "err b/c"):
        t.add_column(col, justify="left" if col in ("evaluator", "test") else "right")
    for ev in comp.evaluators:
        c = ev.cell(OVERALL)
        if c is None:
            continue
        style = "red" if (c.ci_high is not None and c.ci_high < 0) else ("green" if (c.ci_low or 0) > 0 else "")
        t.add_row(ev.evaluator, ev.test, str(c.n_pairs), _pt(c.base_mean, False), _pt(c.cand_mean, False),
                  f"[{style}]{_pt(c.delta)}[/]" if style else _pt(c.delta),
                  f"[{_pt(c.ci_low)}, {_pt(c.ci_high)}]", "—" if c.p_adjusted is None else f"{c.p_adjusted:.3f}",
                  f"{len(ev.base.errored)}/{len(ev.cand.errored)}")
    con.print(t)
    if not cohorts or not comp.cohorts:
        return
    t = Table(title="cohorts: Δ points [95% CI]", header_style="bold", show_edge=False)
    t.add_column("cohort")
    t.add_column("rows", justify="right")
    names = [e.evaluator for e in comp.evaluators]
    for n in names:
        t.add_column(n, justify="right")
    for cohort in sorted(comp.cohorts, key=lambda c: -comp.cohort_sizes.get(c, 0)):
        cells = []
        for ev in comp.evaluators:
            c = ev.cell(cohort)
            if c is None or c.delta is None:
                cells.append("—")
                continue
            style = "red" if (c.ci_high is not None and c.ci_high < 0) else ("green" if (c.ci_low or 0) > 0 else "")
            txt = f"{_pt(c.delta)} [{_pt(c.ci_low)}, {_pt(c.ci_high)}]"
            cells.append(f"[{style}]{txt}[/]" if style else txt)
        t.add_row(cohort, str(comp.cohort_sizes.get(cohort, 0)), *cells)
    con.print(t)


def print_verdict(con: Console, res: GateResult) -> None:
    v = res.verdict
    body = "\n".join(f"• {r}" for r in v.reasons) or "no reasons"
    con.print(Panel(body, title=f"[{_STYLE[v.decision]}]{v.decision}[/]", border_style=_STYLE[v.decision].split()[-1],
                    subtitle=f"policy {res.policy.name} v{res.policy.version} · {res.policy.hash[:16]}"))
    t = Table(title="rules", header_style="bold", show_edge=False)
    for col in ("rule", "status", "evidence", "rows needed"):
        t.add_column(col, overflow="fold")
    order = {"fail": 0, "undecided": 1, "pass": 2, "skipped": 3}
    shown = [r for r in v.rules if r.status != "skipped"]
    for r in sorted(shown, key=lambda r: order.get(r.status, 9)):
        name = r.name if not r.evaluator or r.evaluator in r.name else f"{r.name} · {r.evaluator}"
        t.add_row(name, _RULE[r.status], r.evidence, "" if r.rows_needed is None else str(r.rows_needed))
    con.print(t)
    skipped = len(v.rules) - len(shown)
    if skipped:
        con.print(f"[dim]{skipped} rule check(s) skipped (cohorts below min_rows); all are listed in the report.[/]")
    print_comparison(con, res.comparison)
