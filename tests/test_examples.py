"""The bundled demo (examples/support): the golden dataset is well-formed and self-consistent,
and the candidate, evaluator and policy files that ship beside it load."""

from __future__ import annotations

import json
import runpy
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tunegate.core import Dataset, Example, load_candidate, load_dataset

SUPPORT = Path(__file__).resolve().parents[1] / "examples" / "support"
PRIMARY = ("billing", "refunds", "account", "shipping", "out_of_domain", "safety")
TASKS = ("structured", "tool_call", "answer")
MIN_PER_COHORT = {"billing": 20, "refunds": 20, "account": 20, "shipping": 20, "out_of_domain": 20, "safety": 15}
MIN_PER_TASK = 40


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return load_dataset(SUPPORT / "dataset.jsonl")


def _primary(ex: Example) -> str:
    (cohort,) = [c for c in ex.cohorts if c in PRIMARY]
    return cohort


def _task(ex: Example) -> str:
    (task,) = [c for c in ex.cohorts if c in TASKS]
    return task


def _params(ex: Example) -> dict[str, dict[str, Any]]:
    return {t["function"]["name"]: t["function"]["parameters"] for t in ex.tools or []}


def test_size_and_unique_ids(ds: Dataset) -> None:
    assert len(ds) >= 150
    ids = [ex.id for ex in ds]
    assert len(ids) == len(set(ids))
    for ex in ds:
        prefix = {"out_of_domain": "ood"}.get(_primary(ex), _primary(ex))
        assert ex.id.startswith(prefix + "-"), ex.id


def test_one_primary_cohort_and_one_task_tag(ds: Dataset) -> None:
    for ex in ds:
        primary = [c for c in ex.cohorts if c in PRIMARY]
        tasks = [c for c in ex.cohorts if c in TASKS]
        assert len(primary) == 1, f"{ex.id}: primary cohorts {primary}"
        assert len(tasks) == 1, f"{ex.id}: task tags {tasks}"
        assert set(ex.cohorts) == {primary[0], tasks[0]}, ex.id
        assert ex.metadata.get("task") == tasks[0], ex.id
        assert ex.metadata.get("difficulty") in ("easy", "medium", "hard"), ex.id


def test_counts_per_cohort_and_task(ds: Dataset) -> None:
    by_cohort = Counter(_primary(ex) for ex in ds)
    by_task = Counter(_task(ex) for ex in ds)
    for cohort, n in MIN_PER_COHORT.items():
        assert by_cohort[cohort] >= n, f"{cohort}: {by_cohort[cohort]} rows < {n}"
    for task in TASKS:
        assert by_task[task] >= MIN_PER_TASK, f"{task}: {by_task[task]} rows"
    # Roughly a third each.
    assert max(by_task.values()) <= 1.5 * min(by_task.values()), by_task
    # The cohort tags the policy gates on (min_rows: 20) are all big enough.
    counts = ds.cohort_counts()
    assert all(counts[c] >= 20 for c in (*PRIMARY[:5], *TASKS)), counts


def test_fields_match_task(ds: Dataset) -> None:
    for ex in ds:
        task = _task(ex)
        if task == "structured":
            assert ex.json_schema is not None and isinstance(ex.expected, dict), ex.id
            assert ex.tools is None and ex.expected_tool_calls is None, ex.id
        elif task == "tool_call":
            assert ex.tools and 2 <= len(ex.tools) <= 4, ex.id
            assert ex.expected_tool_calls is not None and ex.json_schema is None, ex.id
            assert ex.expected is None, ex.id
        else:
            assert isinstance(ex.expected, str) and ex.expected.strip(), ex.id
            assert ex.tools is None and ex.json_schema is None, ex.id


def test_structured_expected_validates_against_schema(ds: Dataset) -> None:
    for ex in ds:
        if ex.json_schema is None:
            continue
        schema = ex.json_schema
        assert schema.get("$schema", "").endswith("2020-12/schema"), ex.id
        assert schema.get("additionalProperties") is False and schema.get("required"), ex.id
        jsonschema.Draft202012Validator(schema).validate(ex.expected)


def test_expected_tool_calls_fit_the_offered_tools(ds: Dataset) -> None:
    for ex in ds:
        if ex.expected_tool_calls is None:
            continue
        params = _params(ex)
        for call in ex.expected_tool_calls:
            assert call.name in params, f"{ex.id}: {call.name} is not offered"
            schema = params[call.name]
            args: dict[str, Any] = dict(call.arguments)
            for name, options in call.any_of.items():
                assert options, f"{ex.id}: empty any_of for {name}"
                picked = [v for v in options if v != ""]
                if picked:
                    args[name] = picked[0]
                else:
                    assert name not in schema.get("required", []), f"{ex.id}: required {name} marked optional"
            jsonschema.Draft202012Validator(schema).validate(args)
            # Every argument the model may pass must be listed (BFCL rejects unlisted optional args).
            listed = set(call.arguments) | set(call.any_of)
            assert listed == set(schema["properties"]), f"{ex.id}: {call.name} lists {sorted(listed)}"


def test_refusal_rows(ds: Dataset) -> None:
    for ex in ds:
        refuse = _primary(ex) in ("out_of_domain", "safety")
        assert ex.metadata.get("expect_refusal") is refuse, ex.id
        if refuse:
            assert _task(ex) in ("answer", "tool_call"), ex.id
            if _task(ex) == "tool_call":
                assert ex.expected_tool_calls == [], f"{ex.id}: must not call a tool"


def test_answer_rows_have_context_that_contains_the_fact(ds: Dataset) -> None:
    """In-domain answers come from a 1-4 sentence policy snippet; extractive references appear in it."""
    for ex in ds:
        if _task(ex) != "answer" or _primary(ex) in ("out_of_domain", "safety"):
            continue
        ctx = ex.context_text()
        assert ctx, f"{ex.id}: in-domain answer row without context"
        for snippet in ex.context if isinstance(ex.context, list) else [ctx]:
            assert 1 <= snippet.count(". ") + 1 <= 4, f"{ex.id}: snippet too long"
        ref = ex.expected
        if ref not in ("yes", "no", "Monday"):
            assert ref.lower() in ctx.lower(), f"{ex.id}: {ref!r} not in its context"


def test_dataset_file_is_in_sync_with_its_builder() -> None:
    ns = runpy.run_path(str(SUPPORT / "build_dataset.py"))
    assert ns["build"]() == (SUPPORT / "dataset.jsonl").read_text(encoding="utf-8"), \
        "dataset.jsonl is stale: run python examples/support/build_dataset.py"


def test_readme_table_matches_dataset() -> None:
    ns = runpy.run_path(str(SUPPORT / "build_dataset.py"))
    table = ns["table"](ns["ROWS"])
    assert table in (SUPPORT / "README.md").read_text(encoding="utf-8"), \
        "README table is stale: paste the output of build_dataset.py --table"


@pytest.mark.parametrize("name", ["incumbent", "candidate"])
def test_candidates_load_and_render_every_row(ds: Dataset, name: str) -> None:
    spec = load_candidate(SUPPORT / f"{name}.yaml")
    assert spec.backend == "local" and spec.model == "smollm2-135m-instruct"
    assert spec.params.temperature == 0 and spec.params.max_tokens == 64 and spec.tools
    assert spec.prompt.user == "{{input}}"
    for ex in ds:
        assert spec.prompt.check_variables(ex) == [], ex.id
        msgs = spec.prompt.render(ex)
        assert msgs[0].role == "system" and msgs[-1].role == "user"


def test_candidates_differ_only_in_prompt() -> None:
    inc, cand = (load_candidate(SUPPORT / f"{n}.yaml") for n in ("incumbent", "candidate"))
    a, b = inc.identity(), cand.identity()
    assert a.pop("prompt") != b.pop("prompt")
    assert a == b
    assert inc.hash != cand.hash


def test_evaluator_suite_loads() -> None:
    from tunegate.evaluators import registry

    suite = registry.load_suite(str(SUPPORT / "evaluators.yaml"))
    assert [e.name for e in suite] == ["json_validation", "tool_selection", "token_f1", "contains"]


def test_policy_loads() -> None:
    from tunegate.core.policy import load_policy

    policy = load_policy(SUPPORT / "policy.yaml")
    assert policy.name == "support-demo"
    assert policy.headline.evaluator == "json_validation"
    assert [g.evaluator for g in policy.guards] == ["tool_selection", "token_f1"]


def test_policy_file_shape() -> None:
    """Independent of the policy loader: the file names evaluators the suite provides."""
    import yaml

    data = yaml.safe_load((SUPPORT / "policy.yaml").read_text(encoding="utf-8"))
    suite = yaml.safe_load((SUPPORT / "evaluators.yaml").read_text(encoding="utf-8"))
    assert data["name"] == "support-demo" and str(data["version"]) == "1"
    used = [data["headline"]["evaluator"]] + [g["evaluator"] for g in data["guards"]]
    assert set(used) <= set(suite), used
    assert data["cohorts"]["min_rows"] == 20 and 0 <= data["error_budget"] < 1
    json.dumps(data)  # plain data only
