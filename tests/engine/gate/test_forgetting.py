"""The forgetting rule end to end with a scripted backend: pass, BLOCK, unchanged without the section,
two-run mode (specs from the store, runs reused), and the cases where it cannot be evaluated."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

import tunegate.api as api
from tests.fakes import FakeBackend
from tunegate.backends.base import GenerationRequest
from tunegate.core import CandidateSpec, Dataset, Example, PromptTemplate
from tunegate.core.loading import load_dataset
from tunegate.core.outputs import load_outputs
from tunegate.core.policy import PROBES_DIR, GatePolicy
from tunegate.engine.gate.decide import decide
from tunegate.engine.gate.forgetting import combine_rows
from tunegate.engine.gate.runs import gate_runs
from tunegate.engine.run.executor import run_plan
from tunegate.engine.run.plan import plan_run
from tunegate.evaluators.registry import load_suite
from tunegate.store.sqlite import Store

PROBE = load_dataset(PROBES_DIR / "general-v1.jsonl")


def _ideal(ex: Example) -> str:
    """An answer each probe row's evaluators accept (instruction rows get a neutral reply)."""
    if ex.json_schema is not None:
        return json.dumps({"name": ex.metadata["answer"]})
    if ex.expected is not None:
        return f"The answer is {ex.expected}."
    if "regex" in ex.metadata:
        return str(ex.metadata["answer"])
    return "Here is my reply."


PROBE_ANSWERS = {ex.prompt_text(): _ideal(ex) for ex in PROBE}
PROBE_COHORTS = {ex.prompt_text(): ex.cohorts for ex in PROBE}


def script(req: GenerationRequest) -> str:
    """Main rows: 'good' answers all, 'meh' every other one. Probe rows: right unless 'forgetful'."""
    system = req.messages[0].content if req.messages[0].role == "system" else ""
    user = req.messages[-1].content or ""
    if user in PROBE_ANSWERS:
        forgot = system == "forgetful" or (system == "no-maths" and "arithmetic" in PROBE_COHORTS[user])
        return "I do not know." if forgot else PROBE_ANSWERS[user]
    c, _, i = user.partition(" question ")
    return f"answer {c} {i}" if (system in ("good", "forgetful", "no-maths") or int(i) % 2) else "no"


def main_dataset() -> Dataset:
    return Dataset.of([Example(id=f"{c}-{i:03d}", input=f"{c} question {i}", expected=f"answer {c} {i}", cohorts=[c])
                       for c in ("billing", "refunds") for i in range(30)], name="main")


def policy(**forgetting: Any) -> GatePolicy:
    data: dict[str, Any] = {"name": "t", "headline": {"evaluator": "exact_match", "rule": "improve"}}
    if forgetting:
        data["forgetting"] = forgetting
    return GatePolicy.model_validate(data)


FG = {"probe": "general-v1", "rule": "non_inferior", "margin": 0.05}
INC = CandidateSpec(name="inc", prompt=PromptTemplate(system="meh"))
GOOD = CandidateSpec(name="good", prompt=PromptTemplate(system="good"))
FORGETFUL = CandidateSpec(name="forgetful", prompt=PromptTemplate(system="forgetful"))


@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch) -> list[FakeBackend]:
    made: list[FakeBackend] = []

    def fake(spec: CandidateSpec) -> FakeBackend:
        made.append(FakeBackend(script, max_batch=16))
        return made[-1]

    monkeypatch.setattr(api, "make_backend", fake)
    return made


def calls(bs: list[FakeBackend]) -> int:
    return sum(len(b.calls) for b in bs)


def _rule(res: Any) -> Any:
    return next(r for r in res.verdict.rules if r.name == "forgetting")


def test_candidate_matching_the_baseline_on_the_probe_passes(tmp_path: Path, backends: list[FakeBackend]) -> None:
    res = api.gate_detailed(baseline=INC, candidate=GOOD, policy=policy(**FG), dataset=main_dataset(),
                            db=tmp_path / "s.db", report_dir=tmp_path / "report")
    rule = _rule(res)
    assert rule.status == "pass" and rule.estimate == 0.0 and rule.n == len(PROBE)
    assert rule.ci_low is not None and rule.ci_low > -0.05 and rule.evaluator == "probe:general-v1"
    assert res.verdict.decision == "PROMOTE"
    assert calls(backends) == 2 * 60 + 2 * len(PROBE)
    fg = res.to_dict()["forgetting"]
    assert fg["evaluable"] and {c["cohort"] for c in fg["cohorts"]} >= {"*", "arithmetic", "factual"}
    base_mean = next(c for c in fg["cohorts"] if c["cohort"] == "*")["base_mean"]
    assert 0.5 < base_mean < 1.0  # the scripted answers are right everywhere but on instruction rows
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "### Forgetting probe `general-v1`" in summary and "| arithmetic |" in summary
    case = next(t for t in ET.parse(tmp_path / "report" / "junit.xml").iter("testcase")
                if (t.get("name") or "").startswith("forgetting ("))
    out = case.find("system-out")
    assert out is not None and "arithmetic: baseline" in (out.text or "")
    stored = json.loads((tmp_path / "report" / "verdict.json").read_text())
    assert stored["forgetting"]["probe"] == "general-v1"


def test_candidate_that_forgot_is_blocked_naming_forgetting(tmp_path: Path, backends: list[FakeBackend]) -> None:
    res = api.gate_detailed(baseline=INC, candidate=FORGETFUL, policy=policy(**FG), dataset=main_dataset(),
                            db=tmp_path / "s.db", report_dir=tmp_path / "report")
    assert res.verdict.decision == "BLOCK"
    assert _rule(res).status == "fail" and _rule(res).estimate is not None and _rule(res).estimate < -0.3
    assert next(r for r in res.verdict.rules if r.name == "headline").status == "pass"  # it did improve the task
    assert res.verdict.reasons[0].startswith("forgetting (probe:general-v1 non_inferior) fails")
    fg = res.to_dict()["forgetting"]
    arith = next(c for c in fg["cohorts"] if c["cohort"] == "arithmetic")
    assert arith["delta"] == -1.0 and arith["ci_high"] < 0
    assert "⬇" in (tmp_path / "report" / "summary.md").read_text()


def test_one_forgotten_probe_cohort_blocks_when_cohorts_are_gated(tmp_path: Path,
                                                                   backends: list[FakeBackend]) -> None:
    """Arithmetic collapses (16 of 80 rows) while the probe mean stays within the overall margin:
    only the per-cohort rule sees it, and it names the cohort."""
    no_maths = CandidateSpec(name="no-maths", prompt=PromptTemplate(system="no-maths"))
    loose = {**FG, "margin": 0.3}
    res = api.gate_detailed(baseline=INC, candidate=no_maths, policy=policy(**loose), dataset=main_dataset(),
                            db=tmp_path / "s.db")
    assert res.verdict.decision == "PROMOTE" and [r.name for r in res.verdict.rules] == ["headline", "forgetting"]
    per = {**loose, "cohorts": {"margin": 0.25, "min_rows": 10}}  # 16 rows: the CI floor is ±0.21
    res = api.gate_detailed(baseline=INC, candidate=no_maths, policy=policy(**per), dataset=main_dataset(),
                            db=tmp_path / "s.db", report_dir=tmp_path / "report")
    assert calls(backends) == 2 * 60 + 2 * len(PROBE)  # the second gate reuses every run
    rules = {r.name: r for r in res.verdict.rules}
    assert rules["forgetting"].status == "pass"
    arith = rules["forgetting arithmetic"]
    assert arith.status == "fail" and arith.cohort == "arithmetic" and arith.estimate is not None
    assert arith.estimate < -0.5 and arith.threshold == -0.25 and arith.n == 16
    assert {rules[f"forgetting {c}"].status for c in ("factual", "extraction", "json")} == {"pass"}
    assert res.verdict.decision == "BLOCK"
    assert any("arithmetic" in r and r.startswith("forgetting arithmetic") for r in res.verdict.reasons)
    cases = {(t.get("name") or "").split(" (")[0] for t in ET.parse(tmp_path / "report" / "junit.xml").iter("testcase")}
    assert {"forgetting", "forgetting arithmetic"} <= cases
    small = {**loose, "cohorts": {"margin": 0.1, "min_rows": 17}}  # every probe cohort has 16 rows
    res = api.gate_detailed(baseline=INC, candidate=no_maths, policy=policy(**small), dataset=main_dataset(),
                            db=tmp_path / "s.db")
    assert res.verdict.decision == "PROMOTE"
    assert {r.status for r in res.verdict.rules if r.name.startswith("forgetting ")} == {"skipped"}


def test_policy_without_forgetting_is_unchanged(tmp_path: Path, backends: list[FakeBackend]) -> None:
    res = api.gate_detailed(baseline=INC, candidate=FORGETFUL, policy=policy(), dataset=main_dataset(),
                            db=tmp_path / "s.db")
    assert res.verdict.decision == "PROMOTE" and calls(backends) == 2 * 60  # the probe never runs
    assert res.forgetting is None and res.to_dict()["forgetting"] is None
    assert [r.name for r in res.verdict.rules] == ["headline"]
    assert res.verdict == decide(res.comparison, policy())


def test_two_run_mode_recovers_specs_and_reuses_probe_runs(tmp_path: Path, backends: list[FakeBackend]) -> None:
    db = tmp_path / "s.db"
    first = api.gate_detailed(baseline=INC, candidate=FORGETFUL, policy=policy(**FG), dataset=main_dataset(), db=db)
    before = calls(backends)
    again = api.gate_detailed(baseline=first.paired.baseline.id, candidate=first.paired.candidate.id,
                              policy=policy(**FG), db=db)
    assert calls(backends) == before, "finished probe runs of the same identity are reused"
    assert again.verdict.decision == "BLOCK" and _rule(again).status == "fail"
    fg = again.to_dict()["forgetting"]
    assert fg["reused_runs"] == {"baseline": True, "candidate": True}
    assert fg["candidate_run"] == first.to_dict()["forgetting"]["candidate_run"]
    # gate_runs without a runner only looks probe runs up: also free, same result
    with Store(db) as store:
        res = gate_runs(store, first.paired.baseline.id, first.paired.candidate.id, policy(**FG), record=False)
    assert calls(backends) == before and _rule(res).status == "fail"


def test_probe_runs_in_two_run_mode_when_missing(tmp_path: Path, backends: list[FakeBackend]) -> None:
    db = tmp_path / "s.db"
    first = api.gate_detailed(baseline=INC, candidate=GOOD, policy=policy(), dataset=main_dataset(), db=db)
    with Store(db) as store:  # no probe runs yet and no runner: not evaluable, never a pass
        res = gate_runs(store, first.paired.baseline.id, first.paired.candidate.id, policy(**FG), record=False)
    assert res.verdict.decision == "INCONCLUSIVE" and _rule(res).status == "undecided"
    assert "no finished run of the baseline candidate on probe general-v1" in _rule(res).evidence
    res = api.gate_detailed(baseline=first.paired.baseline.id, candidate=first.paired.candidate.id,
                            policy=policy(**FG), db=db)
    assert calls(backends) == 2 * 60 + 2 * len(PROBE) and res.verdict.decision == "PROMOTE"


def test_outputs_file_candidate_is_not_evaluable(tmp_path: Path, backends: list[FakeBackend]) -> None:
    ds = main_dataset()
    outs = tmp_path / "outs.jsonl"
    outs.write_text("".join(json.dumps({"id": ex.id, "output": ex.expected}) + "\n" for ex in ds))
    db = tmp_path / "s.db"
    with Store(db) as store:
        base = api.ensure_run(store, ds, INC, "exact_match")[0]
        cand = run_plan(plan_run(ds, load_suite("exact_match"), outputs=load_outputs(outs)), store).run_id
    res = api.gate_detailed(baseline=base, candidate=cand, policy=policy(**FG), db=db, report_dir=tmp_path / "r")
    rule = _rule(res)
    assert res.verdict.decision == "INCONCLUSIVE" and rule.status == "undecided" and rule.estimate is None
    assert "outputs file" in rule.evidence and any("forgetting" in r and "outputs file" in r for r in res.verdict.reasons)
    assert "**Not evaluable**" in (tmp_path / "r" / "summary.md").read_text()
    assert calls(backends) == 60  # only the baseline's main run; nothing on the probe


def test_prompt_the_probe_rows_cannot_fill_is_not_evaluable(tmp_path: Path, backends: list[FakeBackend]) -> None:
    ds = Dataset.of([ex.model_copy(update={"metadata": {"tier": "gold"}}) for ex in main_dataset()])
    tiered = CandidateSpec(name="tiered", prompt=PromptTemplate(system="good", user="[{{tier}}] {{input}}"))
    res = api.gate_detailed(baseline=INC, candidate=tiered, policy=policy(**FG), dataset=ds, db=tmp_path / "s.db")
    assert _rule(res).status == "undecided" and "{{tier}}" in _rule(res).evidence
    bare = api.gate_detailed(baseline=INC, candidate=tiered, policy=policy(**FG, prompt="bare"), dataset=ds,
                             db=tmp_path / "s.db")
    rule = _rule(bare)  # bare: same model, no prompt → one probe run shared by both sides, zero deltas
    assert rule.status == "pass" and rule.estimate == 0.0
    assert bare.to_dict()["forgetting"]["baseline_run"] == bare.to_dict()["forgetting"]["candidate_run"]


def test_max_tokens_override_reaches_the_probe_requests(tmp_path: Path, backends: list[FakeBackend]) -> None:
    api.gate_detailed(baseline=INC, candidate=GOOD, policy=policy(**FG, max_tokens=7), dataset=main_dataset(),
                      db=tmp_path / "s.db")
    probe_reqs = [r for b in backends for r in b.calls if (r.messages[-1].content or "") in PROBE_ANSWERS]
    main_reqs = [r for b in backends for r in b.calls if (r.messages[-1].content or "") not in PROBE_ANSWERS]
    assert probe_reqs and {r.params.max_tokens for r in probe_reqs} == {7}
    assert {r.params.max_tokens for r in main_reqs} == {256}


def test_combined_score_is_the_mean_of_applicable_evaluators_and_errors_propagate() -> None:
    import numpy as np

    vals = [np.array([1.0, np.nan, 0.0, np.nan, np.nan]), np.array([0.0, 1.0, np.nan, np.nan, np.nan])]
    sts = [["ok", "skipped", "ok", "skipped", "missing"], ["ok", "ok", "error", "skipped", "missing"]]
    score, status = combine_rows(vals, sts)
    assert status == ["ok", "ok", "error", "skipped", "missing"]
    assert score[0] == 0.5 and score[1] == 1.0 and np.isnan(score[2:]).all()


def test_cli_one_shot_blocks_with_exit_1_and_reports_the_probe(tmp_path: Path, backends: list[FakeBackend],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from tunegate.cli.main import main

    data = tmp_path / "d.jsonl"
    data.write_text("".join(ex.model_dump_json(exclude_none=True) + "\n" for ex in main_dataset()))
    (tmp_path / "inc.yaml").write_text("name: inc\nprompt: {system: meh, user: '{{input}}'}\n")
    (tmp_path / "cand.yaml").write_text("name: cand\nprompt: {system: forgetful, user: '{{input}}'}\n")
    (tmp_path / "p.yaml").write_text("headline: {evaluator: exact_match, rule: improve}\n"
                                     "forgetting: {probe: general-v1, margin: 0.05, max_tokens: 96}\n")
    code = main(["--db", str(tmp_path / "s.db"), "gate", "--dataset", str(data), "--baseline-candidate",
                 str(tmp_path / "inc.yaml"), "--candidate", str(tmp_path / "cand.yaml"), "--policy",
                 str(tmp_path / "p.yaml"), "--report-dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1 and "forgetting" in out and "BLOCK" in out
    verdict = json.loads((tmp_path / "out" / "verdict.json").read_text())
    assert verdict["forgetting"]["settings"]["max_tokens"] == 96
    assert [r["status"] for r in verdict["rules"] if r["name"] == "forgetting"] == ["fail"]
