"""pytest plugin: assert a gate verdict in your own test suite.

Installed with tunegate and loaded by pytest through the ``pytest11`` entry point, so a team's
tests can make "the candidate may replace production" a test that fails CI when it is not::

    from tunegate.pytest_plugin import assert_promote

    def test_candidate_may_ship(tunegate_gate):
        verdict = tunegate_gate(baseline="prod.yaml", candidate="cand.yaml",
                                dataset="golden.jsonl", policy="policy.yaml")
        assert_promote(verdict)

    def test_last_nightly_gate():            # a verdict.json (or its report folder) from `tunegate gate`
        assert_promote("reports/nightly/")

``tunegate_gate`` gates stored run ids (``baseline="run-...3fa9c1"``; any unique part of an id) or,
with ``dataset=``, candidate files (runs that are missing are made, then cached). The store is
``--tunegate-db`` / the ``tunegate_db`` ini key / ``$TUNEGATE_DB``. The failure message lists the
decision, the reasons and every rule that did not pass, with its evidence. INCONCLUSIVE is a
failure for ``assert_promote`` — an undecided gate must not look green — and ``assert_not_blocked``
is there for suites that only want to stop regressions.

Nothing heavy is imported until a fixture or helper is used, so the plugin costs a pytest run that
does not use it nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tunegate.core.verdict import Verdict

__all__ = ["GateFn", "assert_decision", "assert_not_blocked", "assert_promote", "load_verdict", "tunegate_gate"]

#: What the ``tunegate_gate`` fixture returns: keyword arguments of :func:`tunegate.api.gate`.
GateFn = Callable[..., "Verdict"]
VerdictLike = Any  # Verdict | Mapping[str, Any] | str | Path


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tunegate", "tunegate gate verdicts")
    group.addoption("--tunegate-db", default=None,
                    help="tunegate store for the tunegate_gate fixture (default: ini tunegate_db, $TUNEGATE_DB).")
    parser.addini("tunegate_db", "tunegate store for the tunegate_gate fixture.", default="")


def load_verdict(source: VerdictLike) -> dict[str, Any]:
    """A verdict as a plain dict, from a Verdict, a mapping, a verdict.json path or a report folder."""
    if isinstance(source, Mapping):
        data = dict(source)
    elif isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            path = path / "verdict.json"
        if not path.exists():
            raise FileNotFoundError(f"no verdict at {path} (run `tunegate gate --report-dir DIR` first)")
        data = json.loads(path.read_text(encoding="utf-8"))
    elif hasattr(source, "model_dump"):
        data = source.model_dump(mode="json")
    else:
        raise TypeError(f"expected a Verdict, a dict or a verdict.json path, got {type(source).__name__}")
    inner = data.get("verdict")
    if "decision" not in data and isinstance(inner, Mapping):  # a wrapper around the verdict
        data = dict(inner)
    if "decision" not in data:
        raise ValueError("not a tunegate verdict: no 'decision' field")
    return data


def _explain(v: Mapping[str, Any]) -> str:
    lines = [f"tunegate gate: {v['decision']}" + (f" (policy {v.get('policy_name')} v{v.get('policy_version')})"
                                                if v.get("policy_name") else "")]
    lines += [f"  - {r}" for r in v.get("reasons", [])[:8]]
    open_rules = [r for r in v.get("rules", []) if r.get("status") != "pass"]
    if open_rules:
        lines.append("rules not passed:")
        for r in open_rules[:12]:
            extra = f"; rows needed ≈ {r['rows_needed']:,}" if r.get("rows_needed") else ""
            lines.append(f"  {r.get('name', '?')} [{r.get('status')}] {r.get('evaluator') or ''} "
                         f"{r.get('rule', '')}: {r.get('evidence', '')}{extra}")
    return "\n".join(lines)


def assert_decision(verdict: VerdictLike, allowed: str | Iterable[str]) -> dict[str, Any]:
    """Fail (AssertionError with the reasons and the open rules) unless the decision is ``allowed``."""
    v = load_verdict(verdict)
    ok = {allowed} if isinstance(allowed, str) else set(allowed)
    unknown = ok - {"PROMOTE", "BLOCK", "INCONCLUSIVE"}
    if unknown:
        raise ValueError(f"unknown decision(s) {sorted(unknown)}; use PROMOTE, BLOCK or INCONCLUSIVE")
    if v["decision"] not in ok:
        raise AssertionError(f"expected {' or '.join(sorted(ok))}\n{_explain(v)}")
    return v


def assert_promote(verdict: VerdictLike) -> dict[str, Any]:
    """The candidate may replace the baseline: PROMOTE, and nothing else (INCONCLUSIVE fails)."""
    return assert_decision(verdict, "PROMOTE")


def assert_not_blocked(verdict: VerdictLike) -> dict[str, Any]:
    """No rule failed with confidence: PROMOTE or INCONCLUSIVE (for regression-only suites)."""
    return assert_decision(verdict, {"PROMOTE", "INCONCLUSIVE"})


@pytest.fixture
def tunegate_gate(request: pytest.FixtureRequest) -> GateFn:
    """Gate with the project's store: ``tunegate_gate(baseline=..., candidate=..., policy=..., dataset=...)``.

    Takes the keyword arguments of :func:`tunegate.api.gate` and returns the Verdict; ``db`` defaults
    to ``--tunegate-db``, then the ``tunegate_db`` ini key, then ``$TUNEGATE_DB``.
    """
    db = request.config.getoption("--tunegate-db") or request.config.getini("tunegate_db") or None

    def gate(**kw: Any) -> Verdict:
        from tunegate.api import gate as api_gate

        if db is not None and "db" not in kw:
            kw["db"] = db
        return api_gate(**kw)

    return gate
