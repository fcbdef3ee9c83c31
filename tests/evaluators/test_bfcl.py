"""tool_selection against BFCL's possible-answer ground truth.

(a) The ground-truth call itself (first acceptable value per argument, optional arguments whose
first value is "" left out) must score 1 on every row; an irrelevance row answered with no call
scores 1. (b) Perturbed calls — wrong function, a required argument dropped, a value outside the
allowed list, an extra call, and a made-up call on an irrelevance row — must all score 0.
Rejection rates per perturbation are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import shared_dataset
from tunegate.core.example import Example, ToolCall
from tunegate.core.result import ModelOutput
from tunegate.evaluators.base import EvalContext
from tunegate.evaluators.tool_selection import ToolSelection

Row = dict[str, Any]
Calls = list[ToolCall]


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    path = shared_dataset("bfcl") / "data.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def example(row: Row) -> Example:
    return Example(id=row["id"], input=row["user_prompt"], tools=row["functions"],
                   expected_tool_calls=row["ground_truth"] or [], cohorts=[row["category"]])


def _pick(values: list[Any]) -> Any:
    """The first acceptable non-"" value, with BFCL's nested answer dicts turned into real values."""
    return _build(next(v for v in values if v != ""))


def _build(v: Any) -> Any:
    if isinstance(v, dict) and v and all(isinstance(x, list) for x in v.values()):
        return {k: _pick(ws) for k, ws in v.items() if ws and ws[0] != ""}
    if isinstance(v, list):
        return [_build(x) for x in v]
    return v


def _params(row: Row, name: str) -> dict[str, Any]:
    return next(f["parameters"] for f in row["functions"] if f["name"] == name)


def ground_truth_calls(row: Row) -> Calls:
    """One correct answer per row. An optional argument is left out when its first value is "" or
    when the function does not declare it (2 BFCL rows list such an optional, undeclared argument;
    BFCL itself would reject a call that passes it)."""
    calls = []
    for gt in row["ground_truth"] or []:
        (name, answers), = gt.items()
        params = _params(row, name)
        required = set(params.get("required", []))
        args = {}
        for arg, values in answers.items():
            optional = "" in values and arg not in required
            if optional and (values[0] == "" or arg not in params["properties"]):
                continue
            args[arg] = _pick(values)
        calls.append(ToolCall(name=name, arguments=args))
    return calls


#: What a model that correctly declines to call a tool says instead (a blank reply is not an answer:
#: tool_selection scores it as an empty output since issue 11).
DECLINE = "None of the available functions can do that."


def output(calls: Calls) -> ModelOutput:
    return ModelOutput(tool_calls=calls) if calls else ModelOutput(text=DECLINE, tool_calls=[])


def score(row: Row, calls: Calls) -> float | None:
    res = ToolSelection().evaluate(EvalContext(example(row), output(calls)))
    assert res.status == "ok", res.reason
    return res.score


def test_ground_truth_call_scores_one_on_every_row(rows: list[Row]) -> None:
    assert len(rows) == 1390
    ev = ToolSelection()
    ctxs = [EvalContext(example(r), output(ground_truth_calls(r))) for r in rows]
    results = ev.evaluate_batch(ctxs)
    bad = [(r["id"], res.reason) for r, res in zip(rows, results, strict=True) if res.score != 1.0]
    print(f"\nbfcl ground truth accepted: {len(rows) - len(bad)}/{len(rows)}")
    assert not bad, bad[:5]
    assert sum(1 for r in rows if not r["should_call_function"]) == 240


# -- perturbations: each returns the perturbed calls, or None when not applicable to the row ------
def wrong_name(row: Row, calls: Calls) -> Calls | None:
    if not calls:
        return None
    out = copy.deepcopy(calls)
    others = [f["name"] for f in row["functions"] if f["name"] != out[0].name]
    out[0] = ToolCall(name=others[0] if others else out[0].name + "_v2", arguments=out[0].arguments)
    return out


def drop_required(row: Row, calls: Calls) -> Calls | None:
    for i, c in enumerate(calls):
        answers = next(iter(row["ground_truth"][i].values()))
        required = set(_params(row, c.name).get("required", []))
        for arg in c.arguments:
            if arg in required or "" not in answers.get(arg, [""]):
                out = copy.deepcopy(calls)
                out[i] = ToolCall(name=c.name, arguments={k: v for k, v in c.arguments.items() if k != arg})
                return out
    return None


def _loose(v: Any) -> Any:
    """A deliberately looser comparison key than BFCL's, to prove the new value is not allowed."""
    if isinstance(v, str):
        return re.sub(r"\W|_", "", v).lower()
    if isinstance(v, list):
        return [_loose(x) for x in v]
    return v


def _other_value(v: Any, allowed: list[Any]) -> Any | None:
    if isinstance(v, bool):
        candidate: Any = not v
    elif isinstance(v, int | float):
        candidate = type(v)(max([abs(a) for a in allowed if isinstance(a, int | float)] + [0]) * 3 + 7)
    elif isinstance(v, str):
        candidate = v + " zqx not allowed"
    elif isinstance(v, list):
        candidate = [*v, v[-1]] if v else ["zqx"]
    else:
        return None  # dicts and nulls: a "wrong value" is not well defined
    return None if any(_loose(candidate) == _loose(a) for a in allowed) else candidate


def bad_value(row: Row, calls: Calls) -> Calls | None:
    for i, c in enumerate(calls):
        answers = next(iter(row["ground_truth"][i].values()))
        for arg, v in c.arguments.items():
            new = _other_value(v, answers[arg])
            if new is not None:
                out = copy.deepcopy(calls)
                out[i] = ToolCall(name=c.name, arguments={**c.arguments, arg: new})
                return out
    return None


def extra_call(row: Row, calls: Calls) -> Calls | None:
    return [*copy.deepcopy(calls), copy.deepcopy(calls[0])] if calls else None


def made_up_call(row: Row, calls: Calls) -> Calls | None:
    if row["should_call_function"]:
        return None
    fn = row["functions"][0]
    args = {p: "x" for p in fn["parameters"].get("required", [])}
    return [ToolCall(name=fn["name"], arguments=args)]


PERTURBATIONS: dict[str, Callable[[Row, Calls], Calls | None]] = {
    "wrong function name": wrong_name,
    "required arg removed": drop_required,
    "value not allowed": bad_value,
    "extra call": extra_call,
    "made-up call (irrelevance)": made_up_call,
}


def test_perturbations_are_rejected(rows: list[Row]) -> None:
    ev = ToolSelection()
    report = []
    failures: dict[str, list[str]] = {}
    for label, perturb in PERTURBATIONS.items():
        cases = [(r, calls) for r in rows if (calls := perturb(r, ground_truth_calls(r))) is not None]
        ctxs = [EvalContext(example(r), output(c)) for r, c in cases]
        results = ev.evaluate_batch(ctxs)
        accepted = [f"{r['id']}: {res.reason}" for (r, _), res in zip(cases, results, strict=True)
                    if res.status != "ok" or res.score != 0.0]
        failures[label] = accepted
        rate = 1 - len(accepted) / len(cases)
        report.append(f"  {label:<28} applicable {len(cases):>5}  rejected {rate:7.2%}")
    print("\nbfcl perturbation rejection:\n" + "\n".join(report))
    assert all(not v for v in failures.values()), {k: v[:3] for k, v in failures.items() if v}
    assert "applicable   240" in report[-1]


def test_parallel_calls_in_reverse_order_still_score_one(rows: list[Row]) -> None:
    par = [r for r in rows if r["category"].startswith("parallel")]
    assert par
    assert all(score(r, list(reversed(ground_truth_calls(r)))) == 1.0 for r in par)


def test_dotted_names_with_underscores_still_score_one(rows: list[Row]) -> None:
    dotted = [r for r in rows if any("." in next(iter(g)) for g in r["ground_truth"] or [])]
    assert dotted
    for r in dotted[:100]:
        calls = [ToolCall(name=c.name.replace(".", "_"), arguments=c.arguments) for c in ground_truth_calls(r)]
        assert score(r, calls) == 1.0, r["id"]
