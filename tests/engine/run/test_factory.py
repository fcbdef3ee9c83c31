"""Backends are registered like evaluators: built-ins and plugins through one registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import FakeBackend
from tunegate.backends.base import Backend
from tunegate.backends.registry import ENTRY_POINT_GROUP, BackendRegistry, default_backends
from tunegate.core.candidate import CandidateSpec
from tunegate.engine.run.factory import make_backend, make_judge_backend
from tunegate.errors import UserError


def test_builtins_are_registered() -> None:
    assert {"local", "openai"} <= set(default_backends().names())
    b = make_backend(CandidateSpec(backend="openai", model="m", base_url="http://127.0.0.1:9/v1",
                                   options={"concurrency": 2}))
    assert b.kind == "openai" and b.max_batch == 2


def test_a_plugin_kind_builds_through_the_registry() -> None:
    reg = BackendRegistry()
    made: list[CandidateSpec] = []

    def build(spec: CandidateSpec) -> Backend:
        made.append(spec)
        return FakeBackend(name=spec.model)

    reg.add("myserver", build)
    spec = CandidateSpec(backend="myserver", model="m1")  # core accepts any well-formed kind name
    backend = reg.create(spec)
    assert backend.identity() == {"kind": "fake", "model": "m1"} and made == [spec]
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("myserver", lambda s: FakeBackend())


def test_unknown_kind_is_the_candidate_files_error() -> None:
    spec = CandidateSpec(backend="nosuch", model="m", source="cand.yaml")
    with pytest.raises(UserError, match=rf"unknown backend 'nosuch'.*{ENTRY_POINT_GROUP}") as e:
        make_backend(spec)
    assert e.value.file == "cand.yaml" and e.value.field == "backend"


def test_bad_options_name_the_field() -> None:
    with pytest.raises(UserError) as e:
        make_backend(CandidateSpec(backend="local", options={"batch_size": "8"}, source="c.yaml"))
    assert e.value.field == "options.batch_size"
    # a candidate file may ask for worker lanes (fast engine); a bad count names options.workers
    assert make_backend(CandidateSpec(backend="local", options={"workers": 2})).workers == 2  # type: ignore[attr-defined]
    with pytest.raises(UserError) as e:
        make_backend(CandidateSpec(backend="local", options={"workers": 0}, source="c.yaml"))
    assert e.value.file == "c.yaml" and e.value.field == "options.workers"
    with pytest.raises(UserError, match="unknown option"):
        make_backend(CandidateSpec(backend="openai", model="m", base_url="http://x/v1", options={"nope": 1}))


def test_judge_backends_use_the_same_registry() -> None:
    b = make_judge_backend({"backend": "openai", "model": "judge", "base_url": "http://127.0.0.1:9/v1"})
    assert b.identity()["model"] == "judge"
    with pytest.raises(UserError, match="unknown backend"):
        make_judge_backend({"backend": "nosuch", "model": "judge"})


def _register_plugin(reg: BackendRegistry) -> None:
    """What a plugin package's ``tunegate.backends`` entry point points at."""
    reg.add("plugin-kind", lambda spec: FakeBackend(name=f"plugin:{spec.model}"))


def test_an_installed_entry_point_adds_a_backend_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    from tunegate.backends import registry as registry_mod
    from tunegate.core import plugins

    ep = EntryPoint(name="myplugin", value=f"{__name__}:_register_plugin", group=ENTRY_POINT_GROUP)
    builtin = EntryPoint(name="builtin", value="tunegate.backends.builtin:register", group=ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [builtin, ep] if group == ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry_mod, "_DEFAULT", None)  # rebuilt from the (patched) installed metadata
    backend = make_backend(CandidateSpec(backend="plugin-kind", model="m"))
    assert backend.identity()["model"] == "plugin:m"
    assert default_backends().names() == ["local", "openai", "plugin-kind"]


def test_the_engine_suite_builder_injects_the_judge_factory(tmp_path: Path) -> None:
    """No global setter: a ``judge:`` mapping in an evaluator file gets its backend from the engine."""
    from tunegate.core.dataset import Dataset
    from tunegate.core.example import Example
    from tunegate.engine.run.suite import resolve_suite

    f = tmp_path / "evaluators.yaml"
    f.write_text("custom:\n  rubric: Is it right?\n  judge: {backend: openai, model: judge-m, "
                 "base_url: 'http://127.0.0.1:9/v1'}\n")
    [ev] = resolve_suite(str(f), Dataset.of([Example(id="a", input="q")], name="d"))
    ident = ev.identity()["judge"]["backend"]
    assert ident["kind"] == "openai" and ident["model"] == "judge-m"
