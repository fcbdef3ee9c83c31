"""``tunegate report --index -o site/``: a browsable static site of every run and verdict in a store.

``index.html`` lists verdicts (newest first, decision, both candidates, policy, rule counts) and runs;
each verdict links to ``verdicts/<id>.html``, the same self-contained report a gate writes, rebuilt
from the stored verdict JSON and the stored rows (no model calls, no re-gating: the page shows the
decision exactly as it was recorded).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup

from tunegate._version import __version__
from tunegate.core.hashing import short
from tunegate.engine.gate.pairing import pair_runs
from tunegate.engine.gate.runs import row_diffs
from tunegate.errors import TunegateError
from tunegate.report.html import asset, page_environment, render_report_html, report_context
from tunegate.report.html_tuning import find_artifacts
from tunegate.store.sqlite import Store

__all__ = ["stored_verdicts", "write_index"]

_PILL = {"PROMOTE": "pass", "BLOCK": "fail", "INCONCLUSIVE": "undecided"}


def stored_verdicts(store: Store, limit: int = 200) -> list[dict[str, Any]]:
    """Recorded verdicts, newest first: id, runs, policy hash, decision, verdict JSON, created_at."""
    q = store.db.execute("SELECT id, baseline_run, candidate_run, policy_hash, decision, verdict, created_at "
                         "FROM verdicts ORDER BY created_at DESC, id LIMIT ?", (limit,))
    out = []
    for vid, b, c, ph, dec, vj, at in q.fetchall():
        try:
            v = json.loads(vj)
        except ValueError:
            v = {}
        out.append({"id": vid, "baseline_run": b, "candidate_run": c, "policy_hash": ph, "decision": dec,
                    "verdict": v if isinstance(v, dict) else {}, "created_at": at})
    return out


def _verdict_page(store: Store, rec: dict[str, Any]) -> str:
    paired = pair_runs(store, rec["baseline_run"], rec["candidate_run"])
    v = rec["verdict"]
    lineage = (store.candidate(paired.candidate.candidate_hash) or {}).get("lineage") or {}
    return render_report_html(v, row_diffs(paired), context=report_context(paired),
                              artifacts=find_artifacts(None, lineage), dataset_rows=paired.rows_data)


def write_index(store: Store, folder: str | Path, *, limit: int = 200) -> Path:
    """Write ``index.html`` and one report per verdict under ``folder``; returns the index path."""
    out = Path(folder)
    (out / "verdicts").mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}

    def name(h: str) -> str:
        if h not in names:
            names[h] = (store.candidate(h) or {}).get("name", "?")
        return names[h]

    verdicts = []
    for rec in stored_verdicts(store, limit):
        v = rec["verdict"]
        counts = Counter(r.get("status") for r in v.get("rules") or [])
        row: dict[str, Any] = {
            "decision": rec["decision"], "pill": _PILL.get(rec["decision"], "skipped"),
            "baseline_run": rec["baseline_run"], "candidate_run": rec["candidate_run"],
            "cand_name": (v.get("candidate") or {}).get("candidate_name") or "?",
            "base_name": (v.get("baseline") or {}).get("candidate_name") or "?",
            "policy": f"{(v.get('policy') or {}).get('name')} v{(v.get('policy') or {}).get('version')} "
                      f"({short(rec['policy_hash'], 10)})",
            "rules": ", ".join(f"{n} {s}" for s, n in counts.items()),
            "rows": (v.get("rows") or {}).get("paired_union"), "created_at": rec["created_at"][:19],
            "href": None, "why": ""}
        try:
            html = _verdict_page(store, rec)
        except TunegateError as e:  # a run was deleted or re-scored: list the verdict, say why no page
            row["why"] = str(e)
        else:
            (out / "verdicts" / f"{rec['id']}.html").write_text(html, encoding="utf-8")
            row["href"] = f"verdicts/{rec['id']}.html"
        verdicts.append(row)
    runs = [{"id": r.id, "status": r.status, "name": name(r.candidate_hash), "cand": short(r.candidate_hash, 12),
             "dataset": short(r.dataset_hash, 12), "rows": f"{r.rows_done}/{r.n_rows}",
             "evaluators": ", ".join(e.get("name", "?") for e in r.evaluators),
             "calls": f"{r.model_calls} / {r.cache_hits}", "started": r.started_at[:19]}
            for r in store.runs(limit)]
    page = page_environment().get_template("index.html.j2").render(
        verdicts=verdicts, runs=runs, store_path=str(store.path), version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"), css=Markup(asset("report.css")))
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
