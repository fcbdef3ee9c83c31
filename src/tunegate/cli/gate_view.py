"""Terminal rendering of comparisons and verdicts, readable in an 80-column terminal.

Why this shape: a verdict is read in a CI log or a narrow terminal. Each rule takes exactly two
lines -- what it is (full evaluator name, cohort, scope) and the numbers that decided it -- and the
long evidence sentences, p-values and per-row details stay in the report (``--report-dir``), where
there is room. Tables are in long format (one line per evaluator, or per cohort x evaluator), so
adding evaluators adds lines, not columns.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tunegate.core.verdict import RuleResult, Verdict
from tunegate.engine.gate.runs import GateResult
from tunegate.engine.stats.results import OVERALL, Cell, Comparison

__all__ = ["print_comparison", "print_verdict", "rule_lines"]

_STYLE = {"PROMOTE": "bold green", "BLOCK": "bold red", "INCONCLUSIVE": "bold yellow"}
_RULE = {"pass": ("pass", "green"), "fail": ("FAIL", "bold red"), "undecided": ("undecided", "yellow"),
         "skipped": ("skipped", "dim")}
_ORDER = {"fail": 0, "undecided": 1, "pass": 2, "skipped": 3}
_INDENT = 11  # status column


def _pt(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "—"
    return f"{x * 100:+.1f}" if signed else f"{x * 100:.1f}"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def _title(r: RuleResult) -> str:
    """What the rule is: label, full evaluator name, cohort and scope (scope and cohort may be cut)."""
    head = r.name
    if r.evaluator and r.evaluator not in r.name:
        head += f" · {r.evaluator}"
    if r.rule not in ("cohort_variance", "error_budget"):
        head += f" {r.rule}"
    tail = ""
    if r.cohort and r.cohort != OVERALL and r.cohort not in r.name:
        tail += f" · cohort {r.cohort}"
    if r.scope:
        tail += f" · rows {r.scope}"
    return head + tail


def _numbers(r: RuleResult) -> str:
    """The numbers that decided the rule, in points (rates) or raw (variances)."""
    if r.measure == "error_rate":
        return (f"{(r.estimate or 0) * 100:.1f}% of {r.n} gated rows errored or unpaired, "
                f"budget {(r.threshold or 0) * 100:.1f}%")
    if r.estimate is None:
        return _fit(r.evidence, 200)
    if r.measure == "variance_increase":
        txt = f"var +{r.estimate:.4f} [{r.ci_low or 0:+.4f}, {r.ci_high or 0:+.4f}] vs ≤ {r.threshold:.4f}"
    elif r.measure == "candidate_mean":
        txt = f"mean {_pt(r.estimate, False)} [{_pt(r.ci_low, False)}, {_pt(r.ci_high, False)}] vs ≥ {_pt(r.threshold, False)}"
    else:
        txt = f"Δ {_pt(r.estimate)} [{_pt(r.ci_low)}, {_pt(r.ci_high)}] vs {_pt(r.threshold)}"
        if r.fail_threshold is not None:
            txt += f" (fail<{_pt(r.fail_threshold)})"
    txt += f" · n={r.n}"
    if r.status == "fail" and r.p_adjusted is not None:
        txt += f" · p adj {r.p_adjusted:.2g}"
    if r.status == "undecided":
        if r.rows_needed:
            txt += f" · ~{r.rows_needed:,} to {r.decides or 'decide'}"
        else:
            txt += " · more rows won't decide"
    return txt


def rule_lines(r: RuleResult, width: int) -> tuple[str, str]:
    """The two plain-text lines of one rule at ``width`` columns (status column excluded)."""
    room = max(width - _INDENT, 20)
    return _fit(_title(r), room), _fit(_numbers(r), room)


def _print_rules(con: Console, v: Verdict) -> None:
    shown = sorted((r for r in v.rules if r.status != "skipped"), key=lambda r: _ORDER.get(r.status, 9))
    for r in shown:
        title, numbers = rule_lines(r, con.width)
        label, style = _RULE[r.status]
        con.print(Text.assemble((f"{label:<{_INDENT}}", style), (title, "bold")), no_wrap=True, overflow="ellipsis")
        con.print(Text(" " * _INDENT + numbers), no_wrap=True, overflow="ellipsis")
    skipped = len(v.rules) - len(shown)
    if skipped:
        con.print(f"[dim]{skipped} check(s) skipped (e.g. cohorts below min_rows); listed in the report.[/]")


def _summary(v: Verdict) -> str:
    fails = v.by_status("fail")
    undecided = v.by_status("undecided")
    passed = v.by_status("pass")
    parts = [f"{len(fails)} failing", f"{len(undecided)} undecided", f"{len(passed)} passing"]
    first = v.reasons[0] if v.reasons else ""
    lead = first.split(":")[0] if v.decision != "PROMOTE" else first
    return f"{lead}\n" + ", ".join(parts) + f" · fail tests {v.correction}-corrected at α={v.alpha:g}"


def print_verdict(con: Console, res: GateResult) -> None:
    """Decision panel, then each rule on two lines, then the comparison tables."""
    v = res.verdict
    con.print(Panel(escape(_summary(v)), title=f"[{_STYLE[v.decision]}]{v.decision}[/]",
                    border_style=_STYLE[v.decision].split()[-1], title_align="left",
                    subtitle=f"policy {escape(res.policy.name)} v{escape(res.policy.version)}", subtitle_align="right"))
    _print_rules(con, v)
    con.print()
    print_comparison(con, res.comparison)


def _delta_ci(c: Cell) -> str:
    return f"{_pt(c.delta)} [{_pt(c.ci_low)}, {_pt(c.ci_high)}]"


def _style(c: Cell) -> str:
    if c.ci_high is not None and c.ci_high < 0:
        return "red"
    return "green" if (c.ci_low or 0) > 0 else ""


def print_comparison(con: Console, comp: Comparison, *, cohorts: bool = True) -> None:
    """Per evaluator (overall) and per cohort x evaluator: n, means and the delta with its CI (points)."""
    t = Table(title="eval delta by evaluator (points, 95% CI)", header_style="bold", show_edge=False,
              title_justify="left")
    t.add_column("evaluator", no_wrap=True)
    for col in ("n", "base", "cand", "Δ [95% CI]"):
        t.add_column(col, justify="right", no_wrap=True)
    for ev in comp.evaluators:
        c = ev.cell(OVERALL)
        if c is None:
            continue
        st = _style(c)
        txt = escape(_delta_ci(c))
        t.add_row(escape(ev.evaluator), str(c.n_pairs), _pt(c.base_mean, False), _pt(c.cand_mean, False),
                  f"[{st}]{txt}[/]" if st else txt)
    con.print(t)
    if not cohorts or not comp.cohorts:
        return
    t = Table(title="by cohort (points, 95% CI)", header_style="bold", show_edge=False, title_justify="left")
    t.add_column("cohort", no_wrap=True)
    t.add_column("evaluator", no_wrap=True)
    t.add_column("n", justify="right", no_wrap=True)
    t.add_column("Δ [95% CI]", justify="right", no_wrap=True)
    for cohort in sorted(comp.cohorts, key=lambda c: -comp.cohort_sizes.get(c, 0)):
        for ev in comp.evaluators:
            c = ev.cell(cohort)
            if c is None or c.delta is None:
                continue
            st = _style(c)
            txt = escape(_delta_ci(c))
            t.add_row(escape(cohort), escape(ev.evaluator), str(c.n_pairs), f"[{st}]{txt}[/]" if st else txt)
    con.print(t)
