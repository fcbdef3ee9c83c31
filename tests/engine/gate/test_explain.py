"""``tunegate policy explain``: rows per rule, split and cohort, and the rules that can never be decided."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunegate.cli.main import main
from tunegate.core import Dataset, Example
from tunegate.core.policy import GatePolicy
from tunegate.engine.gate.explain import explain_policy, rows_for_margin
from tunegate.engine.stats.inference import zero_event_halfwidth


def dataset() -> Dataset:
    rows = [Example(id=f"math-{i}", input="1+1", expected="2", cohorts=["arithmetic"], split="test" if i < 8 else "train",
                    metadata={"task": "math"}) for i in range(40)]
    rows += [Example(id=f"qa-{i}", input="q", expected="a", cohorts=["policy-qa"], metadata={"task": "qa"})
             for i in range(200)]
    return Dataset.of(rows, name="explain")


def test_rows_for_margin_is_the_zero_event_inverse() -> None:
    for margin in (0.01, 0.02, 0.05, 0.1):
        n = rows_for_margin(margin)
        assert n is not None and zero_event_halfwidth(n) < margin <= zero_event_halfwidth(n - 1)
    assert rows_for_margin(0.0) is None


def test_counts_and_warnings_per_rule() -> None:
    policy = GatePolicy.model_validate({
        "headline": {"evaluator": "token_f1", "rule": "improve"},
        "guards": [{"evaluator": "numeric_match", "rule": "non_inferior", "margin": 0.05, "cohorts": ["arithmetic"]},
                   {"evaluator": "exact_match", "rule": "floor", "min": 0.99, "where": {"metadata.task": "qa"}}],
        "cohorts": {"rule": "no_drop", "margin": 0.05, "min_rows": 20}})
    reach = {r.name: r for r in explain_policy(policy, dataset())}
    head = reach["headline"]
    assert head.rows == 240 and head.by_cohort == {"arithmetic": 40, "policy-qa": 200} and not head.warnings
    g1 = reach["guard 1"]
    assert g1.rows == 40 and g1.by_cohort == {"arithmetic": 40} and g1.by_split["test"] == 8
    assert any("all rows: margin 0.05 is inside the zero-event bound" in w and "needs >= 72 rows" in w
               for w in g1.warnings)
    assert any(w.startswith("--split test: 8 rows < min_rows 10") for w in g1.warnings)
    g2 = reach["guard 2"]
    assert g2.rows == 200 and any("min 0.99 is above what 200 rows can show" in w for w in g2.warnings)
    # the cohort rule of the scoped guard covers only its own cohort; qa's 200 rows are enough for 0.05
    # as a whole, but a gate runs on one split, and qa's test rows are too few for that margin
    qa = reach["cohort policy-qa"]
    assert qa.rows == 200 and sum(qa.by_split.values()) == 200 and 0 < qa.by_split["test"] < 72
    assert not [w for w in qa.warnings if w.startswith("this cohort")]
    assert any(w.startswith("--split test: margin 0.05 is inside the zero-event bound") and "needs >= 72 rows" in w
               for w in qa.warnings), qa.warnings


def test_cli_explain_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = tmp_path / "d.jsonl"
    ds.write_text("".join(json.dumps(ex.model_dump(mode="json", by_alias=True, exclude_none=True)) + "\n"
                          for ex in dataset()), encoding="utf-8")
    pol = tmp_path / "p.yaml"
    pol.write_text("guards:\n  - {evaluator: numeric_match, rule: no_drop, margin: 0.05, cohorts: [arithmetic]}\n",
                   encoding="utf-8")
    assert main(["policy", "explain", str(pol), "--dataset", str(ds)]) == 3  # 40 rows cannot clear 0.05
    out = capsys.readouterr().out
    assert "guard 1" in out and "rows 40" in out and "zero-event bound" in out
    pol.write_text("guards:\n  - {evaluator: numeric_match, rule: no_drop, margin: 0.1, cohorts: [arithmetic]}\n",
                   encoding="utf-8")
    assert main(["policy", "explain", str(pol), "--dataset", str(ds), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rules"][0]["rows"] == 40 and data["never_decided"] == []
    pol.write_text("guards:\n  - {evaluator: numeric_match, rule: no_drop}\n", encoding="utf-8")
    assert main(["policy", "explain", str(pol), "--dataset", str(ds)]) == 2
    assert "guards[0].margin" in capsys.readouterr().err
