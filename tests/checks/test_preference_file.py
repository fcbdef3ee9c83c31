"""Preference-file QA on constructed data with answers known by hand."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tunegate.checks.preference_file import load_preferences
from tunegate.checks.preference_qa import PrefThresholds, agreement, check_preferences, cohen_kappa
from tunegate.errors import UserError


def expand(table: list[list[int]], labels: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Two raters' label lists from a confusion table (rows: rater A, columns: rater B)."""
    a: list[str] = []
    b: list[str] = []
    for i, row in enumerate(table):
        for j, n in enumerate(row):
            a += [labels[i]] * n
            b += [labels[j]] * n
    return a, b


def test_kappa_of_a_2x2_table_is_0_4() -> None:
    # n=50, p_o = 35/50 = 0.7; margins A (25, 25), B (30, 20): p_e = (25*30 + 25*20)/2500 = 0.5
    a, b = expand([[20, 5], [10, 15]], ("chosen", "rejected"))
    assert cohen_kappa(a, b) == pytest.approx(0.4, abs=1e-12)


def test_kappa_of_a_3x3_table() -> None:
    # n=30, p_o = 23/30; A margins (12, 12, 6), B (13, 11, 6): p_e = 324/900 = 0.36
    a, b = expand([[10, 2, 0], [3, 8, 1], [0, 1, 5]], ("chosen", "rejected", "tie"))
    assert cohen_kappa(a, b) == pytest.approx((23 / 30 - 0.36) / 0.64, abs=1e-12)


def test_kappa_perfect_chance_and_undefined() -> None:
    labels = ["chosen", "rejected", "tie"] * 10
    assert cohen_kappa(labels, labels) == pytest.approx(1.0)
    rng = random.Random(0)
    p = [0.6, 0.3, 0.1]
    a = rng.choices(["chosen", "rejected", "tie"], p, k=20000)
    b = rng.choices(["chosen", "rejected", "tie"], p, k=20000)
    assert abs(cohen_kappa(a, b) or 1.0) < 0.02  # independent raters: agreement at chance level
    assert cohen_kappa(["chosen"] * 5, ["chosen"] * 5) is None  # p_e = 1: no variation, κ undefined


def pair(i: int, *, source: str | None = None, reviews: list[tuple[str, str]] | None = None,
         margin: float | None = 1.0, pair_type: str | None = None, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": f"p{i}", "prompt": f"question number {i}", "chosen": f"good answer {i}",
                           "rejected": f"poor answer {i}", "source": source or f"src{i % 6}"}
    if margin is not None:
        row["margin"] = margin
    row["pair_type"] = pair_type or ("safety" if i % 4 == 0 else "quality")
    if reviews is not None:
        row["reviews"] = [{"reviewer": r, "preferred": p} for r, p in reviews]
    row.update(kw)
    return row


def good_rows(n: int = 60) -> list[dict[str, Any]]:
    return [pair(i, reviews=[("ana", "chosen"), ("bo", "chosen")] if i % 10 else
                 [("ana", "rejected"), ("bo", "rejected")]) for i in range(n)]


def write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def status(report: Any) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_a_clean_file_passes_every_check(tmp_path: Path) -> None:
    report = check_preferences(load_preferences(write(tmp_path / "p.jsonl", good_rows())))
    failed = {k: v for k, v in status(report).items() if v == "FAIL"}
    assert report.passed, (failed, [c for c in report.checks if c.status == "FAIL"])
    assert report.kappas == [{"reviewers": ["ana", "bo"], "shared": 60, "kappa": 1.0, "percent_agreement": 1.0,
                              "counted": True}]
    # all-rejected rows are flipped labels: quarantined although the reviewers agree
    assert [q["id"] for q in report.quarantine] == [f"p{i}" for i in range(0, 60, 10)]


def test_agreement_below_threshold_fails_and_disputed_rows_are_quarantined(tmp_path: Path) -> None:
    rows = []
    a, b = expand([[20, 5], [10, 15]], ("chosen", "rejected"))  # κ = 0.4
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        rows.append(pair(i, reviews=[("ana", x), ("bo", y)]))
    rows.append(pair(50, reviews=[("ana", "tie"), ("cy", "chosen")]))
    report = check_preferences(load_preferences(write(tmp_path / "p.jsonl", rows)))
    check = next(c for c in report.checks if c.name.startswith("reviewer agreement"))
    assert (check.value, check.status) == ("0.400", "FAIL")
    assert "ana–cy" in check.detail and "n=1" in check.detail  # listed, but below min_shared: not counted
    reasons = {q["id"]: q["reason"] for q in report.quarantine}
    assert len(reasons) == (5 + 10) + 15 + 1  # 15 disagreements, 15 agreed 'rejected', 1 tie
    assert reasons["p50"] == "tie: ana" and reasons["p20"].startswith("reviewers disagree: ana=chosen, bo=rejected")
    assert reasons["p49"] == "every reviewer prefers the rejected reply (flipped label?)"
    pairs, _ = agreement(load_preferences(tmp_path / "p.jsonl").rows, min_shared=1)
    assert {tuple(p["reviewers"]): p["counted"] for p in pairs} == {("ana", "bo"): True, ("ana", "cy"): True}


def test_no_reviews_fails_unless_not_required(tmp_path: Path) -> None:
    rows = [pair(i) for i in range(40)]
    pf = load_preferences(write(tmp_path / "p.jsonl", rows))
    assert status(check_preferences(pf))["reviewer agreement (min κ)"] == "FAIL"
    lenient = check_preferences(pf, PrefThresholds(require_reviews=False))
    assert status(lenient)["reviewer agreement (min κ)"] == "INFO" and lenient.passed


def test_three_sources_fail_diversity(tmp_path: Path) -> None:
    rows = [pair(i, source=["a", "a", "b", "c"][i % 4], reviews=[]) for i in range(40)]
    report = check_preferences(load_preferences(write(tmp_path / "p.jsonl", rows)),
                               PrefThresholds(require_reviews=False))
    checks = {c.name: c for c in report.checks}
    assert (checks["distinct sources"].value, checks["distinct sources"].status) == (3, "FAIL")
    assert (checks["largest source share"].value, checks["largest source share"].status) == ("50.0%", "PASS")
    assert report.stats["sources"] == {"a": 20, "b": 10, "c": 10}
    assert status(check_preferences(load_preferences(tmp_path / "p.jsonl"),
                                    PrefThresholds(require_reviews=False, min_sources=3,
                                                   max_source_share=0.4)))["largest source share"] == "FAIL"


def test_margins_share_distribution_and_non_positive(tmp_path: Path) -> None:
    margins = [None, None, 0.5, 1.0, 2.0, 0.0, -1.0, 3.0]
    rows = [pair(i, margin=m) for i, m in enumerate(margins)]
    report = check_preferences(load_preferences(write(tmp_path / "p.jsonl", rows)),
                               PrefThresholds(require_reviews=False, min_sources=1, max_source_share=1,
                                              min_margin_share=0.8))
    checks = {c.name: c for c in report.checks}
    assert (checks["rows with a margin"].value, checks["rows with a margin"].status) == ("75.0%", "FAIL")
    assert checks["margins ≤ 0"].value == 2 and checks["margins ≤ 0"].status == "FAIL"
    assert checks["margins ≤ 0"].where == [f"{tmp_path / 'p.jsonl'}:6:margin=0.0", f"{tmp_path / 'p.jsonl'}:7:margin=-1.0"]
    m = report.stats["margins"]
    assert (m["with_margin"], m["min"], m["median"], m["max"]) == (6, -1.0, 0.75, 3.0)


def test_negative_example_coverage_from_labels_and_classifier(tmp_path: Path) -> None:
    rows = [pair(i, pair_type="safety" if i < 3 else "quality") for i in range(40)]
    thr = PrefThresholds(require_reviews=False)
    checks = {c.name: c for c in check_preferences(load_preferences(write(tmp_path / "p.jsonl", rows)), thr).checks}
    assert (checks["safety pairs"].value, checks["safety pairs"].status) == ("7.5%", "FAIL")
    assert (checks["quality pairs"].value, checks["quality pairs"].status) == ("92.5%", "PASS")
    unlabelled = [{k: v for k, v in r.items() if k != "pair_type"} for r in rows]
    for r in unlabelled[:10]:
        r["rejected"] = "UNSAFE reply"
    unlabelled[10]["chosen"] = "UNSAFE chosen reply"
    pf = load_preferences(write(tmp_path / "u.jsonl", unlabelled))
    assert status(check_preferences(pf, thr))["safety pairs"] == "FAIL"  # no labels at all

    def fake(texts: list[str]) -> list[bool]:
        return ["UNSAFE" in t for t in texts]

    rep = check_preferences(pf, thr, classify=fake)
    checks = {c.name: c for c in rep.checks}
    assert (checks["safety pairs"].value, checks["quality pairs"].value) == ("25.0%", "72.5%")
    assert checks["chosen flagged unsafe"].status == "FAIL" and checks["chosen flagged unsafe"].where[0].endswith(":11")
    assert rep.stats["coverage"] == {"labelled_in_file": 0, "classified": 40, "chosen_unsafe": 1, "safety": 10,
                                     "quality": 29, "unlabelled": 1}


def test_structural_checks_name_the_lines(tmp_path: Path) -> None:
    rows = [pair(i) for i in range(10)]
    rows[2]["chosen"] = "   "
    rows[3]["rejected"] = rows[3]["chosen"].upper()
    rows[4] = {**rows[1], "id": "copy"}
    rows[5]["prompt"] = rows[6]["prompt"]
    report = check_preferences(load_preferences(write(tmp_path / "p.jsonl", rows)),
                               PrefThresholds(require_reviews=False, min_sources=1, max_source_share=1))
    checks = {c.name: c for c in report.checks}
    f = str(tmp_path / "p.jsonl")
    assert checks["empty fields"].where == [f"{f}:3:chosen"]
    assert checks["chosen = rejected"].where == [f"{f}:4"]
    assert checks["duplicate pairs"].where == [f"{f}:5 (same as line 2)"]
    assert checks["duplicate prompts"].value == "20.0%" and checks["duplicate prompts"].status == "FAIL"
    assert {c for c, s in status(report).items() if s == "FAIL"} == {"empty fields", "chosen = rejected",
                                                                     "duplicate pairs", "duplicate prompts"}


@pytest.mark.parametrize(("row", "message"), [
    ('{"id": "a", "prompt": "q", "chosen": "x", "rejected": "y"', "p.jsonl:2: invalid JSON"),
    ({"id": "a", "prompt": "q", "chosen": "x", "source": "s"}, "p.jsonl:2: rejected: missing required field"),
    ({"id": "a", "prompt": "q", "chosen": "x", "rejected": "y", "source": "s", "reviews": [{"reviewer": "r",
      "preferred": "left"}]}, "p.jsonl:2: reviews[0].preferred: Input should be 'chosen', 'rejected' or 'tie'"),
    ({"id": "a", "prompt": "q", "chosen": "x", "rejected": "y", "source": "s", "pair_type": "style"},
     "p.jsonl:2: pair_type:"),
    ({"id": "a", "prompt": "q", "chosen": "x", "rejected": "y", "source": "s", "margn": 1}, "p.jsonl:2: margn: Extra"),
    ({"id": "p0", "prompt": "q", "chosen": "x", "rejected": "y", "source": "s"}, "p.jsonl:2: id: duplicate id 'p0'"),
])
def test_malformed_rows_name_file_line_field(tmp_path: Path, row: Any, message: str) -> None:
    path = write(tmp_path / "p.jsonl", [pair(0), row])
    with pytest.raises(UserError) as e:
        load_preferences(path)
    assert str(e.value).startswith(str(tmp_path / message))


def test_trl_conversational_form_is_accepted(tmp_path: Path) -> None:
    row = {"id": 1, "source": "s", "prompt": [{"role": "user", "content": "Hi there"}],
           "chosen": [{"role": "assistant", "content": "Hello! How can I help?"}],
           "rejected": [{"role": "assistant", "content": "What."}]}
    [r] = load_preferences(write(tmp_path / "p.jsonl", [row])).rows
    assert (r.pair.id, r.prompt, r.chosen, r.rejected) == ("1", "Hi there", "Hello! How can I help?", "What.")
