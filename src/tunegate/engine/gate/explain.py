"""What a policy will gate on a dataset, before anything runs: rows per rule, split and cohort, and
the rules that can never be decided at that size.

Why: a rule on 8 rows, or a non-inferiority margin narrower than the zero-event bound at the rows
it gets, is undecided however good the candidate is. The gate would say INCONCLUSIVE after the
model calls were paid for; ``tunegate policy explain`` says it up front. The bounds are the gate's
own (:func:`~tunegate.engine.stats.inference.zero_event_halfwidth`, Clopper-Pearson at k = n, the
exact McNemar), for the *best case* -- a candidate identical to the baseline, or perfect -- so a
warning here is a certainty, not a forecast.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tunegate.core.dataset import Dataset
from tunegate.core.policy import GatePolicy, Rule
from tunegate.engine.stats.inference import zero_event_halfwidth

__all__ = ["RuleReach", "explain_policy", "rows_for_margin"]

#: Fewest discordant pairs for which an exact one-sided McNemar test can reach alpha/2 = 0.025.
_MCNEMAR_MIN = 6


def rows_for_margin(margin: float, alpha: float = 0.05) -> int | None:
    """Fewest pairs at which a candidate identical to the baseline passes a ``-margin`` bound:
    the smallest n with ``zero_event_halfwidth(n) < margin``; None for a zero margin (never)."""
    if margin <= 0:
        return None
    n = max(1, math.ceil(math.log(alpha / 2) / math.log1p(-margin)))
    while zero_event_halfwidth(n, alpha) >= margin:
        n += 1
    return n


@dataclass
class RuleReach:
    """One rule of the policy: the rows it applies to and why it may never be decided."""

    name: str
    yaml_field: str
    describe: str
    rows: int
    by_split: dict[str, int]
    by_cohort: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "field": self.yaml_field, "rule": self.describe, "rows": self.rows,
                "by_split": self.by_split, "by_cohort": self.by_cohort, "warnings": self.warnings}


def _limits(kind: str, margin: float | None, minimum: float | None, n: int, min_rows: int, alpha: float,
            where: str) -> list[str]:
    """Reasons a rule on ``n`` rows can never be decided (best case), worded for ``where``."""
    if n == 0:
        return [f"{where}: no rows, the rule cannot be decided"]
    out = []
    if n < min_rows:
        out.append(f"{where}: {n} rows < min_rows {min_rows}, never decided at this size")
    ze = zero_event_halfwidth(n, alpha)
    if kind in ("non_inferior", "no_drop") and margin is not None and ze >= margin:
        need = rows_for_margin(margin, alpha)
        out.append(f"{where}: margin {margin:g} is inside the zero-event bound ±{ze:.3f} at {n} rows, so even "
                   "an unchanged candidate cannot pass "
                   + (f"(needs >= {need:,} rows)" if need else "(a zero margin never can)"))
    if kind == "floor" and minimum is not None and (alpha / 2) ** (1 / n) < minimum:
        out.append(f"{where}: min {minimum:g} is above what {n} rows can show even at 100% "
                   f"(lower bound {(alpha / 2) ** (1 / n):.3f}); it can never pass")
    if kind == "improve" and n < _MCNEMAR_MIN:
        out.append(f"{where}: {n} rows cannot show an improvement on a pass/fail metric "
                   f"(exact McNemar needs >= {_MCNEMAR_MIN} rows that flip)")
    return out


def _reach(policy: GatePolicy, ds: Dataset, rule: Rule | None, name: str, fld: str, describe: str,
           kind: str, margin: float | None, minimum: float | None) -> RuleReach:
    rows = [ex for ex in ds if rule is None or rule.applies_to(
        ex.cohorts, {**ex.model_dump(mode="json", by_alias=True), "split": ds.split_of(ex)})]
    splits = Counter(ds.split_of(ex) for ex in rows)
    cohorts = Counter(c for ex in rows for c in ex.cohorts)
    reach = RuleReach(name, fld, describe, len(rows), {s: splits.get(s, 0) for s in ("train", "dev", "test")},
                      dict(sorted(cohorts.items())))
    reach.warnings += _limits(kind, margin, minimum, len(rows), policy.min_rows, policy.alpha, "all rows")
    for s, k in reach.by_split.items():
        if 0 < k < len(rows):
            reach.warnings += _limits(kind, margin, minimum, k, policy.min_rows, policy.alpha, f"--split {s}")
    return reach


def _cohort_splits(ds: Dataset, scoped: Rule | None) -> Counter[tuple[str, str]]:
    """Rows per (cohort, split) among those the cohort rule's scope reaches."""
    out: Counter[tuple[str, str]] = Counter()
    for ex in ds:
        split = ds.split_of(ex)
        if scoped is None or scoped.applies_to(ex.cohorts, {**ex.model_dump(mode="json", by_alias=True),
                                                            "split": split}):
            out.update((c, split) for c in ex.cohorts)
    return out


def _cohort_limits(policy: GatePolicy, k: int, where: str) -> list[str]:
    """Why the per-cohort rule cannot be decided on ``k`` rows of one cohort (best case)."""
    cr = policy.cohorts
    assert cr is not None
    if k < cr.min_rows:
        return [f"{where}: {k} rows < cohorts.min_rows {cr.min_rows}: listed, not gated"]
    return [w for w in _limits(cr.rule, cr.margin, cr.min, k, cr.min_rows, policy.alpha, where)
            if "min_rows" not in w]


def explain_policy(policy: GatePolicy, ds: Dataset) -> list[RuleReach]:
    """Per rule (headline, guards, the cohort rule per cohort, the forgetting probe): rows it applies
    to overall, per split and per cohort, with the reasons it can never be decided at those sizes."""
    out: list[RuleReach] = []
    for name, fld, r in policy.named_rules():
        out.append(_reach(policy, ds, r, name, fld, r.describe(), r.rule, r.margin, r.min))
    cr = policy.cohorts
    if cr is not None:
        for key in policy.cohort_keys():
            scoped = next((r for _, _, r in policy.named_rules() if r.key == key), None)
            base = _reach(policy, ds, scoped, f"cohorts · {key}", "cohorts", "", cr.rule, cr.margin, cr.min)
            by_split = _cohort_splits(ds, scoped)
            for cohort, k in base.by_cohort.items():
                splits = {s: by_split.get((cohort, s), 0) for s in ("train", "dev", "test")}
                reach = RuleReach(f"cohort {cohort}", "cohorts", f"{key} {cr.rule}"
                                  + (f" (margin {cr.margin:g})" if cr.margin is not None else "")
                                  + (f" min {cr.min:g}" if cr.min is not None else ""), k, splits, {cohort: k})
                reach.warnings += _cohort_limits(policy, k, "this cohort")
                # a gate runs on one split (usually test): its rows per cohort are what decide
                for s, ks in splits.items():
                    if 0 < ks < k:
                        reach.warnings += _cohort_limits(policy, ks, f"--split {s}")
                out.append(reach)
    fg = policy.forgetting
    if fg is not None:
        try:
            from tunegate.core.loading import load_dataset

            probe = load_dataset(fg.probe_files(policy.base_dir)[0])
            reach = _reach(policy, probe, None, "forgetting", "forgetting", f"probe {fg.probe_name} {fg.rule}",
                           fg.rule, fg.margin, None)
            reach.by_split = {}
            reach.warnings = _limits(fg.rule, fg.margin, None, len(probe), policy.min_rows, policy.alpha,
                                     "probe rows")
            out.append(reach)
        except (OSError, ValueError) as e:
            out.append(RuleReach("forgetting", "forgetting", f"probe {fg.probe}", 0, {}, {}, [str(e)]))
    return out
