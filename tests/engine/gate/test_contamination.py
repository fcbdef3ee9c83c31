"""The gate's contamination guard, end to end with the fake backend: rows that overlap the
candidate's tuning data are excluded and reported (or kept with allow_contaminated), and a tuning
file that is missing or changed is a warning, never a silent pass."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeBackend
from tunegate.backends.base import GenerationRequest
from tunegate.cli.main import main
from tunegate.core import CandidateSpec, Dataset, Example, PromptTemplate
from tunegate.core.policy import GatePolicy
from tunegate.engine.gate.contamination import tuning_data_record

WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "su", "ti", "va", "zo") for b in
         ("ber", "dan", "fis", "gol", "hut", "jem", "kor", "lin", "mup", "nox", "pra", "quo")]
LEAKED = ("billing-003", "refunds-011", "billing-020")
POLICY = GatePolicy.model_validate({"name": "t", "headline": {"evaluator": "exact_match", "rule": "non_inferior",
                                                                "margin": 0.2}})


def sentence(rng: random.Random, n: int = 16) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "?"


def make_dataset() -> Dataset:
    rng = random.Random(3)
    rows = [Example(id=f"{c}-{i:03d}", input=sentence(rng), expected=f"answer {c} {i}", cohorts=[c])
            for c in ("billing", "refunds") for i in range(30)]
    return Dataset.of(rows, name="gate-contam")


def tuning_file(path: Path, ds: Dataset) -> Path:
    """A DPO-style preference file: three gated prompts leaked (case changed), twenty unrelated."""
    rng = random.Random(99)
    rows: list[dict[str, Any]] = [{"id": f"leak-{i}", "prompt": str(ds[rid].input).upper(), "chosen": "good",
                                   "rejected": "bad", "source": "s"} for i, rid in enumerate(LEAKED)]
    rows += [{"id": f"other-{i}", "prompt": sentence(rng), "chosen": "good", "rejected": "bad", "source": "s"}
             for i in range(20)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    import tunegate.api as api

    ds = make_dataset()
    by_input = {str(ex.input): ex for ex in ds}

    def answer(req: GenerationRequest) -> str:
        user = next(m.content for m in req.messages if m.role == "user") or ""
        ex = by_input[user]
        good = req.messages[0].content == "good" or int(ex.id[-3:]) % 2 == 0
        return str(ex.expected) if good else "no idea"

    monkeypatch.setattr(api, "make_backend", lambda spec: FakeBackend(answer))

    def run(lineage: dict[str, Any], **kw: Any) -> Any:
        inc = CandidateSpec(name="inc", prompt=PromptTemplate(system="meh"))
        cand = CandidateSpec(name="cand", prompt=PromptTemplate(system="good"), lineage=lineage)
        return api.gate_detailed(baseline=inc, candidate=cand, policy=POLICY, dataset=ds,
                                 db=tmp_path / f"s{len(list(tmp_path.glob('*.db')))}.db",
                                 report_dir=tmp_path / "report", **kw)

    return ds, run


def test_contaminated_rows_excluded_and_reported(tmp_path: Path, gate: Any) -> None:
    ds, run = gate
    record = tuning_data_record(tuning_file(tmp_path / "dpo.jsonl", ds))
    assert record["split"] is None and record["rows"] == 23 and record["hash"].startswith("ds-")
    res = run({"tuning_data": record})
    c = res.contamination
    assert c["status"] == "contaminated" and sorted(c["excluded"]) == sorted(LEAKED)
    assert {r["id"]: r["train_ids"] for r in c["rows"]} == {rid: [f"leak-{i}"] for i, rid in enumerate(LEAKED)}
    # the gated row's text is its input + expected answer, the tuning row's prompt + chosen + rejected:
    # not identical, but the whole 16-word question is a shared n-gram run
    assert all(r["method"] == "ngram" and r["score"] > 0.8 for r in c["rows"]), c["rows"]
    assert len(res.paired.row_ids) == len(ds) - 3 and not set(LEAKED) & set(res.paired.row_ids)
    cell = res.comparison.evaluator("exact_match").cell("*")
    assert cell is not None and cell.n_pairs == len(ds) - 3
    assert any("3 of 60 gated rows overlap" in r and "excluded" in r for r in res.verdict.reasons)
    verdict = json.loads((tmp_path / "report" / "verdict.json").read_text())
    assert verdict["contamination"]["excluded"] == c["excluded"]
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "### Contamination" in summary and "`billing-003`" in summary and "**excluded**" in summary
    rows_jsonl = (tmp_path / "report" / "rows.jsonl").read_text()
    assert "billing-003" not in rows_jsonl


def test_allow_contaminated_keeps_rows_but_reports_them(tmp_path: Path, gate: Any) -> None:
    ds, run = gate
    record = tuning_data_record(tuning_file(tmp_path / "dpo.jsonl", ds))
    res = run({"tuning_data": [record]}, allow_contaminated=True)
    c = res.contamination
    assert c["status"] == "contaminated" and c["excluded"] == [] and len(c["rows"]) == 3
    assert len(res.paired.row_ids) == len(ds)
    assert any("were kept (allow_contaminated)" in r for r in res.verdict.reasons)
    assert "**kept**" in (tmp_path / "report" / "summary.md").read_text()


@pytest.mark.parametrize("problem", ["missing", "changed"])
def test_unverifiable_tuning_data_is_a_warning(tmp_path: Path, gate: Any, problem: str) -> None:
    ds, run = gate
    path = tuning_file(tmp_path / "dpo.jsonl", ds)
    record = tuning_data_record(path)
    if problem == "missing":
        path.unlink()
    else:
        path.write_text(path.read_text() + json.dumps({"id": "new", "prompt": "x", "chosen": "a", "rejected": "b",
                                                       "source": "s"}) + "\n")
    res = run({"tuning_data": record})
    c = res.contamination
    assert c["status"] == "unchecked" and c["excluded"] == [] and len(res.paired.row_ids) == len(ds)
    word = "is missing" if problem == "missing" else "changed since tuning"
    assert any(r.startswith("contamination could not be checked") and word in r for r in res.verdict.reasons)
    assert "⚠️ contamination could not be checked" in (tmp_path / "report" / "summary.md").read_text()


def test_no_tuning_lineage_means_not_applicable(gate: Any) -> None:
    _, run = gate
    res = run({})
    assert res.contamination["status"] == "not_applicable"
    assert not any("contamination" in r for r in res.verdict.reasons)


def test_cli_allow_contaminated_flag(tmp_path: Path, gate: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ds, run = gate
    record = tuning_data_record(tuning_file(tmp_path / "dpo.jsonl", ds))
    res = run({"tuning_data": record})
    db = tmp_path / "s0.db"
    pol = tmp_path / "policy.yaml"
    pol.write_text("name: t\nheadline: {evaluator: exact_match, rule: non_inferior, margin: 0.2}\n")
    base, cand = res.paired.baseline.id, res.paired.candidate.id
    for extra, n_rows in (([], len(ds) - 3), (["--allow-contaminated"], len(ds))):
        capsys.readouterr()
        rc = main(["--db", str(db), "gate", "--baseline", base, "--candidate", cand, "--policy", str(pol),
                   "--json", *extra])
        out = json.loads(capsys.readouterr().out)
        assert rc == 0 and out["rows"]["paired_union"] == n_rows
        assert len(out["contamination"]["rows"]) == 3


def test_weights_lineage_shape_dataset_split_plus_preferences(tmp_path: Path, gate: Any) -> None:
    """What ``tunegate tune dpo`` records: the golden file's train split plus the preference file
    (``preferences: {path, digest}``); pairs the tuner skipped as held-out rows are not counted."""
    from tunegate.core.hashing import file_digest

    ds, run = gate
    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(json.dumps(ex.model_dump(mode="json", exclude_none=True, by_alias=True)) + "\n"
                              for ex in ds), encoding="utf-8")
    held = [ex for ex in ds if ds.split_of(ex) != "train"]
    train_ids = {ex.id for ex in ds if ds.split_of(ex) == "train"}
    prefs = tmp_path / "prefs.jsonl"
    pairs = [{"id": "free-1", "prompt": str(held[0].input).lower(), "chosen": "a", "rejected": "b", "source": "s"},
             {"id": held[1].id, "prompt": str(held[1].input).upper(), "chosen": "a", "rejected": "b", "source": "s"}]
    prefs.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    lineage = {"tuning_data": {"path": str(golden), "hash": ds.hash, "split": "train", "rows": len(train_ids),
                               "preferences": {"path": str(prefs), "digest": "sha256:" + file_digest(prefs),
                                               "pairs": 2}}}
    res = run(lineage)
    c = res.contamination
    assert [s["status"] for s in c["sources"]] == ["checked", "checked"]
    assert c["sources"][1]["rows_checked"] == 1  # the pair naming a held-out row id was skipped by the tuner
    assert set(c["excluded"]) == train_ids | {held[0].id}
    assert held[1].id in res.paired.row_ids and len(res.paired.row_ids) == len(held) - 1
