"""The shipped general-v1 probe: loads, every row is scored by exactly the evaluators it declares,
every reference answer passes its own check, licences are recorded, and the build script
reproduces the file byte for byte from the public sets."""

from __future__ import annotations

import json
import runpy
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATASETS, shared_dataset
from tunegate.core.example import Example
from tunegate.core.loading import load_dataset
from tunegate.core.policy import PROBES_DIR, ForgettingRule
from tunegate.core.result import ModelOutput
from tunegate.engine.run.suite import resolve_suite
from tunegate.evaluators.base import EvalContext

DATA = PROBES_DIR / "general-v1.jsonl"
SUITE = PROBES_DIR / "general-v1.evaluators.yaml"
PERMISSIVE = {"MIT", "Apache-2.0", "CC-BY-4.0"}


def test_every_row_loads_in_five_cohorts_of_sixteen() -> None:
    ds = load_dataset(DATA)
    assert len(ds) == 80 and len({ex.id for ex in ds}) == 80
    assert Counter(c for ex in ds for c in ex.cohorts) == {
        "arithmetic": 16, "factual": 16, "instructions": 16, "extraction": 16, "json": 16}
    assert ForgettingRule(rule="no_drop", margin=0.05).probe_files() == (DATA, str(SUITE))


def test_each_row_is_scored_by_exactly_the_evaluators_it_declares() -> None:
    ds = load_dataset(DATA)
    suite = resolve_suite(str(SUITE), ds)
    assert {e.name for e in suite} == {"numeric_match", "regex", "prompt_adherence"}
    for ex in ds:
        applicable = {e.name for e in suite if not e.missing(ex)}
        assert applicable, ex.id
        assert applicable == set(ex.metadata["evaluators"]), ex.id


def _reference_reply(ex: Example) -> str | None:
    if ex.expected is not None:
        return f"The answer is {ex.expected}."
    if "json" in ex.cohorts:
        return json.dumps({"name": ex.metadata["answer"]})
    if "regex" in ex.metadata:
        return str(ex.metadata["answer"])
    return None


def test_reference_answers_pass_their_own_checks_and_wrong_ones_fail() -> None:
    """Guards the patterns: TruthfulQA's best answer, the copied value, the JSON object all pass;
    a refusal-like reply passes nothing."""
    ds = load_dataset(DATA)
    suite = resolve_suite(str(SUITE), ds)
    for ex in ds:
        reply = _reference_reply(ex)
        for ev in suite:
            if ev.missing(ex):
                continue
            if reply is not None:
                good = ev.evaluate(EvalContext(ex, ModelOutput(text=reply)))
                assert good.status == "ok" and good.score == 1.0, (ex.id, ev.name, good.reason)
            bad = ev.evaluate(EvalContext(ex, ModelOutput(text="I am not sure, sorry.")))
            assert bad.status == "ok", (ex.id, ev.name, bad.reason)
            if ex.cohorts != ["instructions"]:  # 'no commas' is met by any comma-free reply
                assert bad.score == 0.0, (ex.id, ev.name, bad.reason)


def test_rows_record_source_licence_and_id() -> None:
    ds = load_dataset(DATA)
    licences = {m["source"]: m["licence"] for m in (ex.metadata for ex in ds)}
    assert licences == {"gsm8k": "MIT", "truthfulqa": "Apache-2.0", "ifeval": "Apache-2.0", "presidio_synth_pii": "MIT"}
    assert set(licences.values()) <= PERMISSIVE
    assert all(ex.metadata.get("source_id") is not None for ex in ds)
    readme = (PROBES_DIR / "general-v1.README.md").read_text(encoding="utf-8")
    for source, licence in licences.items():
        assert source in readme and licence in readme


def test_build_script_reproduces_the_file_and_the_readme_table() -> None:
    for name in ("gsm8k", "truthfulqa", "ifeval", "presidio_synth_pii"):
        shared_dataset(name)
    ns = runpy.run_path(str(PROBES_DIR / "build_general.py"))
    text = ns["build"](SHARED_DATASETS)
    assert text == DATA.read_text(encoding="utf-8"), "general-v1.jsonl is stale: run build_general.py"
    assert ns["table"](text) in (PROBES_DIR / "general-v1.README.md").read_text(encoding="utf-8")


def test_check_flag_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    shared_dataset("gsm8k")
    ns = runpy.run_path(str(PROBES_DIR / "build_general.py"))
    assert ns["main"](["--check"]) == 0
    stale = tmp_path / "general-v1.jsonl"
    stale.write_text(DATA.read_text(encoding="utf-8").replace("What is", "What's", 1), encoding="utf-8")
    ns["main"].__globals__["OUT"] = stale
    assert ns["main"](["--check"]) == 1
    assert "stale" in capsys.readouterr().out
