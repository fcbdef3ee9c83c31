"""Bad input: every case exits 2 with one clear line naming file:line:field, no traceback, and
nothing is written to the store (the database file is not even created)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunegate.cli.main import main

GOOD_ROW = {"id": "a", "input": "hello", "expected": "hi"}
GOOD_CAND = "name: c\nbackend: local\nmodel: smollm2-135m-instruct\n"


def jl(*rows: object) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"


# (case id, dataset file name, dataset text/bytes, candidate yaml, extra args, expected substring)
DATASET_CASES = [
    ("malformed-json", "d.jsonl", jl(GOOD_ROW, '{"id": "b", "input": '), None, [], "d.jsonl:2: invalid JSON"),
    ("row-not-object", "d.jsonl", jl(GOOD_ROW, "[1, 2]"), None, [], "d.jsonl:2: a row must be an object"),
    ("missing-id", "d.jsonl", jl({"input": "x"}), None, [], "d.jsonl:1: id: missing required field"),
    ("empty-id", "d.jsonl", jl({"id": " ", "input": "x"}), None, [], "d.jsonl:1: id: must not be empty"),
    ("bool-id", "d.jsonl", jl({"id": True, "input": "x"}), None, [], "d.jsonl:1: id:"),
    ("no-input", "d.jsonl", jl(GOOD_ROW, {"id": "b"}), None, [], "d.jsonl:2: row: exactly one of 'input' and 'messages'"),
    ("input-and-messages", "d.jsonl", jl({"id": "b", "input": "x", "messages": [{"role": "user", "content": "x"}]}),
     None, [], "d.jsonl:1: row: exactly one of"),
    ("input-int", "d.jsonl", jl({"id": "b", "input": 5}), None, [], "d.jsonl:1: input: Input should be a valid string"),
    ("input-empty", "d.jsonl", jl({"id": "b", "input": "  "}), None, [], "d.jsonl:1: row: 'input' must not be empty"),
    ("messages-empty", "d.jsonl", jl({"id": "b", "messages": []}), None, [], "d.jsonl:1: row: 'messages' must not be empty"),
    ("message-role", "d.jsonl", jl({"id": "b", "messages": [{"role": "robot", "content": "x"}]}), None, [],
     "d.jsonl:1: messages[0].role:"),
    ("cohorts-type", "d.jsonl", jl({"id": "b", "input": "x", "cohorts": 3}), None, [], "d.jsonl:1: cohorts:"),
    ("schema-not-object", "d.jsonl", jl({"id": "b", "input": "x", "schema": "int"}), None, [], "d.jsonl:1: schema:"),
    ("schema-invalid", "d.jsonl", jl(GOOD_ROW, {"id": "b", "input": "x", "schema": {"type": "nonsense"}}), None, [],
     "d.jsonl:2: schema: not a valid JSON Schema"),
    ("tools-not-list", "d.jsonl", jl({"id": "b", "input": "x", "tools": {"name": "f"}}), None, [], "d.jsonl:1: tools:"),
    ("tool-no-name", "d.jsonl", jl({"id": "b", "input": "x", "tools": [{"type": "function", "function": {}}]}), None, [],
     "d.jsonl:1: tools: tool 0 has no function name"),
    ("expected-call-no-name", "d.jsonl", jl({"id": "b", "input": "x", "expected_tool_calls": [{"arguments": {}}]}),
     None, [], "d.jsonl:1: expected_tool_calls[0].name: Field required"),
    ("unknown-field", "d.jsonl", jl({"id": "b", "inptu": "x", "input": "y"}), None, [], "d.jsonl:1: inptu: Extra inputs"),
    ("duplicate-id", "d.jsonl", jl(GOOD_ROW, {"id": "c", "input": "x"}, GOOD_ROW), None, [],
     "d.jsonl:3: id: duplicate id 'a' (first on line 1)"),
    ("non-utf8", "d.jsonl", b'{"id": "a", "input": "x"}\n{"id": "b", "input": "caf\xe9"}\n', None, [],
     "d.jsonl:2: not valid UTF-8"),
    ("empty-file", "d.jsonl", "", None, [], "d.jsonl: dataset is empty"),
    ("whitespace-file", "d.jsonl", "\n  \n", None, [], "d.jsonl: dataset is empty"),
    ("unknown-ext", "d.txt", "id,input\n", None, [], "d.txt: unknown dataset format '.txt'"),
    ("split-invalid", "d.jsonl", jl({"id": "b", "input": "x", "split": "validation"}), None, [], "d.jsonl:1: split:"),
    ("metadata-not-dict", "d.jsonl", jl({"id": "b", "input": "x", "metadata": [1]}), None, [], "d.jsonl:1: metadata:"),
    ("csv-bad-json-cell", "d.csv", 'id,input,tools\na,hi,"[{""name"": "\n', None, [],
     "d.csv:2: tools: cell is not valid JSON"),
    ("csv-extra-cells", "d.csv", "id,input\na,hi\nb,yo,extra\n", None, [], "d.csv:3: row has more cells than the header"),
    ("csv-missing-input", "d.csv", "id,input\na,hi\nb,\n", None, [], "d.csv:3: row: exactly one of"),
    ("csv-dup-header", "d.csv", "id,input,input\na,hi,ho\n", None, [], "d.csv:1: CSV header repeats"),
    ("yaml-syntax", "d.yaml", "- id: a\n  input: [unclosed\n", None, [], "d.yaml:3: invalid YAML"),
    ("yaml-mapping", "d.yaml", "id: a\ninput: x\n", None, [], "d.yaml:1: a YAML dataset must be a list"),
    ("yaml-scalar-row", "d.yaml", "- id: a\n  input: x\n- just text\n", None, [], "d.yaml:3: a row must be an object"),
    ("yaml-bad-field", "d.yaml", "rows:\n  - id: a\n    input: x\n  - id: b\n    input: y\n    cohorts: {a: 1}\n",
     None, [], "d.yaml:4: cohorts:"),
]

CANDIDATE_CASES = [
    ("cand-invalid-yaml", "name: [x\n", "c.yaml:2: invalid YAML"),
    ("cand-not-mapping", "- a\n- b\n", "c.yaml: a candidate file must be a mapping"),
    ("cand-unknown-key", GOOD_CAND + "temprature: 0.3\n", "c.yaml:4: temprature: Extra inputs"),
    ("cand-bad-backend", "backend: gpu\n", "c.yaml:1: backend: unknown backend 'gpu'; known: local, openai"),
    ("cand-negative-temp", GOOD_CAND + "params: {temperature: -1}\n", "c.yaml:4: params.temperature:"),
    ("cand-zero-max-tokens", GOOD_CAND + "params:\n  max_tokens: 0\n", "c.yaml:5: params.max_tokens:"),
    ("cand-malformed-placeholder", GOOD_CAND + "prompt: {user: 'Q: {{ input'}\n", "c.yaml: prompt: malformed placeholder"),
    ("cand-missing-variable", GOOD_CAND + "prompt: {system: 'Tier {{tier}}'}\n", "d.jsonl:1: tier: candidate"),
    ("cand-openai-no-url", "backend: openai\nmodel: gpt\n", "c.yaml: base_url: backend openai needs base_url"),
    ("cand-unknown-option", GOOD_CAND + "options: {trheads: 2}\n", "c.yaml: options: unknown option(s) ['trheads']"),
    ("cand-option-type", GOOD_CAND + "options: {batch_size: many}\n", "c.yaml: options.batch_size: must be int"),
    ("cand-api-key-missing", "backend: openai\nmodel: m\nbase_url: http://127.0.0.1:9/v1\napi_key_env: TUNEGATE_TEST_NOPE\n",
     "c.yaml: api_key_env: environment variable TUNEGATE_TEST_NOPE is not set"),
    ("cand-adapter-missing", GOOD_CAND + "adapter: /nonexistent/adapter\n", "c.yaml: adapter: adapter path"),
    ("cand-not-found", None, "nope.yaml: file not found"),
]


def _run(tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    db = tmp_path / "store.db"
    code = main(["--db", str(db), *args])
    err = capsys.readouterr().err
    assert not db.exists(), "bad input must not create or write the store"
    return code, err


def _check(code: int, err: str, expected: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    line = err.strip()
    assert "\n" not in line, f"expected one line, got:\n{err}"
    assert expected in line, f"{expected!r} not in {line!r}"


@pytest.mark.parametrize(("case", "fname", "content", "cand", "extra", "expected"), DATASET_CASES,
                         ids=[c[0] for c in DATASET_CASES])
def test_bad_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                     case: str, fname: str, content: str | bytes, cand: str | None, extra: list[str],
                     expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    Path(fname).write_bytes(content if isinstance(content, bytes) else content.encode())
    Path("c.yaml").write_text(cand or GOOD_CAND)
    code, err = _run(tmp_path, ["run", "--dataset", fname, "--candidate", "c.yaml", "--evaluators", "exact_match",
                                *extra], capsys)
    _check(code, err, expected)


@pytest.mark.parametrize(("case", "cand", "expected"), CANDIDATE_CASES, ids=[c[0] for c in CANDIDATE_CASES])
def test_bad_candidate(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                       case: str, cand: str | None, expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TUNEGATE_TEST_NOPE", raising=False)
    Path("d.jsonl").write_text(jl(GOOD_ROW))
    cfile = "c.yaml"
    if cand is None:
        cfile = "nope.yaml"
    else:
        Path(cfile).write_text(cand)
    code, err = _run(tmp_path, ["run", "--dataset", "d.jsonl", "--candidate", cfile, "--evaluators", "exact_match"],
                     capsys)
    _check(code, err, expected)


OTHER_CASES = [
    ("unknown-evaluator", ["--evaluators", "exact_match,groundednes"], None, "evaluators: unknown evaluator 'groundednes'"),
    ("evaluator-twice", ["--evaluators", "exact_match,exact_match"], None, "evaluators: evaluator 'exact_match' listed twice"),
    ("evaluator-yaml-bad-option", ["--evaluators", "ev.yaml"], ("ev.yaml", "exact_match: {normalise: true}\n"),
     "ev.yaml: evaluators.exact_match:"),
    ("evaluator-yaml-not-list", ["--evaluators", "ev.yaml"], ("ev.yaml", "42\n"), "ev.yaml: an evaluator file lists"),
    ("unknown-cohort", ["--cohort", "vip"], None, "d.jsonl: cohort: no rows have cohort(s) ['vip']"),
    ("limit-zero", ["--limit", "0"], None, "limit: --limit must be >= 1"),
    ("bad-split-ratios", ["--split-ratios", "0.5,0.5"], None, "split ratios must be three numbers"),
    ("split-ratios-sum", ["--split-ratios", "0.5,0.5,0.5"], None, "split_ratios: split ratios must be >= 0 and sum to 1"),
    ("outputs-bad-json", ["--outputs", "o.jsonl"], ("o.jsonl", '{"id": "a", "output": "x"}\n{"id": \n'),
     "o.jsonl:2: invalid JSON"),
    ("outputs-unknown-id", ["--outputs", "o.jsonl"], ("o.jsonl", '{"id": "zz", "output": "x"}\n'),
     "o.jsonl: id: output for id 'zz' which is not in the dataset"),
    ("outputs-no-output", ["--outputs", "o.jsonl"], ("o.jsonl", '{"id": "a"}\n'), "o.jsonl:1: output: needs 'output'"),
    ("outputs-bad-tool-call", ["--outputs", "o.jsonl"], ("o.jsonl", '{"id": "a", "tool_calls": [{"args": 1}]}\n'),
     "o.jsonl:1: tool_calls.name"),
]


@pytest.mark.parametrize(("case", "args", "extra_file", "expected"), OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_bad_other(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                   case: str, args: list[str], extra_file: tuple[str, str] | None, expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    Path("d.jsonl").write_text(jl(GOOD_ROW, {"id": "b", "input": "x", "cohorts": ["billing"]}))
    Path("c.yaml").write_text(GOOD_CAND)
    if extra_file:
        Path(extra_file[0]).write_text(extra_file[1])
    base = ["run", "--dataset", "d.jsonl"]
    if "--outputs" not in args:
        base += ["--candidate", "c.yaml"]
    if "--evaluators" not in args:
        base += ["--evaluators", "exact_match"]
    code, err = _run(tmp_path, base + args, capsys)
    _check(code, err, expected)


def test_case_count_is_at_least_forty() -> None:
    assert len(DATASET_CASES) + len(CANDIDATE_CASES) + len(OTHER_CASES) >= 40


def test_existing_store_is_untouched_by_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A store with data keeps exactly its content when a later command has bad input."""
    from tunegate.store.sqlite import Store

    db = tmp_path / "store.db"
    with Store(db) as s:
        s.put_candidate("cand-x", "x", "spec", {"a": 1})
    before = db.read_bytes()
    monkeypatch.chdir(tmp_path)
    Path("d.jsonl").write_text('{"id": 1}\n')
    code = main(["--db", str(db), "run", "--dataset", "d.jsonl", "--candidate", "c.yaml"])
    assert code == 2
    assert db.read_bytes() == before
    with Store(db) as s:
        assert s.candidate("cand-x") is not None
