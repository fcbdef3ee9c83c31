"""Shared fixtures. Public datasets live beside the repo in ../shared/datasets; tests that need
them skip with a clear reason when the folder is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = (REPO / ".." / "shared" / "datasets").resolve()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def shared_dataset(name: str) -> Path:
    """Path of ../shared/datasets/<name>, or skip the test when it is not there."""
    p = SHARED_DATASETS / name
    if not p.exists():
        pytest.skip(f"public dataset {name!r} not found at {p} (../shared/datasets is absent)")
    return p


@pytest.fixture
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated TUNEGATE_DB for tests that touch the store (model cache stays shared)."""
    monkeypatch.setenv("TUNEGATE_DB", str(tmp_path / "tunegate.db"))
    return tmp_path
