"""One stored gate and its report folder for every test of this package (built once per session)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.report.helpers import make_gate
from tunegate.report.files import write_report


@pytest.fixture(scope="session")
def gate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Facts of :func:`tests.report.helpers.make_gate` plus ``res``, ``paths``, ``html``, ``rows``, ``verdict``."""
    tmp = tmp_path_factory.mktemp("gate")
    res, facts = make_gate(tmp)
    paths = write_report(res, tmp / "out")
    rows = [json.loads(x) for x in paths["rows.jsonl"].read_text().splitlines()]
    verdict = json.loads(paths["verdict.json"].read_text())
    return {**facts, "res": res, "paths": paths, "html": paths["report.html"], "rows": rows, "verdict": verdict,
            "tmp": tmp}
