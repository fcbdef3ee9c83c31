"""The incremental loop: stops at the first PROMOTE, chains improvements, splits alpha, says what blocked."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tunegate.core.candidate import CandidateSpec
from tunegate.core.policy import load_policy
from tunegate.core.prompt import PromptTemplate
from tunegate.core.verdict import RuleResult, Verdict
from tunegate.errors import UserError
from tunegate.tuning.loop import LoopConfig, TuneStep, load_loop_config, run_loop

EX = Path(__file__).resolve().parents[2] / "examples" / "support"


def _verdict(decision: str, alpha: float, fail: str | None = None) -> SimpleNamespace:
    rules = [RuleResult(name="headline", rule="improve", evaluator="json_validation", cohort="*",
                        status="pass" if decision == "PROMOTE" else "undecided", evidence="delta +0.10 [0.01, 0.2]",
                        measure="delta")]
    if fail:
        rules.append(RuleResult(name="cohort refunds", rule="non_inferior", evaluator="token_f1", cohort=fail,
                                status="fail", evidence="delta -0.20 [-0.3, -0.1]", measure="delta"))
    v = Verdict(decision=decision, rules=rules, reasons=[f"{decision.lower()} because"], policy_name="p",
                policy_version="1", policy_hash="h", alpha=alpha, correction="holm")
    return SimpleNamespace(verdict=v)


def _incumbent() -> CandidateSpec:
    return CandidateSpec(name="inc", model="fake", prompt=PromptTemplate(system="Be helpful."))


def _tuner(dev: list[float]):
    seeds = []

    def tune(r: int, seed: CandidateSpec) -> TuneStep:
        seeds.append(seed.hash)
        cand = seed.model_copy(update={"prompt": PromptTemplate(system=f"Be helpful, round {r}.")})
        return TuneStep(cand, dev_seed=dev[r - 1] - (0.1 if r != 2 else -0.1), dev_best=dev[r - 1])
    return tune, seeds


def test_stops_at_first_promote_and_splits_alpha():
    policy = load_policy(EX / "policy.yaml")
    cfg = LoopConfig(dataset="d", candidate="c", policy="p", rounds=4)
    alphas = []

    def gate(r, cand, pol):
        alphas.append(pol.alpha)
        return _verdict("PROMOTE" if r == 3 else "INCONCLUSIVE", pol.alpha)

    tune, _ = _tuner([0.3, 0.35, 0.5, 0.6])
    res = run_loop(cfg, policy, _incumbent(), tune=tune, gate=gate)
    assert res.promoted and res.best_round == 3 and len(res.rounds) == 3 and res.exit_code == 0
    assert alphas == [pytest.approx(policy.alpha / 4)] * 3
    assert res.best.lineage["loop"]["round"] == 3


def test_no_promote_reports_best_and_blocking_rule():
    policy = load_policy(EX / "policy.yaml")
    cfg = LoopConfig(dataset="d", candidate="c", policy="p", rounds=3, split_alpha=False)
    tune, seeds = _tuner([0.4, 0.7, 0.5])
    res = run_loop(cfg, policy, _incumbent(), tune=tune,
                   gate=lambda r, c, p: _verdict("BLOCK", p.alpha, fail="refunds"))
    assert not res.promoted and res.exit_code == 1 and res.best_round == 2
    assert all(r.alpha == policy.alpha for r in res.rounds)
    assert res.rounds[0].blocking[0].startswith("cohort refunds (token_f1 [refunds])")
    # round 1 improved on dev → round 2 starts from it; round 2 did not (dev_seed > dev_best) → round 3 reuses its seed
    assert seeds[1] != seeds[0] and seeds[2] == seeds[1]


def test_config_errors(tmp_path):
    (tmp_path / "loop.yaml").write_text("dataset: missing.jsonl\ncandidate: c.yaml\npolicy: p.yaml\n")
    with pytest.raises(UserError) as e:
        load_loop_config(tmp_path / "loop.yaml")
    assert e.value.field == "dataset"
    (tmp_path / "loop.yaml").write_text(
        f"dataset: {EX}/dataset.jsonl\ncandidate: {EX}/incumbent.yaml\npolicy: {EX}/policy.yaml\nmethod: lora\n")
    with pytest.raises(UserError) as e:
        load_loop_config(tmp_path / "loop.yaml")
    assert e.value.field == "lora_config"
    (tmp_path / "loop.yaml").write_text(
        f"dataset: {EX}/dataset.jsonl\ncandidate: {EX}/incumbent.yaml\npolicy: {EX}/policy.yaml\nrounds: 0\n")
    with pytest.raises(UserError) as e:
        load_loop_config(tmp_path / "loop.yaml")
    assert e.value.field == "rounds" and e.value.line == 4
