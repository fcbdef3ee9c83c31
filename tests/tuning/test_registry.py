"""Optimizers are registered like evaluators and backends, so a plugin can add one."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from tunegate.errors import UserError
from tunegate.tuning import base as base_mod
from tunegate.tuning.base import TuneContext, load_optimizer
from tunegate.tuning.loop import LoopConfig
from tunegate.tuning.registry import ENTRY_POINT_GROUP, OPTIMIZERS, OptimizerRegistry, default_optimizers


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: int = 1


class _Noop:
    """A do-nothing plugin optimizer (the protocol: Settings, __init__(settings), optimize)."""

    name: ClassVar[str] = "noop"
    Settings: ClassVar[type[BaseModel]] = _Settings

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings

    async def optimize(self, ctx: TuneContext) -> None:
        return None


def test_builtins_are_registered_and_lazy() -> None:
    assert set(OPTIMIZERS) <= set(default_optimizers().names())
    assert ENTRY_POINT_GROUP == "tunegate.optimizers"
    assert load_optimizer("gepa").settings is not None


def test_a_plugin_optimizer_is_loadable_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = OptimizerRegistry()
    reg.add("noop", f"{__name__}:_Noop")
    assert reg.get("noop") is _Noop  # imported from its "module:Class" path on first use
    monkeypatch.setattr(base_mod, "default_optimizers", lambda: reg)
    opt = load_optimizer("noop", {"steps": 3})
    assert isinstance(opt, _Noop) and opt.settings.steps == 3  # type: ignore[attr-defined]
    with pytest.raises(UserError) as e:
        load_optimizer("noop", {"stepz": 3}, source="s.yaml")
    assert e.value.file == "s.yaml" and e.value.field == "settings.stepz"


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(UserError, match=r"unknown method 'nosuch'.*gepa") as e:
        load_optimizer("nosuch")
    assert e.value.field == "method"
    with pytest.raises(ValueError, match="unknown method"):
        LoopConfig(dataset="d", candidate="c", policy="p", method="nosuch")
    assert LoopConfig(dataset="d", candidate="c", policy="p", method="lora").method == "lora"
