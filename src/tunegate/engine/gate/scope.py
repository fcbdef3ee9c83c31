"""Rules scoped to rows: a rule that names ``cohorts`` or ``where`` reads only the rows it applies to.

Why a derived measure and not a mask inside the decision: the comparison (bootstrap, tests, cohort
cells, error lists) is computed once for every measure the gate reads. A scoped rule gets its own
measure, ``"numeric_match [cohorts=arithmetic]"``: the evaluator's scores on the rows in scope, and
status ``skipped`` on *both* sides everywhere else. Skipped on both sides is, by design, "the
evaluator does not apply to this row": the row leaves the paired statistics and is not an error, so
the error budget counts only errors of gated (rule, row) pairs, and the cohort rule of a scoped guard
sees only the cohorts inside its scope. The unscoped evaluator stays in the comparison untouched for
the other rules and the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from tunegate.core.policy import GatePolicy, Rule
from tunegate.engine.stats.compare import ComparisonInput, MetricInput
from tunegate.errors import UserError

__all__ = ["rows_in_scope", "scope_input"]


def _statuses(values: np.ndarray, status: Any, n: int) -> np.ndarray:
    if status is not None:
        return np.asarray(status, dtype=object).copy()
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v).any(axis=1) if v.ndim == 2 else np.isfinite(v)
    return np.where(finite, "ok", "missing").astype(object)


def rows_in_scope(rule: Rule, row_ids: list[str], cohorts: list[list[str]] | None,
                  rows: Mapping[str, Mapping[str, Any]] | None) -> np.ndarray:
    """Boolean mask of the rows ``rule`` applies to."""
    tags = cohorts if cohorts is not None else [[] for _ in row_ids]
    data = rows or {}
    return np.array([rule.applies_to(t, data.get(rid)) for rid, t in zip(row_ids, tags, strict=True)], dtype=bool)


def _check_scope(rule: Rule, field: str, policy: GatePolicy, known_cohorts: set[str],
                 rows: Mapping[str, Mapping[str, Any]] | None, matched: int) -> None:
    if rule.cohorts:
        unknown = [c for c in rule.cohorts if c not in known_cohorts]
        if unknown:
            raise UserError(f"no row has cohort(s) {unknown}; the dataset's cohorts: "
                            f"{', '.join(sorted(known_cohorts)) or 'none'}", file=policy.source,
                            field=f"{field}.cohorts")
    if rule.where and rows is None:
        raise UserError("the rule filters rows with where, but no row data was given to the gate "
                        "(gate_arrays(..., rows=...))", file=policy.source, field=f"{field}.where")
    if matched == 0:
        raise UserError(f"the scope {rule.scope} matches no row of these runs; the rule could never be "
                        "decided (check the cohort names and where values, or `tunegate policy explain`)",
                        file=policy.source, field=f"{field}.where" if rule.where else f"{field}.cohorts")


def scope_input(inp: ComparisonInput, policy: GatePolicy,
                rows: Mapping[str, Mapping[str, Any]] | None = None,
                known_cohorts: set[str] | None = None) -> ComparisonInput:
    """``inp`` plus one derived measure per scoped rule of ``policy`` (see the module docstring).

    ``rows``: row id -> row JSON (for ``where``); ``known_cohorts``: every cohort of the dataset (a
    cohort named by a rule but absent from it is a typo: UserError naming the field). Raises a
    UserError when a scope matches no row. Unscoped policies return ``inp`` unchanged.
    """
    scoped = policy.scoped_rules()
    if not scoped:
        return inp
    n = len(inp.row_ids)
    tags = inp.cohorts if inp.cohorts is not None else [[] for _ in range(n)]
    known = known_cohorts if known_cohorts is not None else {t for row in tags for t in row}
    by_name = {m.evaluator: m for m in inp.metrics}
    extra: list[MetricInput] = []
    for field, rule in scoped:
        if rule.key in by_name:
            continue
        src = by_name.get(rule.evaluator)
        if src is None:
            raise UserError(f"evaluator {rule.evaluator!r} is not in the comparison (has: "
                            f"{', '.join(by_name) or 'none'})", file=policy.source, field=f"{field}.evaluator")
        mask = rows_in_scope(rule, inp.row_ids, tags, rows)
        _check_scope(rule, field, policy, known, rows, int(mask.sum()))
        sides = []
        for values, status in ((src.base, src.base_status), (src.cand, src.cand_status)):
            v = np.array(values, dtype=np.float64, copy=True)
            st = _statuses(v, status, n)
            v[~mask] = np.nan
            st[~mask] = "skipped"
            sides.append((v, st.astype(str)))
        (b, bs), (c, cs) = sides
        extra.append(MetricInput(rule.key, src.binary, b, c, base_status=bs, cand_status=cs))
    return replace(inp, metrics=[*inp.metrics, *extra])
