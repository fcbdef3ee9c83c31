"""The policy's ``forgetting`` section: loads, validates with file:line:field errors, is hashed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunegate.cli.main import main
from tunegate.core.hashing import content_hash
from tunegate.core.policy import PROBES_DIR, ForgettingRule, GatePolicy, builtin_probes, load_policy
from tunegate.errors import UserError

BASE = """\
name: bot
headline: {evaluator: exact_match, rule: improve}
"""
SECTION = """\
forgetting:
  probe: general-v1
  evaluators: null
  rule: non_inferior
  margin: 0.05
  max_tokens: 96
"""


def _write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_section_loads_with_the_shipped_probe_and_suite(tmp_path: Path) -> None:
    pol = load_policy(_write(tmp_path, BASE + SECTION))
    fg = pol.forgetting
    assert fg is not None and fg.probe == "general-v1" and fg.margin == 0.05 and fg.max_tokens == 96
    assert fg.prompt == "candidate" and fg.as_rule().threshold == -0.05
    assert fg.as_rule().evaluator == "probe:general-v1"
    data, suite = fg.probe_files(pol.base_dir)
    assert data == PROBES_DIR / "general-v1.jsonl" and suite == str(PROBES_DIR / "general-v1.evaluators.yaml")
    assert "general-v1" in builtin_probes()


def test_policies_without_the_section_keep_their_hash(tmp_path: Path) -> None:
    plain = load_policy(_write(tmp_path, BASE, "a.yaml"))
    legacy = plain.model_dump(mode="json")
    legacy.pop("forgetting")
    for rule in [legacy["headline"], *legacy["guards"]]:  # nor did rule scopes (cohorts, where)
        assert rule.pop("cohorts") is None and rule.pop("where") is None
    assert plain.hash == content_hash(legacy, prefix="pol-")  # the hash before the section existed
    with_fg = load_policy(_write(tmp_path, BASE + SECTION, "b.yaml"))
    assert with_fg.hash != plain.hash
    wider = load_policy(_write(tmp_path, BASE + SECTION.replace("0.05", "0.1"), "c.yaml"))
    assert wider.hash != with_fg.hash
    stated_defaults = load_policy(_write(tmp_path, BASE + SECTION + "  prompt: candidate\n", "d.yaml"))
    assert stated_defaults.hash == with_fg.hash


def test_per_cohort_section_is_hashed_and_defaults(tmp_path: Path) -> None:
    plain = load_policy(_write(tmp_path, BASE + SECTION, "a.yaml"))
    per = load_policy(_write(tmp_path, BASE + SECTION + "  cohorts: {margin: 0.25}\n", "b.yaml"))
    assert per.hash != plain.hash and plain.forgetting is not None and plain.forgetting.cohorts is None
    assert per.forgetting is not None and per.forgetting.cohorts is not None
    c = per.forgetting.cohorts
    assert (c.rule, c.margin, c.min_rows) == ("non_inferior", 0.25, 10)
    assert c.as_rule("probe:general-v1").threshold == -0.25


def test_forgetting_alone_is_a_policy() -> None:
    pol = GatePolicy.model_validate({"forgetting": {"rule": "no_drop", "margin": 0.05}})
    assert pol.headline is None and pol.forgetting is not None
    assert pol.forgetting.as_rule().threshold == -0.05 and pol.forgetting.as_rule().fail_threshold == 0.0
    with pytest.raises(ValueError, match="headline or at least one guard"):
        GatePolicy.model_validate({"name": "empty"})


@pytest.mark.parametrize(
    ("old", "new", "field", "line", "message"),
    [
        ("  margin: 0.05\n", "  margn: 0.05\n", "forgetting.margn", 7, "unknown key 'margn'"),
        ("  margin: 0.05\n", "", "forgetting.margin", 3, "needs a margin"),
        ("  rule: non_inferior\n", "  rule: improve\n", "forgetting.rule", 6, "non_inferior"),
        ("  max_tokens: 96\n", "  max_tokens: 0\n", "forgetting.max_tokens", 8, "greater than or equal to 1"),
        ("  margin: 0.05\n", "  margin: 0.05\n  prompt: none\n", "forgetting.prompt", 8, "candidate"),
        ("  probe: general-v1\n", "  probe: general-v9\n", "forgetting.probe", 4, "neither a built-in probe"),
        ("  evaluators: null\n", "  evaluators: []\n", "forgetting.evaluators", 5, "at least one evaluator"),
        ("  max_tokens: 96\n", "  max_tokens: 96\n  cohorts: {rule: non_inferior}\n", "forgetting.cohorts.margin", 9,
         "needs a margin"),
        ("  max_tokens: 96\n", "  max_tokens: 96\n  cohorts:\n    margin: 0.25\n    min_rows: 0\n",
         "forgetting.cohorts.min_rows", 11, "greater than or equal to 1"),
    ],
)
def test_bad_section_is_located(tmp_path: Path, old: str, new: str, field: str, line: int, message: str) -> None:
    path = _write(tmp_path, BASE + SECTION.replace(old, new))
    with pytest.raises(UserError) as ei:
        load_policy(path)
    assert (ei.value.field, ei.value.line) == (field, line)
    assert message in str(ei.value) and str(ei.value).startswith(f"{path}:{line}: {field}: ")


def test_unknown_key_lists_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(UserError) as ei:
        load_policy(_write(tmp_path, BASE + SECTION + "  samples: 3\n"))
    assert "allowed: probe, evaluators, rule, margin, max_tokens, prompt" in str(ei.value)


def test_probe_path_resolves_against_the_policy_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "gates"
    sub.mkdir()
    (sub / "mine.jsonl").write_text('{"id": "a", "input": "1+1?", "expected": "2"}\n', encoding="utf-8")
    (sub / "mine.evaluators.yaml").write_text("numeric_match: {}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the policy's folder, not the working directory, anchors the path
    pol = load_policy(_write(sub, BASE + "forgetting: {probe: mine.jsonl, rule: no_drop, margin: 0.05}\n"))
    assert pol.forgetting is not None and pol.forgetting.probe_name == "mine"
    data, suite = pol.forgetting.probe_files(pol.base_dir)
    assert data == sub / "mine.jsonl" and suite == str(sub / "mine.evaluators.yaml")
    explicit = ForgettingRule(probe="mine.jsonl", rule="no_drop", margin=0.05, evaluators="numeric_match,regex")
    assert explicit.probe_files(sub)[1] == "numeric_match,regex"


def test_cli_exit_2_names_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, BASE + SECTION.replace("  margin: 0.05\n", "  margin: 2\n"))
    code = main(["--db", str(tmp_path / "s.db"), "gate", "--baseline", "run-a", "--candidate", "run-b",
                 "--policy", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and f"{path}:7" in err and "forgetting.margin" in err and "Traceback" not in err
