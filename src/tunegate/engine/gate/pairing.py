"""Pair two stored runs row by row, refusing pairs that would compare different things.

Two runs are comparable only when they ran on the same dataset (content hash) and scored with
the same evaluator identities (name, version, config — judge model and rubric included). Rows
present, errored or skipped on one side only are kept and reported, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunegate.core.hashing import canonical_json, short
from tunegate.engine.run.aggregate import aggregate_row
from tunegate.errors import IdentityMismatch
from tunegate.store.sqlite import RowRecord, RunRecord, Store

__all__ = ["PairedEvaluator", "PairedRuns", "pair_runs"]


@dataclass
class PairedEvaluator:
    """One evaluator's per-row values on both sides (NaN where not ok) and statuses."""

    name: str
    identity: dict[str, Any]
    base: np.ndarray
    cand: np.ndarray
    base_status: list[str]
    cand_status: list[str]
    base_reason: list[str]
    cand_reason: list[str]

    @property
    def binary(self) -> bool:
        """True when every ok value on both sides is exactly 0 or 1 (pass/fail metric)."""
        vals = np.concatenate([self.base[~np.isnan(self.base)], self.cand[~np.isnan(self.cand)]])
        return bool(vals.size) and bool(np.all((vals == 0) | (vals == 1)))


@dataclass
class PairedRuns:
    """Everything the comparison needs, aligned on ``row_ids``."""

    baseline: RunRecord
    candidate: RunRecord
    row_ids: list[str]
    cohorts: list[list[str]]
    groups: list[str | None]
    evaluators: list[PairedEvaluator]
    base_rows: dict[str, RowRecord]
    cand_rows: dict[str, RowRecord]
    rows_data: dict[str, dict[str, Any]]
    only_in_baseline: list[str] = field(default_factory=list)
    only_in_candidate: list[str] = field(default_factory=list)
    unpaired_evaluators: list[str] = field(default_factory=list)


def _check_identities(b: RunRecord, c: RunRecord) -> list[str]:
    if b.dataset_hash != c.dataset_hash:
        raise IdentityMismatch(
            f"runs {b.id} and {c.id} used different datasets ({short(b.dataset_hash)} vs {short(c.dataset_hash)}); "
            "compare runs of the same dataset content", field="dataset")
    bi = {e["name"]: e for e in b.evaluators}
    ci = {e["name"]: e for e in c.evaluators}
    for name in sorted(set(bi) & set(ci)):
        if canonical_json(bi[name]) != canonical_json(ci[name]):
            parts = [k for k in ("version", "config") if canonical_json(bi[name].get(k)) != canonical_json(ci[name].get(k))]
            detail = "; ".join(f"{k}: {bi[name].get(k)!r} vs {ci[name].get(k)!r}" for k in parts)
            raise IdentityMismatch(f"evaluator {name!r} differs between {b.id} and {c.id} ({detail}); "
                                   "re-score both runs with the same evaluator", field="evaluators")
    common = sorted(set(bi) & set(ci), key=lambda n: [e["name"] for e in b.evaluators].index(n))
    if not common:
        raise IdentityMismatch(f"runs {b.id} and {c.id} share no evaluator", field="evaluators")
    return common


def _describe_selection(sel: dict[str, Any]) -> str:
    parts = [f"split={sel.get('split') or 'all'}", f"cohorts={','.join(sel.get('cohorts') or []) or 'all'}"]
    if sel.get("limit") is not None:
        parts.append(f"limit={sel['limit']}")
    if sel.get("n_rows") is not None:
        parts.append(f"{sel['n_rows']} rows")
    return " ".join(parts)


def _check_selection(b: RunRecord, c: RunRecord) -> None:
    """Runs over different row selections are a usage error, not rows "missing" from one side.

    Both runs record the ids they were planned on (a hash); when those differ, most rows would be
    one-sided and the error budget would BLOCK a candidate for the way it was run.
    """
    bs, cs = b.selection or {}, c.selection or {}
    if bs.get("rows") and cs.get("rows") and bs["rows"] != cs["rows"]:
        raise IdentityMismatch(
            f"runs cover different rows: baseline {b.id} ({_describe_selection(bs)}) vs candidate {c.id} "
            f"({_describe_selection(cs)}); gate runs of the same selection (re-run one with the other's "
            "--split / --cohort / --limit)", field="selection")


def pair_runs(store: Store, baseline_id: str, candidate_id: str) -> PairedRuns:
    """Load and align two runs. Raises IdentityMismatch (exit 2) when they must not be paired:
    different datasets, evaluator identities, or row selections."""
    b = store.run(baseline_id)
    c = store.run(candidate_id)
    if b.id == c.id:
        raise IdentityMismatch(f"baseline and candidate are the same run {b.id}", field="run")
    common = _check_identities(b, c)
    _check_selection(b, c)
    brows = {r.row_id: r for r in store.rows(b.id)}
    crows = {r.row_id: r for r in store.rows(c.id)}
    data = store.dataset_rows(b.dataset_hash)
    order = {rid: i for i, rid in enumerate(data)}
    ids = sorted(set(brows) | set(crows), key=lambda r: (order.get(r, 1 << 30), r))
    evs = []
    ident = {e["name"]: e for e in b.evaluators}
    for name in common:
        bv: list[float] = []
        cv: list[float] = []
        bs: list[str] = []
        cs: list[str] = []
        br: list[str] = []
        cr: list[str] = []
        for rid in ids:
            for rows, vals, sts, rsn in ((brows, bv, bs, br), (crows, cv, cs, cr)):
                rec = rows.get(rid)
                if rec is None:
                    vals.append(np.nan)
                    sts.append("missing")
                    rsn.append("row not in this run")
                    continue
                agg = aggregate_row(rec.scores.get(name, []))
                vals.append(np.nan if agg.score is None else agg.score)
                sts.append(agg.status)
                rsn.append(agg.reason)
        evs.append(PairedEvaluator(name, ident[name], np.asarray(bv, float), np.asarray(cv, float), bs, cs, br, cr))
    return PairedRuns(
        baseline=b, candidate=c, row_ids=ids,
        cohorts=[list(data.get(r, {}).get("cohorts", [])) for r in ids],
        groups=[data.get(r, {}).get("group") for r in ids],
        evaluators=evs, base_rows=brows, cand_rows=crows, rows_data=data,
        only_in_baseline=sorted(set(brows) - set(crows)), only_in_candidate=sorted(set(crows) - set(brows)),
        unpaired_evaluators=sorted({e["name"] for e in b.evaluators} ^ {e["name"] for e in c.evaluators}),
    )
