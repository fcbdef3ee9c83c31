"""The gate: a policy applied to a comparison gives PROMOTE, BLOCK or INCONCLUSIVE.

Decision logic (calibration argument in docs/decisions/0002-gate-statistics.md):

* A rule **passes** when the (1 - alpha) CI of its measure lies wholly on the good side of the
  threshold (``ci_low > -margin``, ``ci_low >= min`` for floors), and, for pass/fail data at a zero
  threshold, the exact one-sided McNemar test agrees at alpha/2. PROMOTE needs *every* rule to pass:
  an intersection-union test, so each rule at its own level bounds false PROMOTE by alpha/2 with no
  multiplicity correction.
* A rule **fails** when a one-sided test of "the rule holds" (t approximation with the bootstrap
  standard error, floored by the zero-event bound; maxed with the exact McNemar/binomial p where
  that test exists) is rejected after a weighted Holm (or BH) correction over every fail test of the
  verdict, at level alpha. BLOCK needs *one* failure, so the correction is what bounds false BLOCK
  (A/A) at alpha however many evaluators x cohorts are gated. Overall rules share (1 - alpha_share)
  of the budget and per-cohort rules alpha_share, so the main guards keep most of their power.
* Otherwise the rule is **undecided**, with the pairs needed to decide it, found by running this
  same decision rule at larger n (:mod:`tunegate.engine.stats.sample_size`). The error budget is a
  count, not a test: exceeding it blocks.
* ``no_drop`` passes like ``non_inferior`` (CI above ``-margin``) but fails on *any* drop shown with
  confidence (its fail test is against 0); ``improve`` is superiority (docs/decisions/0003).
* Scoped rules (``cohorts:`` / ``where:``) read a derived measure holding only their rows
  (:mod:`tunegate.engine.gate.scope`); ``gate_arrays`` builds it, ``decide`` expects it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tunegate.core.policy import GatePolicy, Rule
from tunegate.core.verdict import Decision, RuleResult, Verdict
from tunegate.engine.gate.scope import scope_input
from tunegate.engine.stats.compare import ComparisonInput, compare_arrays
from tunegate.engine.stats.inference import (
    _special,
    adjust,
    mcnemar_exact,
    one_sided_p,
    z_quantile,
    zero_event_halfwidth,
)
from tunegate.engine.stats.results import OVERALL, Cell, Comparison
from tunegate.engine.stats.sample_size import SizingInput, rows_to_decide
from tunegate.errors import UserError

__all__ = ["ExternalRule", "decide", "gate_arrays"]

#: Reasons list at most this many failing (or undecided) checks; every check is still in ``rules``.
_MAX_LISTED = 8


@dataclass
class _Check:
    """One statistical check before and after the decision."""

    name: str
    rule: str
    evaluator: str
    cohort: str
    measure: str
    direction: Literal["min", "max"]  # min: the measure must exceed the threshold; max: stay below it
    threshold: float
    margin: float | None
    strict: bool
    family: Literal["overall", "cohort"]
    fail_threshold: float | None = None  # bound of the fail test; None = threshold (differs for no_drop)
    scope: str | None = None
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    se: float | None = None
    df: int | None = None
    n: int = 0
    exact_fail: float | None = None
    exact_pass_ok: bool = True
    se_floor: float = 0.0
    status: str = "undecided"
    note: str = ""
    pass_ok: bool = False
    p_fail: float | None = None
    p_adj: float | None = None
    weight: float = 0.0
    rows_needed: int | None = None
    need_direction: str | None = None
    wins: int | None = None
    losses: int | None = None
    successes: int | None = None
    exact_pass: bool = False
    min_rows: int = 1

    @property
    def tested(self) -> bool:
        return self.p_fail is not None

    @property
    def fail_bound(self) -> float:
        return self.threshold if self.fail_threshold is None else self.fail_threshold


@dataclass(frozen=True)
class ExternalRule:
    """A rule judged on a cell of *another* comparison (e.g. the forgetting probe's runs).

    It is tested exactly like an overall guard and enters the same multiplicity family, so adding
    it keeps the verdict's false-BLOCK bound. ``cell`` None means the rule could not be evaluated;
    ``note`` says why, and the rule is undecided (never a silent pass).
    """

    name: str
    rule: Rule
    cell: Cell | None
    note: str = ""
    #: A per-cohort rule of the other comparison: below this many pairs it is listed, not gated.
    min_rows: int | None = None


def _external_check(x: ExternalRule, policy: GatePolicy) -> _Check:
    if x.cell is None:
        return _Check(name=x.name, rule=x.rule.rule, evaluator=x.rule.evaluator, cohort=OVERALL, measure="delta",
                      direction="min", threshold=x.rule.threshold, margin=x.rule.margin, strict=True,
                      family="overall", fail_threshold=x.rule.fail_threshold, note=x.note or "not evaluable")
    # one family with the overall rules (a cohort family would take the policy's cohort alpha share)
    c = _cell_check(x.name, x.rule.rule, x.rule.threshold, x.rule.fail_threshold, x.rule.margin, x.cell,
                    "overall", policy.alpha)
    c.evaluator = x.rule.evaluator  # the rule's name for the measure, not the other comparison's
    if x.min_rows is not None:
        if x.cell.n_pairs < x.min_rows:
            c.status = "skipped"
            c.note = f"{x.cell.n_pairs} pairs < min_rows {x.min_rows}: not gated"
        return c
    if x.cell.n_pairs < policy.min_rows:
        c.note = f"only {x.cell.n_pairs} pairs, fewer than min_rows {policy.min_rows}"
        c.rows_needed = c.min_rows = policy.min_rows
    return c


def _fmt(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _cell_check(name: str, kind: str, threshold: float, fail_threshold: float, margin: float | None, cell: Cell,
                family: Literal["overall", "cohort"], alpha: float) -> _Check:
    floor = kind == "floor"
    c = _Check(name=name, rule=kind, evaluator=cell.evaluator, cohort=cell.cohort,
               measure="candidate_mean" if floor else "delta", direction="min", threshold=threshold,
               margin=margin, strict=not floor, family=family, n=cell.n_pairs, df=cell.df,
               fail_threshold=fail_threshold)
    c.estimate = cell.cand_mean if floor else cell.delta
    c.ci_low, c.ci_high = (cell.cand_ci_low, cell.cand_ci_high) if floor else (cell.ci_low, cell.ci_high)
    c.se = cell.cand_se if floor else cell.se
    if cell.n_pairs:
        c.se_floor = zero_event_halfwidth(cell.n_pairs, alpha) / z_quantile(1 - alpha / 2)
    if cell.test == "mcnemar" and cell.n_pairs and cell.cand_mean is not None:
        if floor:  # exact binomial: P(X <= k | p = min)
            c.successes = round(cell.cand_mean * cell.n_pairs)
            c.exact_fail = float(_special().bdtr(c.successes, cell.n_pairs, threshold))
        else:
            c.wins, c.losses = cell.flipped_up or 0, cell.flipped_down or 0
            if fail_threshold == 0.0:
                c.exact_fail = mcnemar_exact(c.wins, c.losses, alternative="less")
            if threshold == 0.0:
                c.exact_pass = True
                c.exact_pass_ok = mcnemar_exact(c.wins, c.losses, alternative="greater") <= alpha / 2
    return c


def _missing_key(key: str, comp: Comparison, policy: GatePolicy, field: str) -> UserError:
    hint = ("; a scoped rule reads a derived measure: build the input with engine.gate.scope.scope_input "
            "(gate_arrays and gate_runs do)") if "[" in key else ""
    return UserError(f"evaluator {key!r} is not in the comparison (has: "
                     f"{', '.join(e.evaluator for e in comp.evaluators) or 'none'}){hint}",
                     file=policy.source, field=field)


def _rule_checks(policy: GatePolicy, comp: Comparison) -> list[_Check]:
    checks: list[_Check] = []
    for name, field, r in policy.named_rules():
        ev = comp.evaluator(r.key)
        if ev is None:
            raise _missing_key(r.key, comp, policy, f"{field}.evaluator")
        cell = ev.cell(OVERALL)
        assert cell is not None
        c = _cell_check(name, r.rule, r.threshold, r.fail_threshold, r.margin, cell, "overall", policy.alpha)
        c.evaluator, c.scope = r.evaluator, r.scope
        if cell.n_pairs < policy.min_rows:
            c.note = f"only {cell.n_pairs} pairs, fewer than min_rows {policy.min_rows}"
            c.rows_needed = c.min_rows = policy.min_rows
        checks.append(c)
    cohort_keys = policy.cohort_keys()
    for key in cohort_keys:
        if comp.evaluator(key) is None:
            raise _missing_key(key, comp, policy, "cohorts.evaluators")
    scopes = {r.key: r for _, _, r in policy.named_rules()}
    if policy.max_cohort_variance_increase is not None:
        limit = policy.max_cohort_variance_increase
        for key in cohort_keys:
            ev = comp.evaluator(key)
            assert ev is not None
            c = _Check(name="cohort_variance", rule="cohort_variance", evaluator=key, cohort=OVERALL,
                       measure="variance_increase", direction="max", threshold=limit, margin=None,
                       strict=False, family="overall", estimate=ev.variance_increase,
                       ci_low=ev.variance_ci_low, ci_high=ev.variance_ci_high, se=ev.variance_se,
                       n=ev.n_pairs)
            if key in scopes:
                c.evaluator, c.scope = scopes[key].evaluator, scopes[key].scope
            if ev.variance_increase is None:
                c.status = "skipped"
                c.note = f"fewer than 2 cohorts with >= {comp.min_cohort_rows} pairs"
            checks.append(c)
    if policy.cohorts is not None:
        cr = policy.cohorts
        for key in cohort_keys:
            ev = comp.evaluator(key)
            assert ev is not None
            for cell in ev.cells:
                if cell.cohort == OVERALL:
                    continue
                if key in scopes and cell.n_pairs == 0:
                    continue  # a cohort outside the rule's scope: not a check of this rule at all
                c = _cell_check(f"cohort {cell.cohort}", cr.rule, cr.threshold, cr.fail_threshold, cr.margin,
                                cell, "cohort", policy.alpha)
                if key in scopes:
                    c.evaluator, c.scope = scopes[key].evaluator, scopes[key].scope
                if cell.n_pairs < cr.min_rows:
                    c.status = "skipped"
                    c.note = f"{cell.n_pairs} pairs < min_rows {cr.min_rows}: not gated"
                checks.append(c)
    return checks


def _test(c: _Check) -> None:
    """Pass criterion and one-sided fail p-value of a check that has enough data."""
    if c.status == "skipped" or c.note or c.estimate is None or c.se is None:
        return
    if c.direction == "min":
        lo = c.ci_low if c.ci_low is not None else -math.inf
        c.pass_ok = (lo > c.threshold if c.strict else lo >= c.threshold) and c.exact_pass_ok
    else:
        c.pass_ok = c.ci_high is not None and c.ci_high <= c.threshold
    se = max(c.se, c.se_floor)
    p = one_sided_p(c.estimate, c.fail_bound, se, c.df, "below" if c.direction == "min" else "above")
    c.p_fail = max(p, c.exact_fail) if c.exact_fail is not None else p


def _needed(c: _Check, alpha: float) -> int | None:
    """Pairs that would decide an undecided check at its observed effect and spread (80% of the
    time if they are the truth), by running the gate's own interval and tests at larger n."""
    if c.estimate is None or c.se is None or c.n <= 0:
        return c.rows_needed
    measure: Literal["delta", "candidate_mean", "variance_increase"] = c.measure  # type: ignore[assignment]
    need = rows_to_decide(SizingInput(
        measure=measure, estimate=c.estimate, sd=c.se * math.sqrt(c.n), n=c.n,
        pass_threshold=c.threshold, fail_threshold=c.fail_bound, strict=c.strict, alpha=alpha,
        fail_level=alpha * max(c.weight, 1e-12), wins=c.wins, losses=c.losses, successes=c.successes,
        exact_pass=c.exact_pass, exact_fail=c.exact_fail is not None, min_rows=c.min_rows))
    if need is None:
        c.need_direction = None
        return None if c.n >= c.min_rows else c.rows_needed
    c.need_direction = need.direction
    return need.rows


def _evidence(c: _Check, alpha: float, correction: str) -> str:
    what = {"delta": "delta", "candidate_mean": "candidate mean",
            "variance_increase": "cohort-variance increase"}[c.measure]
    signed = c.measure != "candidate_mean"
    head = f"{what} {_fmt(c.estimate, signed)}"
    if c.ci_low is not None and c.ci_high is not None:
        head += f" [{1 - alpha:.0%} CI {_fmt(c.ci_low, signed)}, {_fmt(c.ci_high, signed)}]"
    head += f" vs {_fmt(c.threshold, signed)}"
    if c.fail_threshold is not None and c.fail_threshold != c.threshold:
        head += f" (fail test vs {_fmt(c.fail_threshold, signed)})"
    head += f", n={c.n}"
    if c.status == "skipped":
        return f"{head}: {c.note}" if c.estimate is not None else c.note
    if c.note:
        return (f"{head}: {c.note}" if c.estimate is not None else c.note) + _need_text(c)
    if c.status == "pass":
        side = "above" if c.direction == "min" else "below"
        return f"{head}: CI wholly {side} the threshold"
    if c.status == "fail":
        return (f"{head}: violated with confidence (one-sided p={c.p_fail:.2g}, "
                f"{correction}-adjusted {c.p_adj:.2g} <= {alpha:g})")
    return f"{head}: CI straddles the threshold{_need_text(c)}"


def _need_text(c: _Check) -> str:
    if c.n == 0 or c.estimate is None:
        return f"; at least {c.rows_needed:,} pairs are needed" if c.rows_needed else ""
    if not c.rows_needed:
        return "; the observed effect sits on the threshold, so more pairs alone will not decide it"
    where = " in this cohort" if c.cohort != OVERALL else ""
    if c.need_direction is None:
        return f"; at least {c.rows_needed:,} pairs{where} are needed"
    return (f"; about {c.rows_needed:,} pairs{where} would show it {'passes' if c.need_direction == 'pass' else 'fails'} "
            "at this effect and spread")


def _label(c: _Check) -> str:
    where = "" if c.cohort == OVERALL else f" in cohort {c.cohort!r}"
    if c.scope:
        where += f" (rows: {c.scope})"
    if c.rule == "cohort_variance":
        return f"cohort variance of {c.evaluator}{where}"
    return f"{c.name} ({c.evaluator} {c.rule}){where}" if c.family == "overall" else \
        f"{c.evaluator} {c.rule}{where}"


def decide(comparison: Comparison, policy: GatePolicy, *, external: Sequence[ExternalRule] = ()) -> Verdict:
    """Apply ``policy`` to ``comparison`` (plus ``external`` rules); see the module docstring."""
    alpha = policy.alpha
    if not math.isclose(comparison.alpha, alpha):
        raise UserError(f"the comparison was computed at alpha={comparison.alpha:g} but the policy says "
                        f"{alpha:g}; recompute with compare_arrays(..., **policy.compare_options())",
                        file=policy.source, field="alpha")
    uses_cohorts = policy.cohorts is not None or policy.max_cohort_variance_increase is not None
    if uses_cohorts and comparison.min_cohort_rows != policy.min_cohort_rows:
        raise UserError(f"the comparison used min_cohort_rows={comparison.min_cohort_rows}, the policy "
                        f"{policy.min_cohort_rows}; recompute with policy.compare_options()",
                        file=policy.source, field="cohorts.min_rows")
    checks = _rule_checks(policy, comparison) + [_external_check(x, policy) for x in external]
    for c in checks:
        _test(c)
    tested = [c for c in checks if c.tested]
    share = policy.cohorts.alpha_share if policy.cohorts is not None else 0.0
    n_over = sum(c.family == "overall" for c in tested)
    n_coh = len(tested) - n_over
    for c in checks:  # an untested check (below min_rows) is sized at the weight it would get if tested
        extra = 0 if c.tested else 1
        over, coh = n_over + (extra if c.family == "overall" else 0), n_coh + (extra if c.family == "cohort" else 0)
        fam_share = (1 - share if coh else 1.0) if c.family == "overall" else (share if over else 1.0)
        c.weight = fam_share / (over if c.family == "overall" else coh)
    if tested:
        adj = adjust([c.p_fail for c in tested], policy.correction, [c.weight for c in tested])
        for c, a in zip(tested, adj, strict=True):
            c.p_adj = float(a)
    for c in checks:
        if c.status == "skipped":
            continue
        if c.p_adj is not None and c.p_adj <= alpha:
            c.status = "fail"
        elif c.tested and c.pass_ok:
            c.status = "pass"
        else:
            c.status = "undecided"
            c.rows_needed = _needed(c, alpha)
    results = [RuleResult(name=c.name, rule=c.rule, evaluator=c.evaluator, cohort=c.cohort, scope=c.scope,
                          status=c.status, evidence=_evidence(c, alpha, policy.correction), measure=c.measure,
                          estimate=c.estimate, ci_low=c.ci_low, ci_high=c.ci_high, threshold=c.threshold,
                          fail_threshold=c.fail_threshold if c.fail_threshold != c.threshold else None,
                          margin=c.margin, p_fail=c.p_fail, p_adjusted=c.p_adj, n=c.n,
                          rows_needed=c.rows_needed if c.status == "undecided" else None,
                          decides=c.need_direction if c.status == "undecided" else None)
               for c in checks]
    budget = _error_budget(comparison, policy)
    if budget is not None:
        results.insert(0, budget)
    decision, reasons = _summarise(checks, budget, len(tested), policy)
    return Verdict(decision=decision, rules=results, reasons=reasons, policy_name=policy.name,
                   policy_version=policy.version, policy_hash=policy.hash, alpha=alpha,
                   correction=policy.correction)


def _error_budget(comp: Comparison, policy: GatePolicy) -> RuleResult | None:
    """Rows errored or missing on either side of a gated (rule, row) pair, against the budget.

    A scoped rule's measure is ``skipped`` on both sides outside its scope, so only the rows it
    gates can count; the denominator is the rows at least one gated measure applies to.
    """
    if policy.error_budget is None:
        return None
    names = list(dict.fromkeys(policy.gated_keys() + policy.cohort_keys()))
    bad: set[str] = set()
    cand_bad: set[str] = set()
    base_bad: set[str] = set()
    gated: set[str] = set()
    for name in names:
        ev = comp.evaluator(name)
        if ev is None:
            continue
        unpaired = ev.unpaired()
        bad |= unpaired
        cand_bad |= unpaired & (set(ev.cand.errored) | set(ev.cand.missing) | set(ev.cand.skipped))
        base_bad |= unpaired & (set(ev.base.errored) | set(ev.base.missing) | set(ev.base.skipped))
        outside = set(ev.base.skipped) & set(ev.cand.skipped) if "[" in name else set()
        gated |= set(comp.row_ids) - outside
    total = len(gated) if gated else comp.n_rows
    n = max(total, 1)
    rate = len(bad) / n
    ok = rate <= policy.error_budget
    evidence = (f"{len(bad)} of {total} gated rows ({rate:.1%}) errored, missing or one-sided on a gated "
                f"evaluator (candidate side {len(cand_bad)}, baseline side {len(base_bad)}); "
                f"budget {policy.error_budget:.1%}")
    return RuleResult(name="error_budget", rule="error_budget", status="pass" if ok else "fail",
                      evidence=evidence, measure="error_rate", estimate=rate, threshold=policy.error_budget,
                      n=total)


def _summarise(checks: list[_Check], budget: RuleResult | None, n_tests: int, policy: GatePolicy
               ) -> tuple[Decision, list[str]]:
    alpha = policy.alpha
    fails = [c for c in checks if c.status == "fail"]
    fails.sort(key=lambda c: (c.family != "overall", c.p_adj if c.p_adj is not None else 1.0))
    undecided = [c for c in checks if c.status == "undecided"]
    undecided.sort(key=lambda c: (c.family != "overall", c.rows_needed or math.inf))
    reasons: list[str] = []
    budget_failed = budget is not None and budget.status == "fail"
    if budget_failed and budget is not None:
        reasons.append(f"Error budget exceeded: {budget.evidence}.")
    for c in fails[:_MAX_LISTED]:
        reasons.append(f"{_label(c)} fails: {_evidence(c, alpha, policy.correction)}.")
    if len(fails) > _MAX_LISTED:
        reasons.append(f"... and {len(fails) - _MAX_LISTED} more failing check(s) (see rules).")
    if budget_failed or fails:
        decision: Decision = "BLOCK"
    elif undecided:
        decision = "INCONCLUSIVE"
        for c in undecided[:_MAX_LISTED]:
            reasons.append(f"{_label(c)} is undecided: {_evidence(c, alpha, policy.correction)}.")
        if len(undecided) > _MAX_LISTED:
            reasons.append(f"... and {len(undecided) - _MAX_LISTED} more undecided check(s) (see rules).")
    else:
        decision = "PROMOTE"
        passed = [c for c in checks if c.status == "pass"]
        reasons.append(f"All {len(passed)} rule checks pass with confidence"
                       + (" and errors are within budget." if budget is not None else "."))
    if decision == "BLOCK" and undecided:
        reasons.append(f"{len(undecided)} other rule check(s) undecided.")
    skipped = [c for c in checks if c.status == "skipped"]
    if skipped:
        reasons.append(f"{len(skipped)} check(s) skipped (not applicable, e.g. cohorts below min_rows).")
    reasons.append(f"Pass: each rule's {1 - alpha:.0%} CI clears its threshold (no correction needed: every "
                   f"rule must pass). Fail: one-sided tests, {policy.correction}-corrected across {n_tests} "
                   f"test(s) at alpha={alpha:g}.")
    return decision, reasons


def gate_arrays(inp: ComparisonInput, policy: GatePolicy, *,
                rows: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[Comparison, Verdict]:
    """Scope the rules (``rows``: row id -> row JSON, for ``where`` filters), compare with the
    policy's statistical settings, then decide."""
    comparison = compare_arrays(scope_input(inp, policy, rows), **policy.compare_options())
    return comparison, decide(comparison, policy)
