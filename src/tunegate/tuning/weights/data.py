"""Training rows for TRL, built from a golden dataset's **train split only**.

Why the rows are rendered text and not chat messages: the gate will run the tuned model through
the ``local`` backend, which renders each request with its own rules (the row's tools become a
system-prompt section when the chat template has no tool support; tool calls are written as
``<tool_call>{...}</tool_call>`` and read back by :mod:`tunegate.backends.toolparse`). Training on
anything else would teach the model a format it never sees at inference. So the prompt is
``LocalBackend.render_prompt`` of exactly the request the run engine builds (the seed
candidate's template + the row's tools), and the completion is what the same template renders
for the ideal assistant turn. TRL gets standard ``prompt``/``completion`` (SFT) and
``prompt``/``chosen``/``rejected`` (DPO) text columns and trains on the completion only.

A dev or test row never becomes a training row: rows are taken from ``ds.split("train")``, and
preference pairs whose id or prompt text belongs to a dev/test row are dropped and counted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tunegate.checks.preference_file import PrefRow
from tunegate.core.candidate import CandidateSpec
from tunegate.core.dataset import Dataset
from tunegate.core.example import Example, ExpectedToolCall, Message, Split, ToolCall
from tunegate.core.hashing import content_hash
from tunegate.core.request import GenerationRequest
from tunegate.engine.run.rows import requests_for
from tunegate.errors import UserError

__all__ = [
    "Renderer",
    "TuningRows",
    "assistant_turn",
    "build_dpo_rows",
    "build_prompt_rows",
    "build_sft_rows",
    "call_arguments",
    "request_for",
]

TRAIN: Split = "train"


@dataclass
class TuningRows:
    """TRL-ready rows plus what was left out and why (every skipped row is counted, never hidden)."""

    rows: list[dict[str, Any]]
    skipped: Counter[str] = field(default_factory=Counter)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [str(r["id"]) for r in self.rows]

    @property
    def text_hash(self) -> str:
        """Hash of the exact training texts (changes when the template, tokenizer template or data do)."""
        return content_hash(self.rows, prefix="rows-")


class Renderer:
    """Renders requests exactly as the local backend will at inference, and counts tokens.

    Loads only the tokenizer (no weights). ``model`` is the seed candidate's model reference.
    """

    def __init__(self, model: str) -> None:
        from tunegate.backends.local import LocalBackend
        from tunegate.backends.models import resolve_model

        self._backend = LocalBackend(model)
        self.path = resolve_model(model)
        self._tok: Any = None

    @property
    def tokenizer(self) -> Any:
        if self._tok is None:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        return self._tok

    def prompt(self, request: GenerationRequest) -> str:
        return self._backend.render_prompt(request)

    def completion(self, request: GenerationRequest, answer: Message, prompt: str | None = None) -> str:
        """The text the template renders after ``prompt(request)`` for the assistant turn ``answer``.

        Trailing whitespace after the end-of-turn marker is dropped so TRL does not append a second
        end-of-sequence token (it appends one only when the text does not already end with it).
        """
        prompt = self.prompt(request) if prompt is None else prompt
        full_req = GenerationRequest((*request.messages, answer), request.params, request.tools)
        full = self._backend.render_prompt(full_req, add_generation_prompt=False)
        if not full.startswith(prompt):
            raise UserError("the chat template renders the prompt differently when an assistant turn follows; "
                            "cannot build training text that matches inference", field="model")
        return full[len(prompt):].rstrip()

    def n_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def call_arguments(call: ExpectedToolCall) -> dict[str, Any]:
    """One concrete argument set for an expected call: exact values, else the first acceptable
    ``any_of`` value; an argument whose first choice is ``""`` (BFCL: optional) is left out."""
    args = dict(call.arguments)
    for name, choices in call.any_of.items():
        if not choices or choices[0] == "":
            continue
        args[name] = choices[0]
    return args


def assistant_turn(ex: Example) -> Message | str:
    """The ideal assistant message for a row, or the reason there is nothing to learn from it.

    Priority: expected tool calls (when non-empty), then ``expected`` (a JSON object/array is
    written as compact-spaced JSON in the row's key order; a list of acceptable texts uses the
    first; text as is), then ``metadata.reference_reply`` — a training target that no evaluator
    grades, for rows whose graded expectation is not text (``expected_tool_calls: []`` says "call
    nothing" but not what to say instead; without a reply such rows could not be learnt, and the
    adapter would only ever see examples that call tools).
    """
    if ex.expected_tool_calls:
        calls = [ToolCall(name=c.name, arguments=call_arguments(c)) for c in ex.expected_tool_calls]
        return Message(role="assistant", tool_calls=calls)
    exp = ex.expected
    if exp is None:
        reply = ex.metadata.get("reference_reply")
        if isinstance(reply, str) and reply.strip():
            return Message(role="assistant", content=reply)
        return "no tool calls to make and no expected answer (add metadata.reference_reply)" \
            if ex.expected_tool_calls == [] else "no expected answer"
    if isinstance(exp, str):
        text = exp
    elif isinstance(exp, list) and exp and all(isinstance(x, str) for x in exp) and ex.json_schema is None:
        text = exp[0]
    else:
        text = json.dumps(exp, ensure_ascii=False)
    if not text.strip():
        return "empty expected answer"
    return Message(role="assistant", content=text)


def request_for(candidate: CandidateSpec, ex: Example) -> GenerationRequest:
    """The request the run engine sends for this row (its first sample: the executor's own
    :func:`~tunegate.engine.run.rows.requests_for`, so training text matches inference)."""
    return requests_for(candidate, ex)[0]


def _check_template(ds: Dataset, candidate: CandidateSpec, ex: Example) -> None:
    missing = candidate.prompt.check_variables(ex)
    if missing:
        raise UserError(f"seed candidate {candidate.source or candidate.name} needs template variable "
                        f"{{{{{missing[0]}}}}} but this row has no value for it",
                        file=ds.source, line=ds.line_of(ex.id), field=missing[0])


def _source(ds: Dataset, n_rows: int) -> dict[str, Any]:
    return {"path": ds.source, "hash": ds.hash, "split": TRAIN, "rows": n_rows}


def build_sft_rows(ds: Dataset, candidate: CandidateSpec, renderer: Renderer, *, max_length: int) -> TuningRows:
    """``{"id", "prompt", "completion"}`` rows from the train split (see the module docstring)."""
    out = TuningRows(rows=[])
    for ex in ds.split(TRAIN):
        assert ds.split_of(ex) == TRAIN  # the guarantee this module exists to keep
        _check_template(ds, candidate, ex)
        turn = assistant_turn(ex)
        if isinstance(turn, str):
            out.skipped[turn] += 1
            continue
        req = request_for(candidate, ex)
        prompt = renderer.prompt(req)
        completion = renderer.completion(req, turn, prompt)
        if renderer.n_tokens(prompt + completion) + 1 > max_length:
            out.skipped[f"longer than max_length {max_length}"] += 1
            continue
        out.rows.append({"id": ex.id, "prompt": prompt, "completion": completion})
    out.source = _source(ds, len(out.rows))
    return out


def build_prompt_rows(ds: Dataset, candidate: CandidateSpec, renderer: Renderer) -> TuningRows:
    """``{"id", "prompt"}`` rows of the train split, for GRPO with :func:`~.rewards.suite_reward`."""
    out = TuningRows(rows=[])
    for ex in ds.split(TRAIN):
        _check_template(ds, candidate, ex)
        out.rows.append({"id": ex.id, "prompt": renderer.prompt(request_for(candidate, ex))})
    out.source = _source(ds, len(out.rows))
    return out


def _pair_example(row: PrefRow, file: str) -> Example:
    prompt = row.pair.prompt
    try:
        if isinstance(prompt, str):
            return Example(id=row.pair.id, input=prompt)
        return Example(id=row.pair.id, messages=list(prompt))
    except ValueError as e:
        raise UserError(f"not a valid prompt: {e}", file=file, line=row.line, field="prompt") from None


def build_dpo_rows(ds: Dataset, candidate: CandidateSpec, pairs: Sequence[PrefRow], renderer: Renderer, *,
                   max_length: int, file: str) -> TuningRows:
    """``{"id", "prompt", "chosen", "rejected", "margin"}`` rows; held-out rows never leak in.

    ``pairs`` are the rows of :func:`tunegate.checks.preference_file.load_preferences` — the one
    reader ``tunegate data check`` uses too, so both agree on what a valid file is. A pair whose
    ``id`` names a dataset row uses that row's full request (context, schema, tools) as prompt.
    """
    held_out_text = {ex.prompt_text().strip() for ex in ds if ds.split_of(ex) != TRAIN}
    out = TuningRows(rows=[])
    for row in pairs:
        pid = row.pair.id
        if pid in ds:
            ex = ds[pid]
            if ds.split_of(ex) != TRAIN:
                out.skipped[f"row in the {ds.split_of(ex)} split"] += 1
                continue
        else:
            if not row.prompt.strip():
                out.skipped["empty prompt"] += 1
                continue
            ex = _pair_example(row, file)
            if ex.prompt_text().strip() in held_out_text:
                out.skipped["prompt of a dev/test row"] += 1
                continue
        if row.chosen.strip() == row.rejected.strip():
            out.skipped["chosen equals rejected"] += 1
            continue
        if not row.chosen.strip() or not row.rejected.strip():
            out.skipped["empty chosen or rejected"] += 1
            continue
        missing = candidate.prompt.check_variables(ex)
        if missing:
            raise UserError(f"seed candidate needs template variable {{{{{missing[0]}}}}} but this pair has no "
                            "value for it", file=file, line=row.line, field="prompt")
        req = request_for(candidate, ex)
        prompt = renderer.prompt(req)
        chosen = renderer.completion(req, Message(role="assistant", content=row.chosen), prompt)
        rejected = renderer.completion(req, Message(role="assistant", content=row.rejected), prompt)
        if renderer.n_tokens(prompt) + max(renderer.n_tokens(chosen), renderer.n_tokens(rejected)) + 1 > max_length:
            out.skipped[f"longer than max_length {max_length}"] += 1
            continue
        margin = row.pair.margin
        out.rows.append({"id": pid, "prompt": prompt, "chosen": chosen, "rejected": rejected,
                         "margin": margin if margin is not None else 0.0})
    out.source = _source(ds, len(out.rows))
    return out
