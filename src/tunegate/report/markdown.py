"""``summary.md``: a GitHub-flavoured Markdown report fit for a pull-request comment.

Verdict first (a reviewer reads one line), then why, then the evidence: every rule, the
eval-delta table per evaluator, the cohort table, and the rows that flipped.
"""

from __future__ import annotations

from typing import Any

from tunegate.engine.gate.runs import GateResult
from tunegate.engine.stats.results import OVERALL
from tunegate.report.contamination_md import contamination_section
from tunegate.report.forgetting_md import forgetting_section

__all__ = ["md_escape", "render_markdown"]

_ICON = {"PROMOTE": "✅", "BLOCK": "⛔", "INCONCLUSIVE": "⚠️"}
_STATUS = {"pass": "✅ pass", "fail": "❌ fail", "undecided": "❔ undecided", "skipped": "➖ skipped"}


def _f(x: float | None, signed: bool = False, pct: bool = False) -> str:
    if x is None:
        return "—"
    if pct:
        return f"{x * 100:+.1f} pt" if signed else f"{x * 100:.1f}%"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _ci(lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None:
        return "—"
    return f"[{lo * 100:+.1f}, {hi * 100:+.1f}]"


def _p(p: float | None) -> str:
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


#: Characters with a meaning in GitHub-flavoured Markdown (tables, emphasis, links, HTML, code).
_MD_SPECIAL = frozenset("\\`*_[]<>|#~")


def md_escape(text: str) -> str:
    """Backslash-escape Markdown punctuation so text shows as written (CommonMark: any ASCII
    punctuation may be escaped). Not HTML entities: ``&lt;`` shows literally in viewers that do not
    decode entities and inside code spans, which is how ``p &lt;= 0.05`` reached readers."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def _cell(text: Any, limit: int = 90) -> str:
    s = "" if text is None else str(text)
    s = " ".join(s.split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return md_escape(s)


def _rules(res: GateResult) -> list[str]:
    lines = ["| rule | evaluator | cohort | rows | status | evidence | rows needed |",
             "|---|---|---|---|---|---|---|"]
    order = {"fail": 0, "undecided": 1, "pass": 2, "skipped": 3}
    for r in sorted(res.verdict.rules, key=lambda r: order.get(r.status, 9)):
        need = "" if r.rows_needed is None else f"{r.rows_needed:,}" + (f" ({r.decides})" if r.decides else "")
        lines.append(f"| {_cell(r.name, 40)} | {_cell(r.evaluator or '—', 80)} | {_cell(r.cohort or '—', 60)} | "
                     f"{_cell(r.scope or 'all', 60)} | {_STATUS[r.status]} | {_cell(r.evidence, 300)} | {need} |")
    return lines


def _evaluators(res: GateResult) -> list[str]:
    lines = ["| evaluator | test | n pairs | baseline | candidate | Δ | 95% CI of Δ (pt) | p (adj.) | "
             "errors b/c | skipped b/c |", "|---|---|---|---|---|---|---|---|---|---|"]
    for ev in res.comparison.evaluators:
        c = ev.cell(OVERALL)
        if c is None:
            continue
        lines.append(f"| **{_cell(ev.evaluator, 80)}** | {ev.test} | {c.n_pairs} | {_f(c.base_mean, pct=True)} | "
                     f"{_f(c.cand_mean, pct=True)} | {_f(c.delta, signed=True, pct=True)} | {_ci(c.ci_low, c.ci_high)} | "
                     f"{_p(c.p_adjusted)} | {len(ev.base.errored)}/{len(ev.cand.errored)} | "
                     f"{len(ev.base.skipped)}/{len(ev.cand.skipped)} |")
    return lines


def _cohorts(res: GateResult) -> list[str]:
    comp = res.comparison
    gated = [e for e in (res.policy.cohort_keys() or []) if comp.evaluator(e)] or \
        [e.evaluator for e in comp.evaluators]
    head = "| cohort | rows | " + " | ".join(f"{_cell(e, 80)} Δ (95% CI)" for e in gated) + " |"
    lines = [head, "|---|---|" + "---|" * len(gated)]
    for cohort in sorted(comp.cohorts, key=lambda c: -comp.cohort_sizes.get(c, 0)):
        cells = []
        for e in gated:
            ev = comp.evaluator(e)
            c = ev.cell(cohort) if ev else None
            if c is None or c.delta is None:
                cells.append("—")
            else:
                mark = " ⬇" if c.ci_high is not None and c.ci_high < 0 else (" ⬆" if (c.ci_low or 0) > 0 else "")
                cells.append(f"{_f(c.delta, signed=True, pct=True)} {_ci(c.ci_low, c.ci_high)} n={c.n_pairs}{mark}")
        lines.append(f"| {_cell(cohort, 60)} | {comp.cohort_sizes.get(cohort, 0)} | " + " | ".join(cells) + " |")
    return lines


def _flipped(rows: list[dict[str, Any]], limit: int) -> list[str]:
    broke = [r for r in rows if "broke" in r["flips"].values()]
    fixed = [r for r in rows if "fixed" in r["flips"].values() and r not in broke]
    lines: list[str] = []
    for title, sel in (("Rows the candidate broke", broke), ("Rows the candidate fixed", fixed)):
        if not sel:
            continue
        lines += [f"**{title}** ({len(sel)}; first {min(limit, len(sel))})", "",
                  "| id | cohorts | evaluators | input | baseline output | candidate output |",
                  "|---|---|---|---|---|---|"]
        for r in sel[:limit]:
            evs = ", ".join(k for k, v in r["flips"].items() if v == ("broke" if title.endswith("broke") else "fixed"))

            def out(side: dict[str, Any]) -> str:
                if side.get("tool_calls"):
                    return _cell(side["tool_calls"], 70)
                return _cell(side.get("output") if side.get("output") is not None else side.get("error"), 70)

            lines.append(f"| {_cell(r['id'], 60)} | {_cell(', '.join(r['cohorts']), 60)} | {_cell(evs, 80)} | {_cell(r['input'], 60)} | "
                         f"{out(r['baseline'])} | {out(r['candidate'])} |")
        lines.append("")
    return lines


def render_markdown(res: GateResult, rows: list[dict[str, Any]], *, top: int = 10) -> str:
    v = res.verdict
    p = res.paired
    d = res.to_dict()
    lines = [f"## {_ICON[v.decision]} tunegate: **{v.decision}**", ""]
    lines += [f"- {_cell(r, 400)}" for r in v.reasons] + [""]
    lines += [f"Candidate `{d['candidate']['candidate_name']}` ({p.candidate.candidate_hash[:17]}, run `{p.candidate.id}`) "
              f"vs baseline `{d['baseline']['candidate_name']}` ({p.baseline.candidate_hash[:17]}, run `{p.baseline.id}`) "
              f"on {len(p.row_ids)} rows of dataset `{p.baseline.dataset_hash[:19]}`.", ""]
    lines += ["### Rules", "", *_rules(res), ""]
    lines += ["### Eval delta by evaluator", "", *_evaluators(res), ""]
    if res.comparison.cohorts:
        lines += ["### Cohorts", "", *_cohorts(res), ""]
    flipped = _flipped(rows, top)
    if flipped:
        lines += ["### Flipped rows", "", *flipped]
    if p.only_in_baseline or p.only_in_candidate:
        lines += [f"Rows only in the baseline run: {len(p.only_in_baseline)}; only in the candidate run: "
                  f"{len(p.only_in_candidate)} (counted against the error budget).", ""]
    lines += contamination_section(res.contamination)
    lines += forgetting_section(res.forgetting)
    comp = res.comparison
    lines += ["<details><summary>Method and provenance</summary>", "",
              f"- Statistics: {comp.method}; {comp.n_resamples} resamples, seed {comp.seed}, α = {comp.alpha}; "
              f"per-cell p-values: McNemar exact (pass/fail) or Wilcoxon signed-rank (continuous), "
              f"multiplicity correction **{'Holm' if comp.correction == 'holm' else 'Benjamini–Hochberg'}** "
              f"across evaluators × cohorts.",
              f"- Policy `{res.policy.name}` v{res.policy.version} ({res.policy.hash[:16]}), "
              f"gate correction {v.correction}.",
              f"- tunegate {d['tunegate_version']}, {d['created_at']}.", "", "</details>", ""]
    return "\n".join(lines)
