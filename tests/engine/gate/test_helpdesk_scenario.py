"""The issue-11 helpdesk scenario: three cohorts, a JSON guard, a text guard and a numeric guard
scoped to the arithmetic rows. The verdict must depend only on the candidate's behaviour on the rows
each rule applies to.

Real evaluators score real output files (no fakes in the scoring): ``json_validation`` on the triage
rows, ``token_f1`` on the policy answers, ``numeric_match`` on the arithmetic rows. The policy-QA rows
whose reference is a number ("How many days...?" → "14") are exactly the rows on which an *unscoped*
numeric guard judges the wrong thing; "ThinkPad X1" in the triage tickets is the digit the issue saw
numeric_match score.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunegate.cli.main import main
from tunegate.core import Dataset, Example
from tunegate.core.outputs import load_outputs
from tunegate.core.policy import GatePolicy, load_policy
from tunegate.core.verdict import RuleResult
from tunegate.engine.gate.runs import gate_runs
from tunegate.engine.run.executor import run_plan
from tunegate.engine.run.plan import plan_run
from tunegate.evaluators.registry import load_suite
from tunegate.store.sqlite import Store

N = 60  # rows per cohort: enough for a 0.1 margin to be decidable (zero-event bound 0.060 at 60)
SCHEMA = {"type": "object", "required": ["category", "priority"],
          "properties": {"category": {"type": "string"}, "priority": {"enum": ["low", "high"]}}}

POLICY_YAML = """\
name: helpdesk
version: "1"
headline: {evaluator: json_validation, rule: improve, cohorts: [json-triage]}
guards:
  - {evaluator: token_f1, rule: no_drop, margin: 0.1, cohorts: [policy-qa]}
  - {evaluator: numeric_match, rule: non_inferior, margin: 0.1, cohorts: [arithmetic]}
error_budget: 0.02
"""


def dataset() -> Dataset:
    rows = []
    for i in range(N):
        rows.append(Example(id=f"triage-{i:02d}", input=f"Ticket {i}: my ThinkPad X1 gen {i % 9 + 2} will not boot",
                            expected={"category": "hardware", "priority": "high"}, json_schema=SCHEMA,
                            cohorts=["json-triage"]))
        numeric = i % 3 == 0
        rows.append(Example(id=f"policy-{i:02d}", input=f"Policy question {i}",
                            expected=str(14 + i) if numeric else f"refunds for plan {i} are issued to the card",
                            cohorts=["policy-qa"]))
        a, b = 10 + i, 7 * i
        rows.append(Example(id=f"math-{i:02d}", input=f"What is {a} + {b}?", expected=str(a + b), cohorts=["arithmetic"]))
    return Dataset.of(rows, name="helpdesk")


def outputs(ds: Dataset, *, json_ok: float, policy_numbers: str = "right", math_ok: float = 1.0) -> list[dict[str, str]]:
    """One candidate's outputs: share of valid triage JSON, how it states numeric policy answers, share of
    correct sums. Triage JSON always mentions the model number (a digit numeric_match could pick up)."""
    out = []
    for ex in ds:
        i = int(ex.id.rsplit("-", 1)[1])
        if ex.id.startswith("triage"):
            text = (json.dumps({"category": "hardware", "priority": "high", "device": "ThinkPad X1"})
                    if i < json_ok * N else "This looks like a hardware problem with your ThinkPad X1.")
        elif ex.id.startswith("policy"):
            if str(ex.expected).isdigit():
                text = {"right": f"{ex.expected}", "words": "about two weeks", "wrong": "99"}[policy_numbers]
            else:
                text = str(ex.expected)
        else:
            a, b = (int(x) for x in (ex.input or "").removeprefix("What is ").rstrip("?").split(" + "))
            text = f"The answer is {a + b if i < math_ok * N else a + b + 1}"
        out.append({"id": ex.id, "output": text})
    return out


def run_outputs(store: Store, ds: Dataset, rows: list[dict[str, str]], path: Path) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    plan = plan_run(ds, load_suite("json_validation,token_f1,numeric_match"), outputs=load_outputs(path))
    return run_plan(plan, store).run_id


def rule(res_rules: list[RuleResult], name: str) -> RuleResult:
    return next(r for r in res_rules if r.name == name and r.cohort == "*")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("helpdesk")
    ds = dataset()
    variants = {
        "incumbent": outputs(ds, json_ok=0.5),
        "better": outputs(ds, json_ok=1.0),
        "better_words": outputs(ds, json_ok=1.0, policy_numbers="words"),  # differs only on policy-qa rows
        "better_wrong_numbers": outputs(ds, json_ok=1.0, policy_numbers="wrong"),
        "bad_math": outputs(ds, json_ok=1.0, math_ok=0.5),
    }
    ids = {}
    with Store(tmp / "s.db") as store:
        for name, rows in variants.items():
            ids[name] = run_outputs(store, ds, rows, tmp / f"{name}.jsonl")
    (tmp / "policy.yaml").write_text(POLICY_YAML, encoding="utf-8")
    return tmp, ids


def test_better_prompt_promotes_and_out_of_scope_rows_neither_error_nor_count(runs: tuple[Path, dict[str, str]]) -> None:
    tmp, ids = runs
    policy = load_policy(tmp / "policy.yaml")
    with Store(tmp / "s.db") as store:
        res = gate_runs(store, ids["incumbent"], ids["better"], policy, record=False)
    v = res.verdict
    assert v.decision == "PROMOTE", v.reasons
    numeric = rule(v.rules, "guard 2")
    assert numeric.evaluator == "numeric_match" and numeric.scope == "cohorts=arithmetic" and numeric.n == N
    assert rule(v.rules, "headline").n == N and rule(v.rules, "guard 1").n == N
    budget = next(r for r in v.rules if r.rule == "error_budget")
    assert budget.status == "pass" and budget.estimate == 0.0 and budget.n == 3 * N


def test_each_rule_reads_only_its_rows(runs: tuple[Path, dict[str, str]]) -> None:
    """Candidates that differ only on policy-QA rows get identical numeric-guard results; unscoped, the
    same guard is moved by those rows (so this test can fail)."""
    tmp, ids = runs
    scoped = load_policy(tmp / "policy.yaml")
    unscoped = GatePolicy.model_validate({"guards": [{"evaluator": "numeric_match", "rule": "non_inferior",
                                                      "margin": 0.1}]})
    with Store(tmp / "s.db") as store:
        got = {k: gate_runs(store, ids["incumbent"], ids[k], scoped, record=False).verdict
               for k in ("better", "better_words", "better_wrong_numbers")}
        loose = {k: gate_runs(store, ids["incumbent"], ids[k], unscoped, record=False).verdict
                 for k in ("better", "better_wrong_numbers")}
    g = [rule(v.rules, "guard 2") for v in got.values()]
    assert all((r.status, r.estimate, r.ci_low, r.ci_high, r.n) == (g[0].status, g[0].estimate, g[0].ci_low,
                                                                    g[0].ci_high, g[0].n) for r in g)
    assert [rule(v.rules, "headline").estimate for v in got.values()] == [rule(got["better"].rules, "headline").estimate] * 3
    # the policy-qa changes do move the text guard (that is its scope), and the unscoped numeric guard
    assert rule(got["better_words"].rules, "guard 1").estimate != rule(got["better"].rules, "guard 1").estimate
    a, b = (rule(v.rules, "guard 1") for v in loose.values())
    assert a.estimate != b.estimate and a.n is not None and a.n > N


def test_broken_arithmetic_blocks_on_the_scoped_guard_only(runs: tuple[Path, dict[str, str]]) -> None:
    tmp, ids = runs
    with Store(tmp / "s.db") as store:
        v = gate_runs(store, ids["incumbent"], ids["bad_math"], load_policy(tmp / "policy.yaml"), record=False).verdict
    assert v.decision == "BLOCK"
    failed = [r for r in v.rules if r.status == "fail"]
    assert [(r.name, r.evaluator) for r in failed] == [("guard 2", "numeric_match")]
    assert any("rows: cohorts=arithmetic" in r for r in v.reasons)


def test_unknown_cohort_in_a_rule_is_a_usage_error(runs: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    tmp, ids = runs
    bad = tmp / "typo.yaml"
    bad.write_text(POLICY_YAML.replace("cohorts: [arithmetic]", "cohorts: [arithmetc]"), encoding="utf-8")
    code = main(["--db", str(tmp / "s.db"), "gate", "--baseline", ids["incumbent"], "--candidate", ids["better"],
                 "--policy", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "guards[1].cohorts" in err and "arithmetc" in err and "arithmetic" in err
