"""Write the report folder: summary.md, junit.xml, verdict.json, rows.jsonl, report.html."""

from __future__ import annotations

import json
from pathlib import Path

from tunegate.engine.gate.runs import GateResult, row_diffs
from tunegate.report.junit import InconclusiveMode, render_junit
from tunegate.report.markdown import render_markdown

__all__ = ["write_report"]


def write_report(res: GateResult, folder: str | Path, *, junit_inconclusive: InconclusiveMode = "failure"
                 ) -> dict[str, Path]:
    """Write every report file into ``folder`` (created); returns name → path.

    ``junit_inconclusive``: how undecided rules appear in junit.xml (a failure by default, or skipped).

    ``report.html`` is the self-contained page (tunegate.report.html); it picks up tuning
    artifacts (history.json, an adapter manifest) found in ``folder`` or its parent.
    """
    from tunegate.report.html import render_report_html, report_context
    from tunegate.report.html_tuning import find_artifacts

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rows = row_diffs(res.paired)
    paths = {"summary.md": out / "summary.md", "junit.xml": out / "junit.xml",
             "verdict.json": out / "verdict.json", "rows.jsonl": out / "rows.jsonl",
             "report.html": out / "report.html"}
    verdict = res.to_dict()
    paths["summary.md"].write_text(render_markdown(res, rows), encoding="utf-8")
    paths["junit.xml"].write_text(render_junit(res, inconclusive=junit_inconclusive), encoding="utf-8")
    paths["verdict.json"].write_text(json.dumps(verdict, indent=2, ensure_ascii=False, default=str) + "\n",
                                     encoding="utf-8")
    with paths["rows.jsonl"].open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    verdict = json.loads(json.dumps(verdict, default=str))  # exactly what verdict.json says
    ctx = report_context(res.paired)
    arts = find_artifacts(out, dataset_hash=verdict.get("dataset_hash"), dataset_source=ctx.get("dataset_source"))
    html = render_report_html(verdict, rows, context=ctx, artifacts=arts, dataset_rows=res.paired.rows_data)
    paths["report.html"].write_text(html, encoding="utf-8")
    return paths
