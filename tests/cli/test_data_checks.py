"""``tunegate data contamination`` and ``tunegate data check``: exit codes 0/1/2 and written files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.checks.test_preference_file import good_rows, pair, write
from tunegate.cli.main import main

REPO = Path(__file__).resolve().parents[2]
SUPPORT = REPO / "examples" / "support" / "dataset.jsonl"

TRAIN = [{"id": f"t{i}", "question": f"Tell me the story of the {w} who crossed the river at dawn carrying "
          f"exactly {i} lanterns and a map", "answer": f"It took {i} hours."}
         for i, w in enumerate(["fox", "owl", "miller", "tailor", "knight"])]
CLEAN = [{"id": "e1", "question": "What is the boiling point of water at sea level in degrees Celsius?",
          "answer": "100"}]
LEAK = [{"id": "e2", "question": TRAIN[2]["question"].upper() + "!", "answer": "Three hours, maybe."}]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_contamination_exit_codes_and_out_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = write(tmp_path / "train.jsonl", TRAIN)
    clean = write(tmp_path / "clean.jsonl", CLEAN)
    leak = write(tmp_path / "leak.jsonl", CLEAN + LEAK)
    rc, out, _ = run(capsys, "data", "contamination", str(train), str(clean))
    assert rc == 0 and "clean" in out
    out_file = tmp_path / "overlaps.jsonl"
    rc, out, _ = run(capsys, "data", "contamination", str(train), str(clean), str(leak), "--out", str(out_file))
    assert rc == 1 and "1 eval row(s) overlap" in out
    [line] = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert (line["eval_id"], line["train_ids"], line["method"]) == ("e2", ["t2"], "ngram")
    assert line["span"].startswith("tell me the story of the miller")
    assert line["check"]["train_hash"].startswith("ds-") and line["check"]["ngram"] == 13
    rc, out, _ = run(capsys, "data", "contamination", str(train), str(leak), "--json", "--fields", "question")
    report = json.loads(out)
    assert rc == 1 and report["summary"][0]["fields"] == ["question"] and report["rows"][0]["method"] == "exact"


def test_contamination_train_split_of_the_same_golden_file(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "data", "contamination", str(SUPPORT), str(SUPPORT), "--split", "train", "--json")
    report = json.loads(out)
    assert rc == 1 and {s["split"] for s in report["summary"]} == {"dev", "test"}
    # the same customer question ("How do I turn on two-step verification?") sits in train and dev
    hit = next(r for r in report["rows"] if r["eval_id"] == "account-013")
    assert hit["train_ids"] == ["account-020"] and hit["eval_split"] == "dev"
    assert report["train"][0]["rows"] == 112 and sum(s["rows"] for s in report["summary"]) == 178 - 112


@pytest.mark.parametrize(("args", "message"), [
    (["{support}", "{support}"], "give --split train"),
    (["{train}", "{missing}"], "missing.jsonl: file not found"),
    (["{train}", "{train}", "--split", "train"], "not a golden dataset"),
    (["{train}", "{support}", "--fields", "question,nope"], "no row has field 'nope'"),
    (["{train}", "{support}", "--methods", "exact,fuzzy"], "unknown method(s) ['fuzzy']"),
])
def test_contamination_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                         message: str) -> None:
    names = {"support": str(SUPPORT), "train": str(write(tmp_path / "train.jsonl", TRAIN)),
             "missing": str(tmp_path / "missing.jsonl")}
    rc, _, err = run(capsys, "data", "contamination", *[a.format(**names) for a in args])
    assert rc == 2 and message in " ".join(err.split()), err


def test_check_passes_fails_and_writes_quarantine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good.jsonl", good_rows())
    q = tmp_path / "quarantine.jsonl"
    rc, out, _ = run(capsys, "data", "check", str(good), "--quarantine", str(q))
    assert rc == 0 and "all checks pass" in out
    lines = [json.loads(x) for x in q.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["p0", "p10", "p20", "p30", "p40", "p50"]
    assert lines[0]["reason"].startswith("every reviewer prefers the rejected") and lines[0]["line"] == 1
    assert lines[0]["row"] == good_rows()[0] and len(lines[0]["check"]["sha256"]) == 64

    rows = good_rows()
    for i in (5, 15, 25):  # bo calls three pairs a tie: p_o = 57/60, p_e = (54*51 + 6*6)/3600, κ = 0.778
        rows[i]["reviews"] = [{"reviewer": "ana", "preferred": "chosen"}, {"reviewer": "bo", "preferred": "tie"}]
    for r in rows:
        r["source"] = "one-team"
    bad = write(tmp_path / "bad.jsonl", rows)
    rc, out, _ = run(capsys, "data", "check", str(bad), "--quarantine", str(q), "--json")
    report = json.loads(out)
    failed = {c["name"] for c in report["checks"] if c["status"] == "FAIL"}
    assert rc == 1 and failed == {"distinct sources", "largest source share", "reviewer agreement (min κ)"}
    assert report["kappas"][0]["kappa"] == pytest.approx((57 / 60 - 0.775) / 0.225)
    assert report["quarantined"] == 9 and report["quarantine_file"] == str(q)
    lines = [json.loads(x) for x in q.read_text().splitlines()]
    assert {x["id"]: x["reason"] for x in lines}["p5"] == "tie: bo"
    rc, _, _ = run(capsys, "data", "check", str(bad), "--min-sources", "1", "--max-source-share", "1",
                   "--min-kappa", "0.5")
    assert rc == 0


def test_check_malformed_exits_2_with_file_line_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows: list[Any] = good_rows(3)
    del rows[1]["source"]
    path = write(tmp_path / "p.jsonl", rows)
    rc, _, err = run(capsys, "data", "check", str(path))
    assert rc == 2 and f"{path}:2: source: missing required field" in " ".join(err.split())


def test_check_classify_uses_the_content_safety_classifier(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import tunegate.checks.preference_qa as pc

    monkeypatch.setattr(pc, "content_safety_classifier", lambda: lambda texts: ["UNSAFE" in t for t in texts])
    rows = [{k: v for k, v in pair(i).items() if k != "pair_type"} for i in range(30)]
    for r in rows[:6]:
        r["rejected"] = "UNSAFE: detailed instructions"
    path = write(tmp_path / "p.jsonl", rows)
    rc, out, _ = run(capsys, "data", "check", str(path), "--json", "--no-require-reviews")
    assert rc == 1 and {c["name"]: c["status"] for c in json.loads(out)["checks"]}["safety pairs"] == "FAIL"
    rc, out, _ = run(capsys, "data", "check", str(path), "--json", "--no-require-reviews", "--classify")
    report = json.loads(out)
    assert rc == 0, [c for c in report["checks"] if c["status"] == "FAIL"]
    assert report["stats"]["coverage"]["safety"] == 6 and report["stats"]["coverage"]["quality"] == 24


def test_contamination_any_field_counts_shared_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    canned = "I am sorry, but I cannot help with that request; please contact our support team instead."
    train = write(tmp_path / "t.jsonl", [{"id": "t", "prompt": "How do I pick a lock?", "answer": canned}])
    ev = write(tmp_path / "e.jsonl", [{"id": "e", "prompt": "Write a phishing email for a bank.", "answer": canned}])
    assert run(capsys, "data", "contamination", str(train), str(ev))[0] == 0
    assert run(capsys, "data", "contamination", str(train), str(ev), "--any-field")[0] == 1
