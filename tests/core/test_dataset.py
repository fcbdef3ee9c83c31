"""Datasets: loading every format, canonical hash, deterministic splits, cohort filters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tunegate.core import Dataset, Example, SplitRatios, assign_split, load_dataset
from tunegate.errors import UserError

ROWS = [
    {"id": "r1", "input": "Where is my order A-1?", "expected": "in transit", "cohorts": ["shipping"],
     "metadata": {"tier": "gold"}},
    {"id": "r2", "input": "Extract the order", "schema": {"type": "object", "required": ["id"]},
     "expected": {"id": 7}, "cohorts": ["billing", "structured"]},
    {"id": "r3", "messages": [{"role": "user", "content": "reset my password"}],
     "tools": [{"type": "function", "function": {"name": "reset_password", "parameters": {"type": "object"}}}],
     "expected_tool_calls": [{"name": "reset_password", "arguments": {"email": "a@b.c"}}], "cohorts": ["account"]},
    {"id": "r4", "input": "What is 2+2?", "context": ["Two and two make four."], "expected": "4"},
]


def write_all(tmp_path: Path) -> dict[str, Path]:
    out = {}
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    out["jsonl"] = p
    p = tmp_path / "d_reordered.jsonl"  # keys and rows in another order
    p.write_text("\n".join(json.dumps(dict(reversed(list(r.items())))) for r in reversed(ROWS)) + "\n")
    out["jsonl2"] = p
    p = tmp_path / "d.yaml"
    p.write_text(yaml.safe_dump({"rows": ROWS}, sort_keys=False))
    out["yaml"] = p
    p = tmp_path / "d.csv"
    cols = ["id", "input", "messages", "context", "expected", "schema", "tools", "expected_tool_calls", "cohorts",
            "metadata"]
    import csv

    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in ROWS:
            cells = []
            for c in cols:
                v = r.get(c)
                if v is None:
                    cells.append("")
                elif c == "cohorts":
                    cells.append("|".join(v))
                elif (c == "expected" and isinstance(v, dict)) or isinstance(v, dict | list):
                    cells.append(json.dumps(v))
                else:
                    cells.append(v)
            w.writerow(cells)
    out["csv"] = p
    return out


def test_hash_is_stable_across_key_order_row_order_and_format(tmp_path: Path) -> None:
    files = write_all(tmp_path)
    hashes = {k: load_dataset(p).hash for k, p in files.items()}
    assert len(set(hashes.values())) == 1, hashes  # CSV included: JSON cells parse as in JSONL
    assert load_dataset(files["csv"])["r2"].expected == {"id": 7}


def test_csv_json_and_list_cells_read_like_jsonl(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "input": "Triage: my ThinkPad X1 is dead", "expected": {"product": "ThinkPad X1", "priority": 2},
         "cohorts": ["triage", "hardware"], "metadata": {"expect_refusal": False, "tier": 3}},
        {"id": "b", "input": "Capital of France?", "expected": ["Paris", "paris, France"], "cohorts": ["qa"],
         "context": ["France's capital is Paris.", "Lyon is in France."]},
        {"id": "c", "input": "Say [sic]", "expected": "plain text", "metadata": {"code": "007", "note": "true story"}},
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "d.csv").write_text(
        "id,input,expected,cohorts,context,metadata.expect_refusal,metadata.tier,metadata.code,metadata.note\n"
        'a,Triage: my ThinkPad X1 is dead,"{""product"": ""ThinkPad X1"", ""priority"": 2}",triage|hardware,,'
        "false,3,,\n"
        'b,Capital of France?,"[""Paris"", ""paris, France""]","[""qa""]",'
        '"[""France\'s capital is Paris."", ""Lyon is in France.""]",,,,\n'
        "c,Say [sic],plain text,,,,,007,true story\n")
    a, b = load_dataset(tmp_path / "d.jsonl"), load_dataset(tmp_path / "d.csv")
    assert [ex.model_dump() for ex in a] == [ex.model_dump() for ex in b]
    assert a.hash == b.hash
    assert b["a"].metadata == {"expect_refusal": False, "tier": 3} and b["c"].metadata["code"] == "007"


def test_csv_bad_json_cell_names_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text('id,input,expected\nr1,q,"{""a"": }"\n')
    with pytest.raises(UserError, match=r"d.csv:2: expected: cell is not valid JSON.*JSON list of one string"):
        load_dataset(tmp_path / "d.csv")


def test_hash_changes_when_content_changes(tmp_path: Path) -> None:
    base = Dataset.of([Example.model_validate(r) for r in ROWS])
    rows2 = [dict(r) for r in ROWS]
    rows2[0]["expected"] = "delivered"
    assert Dataset.of([Example.model_validate(r) for r in rows2]).hash != base.hash


def test_row_fields_are_parsed(tmp_path: Path) -> None:
    ds = load_dataset(write_all(tmp_path)["yaml"])
    assert len(ds) == 4
    assert ds["r2"].json_schema == {"type": "object", "required": ["id"]}
    assert ds["r3"].tool_names() == ["reset_password"]
    assert ds["r3"].expected_tool_calls[0].acceptable() == {"email": ["a@b.c"]}  # type: ignore[index]
    assert ds["r4"].context_text() == "Two and two make four."
    assert ds.cohort_counts()["billing"] == 1
    assert ds.line_of("r3") is not None


def test_split_is_deterministic_and_independent_of_other_rows() -> None:
    ids = [f"row-{i}" for i in range(3000)]
    splits = {i: assign_split(i) for i in ids}
    counts = {s: sum(1 for v in splits.values() if v == s) for s in ("train", "dev", "test")}
    assert abs(counts["train"] / 3000 - 0.6) < 0.03 and abs(counts["test"] / 3000 - 0.2) < 0.03
    big = Dataset.of([Example(id=i, input="x") for i in ids])
    small = Dataset.of([Example(id=i, input="x") for i in ids[::7]])
    for ex in small:
        assert small.split_of(ex) == big.split_of(ex) == splits[ex.id]
    parts = [set(ex.id for ex in big.split(s)) for s in ("train", "dev", "test")]
    assert sum(map(len, parts)) == 3000 and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


def test_explicit_split_field_wins_and_ratios_configurable() -> None:
    ex = Example(id="x", input="y", split="test")
    assert Dataset.of([ex]).split_of(ex) == "test"
    r = SplitRatios.parse("0.0,0.0,1.0")
    assert all(assign_split(f"i{i}", r) == "test" for i in range(100))
    with pytest.raises(UserError):
        SplitRatios.parse("0.9,0.2,0.2")


@given(st.lists(st.text(min_size=1, max_size=12).filter(str.strip), min_size=1, max_size=30, unique=True))
@settings(max_examples=50, deadline=None)
def test_split_partition_property(ids: list[str]) -> None:
    ds = Dataset.of([Example(id=i, input="q") for i in ids])
    got = sorted(ex.id for s in ("train", "dev", "test") for ex in ds.split(s))  # type: ignore[arg-type]
    assert got == sorted(ids)


def test_cohort_filter() -> None:
    ds = Dataset.of([Example.model_validate(r) for r in ROWS])
    assert [ex.id for ex in ds.with_cohorts(["billing", "account"])] == ["r2", "r3"]


def test_bfcl_native_expected_calls_are_converted() -> None:
    ex = Example.model_validate({"id": 1, "input": "x",
                                 "expected_tool_calls": [{"f": {"a": [1, 2], "b": ["", "x"]}}]})
    assert ex.expected_tool_calls is not None
    assert ex.expected_tool_calls[0].name == "f"
    assert ex.expected_tool_calls[0].acceptable() == {"a": [1, 2], "b": ["", "x"]}
