"""Results a person can read (issue 11): the terminal verdict at 80 columns, Markdown that escapes
correctly, junit.xml with unique names where an undecided gate is never green, and a usage error
(not a BLOCK) for runs over different row selections."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tunegate.cli.main import main
from tunegate.core import Dataset, Example
from tunegate.core.outputs import load_outputs
from tunegate.core.policy import GatePolicy
from tunegate.engine.gate.runs import gate_runs
from tunegate.engine.run.executor import run_plan
from tunegate.engine.run.plan import plan_run
from tunegate.evaluators.registry import load_suite
from tunegate.report.files import write_report
from tunegate.report.junit import render_junit
from tunegate.report.markdown import md_escape
from tunegate.store.sqlite import Store

LONG = "json_validation"  # the name the old table cut to "json_v…"
COHORTS = ("math", "billing", "shipping")


def dataset(n: int = 30) -> Dataset:
    rows = [Example(id=f"{c}-{i:02d}", input=f"{c} q {i} <b>", expected=f"answer {c} {i}", cohorts=[c],
                    json_schema={"type": "object"})
            for c in COHORTS for i in range(n)]
    return Dataset.of(rows, name="readable")


def run(store: Store, ds: Dataset, tmp: Path, name: str, good: float, split: str | None = None) -> str:
    path = tmp / f"{name}.jsonl"
    with path.open("w") as fh:
        for i, ex in enumerate(ds):
            ok = (i % 10) < good * 10
            fh.write(json.dumps({"id": ex.id, "output": json.dumps({"a": ex.expected}) if ok else str(ex.expected)})
                     + "\n")
    plan = plan_run(ds, load_suite(f"exact_match,{LONG}"), outputs=load_outputs(path), split=split)
    return run_plan(plan, store).run_id


POLICY = """\
name: readable
version: "2"
headline: {evaluator: json_validation, rule: improve}
guards:
  - {evaluator: exact_match, rule: no_drop, margin: 0.02}
cohorts: {rule: non_inferior, margin: 0.05, min_rows: 20, evaluators: [json_validation, exact_match]}
error_budget: 0.05
"""


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("readable")
    ds = dataset()
    with Store(tmp / "s.db") as store:
        ids = {"base": run(store, ds, tmp, "base", 0.5), "cand": run(store, ds, tmp, "cand", 0.6),
               "cand_test": run(store, ds, tmp, "cand_test", 0.6, split="test")}
    (tmp / "policy.yaml").write_text(POLICY, encoding="utf-8")
    return tmp, ids


def test_terminal_verdict_fits_80_columns(stored: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    tmp, ids = stored
    monkeypatch.setenv("COLUMNS", "80")
    code = main(["--db", str(tmp / "s.db"), "gate", "--baseline", ids["base"], "--candidate", ids["cand"],
                 "--policy", str(tmp / "policy.yaml")])
    out = capsys.readouterr().out
    assert code == 3, out  # an improvement too small for 90 rows: INCONCLUSIVE
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "json_v…" not in out and LONG in out
    # every rule is two lines: a title line starting with its status, then one indented numbers line
    starts = [i for i, line in enumerate(lines) if re.match(r"^(pass|FAIL|undecided) ", line)]
    assert len(starts) >= 4
    for i in starts:
        assert lines[i + 1].startswith(" " * 11) and lines[i + 1].strip()
        assert not lines[i + 2].startswith(" " * 11 + " ") or re.match(r"^(pass|FAIL|undecided) ", lines[i + 2])
    headline = next(lines[i] for i in starts if lines[i].split(maxsplit=1)[1].startswith("headline"))
    assert f"headline · {LONG} improve" in headline


def test_markdown_escapes_with_backslashes_not_entities(stored: tuple[Path, dict[str, str]]) -> None:
    tmp, ids = stored
    with Store(tmp / "s.db") as store:
        res = gate_runs(store, ids["base"], ids["cand"], GatePolicy.model_validate(
            {"guards": [{"evaluator": "exact_match", "rule": "no_drop", "margin": 0.02}]}), record=False)
    paths = write_report(res, tmp / "report")
    md = paths["summary.md"].read_text()
    assert "&lt;" not in md and "\\<" in md  # "p <= ..." and the rows' "<b>" inputs
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert "&amp;lt;" not in html and "&lt;b&gt;" in html  # rendered, the reader sees "<b>" (escaped once)
    assert md_escape("a|b <c> *d* _e_") == "a\\|b \\<c\\> \\*d\\* \\_e\\_"


def test_junit_names_are_unique_and_undecided_is_never_green(stored: tuple[Path, dict[str, str]]) -> None:
    tmp, ids = stored
    with Store(tmp / "s.db") as store:
        res = gate_runs(store, ids["base"], ids["cand"], GatePolicy.model_validate({
            "headline": {"evaluator": "json_validation", "rule": "improve"},
            "cohorts": {"rule": "non_inferior", "margin": 0.05, "min_rows": 20,
                        "evaluators": ["json_validation", "exact_match"]}}), record=False)
    assert res.verdict.decision == "INCONCLUSIVE"
    suite = ET.fromstring(render_junit(res))
    keys = [(c.get("classname"), c.get("name")) for c in suite.iter("testcase")]
    assert len(keys) == len(set(keys)) == len(res.verdict.rules) + 1
    assert len({name for _, name in keys}) == len(keys)  # names alone are unique too
    assert {c for c, _ in keys} >= {"tunegate.default.json_validation.cohort_math",
                                    "tunegate.default.exact_match.cohort_math"}
    undecided = [c for c in suite.iter("testcase") if (c.find("failure") is not None
                                                       and c.find("failure").get("type") == "GateRuleUndecided")]
    assert len(undecided) == len(res.verdict.by_status("undecided")) >= 1
    decision = next(c for c in suite.iter("testcase") if c.get("name") == "gate decision")
    assert decision.find("failure") is not None and int(suite.get("failures", "0")) >= 2
    lenient = ET.fromstring(render_junit(res, inconclusive="skipped"))
    assert lenient.find("testcase[@name='gate decision']/skipped") is not None
    assert not any(c.find("failure") is not None for c in lenient.iter("testcase"))
    with pytest.raises(ValueError, match="inconclusive"):
        render_junit(res, inconclusive="pass")  # type: ignore[arg-type]


def test_cli_junit_inconclusive_option(stored: tuple[Path, dict[str, str]]) -> None:
    tmp, ids = stored
    args = ["--db", str(tmp / "s.db"), "gate", "--baseline", ids["base"], "--candidate", ids["cand"],
            "--policy", str(tmp / "policy.yaml"), "--report-dir", str(tmp / "cli")]
    assert main([*args, "--junit-inconclusive", "skipped"]) == 3
    suite = ET.parse(tmp / "cli" / "junit.xml").getroot()
    assert suite.find("properties/property[@name='inconclusive_as']").get("value") == "skipped"  # type: ignore[union-attr]


def test_different_row_selections_are_a_usage_error(stored: tuple[Path, dict[str, str]],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    tmp, ids = stored
    code = main(["--db", str(tmp / "s.db"), "gate", "--baseline", ids["base"], "--candidate", ids["cand_test"],
                 "--policy", str(tmp / "policy.yaml")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "selection" in err and "split=all" in err and "split=test" in err
    assert ids["base"] in err and ids["cand_test"] in err and "BLOCK" not in err
