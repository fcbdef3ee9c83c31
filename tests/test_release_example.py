"""The release example (examples/release): its golden set is rebuilt exactly from the shared public
datasets, is big enough to decide per cohort on the test split, never contains reserved BFCL
``live_*`` rows, and the candidate, policy, evaluator, gateway and release files beside it load
(and the policy has no rule that can never be decided at the test split's size)."""

from __future__ import annotations

import json
import re
import runpy
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import shared_dataset
from tunegate.core import Dataset, load_candidate, load_dataset

RELEASE = Path(__file__).resolve().parents[1] / "examples" / "release"
TOPICS = {"structured": ("cards", "payments"), "tool_call": ("function_call", "irrelevance"), "answer": ("arithmetic",)}
MIN_TEST = 40


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return load_dataset(RELEASE / "dataset.jsonl")


@pytest.fixture(scope="module")
def builder() -> dict[str, Any]:
    return runpy.run_path(str(RELEASE / "build_golden.py"))


def test_builder_check_passes_on_the_shared_datasets(builder: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    shared = shared_dataset("bfcl").parent
    for name in ("banking77", "gsm8k"):
        shared_dataset(name)
    assert builder["main"](["--check", "--shared", str(shared)]) == 0, capsys.readouterr().err


def test_builder_check_fails_on_a_stale_file(builder: dict[str, Any], tmp_path: Path) -> None:
    shared = shared_dataset("bfcl").parent
    stale = tmp_path / "dataset.jsonl"
    stale.write_text((RELEASE / "dataset.jsonl").read_text(encoding="utf-8").replace("gsm8k-", "gsm8k_", 1))
    assert builder["main"](["--check", "--shared", str(shared), "--out", str(stale)]) == 1


def test_every_cohort_is_gated_with_at_least_40_test_rows(ds: Dataset) -> None:
    from tunegate.core.policy import load_policy
    from tunegate.engine.gate.explain import rows_for_margin

    policy = load_policy(RELEASE / "policy.yaml")
    assert policy.cohorts is not None and policy.cohorts.margin is not None
    need = max(MIN_TEST, policy.cohorts.min_rows, rows_for_margin(policy.cohorts.margin, policy.alpha) or 10**9)
    test = Counter(c for ex in ds.split("test") for c in ex.cohorts)
    assert set(test) == set(TOPICS) | {t for ts in TOPICS.values() for t in ts}
    assert all(n >= need for n in test.values()), (need, test)
    for split in ("train", "dev"):  # rows for tuning in every cohort
        assert all(n > 0 for n in Counter(c for ex in ds.split(split) for c in ex.cohorts).values())


def test_rows_are_well_formed(ds: Dataset) -> None:
    assert len(ds) >= 300 and (RELEASE / "dataset.jsonl").stat().st_size < 2_000_000
    for ex in ds:
        task, topic = ex.cohorts
        assert topic in TOPICS[task] and ex.metadata["task"] == task, ex.id
        if task == "structured":
            assert ex.json_schema is not None
            jsonschema.validate(ex.expected, ex.json_schema)
        elif task == "tool_call":
            names = {t["function"]["name"] for t in ex.tools or []}
            assert names and all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", n) for n in names), ex.id
            calls = ex.expected_tool_calls
            assert calls is not None and (calls == []) == (topic == "irrelevance"), ex.id
            assert all(c.name in names for c in calls), ex.id
            assert '"dict"' not in json.dumps(ex.tools), ex.id  # BFCL type names converted
        else:
            assert isinstance(ex.expected, int | float) and not isinstance(ex.expected, bool), ex.id


def test_no_reserved_bfcl_live_row(ds: Dataset) -> None:
    bfcl = [ex for ex in ds if ex.id.startswith("bfcl-")]
    assert bfcl
    for ex in bfcl:
        assert not ex.id.startswith("bfcl-live") and not str(ex.metadata["bfcl_category"]).startswith("live"), ex.id
    src = shared_dataset("bfcl") / "data.jsonl"
    category = {r["id"]: r["category"] for r in map(json.loads, src.read_text(encoding="utf-8").splitlines())}
    assert all(not category[ex.id.removeprefix("bfcl-")].startswith("live") for ex in bfcl)


def test_readme_table_matches_the_data(builder: dict[str, Any], ds: Dataset) -> None:
    rows = [json.loads(line) for line in (RELEASE / "dataset.jsonl").read_text(encoding="utf-8").splitlines()]
    table = builder["split_cohort_table"](rows)
    assert table in (RELEASE / "README.md").read_text(encoding="utf-8")
    assert f"**{len(ds)}**" in table


def test_yamls_load() -> None:
    from tunegate.core.policy import load_policy
    from tunegate.core.release_policy import load_release_policy
    from tunegate.evaluators import registry

    for name in ("incumbent.yaml", "candidate.yaml"):
        cand = load_candidate(RELEASE / name)
        assert cand.backend == "local" and cand.params.max_tokens == 96
    assert load_candidate(RELEASE / "incumbent.yaml").hash != load_candidate(RELEASE / "candidate.yaml").hash
    suite = registry.load_suite(str(RELEASE / "evaluators.yaml"))
    assert [e.name for e in suite] == ["json_validation", "tool_selection", "numeric_match"]
    policy = load_policy(RELEASE / "policy.yaml")
    assert set(policy.gated_evaluators()) == {"json_validation", "tool_selection", "numeric_match"}
    assert all(r.cohorts for _, _, r in policy.named_rules())  # every rule is scoped to its cohort
    assert load_release_policy(RELEASE / "release-policy.yaml").steps[-1].percent == 100


def test_gateway_and_release_files_load() -> None:
    pytest.importorskip("starlette")
    from tunegate.gateway.config import load_gateway_config
    from tunegate.gateway.release_config import load_release_file

    cfg, _ = load_gateway_config(RELEASE / "gateway.yaml")
    route = cfg.route("release")
    assert route is not None and route.baseline == "incumbent" and set(route.arms) == {"incumbent", "candidate"}
    assert set(route.cohorts or []) == {t for ts in TOPICS.values() for t in ts}
    rf, routes = load_release_file(RELEASE / "release.yaml")
    assert rf.routes[0].mirror.share > 0 and rf.routes[0].score_live
    assert [(r.route, r.arm) for r in routes] == [("release", "candidate")]


def test_policy_explain_reports_no_undecidable_rule_on_the_test_split(capsys: pytest.CaptureFixture[str]) -> None:
    from tunegate.cli.main import main

    rc = main(["policy", "explain", str(RELEASE / "policy.yaml"), "--dataset", str(RELEASE / "dataset.jsonl"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["never_decided"] == []
    for rule in out["rules"]:
        bad = [w for w in rule["warnings"] if not w.startswith(("--split train", "--split dev"))]
        assert not bad, (rule["name"], bad)  # train/dev are for tuning; test and every cohort decide
        if rule["by_split"]:
            assert rule["by_split"]["test"] >= MIN_TEST, rule["name"]
