"""The HTML report's view model: what the page shows, computed from ``verdict.json`` and the row diffs.

The page is rendered from the *dictionaries* a gate already writes (``GateResult.to_dict()`` and
``row_diffs``), not from live objects, so a report can be rebuilt from a stored verdict, from a
report folder, or from ``tunegate report`` alike, and new fields added to the verdict never break
it (unknown keys are ignored, missing optional keys are shown as absent).
"""

from __future__ import annotations

import json
from typing import Any

from tunegate.core.hashing import content_hash, short

__all__ = ["compact_rows", "embed_json", "evaluator_hash", "row_kind", "rule_sentence", "verdict_view"]

_ORDER = {"fail": 0, "undecided": 1, "pass": 2, "skipped": 3}
_RULE_WORDS = {"improve": "must improve (CI low bound of Δ > 0)", "non_inferior": "must not get worse by more "
               "than the margin", "no_drop": "must not drop", "floor": "candidate mean must reach the floor",
               "cohort_variance": "cohort spread must not grow beyond the limit",
               "error_budget": "errored or missing rows must stay within the budget"}
_STATUS_WORDS = {"pass": "holds", "fail": "fails", "undecided": "undecided", "skipped": "skipped"}


def embed_json(obj: Any) -> str:
    """JSON safe to place inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` become ``\\u003c`` etc. (valid JSON escapes), so no string — e.g. a model
    output containing ``</script><script>…`` — can close the element or start markup. U+2028/9
    are escaped for old JavaScript parsers.
    """
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False)
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def row_kind(row: dict[str, Any]) -> dict[str, bool]:
    """The filters a row belongs to: ``broke`` (a pass/fail evaluator flipped to fail), ``fixed``
    (flipped to pass and none broke — as in summary.md), ``errored`` (row error, missing side, or an
    evaluator error on either side), ``changed`` (any non-zero delta)."""
    flips = (row.get("flips") or {}).values()
    broke = "broke" in flips
    errored = False
    for side in ("baseline", "candidate"):
        s = row.get(side) or {}
        if s.get("error"):
            errored = True
        if any((v or {}).get("status") == "error" for v in (s.get("scores") or {}).values()):
            errored = True
    changed = any(d not in (None, 0, 0.0) for d in (row.get("delta") or {}).values())
    return {"broke": broke, "fixed": "fixed" in flips and not broke, "errored": errored, "changed": changed}


def _side(s: dict[str, Any] | None, evaluators: list[str]) -> dict[str, Any]:
    s = s or {}
    scores = s.get("scores") or {}
    out: dict[str, Any] = {"o": s.get("output"), "e": s.get("error")}
    if s.get("tool_calls"):
        out["t"] = s["tool_calls"]
    out["s"] = [[_r((scores.get(ev) or {}).get("score")), (scores.get(ev) or {}).get("status"),
                 (scores.get(ev) or {}).get("reason")] for ev in evaluators]
    return out


def _r(x: Any) -> Any:
    """Scores to 4 decimals (0.7000000000000001 costs bytes ×10,000 rows and says nothing more)."""
    return round(x, 4) if isinstance(x, float) else x


def _text(x: Any) -> Any:
    return x if x is None or isinstance(x, str) else json.dumps(x, ensure_ascii=False, indent=2, default=str)


def compact_rows(rows: list[dict[str, Any]], evaluators: list[str],
                 dataset_rows: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Per-row records with short keys for the page's script (10,000 rows stay a few MB).

    ``k``: filter flags (b broke, f fixed, x errored, c changed); ``s``: per evaluator (in
    ``evaluators`` order) ``[score, status, reason]``; ``d``: deltas; ``f``: flips; ``xt``: the
    dataset row's expected tool calls (from ``dataset_rows``, when given).
    """
    out = []
    for r in rows:
        k = row_kind(r)
        rec: dict[str, Any] = {
            "id": str(r.get("id")), "co": list(r.get("cohorts") or []), "in": _text(r.get("input")),
            "ex": _text(r.get("expected")),
            "b": _side(r.get("baseline"), evaluators), "c": _side(r.get("candidate"), evaluators),
            "d": [_r((r.get("delta") or {}).get(ev)) for ev in evaluators],
            "f": [(r.get("flips") or {}).get(ev, "") for ev in evaluators],
            "k": "".join(flag for flag, on in (("b", k["broke"]), ("f", k["fixed"]), ("x", k["errored"]),
                                               ("c", k["changed"])) if on),
        }
        expected_calls = ((dataset_rows or {}).get(str(r.get("id"))) or {}).get("expected_tool_calls")
        if expected_calls:
            rec["xt"] = expected_calls
        if r.get("excluded"):
            rec["xc"] = r["excluded"]
        out.append(rec)
    return out


def rule_sentence(r: dict[str, Any]) -> str:
    """A rule's decision in words, e.g. ``tool_selection on all rows must not get worse … — holds``."""
    what = _RULE_WORDS.get(str(r.get("rule")), str(r.get("rule")))
    cohort = r.get("cohort")
    where = "" if cohort is None else (" on all rows" if cohort == "*" else f" on cohort {cohort}")
    ev = f"{r['evaluator']}{where}" if r.get("evaluator") else (where.strip() or "the run")
    verdict = _STATUS_WORDS.get(str(r.get("status")), str(r.get("status")))
    s = f"{ev} {what} — {verdict}"
    if r.get("status") == "undecided" and r.get("rows_needed") is not None:
        s += f": about {r['rows_needed']} paired rows would decide it (now {r.get('n') or 0})"
    return s


def _thresholds(rules: list[dict[str, Any]], evaluator: str) -> list[tuple[float | None, str, str | None]]:
    out: list[tuple[float | None, str, str | None]] = []
    for r in rules:
        if r.get("evaluator") != evaluator or r.get("measure") != "delta" or r.get("cohort") not in ("*", None):
            continue
        t = r.get("threshold")
        if t is not None:
            out.append((t, f"{r.get('name')}: {r.get('rule')} threshold {t * 100:+.1f} pt ({r.get('status')})",
                        r.get("status")))
    return out


def _status_of(rules: list[dict[str, Any]], evaluator: str) -> str | None:
    st = [r.get("status") for r in rules if r.get("evaluator") == evaluator and r.get("cohort") in ("*", None)
          and r.get("status") != "skipped"]
    return min(st, key=lambda s: _ORDER.get(str(s), 9)) if st else None


def verdict_view(v: dict[str, Any]) -> dict[str, Any]:
    """Everything above the rows: verdict, rules in words, forest rows, heatmap cells, provenance."""
    comp = v.get("comparison") or {}
    rules = sorted(v.get("rules") or [], key=lambda r: _ORDER.get(str(r.get("status")), 9))
    evaluators = [e.get("evaluator") for e in comp.get("evaluators", [])]
    forest, cells = [], {}
    for e in comp.get("evaluators", []):
        for c in e.get("cells", []):
            if c.get("cohort") == "*":
                forest.append({"evaluator": e["evaluator"], "delta": c.get("delta"), "ci_low": c.get("ci_low"),
                               "ci_high": c.get("ci_high"), "n": c.get("n_pairs"),
                               "status": _status_of(rules, e["evaluator"]),
                               "thresholds": _thresholds(rules, e["evaluator"])})
            else:
                cells[(c.get("cohort"), e["evaluator"])] = c
    # floor rules bound the candidate's own mean, not a delta: they get a level chart of their own
    floors = [{"evaluator": r.get("evaluator") if not r.get("scope") else f"{r.get('evaluator')} [{r.get('scope')}]",
               "delta": r.get("estimate"), "ci_low": r.get("ci_low"), "ci_high": r.get("ci_high"), "n": r.get("n"),
               "status": r.get("status"),
               "thresholds": [(r.get("threshold"), f"{r.get('name')}: floor {(r.get('threshold') or 0) * 100:.1f} % "
                                                   f"({r.get('status')})", r.get("status"))]}
              for r in rules if r.get("measure") == "candidate_mean" and r.get("cohort") in ("*", None)]
    sizes = comp.get("cohort_sizes") or {}
    cohorts = sorted(comp.get("cohorts") or [], key=lambda c: (-sizes.get(c, 0), c))
    return {
        "decision": v.get("decision", "?"), "reasons": v.get("reasons") or [],
        "rules": [{**r, "sentence": rule_sentence(r)} for r in rules],
        "counts": {s: sum(1 for r in rules if r.get("status") == s) for s in _ORDER},
        "evaluators": evaluators, "forest": forest, "floors": floors, "cells": cells, "cohorts": cohorts, "sizes": sizes,
        "alpha": comp.get("alpha", 0.05), "min_rows": comp.get("min_cohort_rows", 0),
        "correction": comp.get("correction"), "method": comp.get("method"), "n_resamples": comp.get("n_resamples"),
    }


def evaluator_hash(identity: dict[str, Any]) -> str:
    """Short content hash of an evaluator identity (name, version, config)."""
    return short(content_hash(identity), 16)
