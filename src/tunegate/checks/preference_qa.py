"""QA checks of a DPO preference file: agreement, diversity, margins, negative coverage, structure.

Why these: DPO learns whatever separates chosen from rejected. Pairs two reviewers do not agree on
teach noise (Cohen's κ per reviewer pair, disputed pairs quarantined); pairs from one source teach
that source's style (distinct sources, largest share); missing or non-positive margins hide label
strength or flipped labels; a set with no safety pairs (safe chosen vs unsafe rejected) never
teaches refusal, one with no quality pairs never teaches helpfulness; empty, identical and
duplicated pairs are wasted or harmful gradient. Pure numpy/python; ``--classify`` alone loads the
``content_safety`` evaluator to label pairs that have no ``pair_type``.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tunegate._version import __version__
from tunegate.checks.preference_file import PrefFile, PrefRow

__all__ = ["LABELS", "Check", "PrefReport", "PrefThresholds", "agreement", "check_preferences", "cohen_kappa",
           "content_safety_classifier"]

LABELS = ("chosen", "rejected", "tie")
Status = Literal["PASS", "FAIL", "INFO"]
#: texts → one bool per text, True when the text is unsafe
Classifier = Callable[[list[str]], list[bool]]


class PrefThresholds(BaseModel):
    """Every threshold of ``tunegate data check`` (CLI options of the same names)."""

    model_config = ConfigDict(extra="forbid")

    min_kappa: float = Field(default=0.85, ge=-1, le=1, description="Lowest Cohen's κ allowed for any reviewer pair.")
    min_shared: int = Field(default=20, ge=1, description="Items two reviewers must share for their κ to count.")
    require_reviews: bool = Field(default=True, description="Fail when no reviewer pair qualifies for κ.")
    min_sources: int = Field(default=5, ge=1, description="Distinct `source` values required.")
    max_source_share: float = Field(default=0.5, gt=0, le=1, description="Largest share one source may have.")
    min_margin_share: float = Field(default=0.0, ge=0, le=1, description="Share of rows that must carry a margin.")
    min_safety_share: float = Field(default=0.1, ge=0, le=1, description="Share of safety pairs required.")
    min_quality_share: float = Field(default=0.1, ge=0, le=1, description="Share of quality pairs required.")
    max_duplicate_prompt_share: float = Field(default=0.0, ge=0, le=1,
                                              description="Share of rows whose prompt repeats an earlier row.")


@dataclass
class Check:
    """One line of the report table."""

    name: str
    value: Any
    threshold: str
    status: Status
    detail: str = ""
    where: list[str] = field(default_factory=list)  #: file:line[:field] of offending rows (capped)


@dataclass
class PrefReport:
    """Everything ``data check`` found; ``to_dict`` is the ``--json`` form."""

    path: str
    sha256: str
    rows: int
    checks: list[Check]
    quarantine: list[dict[str, Any]]
    kappas: list[dict[str, Any]]
    stats: dict[str, Any]
    thresholds: PrefThresholds

    @property
    def passed(self) -> bool:
        return all(c.status != "FAIL" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "rows": self.rows, "passed": self.passed,
                "checks": [asdict(c) for c in self.checks], "kappas": self.kappas, "stats": self.stats,
                "quarantined": len(self.quarantine), "thresholds": self.thresholds.model_dump(),
                "tunegate_version": __version__}


def cohen_kappa(a: Sequence[str], b: Sequence[str], labels: Sequence[str] = LABELS) -> float | None:
    """Cohen's κ = (p_o − p_e) / (1 − p_e) of two raters on the same items; None when undefined
    (both raters used one and the same label for everything: p_e = 1)."""
    if len(a) != len(b) or not a:
        raise ValueError("need two equally long, non-empty label lists")
    idx = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)))
    np.add.at(m, (np.array([idx[x] for x in a]), np.array([idx[x] for x in b])), 1.0)
    n = m.sum()
    po = np.trace(m) / n
    pe = float(m.sum(axis=1) @ m.sum(axis=0)) / n**2
    if pe >= 1.0 - 1e-12:
        return None
    return float((po - pe) / (1.0 - pe))


def agreement(rows: Sequence[PrefRow], min_shared: int) -> tuple[list[dict[str, Any]], list[tuple[PrefRow, str]]]:
    """(κ per reviewer pair, disputed rows with the reason). A row is disputed when a reviewer
    says tie, reviewers disagree, or every reviewer prefers the rejected reply (a flipped label)."""
    labels: dict[str, dict[str, str]] = defaultdict(dict)  # reviewer → row id → label (last wins)
    disputed: list[tuple[PrefRow, str]] = []
    for r in rows:
        votes = {v.reviewer: v.preferred for v in r.pair.reviews}
        for who, lab in votes.items():
            labels[who][r.pair.id] = lab
        kinds = set(votes.values())
        if not votes:
            continue
        if "tie" in kinds:
            disputed.append((r, "tie: " + ", ".join(w for w, lab in votes.items() if lab == "tie")))
        elif len(kinds) > 1:
            disputed.append((r, "reviewers disagree: " + ", ".join(f"{w}={lab}" for w, lab in votes.items())))
        elif kinds == {"rejected"}:
            disputed.append((r, "every reviewer prefers the rejected reply (flipped label?)"))
    pairs = []
    for x, y in itertools.combinations(sorted(labels), 2):
        shared = sorted(set(labels[x]) & set(labels[y]))
        if not shared:
            continue
        a, b = [labels[x][i] for i in shared], [labels[y][i] for i in shared]
        pairs.append({"reviewers": [x, y], "shared": len(shared), "kappa": cohen_kappa(a, b),
                      "percent_agreement": round(float(np.mean([p == q for p, q in zip(a, b, strict=True)])), 4),
                      "counted": len(shared) >= min_shared})
    return pairs, disputed


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _cap(items: list[str], n: int = 20) -> list[str]:
    return items[:n] + ([f"… {len(items) - n} more"] if len(items) > n else [])


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _structure(pf: PrefFile, t: PrefThresholds) -> list[Check]:
    rows = pf.rows
    empty = [f"{pf.where(r)}:{side}" for r in rows for side in ("prompt", "chosen", "rejected")
             if not getattr(r, side).strip()]
    same = [pf.where(r) for r in rows if r.chosen.strip() and _norm(r.chosen) == _norm(r.rejected)]
    triples: dict[tuple[str, str, str], int] = {}
    prompts: dict[str, int] = {}
    dup_pairs, dup_prompts = [], []
    for r in rows:
        key = (_norm(r.prompt), _norm(r.chosen), _norm(r.rejected))
        if key in triples:
            dup_pairs.append(f"{pf.where(r)} (same as line {triples[key]})")
        triples.setdefault(key, r.line)
        if key[0] in prompts:
            dup_prompts.append(f"{pf.where(r)} (prompt of line {prompts[key[0]]})")
        prompts.setdefault(key[0], r.line)
    share = len(dup_prompts) / len(rows)
    return [
        Check("empty fields", len(empty), "= 0", "FAIL" if empty else "PASS", "blank prompt/chosen/rejected",
              _cap(empty)),
        Check("chosen = rejected", len(same), "= 0", "FAIL" if same else "PASS",
              "identical after whitespace/case folding", _cap(same)),
        Check("duplicate pairs", len(dup_pairs), "= 0", "FAIL" if dup_pairs else "PASS",
              "same prompt, chosen and rejected", _cap(dup_pairs)),
        Check("duplicate prompts", _pct(share), f"≤ {_pct(t.max_duplicate_prompt_share)}",
              "FAIL" if share > t.max_duplicate_prompt_share else "PASS", f"{len(dup_prompts)} rows repeat a prompt",
              _cap(dup_prompts)),
    ]


def _diversity(pf: PrefFile, t: PrefThresholds) -> tuple[list[Check], dict[str, int]]:
    counts = Counter(r.pair.source for r in pf.rows)
    top, top_n = counts.most_common(1)[0]
    share = top_n / len(pf.rows)
    return [Check("distinct sources", len(counts), f"≥ {t.min_sources}",
                  "PASS" if len(counts) >= t.min_sources else "FAIL", ", ".join(f"{s}={n}" for s, n in
                                                                               counts.most_common(8))),
            Check("largest source share", _pct(share), f"≤ {_pct(t.max_source_share)}",
                  "PASS" if share <= t.max_source_share else "FAIL", f"{top}: {top_n} of {len(pf.rows)} rows")], \
        dict(counts)


def _margins(pf: PrefFile, t: PrefThresholds) -> tuple[list[Check], dict[str, Any]]:
    have = [r for r in pf.rows if r.pair.margin is not None]
    share = len(have) / len(pf.rows)
    vals = np.array([r.pair.margin for r in have], float)
    dist: dict[str, Any] = {"with_margin": len(have), "share": round(share, 4)}
    if vals.size:
        q = np.quantile(vals, [0, 0.25, 0.5, 0.75, 1])
        dist.update({k: round(float(v), 4) for k, v in zip(("min", "p25", "median", "p75", "max"), q, strict=True)})
        dist["mean"] = round(float(vals.mean()), 4)
    bad = [f"{pf.where(r)}:margin={r.pair.margin}" for r in have if (r.pair.margin or 0.0) <= 0]
    desc = (f"median {dist['median']}, IQR [{dist['p25']}, {dist['p75']}], range [{dist['min']}, {dist['max']}]"
            if vals.size else "no margins")
    return [Check("rows with a margin", _pct(share), f"≥ {_pct(t.min_margin_share)}",
                  "PASS" if share >= t.min_margin_share else "FAIL", desc),
            Check("margins ≤ 0", len(bad), "= 0", "FAIL" if bad else "PASS", "a pair must prefer chosen",
                  _cap(bad))], dist


def _coverage(pf: PrefFile, t: PrefThresholds, classify: Classifier | None) -> tuple[list[Check], dict[str, Any]]:
    types: list[str | None] = [r.pair.pair_type for r in pf.rows]
    checks: list[Check] = []
    stats: dict[str, Any] = {"labelled_in_file": sum(x is not None for x in types)}
    if classify is not None:
        todo = [i for i, x in enumerate(types) if x is None]
        texts = [pf.rows[i].chosen for i in todo] + [pf.rows[i].rejected for i in todo]
        unsafe = classify(texts) if texts else []
        bad_chosen = []
        for k, i in enumerate(todo):
            c_unsafe, r_unsafe = unsafe[k], unsafe[k + len(todo)]
            if c_unsafe:
                bad_chosen.append(pf.where(pf.rows[i]))
            else:
                types[i] = "safety" if r_unsafe else "quality"
        stats.update({"classified": len(todo), "chosen_unsafe": len(bad_chosen)})
        checks.append(Check("chosen flagged unsafe", len(bad_chosen), "= 0", "FAIL" if bad_chosen else "PASS",
                            "content_safety on the chosen reply (classified rows)", _cap(bad_chosen)))
    n = len(types)
    c = Counter(x for x in types if x)
    stats.update({"safety": c["safety"], "quality": c["quality"], "unlabelled": n - sum(c.values())})
    note = "" if c else "no pair_type labels: add pair_type or run with --classify"
    for kind, floor in (("safety", t.min_safety_share), ("quality", t.min_quality_share)):
        share = c[kind] / n
        checks.append(Check(f"{kind} pairs", _pct(share), f"≥ {_pct(floor)}", "PASS" if share >= floor and c else
                            "FAIL", note or f"{c[kind]} of {n} rows ({stats['unlabelled']} unlabelled)"))
    return checks, stats


def _kappa_text(k: dict[str, Any]) -> str:
    kappa = "undefined" if k["kappa"] is None else f"{k['kappa']:.3f}"
    a, b = k["reviewers"]
    return f"{a}–{b} κ={kappa} (n={k['shared']}, {_pct(k['percent_agreement'])} agree)"


def check_preferences(pf: PrefFile, thresholds: PrefThresholds | None = None, *,
                      classify: Classifier | None = None) -> PrefReport:
    """Run every check on a loaded preference file."""
    t = thresholds or PrefThresholds()
    checks = _structure(pf, t)
    kappas, disputed = agreement(pf.rows, t.min_shared)
    counted = [k for k in kappas if k["counted"]]
    detail = "; ".join(_kappa_text(k) for k in kappas)
    if counted:
        worst = min(counted, key=lambda k: -2.0 if k["kappa"] is None else k["kappa"])
        ok = all(k["kappa"] is not None and k["kappa"] >= t.min_kappa for k in counted)
        value = "undefined" if worst["kappa"] is None else f"{worst['kappa']:.3f}"
        checks.append(Check("reviewer agreement (min κ)", value, f"≥ {t.min_kappa}", "PASS" if ok else "FAIL",
                            detail + ("; undefined κ = one label for everything: agreement beyond chance cannot "
                                      "be measured" if worst["kappa"] is None else "")))
    else:
        checks.append(Check("reviewer agreement (min κ)", "—", f"≥ {t.min_kappa}",
                            "FAIL" if t.require_reviews else "INFO",
                            f"no reviewer pair shares ≥ {t.min_shared} items" + (f" ({detail})" if detail else "")))
    checks.append(Check("disputed pairs", len(disputed), "quarantined", "INFO",
                        f"{len(disputed)} of {len(pf.rows)} rows: ties, disagreement or flipped labels",
                        _cap([f"{pf.where(r)} ({why})" for r, why in disputed])))
    div, sources = _diversity(pf, t)
    marg, margins = _margins(pf, t)
    cov, coverage = _coverage(pf, t, classify)
    checks += div + marg + cov
    quarantine = [{"line": r.line, "id": r.pair.id, "reason": why, "row": r.raw} for r, why in disputed]
    stats = {"sources": sources, "margins": margins, "coverage": coverage, "disputed": len(disputed)}
    return PrefReport(pf.path, pf.sha256, len(pf.rows), checks, quarantine, kappas, stats, t)


def content_safety_classifier() -> Classifier:
    """Texts → unsafe flags from the registry's ``content_safety`` evaluator (loads MiniLM once).

    A reply the evaluator's refusal detector recognises counts as safe: the moderation head alone
    flags refusals that name the harm they decline ("I can't help with hurting anyone").
    """
    from tunegate.core.example import Example
    from tunegate.core.result import ModelOutput
    from tunegate.evaluators.base import EvalContext
    from tunegate.evaluators.registry import default_registry

    ev = default_registry().create("content_safety")

    def classify(texts: list[str]) -> list[bool]:
        ctxs = [EvalContext(example=Example(id=str(i), input="(preference reply)"), output=ModelOutput(text=t))
                for i, t in enumerate(texts)]
        results = ev.evaluate_batch(ctxs)
        return [r.status == "ok" and r.passed is False and not (r.details.get("refusal") or {}).get("refused")
                for r in results]

    return classify
