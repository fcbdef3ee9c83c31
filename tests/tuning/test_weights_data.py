"""Training rows: train split only, targets in the exact format the local backend reads back.

Needs the SmolLM2 tokenizer (no weights): ~1 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunegate.backends.local import LocalBackend
from tunegate.backends.toolparse import parse_tool_calls
from tunegate.checks.preference_file import load_preferences
from tunegate.core.candidate import load_candidate
from tunegate.core.loading import load_dataset
from tunegate.core.request import GenerationRequest
from tunegate.errors import UserError
from tunegate.tuning.weights.data import (
    Renderer,
    assistant_turn,
    build_dpo_rows,
    build_prompt_rows,
    build_sft_rows,
)

from .weights_fixtures import HELD_OUT, write_inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_inputs(tmp_path_factory.mktemp("wdata"))


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer("smollm2-135m-instruct")


def test_sft_rows_come_from_the_train_split_only(inputs: dict[str, Path], renderer: Renderer) -> None:
    ds, seed = load_dataset(inputs["dataset"]), load_candidate(inputs["seed"])
    rows = build_sft_rows(ds, seed, renderer, max_length=512)
    ids = set(rows.ids)
    assert ids == {"t-text-1", "t-text-2", "t-json-1", "t-json-2", "t-tool-1"}
    assert not ids & HELD_OUT
    assert all(ds.split_of(ds[i]) == "train" for i in ids)
    for r in rows.rows:  # no held-out text either (the held-out rows are similar on purpose)
        assert "Spain" not in r["prompt"] and "A-9" not in r["prompt"] and "grass" not in r["prompt"]
    assert rows.skipped == {"no tool calls to make and no expected answer (add metadata.reference_reply)": 1}
    assert rows.source == {"path": str(inputs["dataset"]), "hash": ds.hash, "split": "train", "rows": 5}


def test_prompts_are_what_the_local_backend_sends(inputs: dict[str, Path], renderer: Renderer) -> None:
    ds, seed = load_dataset(inputs["dataset"]), load_candidate(inputs["seed"])
    rows = {r["id"]: r for r in build_sft_rows(ds, seed, renderer, max_length=512).rows}
    backend = LocalBackend("smollm2-135m-instruct")
    for rid in ("t-text-1", "t-tool-1", "t-json-1"):
        ex = ds[rid]
        req = GenerationRequest(tuple(seed.prompt.render(ex)), seed.params, tuple(ex.tools) if ex.tools else None)
        assert rows[rid]["prompt"] == backend.render_prompt(req)
    assert "lookup_order(order_id: string, note?: string)" in rows["t-tool-1"]["prompt"]  # tools as the backend shows them


def test_completions_round_trip_through_the_backend_parsers(inputs: dict[str, Path], renderer: Renderer) -> None:
    ds, seed = load_dataset(inputs["dataset"]), load_candidate(inputs["seed"])
    rows = {r["id"]: r for r in build_sft_rows(ds, seed, renderer, max_length=512).rows}
    eos = renderer.tokenizer.eos_token
    assert all(r["completion"].endswith(eos) for r in rows.values())
    assert rows["t-text-1"]["completion"] == "Blue." + eos
    body = rows["t-json-1"]["completion"].removesuffix(eos)
    assert json.loads(body) == {"order_id": "A-1", "issue": "late"}
    assert list(json.loads(body)) == ["order_id", "issue"]  # row's key order kept
    tool_text = rows["t-tool-1"]["completion"].removesuffix(eos)
    assert tool_text.startswith("<tool_call>")
    calls = parse_tool_calls(tool_text, ds["t-tool-1"].tools)
    # first acceptable any_of value; an argument whose first choice is "" (optional) is left out
    assert [(c.name, c.arguments) for c in calls] == [("lookup_order", {"order_id": "A-7"})]
    assert isinstance(assistant_turn(ds["t-tool-none"]), str)


def test_a_no_call_row_learns_its_reference_reply_as_text(inputs: dict[str, Path]) -> None:
    """``expected_tool_calls: []`` + ``metadata.reference_reply``: trained as a plain reply, no call."""
    ds = load_dataset(inputs["dataset"])
    ex = ds["t-tool-none"].model_copy(update={"metadata": {"reference_reply": "I can only help with orders."}})
    turn = assistant_turn(ex)
    assert not isinstance(turn, str)
    assert turn.content == "I can only help with orders." and not turn.tool_calls
    blank = ds["t-tool-none"].model_copy(update={"metadata": {"reference_reply": "  "}})
    assert isinstance(assistant_turn(blank), str)  # a blank reply is nothing to learn


def test_long_rows_are_skipped_and_counted(inputs: dict[str, Path], renderer: Renderer) -> None:
    ds, seed = load_dataset(inputs["dataset"]), load_candidate(inputs["seed"])
    rows = build_sft_rows(ds, seed, renderer, max_length=40)
    assert rows.skipped["longer than max_length 40"] >= 1
    assert sum(rows.skipped.values()) + len(rows.rows) == 6  # every train row is used or counted


def test_template_variable_missing_names_dataset_line(inputs: dict[str, Path], renderer: Renderer,
                                                      tmp_path: Path) -> None:
    ds = load_dataset(inputs["dataset"])
    seed = load_candidate(inputs["seed"]).model_copy(update={"prompt": load_candidate(inputs["seed"]).prompt
                                                              .model_copy(update={"user": "{{input}} {{tier}}"})})
    with pytest.raises(UserError, match=r"dataset.jsonl:1: tier: .*needs template variable"):
        build_sft_rows(ds, seed, renderer, max_length=512)


def test_preference_pairs_never_leak_held_out_rows(inputs: dict[str, Path], renderer: Renderer) -> None:
    ds, seed = load_dataset(inputs["dataset"]), load_candidate(inputs["seed"])
    pairs = load_preferences(inputs["prefs"]).rows  # the one reader (also `tunegate data check`'s)
    assert len(pairs) == 6
    rows = build_dpo_rows(ds, seed, pairs, renderer, max_length=512, file=str(inputs["prefs"]))
    assert rows.ids == ["p1", "t-text-2", "p6"]
    assert rows.skipped == {"row in the dev split": 1, "prompt of a dev/test row": 1, "chosen equals rejected": 1}
    by_id = {r["id"]: r for r in rows.rows}
    assert by_id["p1"]["margin"] == 1.0 and by_id["t-text-2"]["margin"] == 0.0 and by_id["p6"]["margin"] == 2.0
    eos = renderer.tokenizer.eos_token
    assert by_id["p1"]["chosen"] == "Hello!" + eos and by_id["p1"]["rejected"] == "Go away." + eos
    assert by_id["p1"]["prompt"].endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize(("line", "where"), [
    ('{"id": "a", "prompt": "x", "chosen": "y", "source": "s"}', ":1: rejected: missing required field"),
    ('{"prompt": "x", "chosen": "y", "rejected": "z", "source": "s"}', ":1: id: missing required field"),
    ('{"id": "a", "prompt": "x", "chosen": "y", "rejected": "z"}', ":1: source: missing required field"),
    ('{"id": "a", "prompt": "x", "chosen": "y", "rejected": "z", "source": "s", "margin": "big"}', ":1: margin:"),
    ('{"id": "a", "prompt": "x"', ":1: invalid JSON"),
])
def test_bad_preference_lines(tmp_path: Path, line: str, where: str) -> None:
    """``tune dpo`` reads preference files with the reader ``data check`` uses (one definition)."""
    p = tmp_path / "p.jsonl"
    p.write_text(line + "\n")
    with pytest.raises(UserError) as e:
        load_preferences(p)
    assert str(e.value).startswith(str(p) + where), str(e.value)


def test_dpo_and_data_check_agree_on_duplicate_ids(tmp_path: Path) -> None:
    p = tmp_path / "p.jsonl"
    row = '{"id": "a", "prompt": "x", "chosen": "y", "rejected": "z", "source": "s"}'
    p.write_text(row + "\n" + row + "\n")
    with pytest.raises(UserError, match=":2: id: duplicate id 'a'"):
        load_preferences(p)
    from tunegate.tuning.weights import data as weights_data

    assert not hasattr(weights_data, "read_preferences")  # no second reader


def test_grpo_prompt_rows_carry_ids(inputs: dict[str, Path], renderer: Renderer) -> None:
    ds, seed = load_dataset(inputs["dataset"]), load_candidate(inputs["seed"])
    rows = build_prompt_rows(ds, seed, renderer)
    assert len(rows.rows) == 6 and not set(rows.ids) & HELD_OUT
