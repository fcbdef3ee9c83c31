"""Gate policy YAML: the issue's example loads, typos are located errors, the hash is a content hash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tunegate.core.policy import GatePolicy, Rule, load_policy
from tunegate.errors import UserError

EXAMPLE = """\
name: support-bot
version: 3
headline: {evaluator: task_completion, rule: improve}            # CI low bound of delta > 0
guards:
  - {evaluator: groundedness, rule: non_inferior, margin: 0.02}  # CI low bound > -0.02
  - {evaluator: content_safety, rule: non_inferior, margin: 0.0}
  - {evaluator: json_validation, rule: floor, min: 0.95}
cohorts: {rule: non_inferior, margin: 0.05, min_rows: 20}       # every cohort with >= 20 rows
max_cohort_variance_increase: 0.01
error_budget: 0.02
"""


def _write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_example_policy_loads(tmp_path: Path) -> None:
    pol = load_policy(_write(tmp_path, EXAMPLE))
    assert pol.name == "support-bot" and pol.version == "3"
    assert pol.headline == Rule(evaluator="task_completion", rule="improve")
    assert [g.rule for g in pol.guards] == ["non_inferior", "non_inferior", "floor"]
    assert pol.guards[0].threshold == -0.02 and pol.guards[2].threshold == 0.95
    assert pol.cohorts is not None and pol.cohorts.min_rows == 20 and pol.cohorts.threshold == -0.05
    assert pol.alpha == 0.05 and pol.correction == "holm" and pol.n_resamples == 2000
    assert pol.gated_evaluators() == ["task_completion", "groundedness", "content_safety", "json_validation"]
    assert pol.cohort_evaluators() == pol.gated_evaluators()
    assert pol.compare_options() == {"n_resamples": 2000, "alpha": 0.05, "seed": 0, "correction": "holm",
                                     "min_cohort_rows": 20}
    assert pol.source == str(tmp_path / "policy.yaml")


def test_hash_is_content_hash(tmp_path: Path) -> None:
    a = load_policy(_write(tmp_path, EXAMPLE, "a.yaml"))
    reordered = EXAMPLE.replace("error_budget: 0.02\n", "").replace("name: support-bot\n",
                                                                     "error_budget: 0.02\nname: support-bot\n")
    b = load_policy(_write(tmp_path, reordered + "alpha: 0.05\ncorrection: holm\n", "b.yaml"))
    assert a.hash == b.hash  # key order, stated defaults and the file name do not matter
    assert a.hash.startswith("pol-")
    c = load_policy(_write(tmp_path, EXAMPLE.replace("margin: 0.02", "margin: 0.03"), "c.yaml"))
    assert c.hash != a.hash
    d = load_policy(_write(tmp_path, EXAMPLE.replace("version: 3", "version: 4"), "d.yaml"))
    assert d.hash != a.hash


def test_unknown_key_names_file_line_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, EXAMPLE.replace("rule: floor, min: 0.95", "rule: floor, min: 0.95, margn: 0.1"))
    with pytest.raises(UserError) as ei:
        load_policy(path)
    err = ei.value
    assert err.file == str(path) and err.line == 7 and err.field == "guards[2].margn"
    assert "unknown key 'margn'" in str(err) and "allowed: evaluator, rule, margin, min" in str(err)
    assert str(err).startswith(f"{path}:7: guards[2].margn: ")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = _write(tmp_path, EXAMPLE + "alpah: 0.1\n")
    with pytest.raises(UserError) as ei:
        load_policy(path)
    assert ei.value.line == 11 and ei.value.field == "alpah"


@pytest.mark.parametrize(
    ("old", "new", "field", "line", "message"),
    [
        ("rule: non_inferior, margin: 0.02", "rule: non_inferior", "guards[0].margin", 5, "needs a margin"),
        ("rule: improve}", "rule: improve, margin: 0.01}", "headline.margin", 3, "takes no margin"),
        ("rule: floor, min: 0.95", "rule: floor", "guards[2].min", 7, "needs a min"),
        ("rule: floor, min: 0.95", "rule: floor, min: 1.5", "guards[2].min", 7, "less than or equal to 1"),
        ("rule: improve}", "rule: better}", "headline.rule", 3, "improve"),
        ("min_rows: 20", "min_rows: 0", "cohorts.min_rows", 8, "greater than or equal to 1"),
        ("error_budget: 0.02", "error_budget: 2", "error_budget", 10, "less than or equal to 1"),
    ],
)
def test_rule_errors_are_located(tmp_path: Path, old: str, new: str, field: str, line: int, message: str) -> None:
    path = _write(tmp_path, EXAMPLE.replace(old, new))
    with pytest.raises(UserError) as ei:
        load_policy(path)
    assert ei.value.field == field
    assert ei.value.line == line
    assert message in str(ei.value)


def test_invalid_yaml_and_shapes(tmp_path: Path) -> None:
    with pytest.raises(UserError) as ei:
        load_policy(_write(tmp_path, "headline: {evaluator: x\nguards: [\n"))
    assert "invalid YAML" in str(ei.value) and ei.value.line is not None
    with pytest.raises(UserError, match="must be a mapping"):
        load_policy(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(UserError, match="headline or at least one guard"):
        load_policy(_write(tmp_path, "name: empty\nerror_budget: 0.1\n"))
    with pytest.raises(UserError, match="file not found"):
        load_policy(tmp_path / "nope.yaml")


def test_no_drop_and_cohort_evaluators() -> None:
    pol = GatePolicy.model_validate({
        "guards": [{"evaluator": "safety", "rule": "no_drop", "margin": 0.01}],
        "cohorts": {"rule": "no_drop", "margin": 0.05, "evaluators": ["safety", "tone"], "min_rows": 30},
        "correction": "bh",
    })
    # no_drop: passes on a CI above -margin, fails on any drop shown with confidence (test vs 0)
    assert pol.guards[0].threshold == -0.01 and pol.guards[0].fail_threshold == 0.0
    assert pol.cohorts is not None and pol.cohorts.fail_threshold == 0.0 and pol.cohorts.threshold == -0.05
    nin = Rule(evaluator="x", rule="non_inferior", margin=0.02)
    assert nin.threshold == nin.fail_threshold == -0.02  # non_inferior tolerates drops inside the margin
    assert Rule(evaluator="x", rule="improve").fail_threshold == 0.0
    assert pol.cohort_evaluators() == ["safety", "tone"]
    assert pol.min_cohort_rows == 30 and pol.compare_options()["correction"] == "bh"
    with pytest.raises(ValueError, match="no_drop needs a margin"):
        Rule(evaluator="x", rule="no_drop")
    with pytest.raises(ValueError, match="no_drop needs a margin"):
        Rule(evaluator="x", rule="no_drop", margin=0.0)
    with pytest.raises(ValueError, match="improve takes no margin"):
        Rule(evaluator="x", rule="improve", margin=0.01)


def test_core_policy_imports_nothing_heavy() -> None:
    code = ("import sys, tunegate.core.policy, tunegate.core.verdict; "
            "bad = [m for m in ('scipy', 'rich', 'httpx', 'torch', 'tunegate.engine') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
