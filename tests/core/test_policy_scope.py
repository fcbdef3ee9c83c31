"""Rules scoped to rows (issue 11): ``cohorts`` and ``where`` on a rule, validated and hashed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunegate.core.policy import GatePolicy, Rule, load_policy
from tunegate.errors import UserError

BASE = "name: s\nguards:\n  - {evaluator: numeric_match, rule: non_inferior, margin: 0.05%s}\n"


def _load(tmp_path: Path, extra: str) -> GatePolicy:
    p = tmp_path / "p.yaml"
    p.write_text(BASE % extra, encoding="utf-8")
    return load_policy(p)


def test_scope_matching_and_keys(tmp_path: Path) -> None:
    pol = _load(tmp_path, ", cohorts: [arithmetic, math], where: {metadata.task: [sum, product], split: test}")
    r = pol.guards[0]
    assert r.scope == "cohorts=arithmetic,math metadata.task=sum,product split=test"
    assert r.key == f"numeric_match [{r.scope}]" and pol.gated_keys() == [r.key] and pol.gated_evaluators() == ["numeric_match"]
    row = {"metadata": {"task": "sum"}, "split": "test"}
    assert r.applies_to(["math"], row)
    assert not r.applies_to(["billing"], row)  # cohort outside
    assert not r.applies_to(["math"], {**row, "split": "train"})  # where: every key must match
    assert not r.applies_to(["math"], {"split": "test"})  # a missing field never matches
    assert pol.scoped_rules() == [("guards[0]", r)]


def test_unscoped_rules_hash_as_before(tmp_path: Path) -> None:
    plain = _load(tmp_path, "")
    scoped = _load(tmp_path, ", cohorts: [math]")
    assert plain.hash != scoped.hash
    assert GatePolicy.model_validate({"guards": [{"evaluator": "numeric_match", "rule": "non_inferior",
                                                  "margin": 0.05, "cohorts": None}], "name": "s"}).hash == plain.hash


@pytest.mark.parametrize(("extra", "field", "message"), [
    (", cohorts: []", "guards[0].cohorts", "at least one cohort"),
    (", cohorts: [a, a]", "guards[0].cohorts", "listed twice"),
    (", where: {}", "guards[0].where", "empty where"),
    (", where: {metadata..task: x}", "guards[0].where", "dotted field path"),
    (", where: {metadata.task: {a: 1}}", "guards[0].where", "compare with a value"),
    (", cohort: [a]", "guards[0].cohort", "unknown key 'cohort'"),
])
def test_bad_scopes_are_located(tmp_path: Path, extra: str, field: str, message: str) -> None:
    with pytest.raises(UserError) as ei:
        _load(tmp_path, extra)
    assert ei.value.field == field and message in ei.value.message and ei.value.line == 3


def test_no_drop_margin_is_named_by_the_loader(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: s\nheadline: {evaluator: a, rule: improve}\nguards:\n  - {evaluator: safety, rule: no_drop}\n",
                 encoding="utf-8")
    with pytest.raises(UserError) as ei:
        load_policy(p)
    assert str(ei.value).startswith(f"{p}:4: guards[0].margin: rule no_drop needs a margin")
    assert Rule(evaluator="s", rule="no_drop", margin=0.01).describe() == "s no_drop (margin 0.01)"
