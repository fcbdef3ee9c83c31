"""report.html without a browser: written by every gate, self-contained, escaped, CSP-pinned;
``tunegate report`` modes; tuning panels from artifacts; the dashboard seam."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.report.helpers import XSS
from tunegate.cli.main import main
from tunegate.errors import UserError
from tunegate.report.html import render_report_html, script_tag_hash
from tunegate.report.html_dashboard import render_dashboard
from tunegate.report.html_data import embed_json, row_kind
from tunegate.report.html_tuning import find_artifacts


def test_embed_json_cannot_close_a_script_element() -> None:
    s = embed_json({"o": XSS, "amp": "a & b", "ls": "x\u2028y"})
    assert "<" not in s and ">" not in s and "&" not in s and "\u2028" not in s
    assert json.loads(s) == {"o": XSS, "amp": "a & b", "ls": "x\u2028y"}


def test_gate_report_folder_has_self_contained_html(gate: dict[str, Any]) -> None:
    html = gate["paths"]["report.html"].read_text()
    assert set(gate["paths"]) >= {"summary.md", "junit.xml", "verdict.json", "rows.jsonl", "report.html"}
    # nothing to fetch: no src/href to another file or host; the only URL is the SVG namespace
    assert not re.search(r'\b(src|href)\s*=\s*"(?!#)', html)
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1  # one executable script; the data block is type=application/json
    csp = re.search(r"script-src '([^']+)'", html)
    assert csp and csp.group(1) == script_tag_hash(scripts[0])
    assert "connect-src" not in html and "default-src 'none'" in html
    assert XSS not in html and "window.__pwned" in html  # the row is there, escaped


def test_rules_in_words_and_rows_needed(gate: dict[str, Any]) -> None:
    v = gate["res"].to_dict()
    html = gate["paths"]["report.html"].read_text()
    assert f'id="decision">{v["decision"]}<' in html
    for r in v["rules"]:
        if r["status"] == "undecided" and r["rows_needed"]:
            assert f"about {r['rows_needed']} paired rows would decide it" in html


def test_row_kinds_match_summary_semantics() -> None:
    base = {"baseline": {"scores": {}}, "candidate": {"scores": {}}, "delta": {"a": -1.0, "b": 1.0}}
    assert row_kind({**base, "flips": {"a": "broke", "b": "fixed"}}) == \
        {"broke": True, "fixed": False, "errored": False, "changed": True}
    err = {"baseline": {"scores": {}}, "candidate": {"error": "row not in this run", "scores": {}},
           "delta": {"a": None}, "flips": {}}
    assert row_kind(err)["errored"] and not row_kind(err)["changed"]


def test_report_cli_pair_index_and_from_dir(gate: dict[str, Any], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    pol = tmp_path / "p.yaml"
    pol.write_text("headline: {evaluator: exact_match, rule: improve}\n")
    db = str(gate["db"])
    assert main(["--db", db, "report", gate["baseline"], gate["candidate"], "--policy", str(pol),
                 "-o", str(tmp_path / "r.html")]) == 0
    assert 'id="decision">' in (tmp_path / "r.html").read_text()
    assert main(["--db", db, "report", "--from-dir", str(gate["tmp"] / "out"), "-o", str(tmp_path / "f")]) == 0
    assert (tmp_path / "f" / "report.html").is_file()
    assert main(["--db", db, "report", "--index", "-o", str(tmp_path / "site")]) == 0
    index = (tmp_path / "site" / "index.html").read_text()
    assert gate["candidate"] in index and len(list((tmp_path / "site" / "verdicts").glob("*.html"))) >= 1
    capsys.readouterr()
    assert main(["--db", db, "report", "-o", str(tmp_path / "x.html")]) == 2
    assert main(["--db", db, "report", gate["baseline"], gate["candidate"], "-o", str(tmp_path / "x.html")]) == 2
    assert "--policy" in capsys.readouterr().err


def test_tuning_panels_from_history_and_adapter_artifacts(gate: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "tune"
    (out / "gate").mkdir(parents=True)
    prompt = {"system": "s", "user": "{{input}}"}
    hist = {"meta": {"config": {"method": "gepa", "budget": {"metric_calls": 50}}, "spent": {"metric_calls": 44}},
            "proposals": [
                {"id": "p0", "operator": "seed", "status": "seed", "dev_mean": 0.4, "calls_at": 10, "prompt": prompt},
                {"id": "p1", "operator": "reflect", "status": "accepted", "dev_mean": 0.55, "calls_at": 25,
                 "parents": ["p0"], "prompt": prompt},
                {"id": "p2", "operator": "reflect", "status": "rejected", "reason": "<b>minibatch not better</b>",
                 "minibatch": {"child_mean": 0.3}, "calls_at": 30, "parents": ["p1"], "prompt": prompt}],
            "rejections": [{"operator": "reflect", "parent": "p1", "reason": "truncated", "raw": "<script>",
                            "calls_at": 40}],
            "curve": [[10, 0.4], [25, 0.55]]}
    (out / "history.json").write_text(json.dumps(hist))
    lora = out / "lora"
    (lora / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (lora / "tunegate-manifest.json").write_text(json.dumps(
        {"method": "lora", "metrics": {"steps": 4, "planned_steps": 4, "first_loss": 2.0, "final_loss": 1.1},
         "tuning_data": {"rows": 10}, "adapter_digest": "sha256:abc", "config_hash": "cfg"}))
    (lora / "checkpoints" / "checkpoint-4" / "trainer_state.json").write_text(json.dumps(
        {"log_history": [{"step": s, "loss": 2.0 - s * 0.2} for s in range(1, 5)]}))
    arts = find_artifacts(out / "gate")
    assert arts["loss"] == [(1.0, 1.8), (2.0, 1.6), (3.0, 1.4), (4.0, 1.2)]
    v = json.loads(json.dumps(gate["res"].to_dict(), default=str))
    html = render_report_html(v, [], artifacts=arts)
    assert 'id="panel-optimizer"' in html and 'id="panel-training"' in html
    assert "&lt;b&gt;minibatch not better&lt;/b&gt;" in html and "<b>minibatch" not in html
    assert "training loss" in html and "truncated" in html


DASH = {"title": "prod <gw>", "refresh_s": 10, "routes": [{
    "name": "support", "fallbacks": 3, "guardrails": {"pii": 2},
    "arms": [{"name": "incumbent", "share": 0.9, "p50_ms": 180, "p99_ms": 900, "cost_per_trace": 0.0004},
             {"name": "canary", "share": 0.1, "candidate_hash": "cand-1", "role": "canary"}],
    "fail_rate": [{"cohort": "billing", "arm": "canary", "limit": 0.2, "points": [
        {"t": "2026-12-07T01:00:00Z", "rate": 0.1, "lower": 0.05, "upper": 0.2, "n": 50},
        {"t": "2026-12-07T01:05:00Z", "rate": 0.08, "lower": 0.05, "upper": 0.12, "n": 120}]}],
    "history": [{"t": "2026-12-07T01:00:00Z", "action": "start", "detail": "canary 10%", "verdict": "PROMOTE"}],
    "unknown_field": "ignored"}]}


def test_dashboard_renders_from_a_plain_dict() -> None:
    html = render_dashboard(DASH)
    assert "prod &lt;gw&gt;" in html and "<script" not in html
    assert 'data-route="support"' in html and html.count("data-arm=") == 2
    assert 'content="10"' in html and "rollback limit" in html and "canary 10%" in html
    with pytest.raises(UserError, match="share"):
        render_dashboard({"routes": [{"name": "r", "arms": [{"name": "a", "share": 1.5}]}]})


def test_compact_rows_carry_expected_tool_calls_and_rounded_scores() -> None:
    from tunegate.report.html_data import compact_rows

    row = {"id": "t1", "cohorts": ["tool_call"], "input": "email my invoice", "expected": None,
           "baseline": {"output": "", "tool_calls": [{"name": "email_invoice", "arguments": {"id": 1}}],
                        "scores": {"tool_selection": {"score": 0.7000000000000001, "status": "ok", "reason": "r"}}},
           "candidate": {"output": "no", "scores": {}}, "delta": {"tool_selection": -0.30000000000000004},
           "flips": {}}
    calls = [{"name": "email_invoice", "arguments": {"id": 1}}]
    (c,) = compact_rows([row], ["tool_selection"], {"t1": {"expected_tool_calls": calls}})
    assert c["xt"] == calls and c["b"]["t"] == calls
    assert c["b"]["s"] == [[0.7, "ok", "r"]] and c["c"]["s"] == [[None, None, None]] and c["d"] == [-0.3]


def test_forgetting_and_contamination_panels_from_the_verdict(gate: dict[str, Any]) -> None:
    v = json.loads(json.dumps(gate["res"].to_dict(), default=str))
    v["forgetting"] = {"probe": "general-v1", "evaluable": True, "settings": {"rule": "non_inferior", "margin": 0.05},
                       "baseline_run": "run-b", "candidate_run": "run-c",
                       "cohorts": [{"cohort": "*", "delta": -0.02, "ci_low": -0.06, "ci_high": 0.01, "n_pairs": 80},
                                   {"cohort": "<arith>", "delta": -0.375, "ci_low": -0.55, "ci_high": -0.2,
                                    "n_pairs": 16}]}
    v["contamination"] = {"status": "checked", "excluded": True, "gated_rows": 125, "sources": ["train.jsonl"],
                          "rows": [{"id": "billing-0001", "method": "13-gram"}], "warnings": []}
    html = render_report_html(v, [])
    assert 'id="panel-forgetting"' in html and 'data-evaluator="&lt;arith&gt;"' in html
    assert "-37.5" in html  # the collapsed probe cohort, in points
    assert 'id="panel-contamination"' in html and "billing-0001" in html
    v["forgetting"] = {"probe": "general-v1", "evaluable": False, "reason": "no probe runs"}
    assert "not evaluable" in render_report_html(v, [])


def test_artifacts_of_another_dataset_are_not_shown(tmp_path: Path) -> None:
    (tmp_path / "gate").mkdir()
    hist = {"meta": {"dataset_hash": "ds-other", "dataset_source": str(tmp_path / "other.jsonl")},
            "proposals": [], "curve": []}
    (tmp_path / "history.json").write_text(json.dumps(hist))
    assert "history" not in find_artifacts(tmp_path / "gate", dataset_hash="ds-mine", dataset_source="mine.jsonl")
    assert "history" in find_artifacts(tmp_path / "gate", dataset_hash="ds-other")
    assert "history" in find_artifacts(tmp_path / "gate")  # nothing to compare with: shown
