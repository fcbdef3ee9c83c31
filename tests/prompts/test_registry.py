"""Prompt registry on a real SQLite store: versions, labels, history, refs, diff, compile, resolution."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.fakes import FakeBackend
from tunegate.backends.base import GenerationRequest
from tunegate.core import CandidateSpec, Dataset, Example, PromptTemplate
from tunegate.core.prompt import FewShot
from tunegate.engine.run.plan import plan_run
from tunegate.errors import UserError
from tunegate.evaluators.registry import load_suite
from tunegate.prompts import PromptRegistry, apply_version, parse_ref, resolve_candidate
from tunegate.store import migrate as store_mod
from tunegate.store.migrations import MIGRATIONS
from tunegate.store.sqlite import Store

BRIEF = PromptTemplate(system="Be brief.")
TERSE = PromptTemplate(system="Be very brief. Customer tier: {{tier}}.", user="Q: {{input}}")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "t.db")
    yield s
    s.close()


@pytest.fixture
def reg(store: Store) -> PromptRegistry:
    return PromptRegistry(store)


def test_versions_are_numbered_and_immutable(reg: PromptRegistry, store: Store) -> None:
    v1 = reg.commit("support", BRIEF, "first")
    raw_v1 = store.prompt_version("support", 1)
    v2 = reg.commit("support", TERSE, "terser", author="ana", lineage={"parent": "support@v1"})
    reg.label("support", "production", 2)
    assert (v1.version, v2.version, v2.ref) == (1, 2, "support@v2")
    assert store.prompt_version("support", 1) == raw_v1, "a later commit or label move must not touch v1"
    assert reg.get("support@v1").template == BRIEF and reg.get("support@v2").template == TERSE
    assert reg.get("support@v2").author == "ana" and reg.get("support@v2").lineage == {"parent": "support@v1"}
    with pytest.raises(ValidationError):
        v1.message = "rewritten"  # type: ignore[misc]
    assert [v.version for v in reg.versions("support")] == [1, 2]


def test_identical_commit_is_a_noop_that_says_so(reg: PromptRegistry, store: Store) -> None:
    v1 = reg.commit("support", BRIEF, "first")
    again = reg.commit("support", BRIEF.model_copy(update={"ref": "whatever@v9"}), "same text", labels=["staging"])
    assert again.reused and not v1.reused
    assert again.version == 1 and again.message == "first"
    assert again.labels == ["staging"], "labels given with an identical commit still move"
    assert len(store.prompt_versions("support")) == 1
    reg.commit("support", TERSE, "second")
    back = reg.commit("support", BRIEF, "revert to the first text")  # identical to v1 but not to latest
    assert (back.version, back.reused, back.hash) == (3, False, v1.hash)


def test_label_moves_are_recorded_in_order(reg: PromptRegistry, store: Store) -> None:
    reg.commit("support", BRIEF, "first", labels=["staging"])
    reg.commit("support", TERSE, "second", labels=["production"])
    move = reg.label("support", "staging", "v2")
    assert (move.previous, move.version, move.moved) == (1, 2, True)
    same = reg.label("support", "staging", 2)
    assert not same.moved and same.previous == 2
    reg.label("support", "production", 1)  # roll back
    assert reg.labels("support") == {"production": 1, "staging": 2}
    assert reg.get("support@v1").labels == ["production"] and reg.get("support@v2").labels == ["staging"]
    hist = [(e.kind, e.version, e.label, e.previous) for e in reg.history("support")]
    assert hist == [("commit", 1, None, None), ("label", 1, "staging", None),
                    ("commit", 2, None, None), ("label", 2, "production", None),
                    ("label", 2, "staging", 1), ("label", 1, "production", 2)]
    assert len(store.prompt_label_events("support")) == 4, "a no-op move records nothing"


@pytest.mark.parametrize(("ref", "version"), [
    ("support", 3), ("support@latest", 3), ("support@v2", 2), ("support@2", 2), ("support@production", 1),
    ("support@staging", 2), ("support@canary-eu.1", 3)])
def test_reference_forms(reg: PromptRegistry, ref: str, version: int) -> None:
    reg.commit("support", BRIEF, "one", labels=["production"])
    reg.commit("support", TERSE, "two", labels=["staging"])
    reg.commit("support", PromptTemplate(system="Three."), "three", labels=["canary-eu.1"])
    assert reg.get(ref).version == version


@pytest.mark.parametrize(("ref", "message"), [
    ("nosuch", "no prompt named 'nosuch'; known: other, support"),
    ("support@v7", "prompt 'support' has no version v7; versions: v1..v2"),
    ("support@prod", "prompt 'support' has no label 'prod'; labels: production→v1, latest→v2"),
    ("Support", "invalid prompt name 'Support'"),
    ("support@v0", "versions start at v1"),
    ("", "empty prompt reference"),
])
def test_unknown_references_list_what_exists(reg: PromptRegistry, ref: str, message: str) -> None:
    reg.commit("support", BRIEF, "one", labels=["production"])
    reg.commit("support", TERSE, "two")
    reg.commit("other", BRIEF, "x")
    with pytest.raises(UserError, match=re.escape(message)):
        reg.get(ref)


@pytest.mark.parametrize(("label", "message"), [
    ("latest", "reserved"), ("v3", "looks like a version"), ("3", "looks like a version"), ("Prod", "invalid label"),
    ("-x", "invalid label"), ("a b", "invalid label")])
def test_bad_labels_are_refused_and_nothing_moves(reg: PromptRegistry, store: Store, label: str, message: str) -> None:
    reg.commit("support", BRIEF, "one")
    with pytest.raises(UserError, match=message):
        reg.label("support", label, 1)
    with pytest.raises(UserError, match=message):
        reg.commit("support", TERSE, "two", labels=[label])
    assert store.prompt_label_events("support") == [] and len(store.prompt_versions("support")) == 1


def test_label_unknown_version_and_empty_message(reg: PromptRegistry, store: Store) -> None:
    reg.commit("support", BRIEF, "one")
    with pytest.raises(UserError, match=r"no version v5; versions: v1\.\.v1"):
        reg.label("support", "production", 5)
    with pytest.raises(UserError, match="needs a message"):
        reg.commit("support", TERSE, "  ")
    with pytest.raises(UserError, match="malformed placeholder"):
        reg.commit("support", PromptTemplate(system="{{ broken"), "bad")
    assert store.prompt_label_events("support") == [] and len(store.prompt_versions("support")) == 1


def test_parse_ref() -> None:
    assert str(parse_ref("a.b-c_d@v12")) == "a.b-c_d@v12" and parse_ref("a").label == "latest"


def test_diff_is_unified_over_system_user_and_few_shot(reg: PromptRegistry) -> None:
    reg.commit("support", BRIEF, "one")
    reg.commit("support", TERSE.model_copy(update={"few_shot": [FewShot(input="Hi", output="Hello.")]}), "two",
               labels=["production"])
    text = reg.diff("support@v1", "support@production")
    lines = text.splitlines()
    assert lines[:2] == ["--- support@v1", "+++ support@v2"]
    assert "-Be brief." in lines and "+Be very brief. Customer tier: {{tier}}." in lines
    assert "-{{input}}" in lines and "+Q: {{input}}" in lines
    assert "+[few_shot 1 input]" in lines and "+Hello." in lines
    assert reg.diff("support@1", "support@v1") == ""


def test_compile_is_strict_and_reports_unused(reg: PromptRegistry) -> None:
    reg.commit("support", TERSE.model_copy(update={"few_shot": [FewShot(input="Hi", output="Hello.")]}), "t")
    c = reg.compile("support", {"tier": "gold", "input": "Where is my parcel?", "lang": "fr"})
    assert [(m.role, m.content) for m in c.messages] == [
        ("system", "Be very brief. Customer tier: gold."), ("user", "Hi"), ("assistant", "Hello."),
        ("user", "Q: Where is my parcel?")]
    assert c.unused == ["lang"] and c.variables == ["tier", "input"] and c.ref == "support@v1"
    with pytest.raises(UserError, match=r"missing template variable \{\{tier\}\}") as e:
        reg.compile("support@v1", {"input": "x"})
    assert e.value.field == "variables.tier"
    dotted = reg.compile(PromptTemplate(user="{{metadata.tier}}: {{input}}"), {"tier": "gold", "input": "x"})
    assert dotted.messages[-1].content == "gold: x" and dotted.unused == []


def test_compile_against_a_row_matches_what_a_run_sends(reg: PromptRegistry) -> None:
    reg.commit("support", TERSE, "t")
    ex = Example(id="r1", input="Can I return shoes?", context="Returns within 30 days.", metadata={"tier": "gold"})
    c = reg.compile("support", {"lang": "fr"}, example=ex)
    assert c.messages == TERSE.render(ex) and c.row == "r1" and c.unused == ["lang"]
    assert "Returns within 30 days." in (c.messages[-1].content or "")
    overridden = reg.compile("support", {"tier": "silver"}, example=ex)
    assert "silver" in (overridden.messages[0].content or "")
    with pytest.raises(UserError, match="'input' is a field of row 'r1'"):
        reg.compile("support", {"input": "other"}, example=ex)
    with pytest.raises(UserError, match=r"\{\{tier\}\}.*row 'r1' has no value"):
        reg.compile("support", {}, example=Example(id="r1", input="x"))


def test_resolve_candidate_fills_content_and_keeps_identity_content_based(reg: PromptRegistry) -> None:
    reg.commit("support", BRIEF, "one", labels=["production"])
    spec = CandidateSpec(name="c", prompt=PromptTemplate(ref="support@production"), lineage={"team": "cx"})
    spec = spec.model_copy(update={"source": "cand.yaml"})
    got = resolve_candidate(spec, reg)
    assert got.prompt.system == "Be brief." and got.prompt.ref == "support@v1" and got.source == "cand.yaml"
    assert got.lineage["prompt_version"] == "support@v1" and got.lineage["prompt_ref"] == "support@production"
    assert got.lineage["team"] == "cx"
    assert got.hash == CandidateSpec(name="c", prompt=BRIEF).hash, "identity is over content, ref excluded"
    assert resolve_candidate(got, reg) == got, "resolving twice changes nothing"
    reg.commit("support", BRIEF.model_copy(update={"user": "Q: {{input}}"}), "two")
    reg.label("support", "production", 2)
    assert resolve_candidate(spec, reg).hash != got.hash, "a label moved to other text is another candidate"
    reg.label("support", "production", 1)
    assert resolve_candidate(spec, reg).hash == got.hash, "relabelling back to the same text: same candidate"
    v1 = reg.get("support@v1")
    assert apply_version(CandidateSpec(name="c"), v1).hash == got.hash


def test_resolve_candidate_errors_name_the_file_and_field(reg: PromptRegistry) -> None:
    reg.commit("support", BRIEF, "one")
    missing = CandidateSpec(prompt=PromptTemplate(ref="support@production")).model_copy(update={"source": "c.yaml"})
    with pytest.raises(UserError, match=r"c.yaml: prompt: cannot resolve 'support@production'.*no label"):
        resolve_candidate(missing, reg)
    both = CandidateSpec(prompt=PromptTemplate(ref="support@v1", system="inline")).model_copy(
        update={"source": "c.yaml"})
    with pytest.raises(UserError, match="remove system"):
        resolve_candidate(both, reg)
    tampered = resolve_candidate(CandidateSpec(prompt=PromptTemplate(ref="support@v1")), reg)
    tampered = tampered.model_copy(update={"prompt": tampered.prompt.model_copy(update={"system": "edited"})})
    with pytest.raises(UserError, match="differs from registry version support@v1"):
        resolve_candidate(tampered, reg)


def test_engine_refuses_an_unresolved_reference() -> None:
    ds = Dataset.of([Example(id="a", input="x", expected="X")], name="d")
    spec = CandidateSpec(name="c", model="fake", prompt=PromptTemplate(ref="support@production"))
    with pytest.raises(UserError, match="'support@production' is a registry reference that was not resolved"):
        plan_run(ds, load_suite("exact_match"), candidate=spec)


def test_api_runs_the_registry_text_a_label_points_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tunegate.api as api

    backends: list[FakeBackend] = []

    def fake_backend(spec: CandidateSpec) -> FakeBackend:
        def script(req: GenerationRequest) -> str:
            return req.messages[0].content or ""  # echo the system prompt the run rendered
        backends.append(FakeBackend(script))
        return backends[-1]

    monkeypatch.setattr(api, "make_backend", fake_backend)
    db = tmp_path / "t.db"
    with Store(db) as s:
        reg = PromptRegistry(s)
        reg.commit("support", BRIEF, "one", labels=["production"])
        reg.commit("support", PromptTemplate(system="Answer like a pirate."), "two")
    cand = tmp_path / "cand.yaml"
    cand.write_text("name: c\nmodel: fake\nprompt: support@production\n")
    ds = Dataset.of([Example(id=f"r{i}", input=f"q{i}", expected="Be brief.") for i in range(3)], name="d")
    s1 = api.run(ds, cand, evaluators="exact_match", db=db)
    assert {r.messages[0].content for r in backends[0].calls} == {"Be brief."}
    assert s1.evaluators["exact_match"]["mean"] == 1.0
    with Store(db) as s:
        PromptRegistry(s).label("support", "production", 2)
        stored = s.candidate(s.run(s1.run_id).candidate_hash)
    assert stored is not None and stored["lineage"]["prompt_version"] == "support@v1"
    s2 = api.run(ds, cand, evaluators="exact_match", db=db)
    assert {r.messages[0].content for r in backends[1].calls} == {"Answer like a pirate."}
    assert s2.run_id != s1.run_id and s2.evaluators["exact_match"]["mean"] == 0.0


def test_concurrent_commits_get_consecutive_versions(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    Store(db).close()
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            with Store(db) as s:
                reg = PromptRegistry(s)
                for i in range(8):
                    reg.commit("support", PromptTemplate(system=f"worker {k} text {i}"), f"{k}/{i}")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with Store(db) as s:
        assert [r["version"] for r in s.prompt_versions("support")] == list(range(1, 25))


def test_migration_brings_an_older_database_forward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "old.db"
    older = [m for m in MIGRATIONS if m[0] < "0003"]
    assert [n for n, _ in older] == ["0001_foundation", "0002_verdicts"]
    ds = Dataset.of([Example(id="a", input="x", expected="y")], name="d")
    with monkeypatch.context() as m:
        m.setattr(store_mod, "MIGRATIONS", older)
        with Store(db) as s:
            s.put_dataset(ds)
            s.put_verdict("run-a", "run-b", "pol-1", "PROMOTE", "{}")
            assert s.migrations() == ["0001_foundation", "0002_verdicts"]
    con = sqlite3.connect(db)
    assert con.execute("SELECT name FROM sqlite_master WHERE name='prompt_versions'").fetchone() is None
    con.close()
    with Store(db) as s:
        assert "0003_prompts" in s.migrations()
        assert s.dataset_rows(ds.hash)["a"]["expected"] == "y"
        assert s.db.execute("SELECT decision FROM verdicts").fetchone()[0] == "PROMOTE"
        v = PromptRegistry(s).commit("support", BRIEF, "first on a migrated store", labels=["production"])
        assert v.ref == "support@v1"
    with Store(db) as s:  # reopening applies nothing twice
        assert s.migrations() == [n for n, _ in MIGRATIONS]
        assert PromptRegistry(s).get("support@production").template == BRIEF
