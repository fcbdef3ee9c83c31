"""Candidates: identity hashing; prompts: strict compile and rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunegate.core import CandidateSpec, Example, PromptTemplate, load_candidate, placeholders
from tunegate.errors import UserError


def test_identity_ignores_name_and_options_but_not_prompt_or_params() -> None:
    a = CandidateSpec(name="a", prompt=PromptTemplate(system="Be brief."))
    b = CandidateSpec(name="b", prompt=PromptTemplate(system="Be brief."), options={"threads": 2})
    c = CandidateSpec(name="a", prompt=PromptTemplate(system="Be very brief."))
    d = CandidateSpec(name="a", prompt=PromptTemplate(system="Be brief."), params={"max_tokens": 9})  # type: ignore[arg-type]
    assert a.hash == b.hash
    assert len({a.hash, c.hash, d.hash}) == 3


def test_adapter_identity_is_file_digest(tmp_path: Path) -> None:
    ad = tmp_path / "adapter"
    ad.mkdir()
    (ad / "adapter_model.safetensors").write_bytes(b"weights-1")
    c1 = CandidateSpec(adapter=str(ad)).hash
    (ad / "adapter_model.safetensors").write_bytes(b"weights-2")
    assert CandidateSpec(adapter=str(ad)).hash != c1


def test_placeholders_and_strict_render() -> None:
    assert placeholders("{{a}} and {{ b.c }} and {{a}}") == ["a", "b.c"]
    with pytest.raises(UserError, match="malformed placeholder"):
        placeholders("{{ a")
    t = PromptTemplate(system="Tier: {{tier}}", user="Q: {{input}}")
    ex = Example(id="1", input="hi", metadata={"tier": "gold"})
    msgs = t.render(ex)
    assert [m.content for m in msgs] == ["Tier: gold", "Q: hi"]
    with pytest.raises(UserError, match=r"\{\{tier\}\} has no value"):
        t.render(Example(id="2", input="hi"))
    assert t.check_variables(Example(id="2", input="hi")) == ["tier"]


def test_context_and_schema_are_added_unless_template_places_them() -> None:
    ex = Example(id="1", input="When?", context="Refunds take 5 days.", schema={"type": "object"})
    auto = PromptTemplate().render(ex)[-1].content or ""
    assert auto.startswith("Context:\nRefunds take 5 days.") and '{"type": "object"}' in auto
    manual = PromptTemplate(user="{{context}} || {{input}}", include_schema=False).render(ex)[-1].content
    assert manual == "Refunds take 5 days. || When?"


def test_few_shot_and_messages_rows() -> None:
    t = PromptTemplate(system="S", few_shot=[{"input": "q1", "output": "a1"}])  # type: ignore[list-item]
    ex = Example.model_validate({"id": "m", "messages": [{"role": "system", "content": "row-sys"},
                                                         {"role": "user", "content": "hello"}]})
    msgs = t.render(ex)
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0].content == "S\n\nrow-sys"


def test_load_candidate_yaml(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("name: inc\nprompt:\n  system: Hello\n  user: '{{input}}'\nparams: {temperature: 0.5, n: 3}\n")
    c = load_candidate(p)
    assert c.params.n == 3 and c.prompt.system == "Hello" and c.source == str(p)


def test_literal_closing_braces_are_allowed() -> None:
    t = PromptTemplate(system='Answer like {"name": "f", "arguments": {"a": 1}}')
    assert t.render(Example(id="1", input="q"))[0].content == 'Answer like {"name": "f", "arguments": {"a": 1}}'
