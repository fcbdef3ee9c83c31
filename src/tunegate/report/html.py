"""``report.html``: one self-contained page a release decision can be made from.

Verdict first, then why (every rule in words), the forest plot of paired deltas with the rule
thresholds, the cohort × evaluator heatmap, a row browser (filters, search, side-by-side diff),
tuning panels where artifacts exist, and provenance. Everything is inline — styles, the row
browser's script, its data, the SVG charts — so the file opens from disk with no server and no
network; a Content-Security-Policy forbids any connection and any script but our own (by hash).

Escaping: text goes through Jinja2's autoescape or ``html.escape`` in the SVG builders; row data
sits in a ``<script type="application/json">`` block with ``<``, ``>``, ``&`` written as JSON
escapes, and the script writes it with ``textContent`` only. Model outputs are untrusted input.
"""

from __future__ import annotations

import base64
import hashlib
import json
import platform
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from tunegate._version import __version__
from tunegate.report.html_data import compact_rows, embed_json, evaluator_hash, verdict_view
from tunegate.report.html_svg import forest_plot, heatmap_table
from tunegate.report.html_tuning import tuning_panels

if TYPE_CHECKING:
    from jinja2 import Environment

    from tunegate.engine.gate.pairing import PairedRuns

__all__ = ["asset", "page_environment", "render_report_html", "report_context", "script_tag_hash"]


@cache
def asset(name: str) -> str:
    """Text of a file in ``tunegate/report/assets`` (package data)."""
    text = resources.files("tunegate.report").joinpath("assets", name).read_text(encoding="utf-8")
    if name.endswith((".js", ".css")) and "</script" in text.lower():
        raise RuntimeError(f"asset {name} must not contain '</script'")
    return text


def script_tag_hash(js: str) -> str:
    """CSP source for an inline script: ``sha256-<base64>`` of its exact text."""
    return "sha256-" + base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")


@cache
def page_environment() -> Environment:
    """Jinja2 environment over the asset templates, autoescaping everything."""
    from jinja2 import Environment, FunctionLoader, StrictUndefined

    loader = FunctionLoader(lambda name: asset(name) if name.endswith(".j2") else None)
    return Environment(loader=loader, autoescape=True, undefined=StrictUndefined, trim_blocks=False)


def report_context(paired: PairedRuns) -> dict[str, Any]:
    """Provenance the verdict dict does not carry: evaluator identities, machine, dataset source."""
    b, c = paired.baseline, paired.candidate
    return {"evaluators": list(b.evaluators), "dataset_source": b.meta.get("dataset_source"),
            "machine": c.meta.get("machine") or b.meta.get("machine"),
            "seeds": {"baseline": b.meta.get("seeds"), "candidate": c.meta.get("seeds")},
            "selection": c.selection, "run_versions": {"baseline": b.meta.get("tunegate_version"),
                                                       "candidate": c.meta.get("tunegate_version")},
            "started": {"baseline": b.started_at, "candidate": c.started_at}}


def _provenance(v: dict[str, Any], ctx: dict[str, Any]) -> list[tuple[str, str]]:
    b, c, pol = v.get("baseline") or {}, v.get("candidate") or {}, v.get("policy") or {}
    rows = v.get("rows") or {}

    def side(s: dict[str, Any]) -> str:
        return (f"{s.get('candidate_name')} · {s.get('candidate_hash')} · run {s.get('run_id')} · "
                f"{s.get('rows')} rows, {s.get('model_calls')} model calls, {s.get('cache_hits')} cache hits")

    out = [("dataset", f"{v.get('dataset_hash')}" + (f" ({ctx['dataset_source']})" if ctx.get("dataset_source")
                                                     else "")),
           ("candidate", side(c)), ("baseline", side(b)),
           ("policy", f"{pol.get('name')} v{pol.get('version')} · {pol.get('hash')} · {pol.get('source') or ''}"),
           ("statistics", f"alpha {pol.get('alpha')}, correction {pol.get('correction')}"),
           ("rows", f"{rows.get('paired_union')} paired; only in baseline {len(rows.get('only_in_baseline') or [])}, "
                    f"only in candidate {len(rows.get('only_in_candidate') or [])}")]
    if ctx.get("selection"):
        out.append(("selection", json.dumps(ctx["selection"], sort_keys=True)))
    if ctx.get("seeds"):
        out.append(("seeds", json.dumps(ctx["seeds"], sort_keys=True)))
    out.append(("tunegate", f"{v.get('tunegate_version')} (verdict) · runs "
                            f"{json.dumps(ctx.get('run_versions') or {}, sort_keys=True)} · report {__version__}"))
    machine = ctx.get("machine") or {"platform": platform.platform(), "python": platform.python_version()}
    out.append(("machine", json.dumps(machine, sort_keys=True)))
    out.append(("created", str(v.get("created_at"))))
    return out


def render_report_html(verdict: dict[str, Any], rows: list[dict[str, Any]], *, context: dict[str, Any] | None = None,
                       artifacts: dict[str, Any] | None = None, title: str | None = None,
                       dataset_rows: dict[str, dict[str, Any]] | None = None) -> str:
    """The page, from ``GateResult.to_dict()`` (or a stored verdict) and ``row_diffs`` records.

    ``context``: :func:`report_context` of the paired runs (provenance); ``artifacts``:
    :func:`tunegate.report.html_tuning.find_artifacts` (tuning panels); ``dataset_rows``: the
    stored dataset rows by id (``PairedRuns.rows_data``), for expected tool calls.
    """
    ctx = context or {}
    view = verdict_view(verdict)
    evaluators = [e for e in view["evaluators"] if e]
    data = {"evaluators": evaluators, "rows": compact_rows(rows, evaluators, dataset_rows)}
    js = asset("report.js")
    cohorts = sorted({c for r in rows for c in (r.get("cohorts") or [])})
    ids = [{"name": e.get("name"), "version": e.get("version"), "hash": evaluator_hash(e),
            "config": json.dumps(e.get("config") or {}, sort_keys=True, default=str)[:400]}
           for e in ctx.get("evaluators") or []]
    b, c = verdict.get("baseline") or {}, verdict.get("candidate") or {}
    title = title or f"{c.get('candidate_name') or c.get('run_id')} vs {b.get('candidate_name') or b.get('run_id')}"
    page = page_environment().get_template("report.html.j2").render(
        v=view, title=title, cand_name=c.get("candidate_name") or "?", base_name=b.get("candidate_name") or "?",
        n_rows=(verdict.get("rows") or {}).get("paired_union", len(rows)), policy=verdict.get("policy") or {},
        created_at=verdict.get("created_at", ""), version=__version__,
        forest=forest_plot(view["forest"]),
        floors=forest_plot(view["floors"], level=True) if view["floors"] else None,
        heatmap=heatmap_table(view["cohorts"], view["sizes"], evaluators, view["cells"], alpha=view["alpha"],
                              min_rows=view["min_rows"]),
        cohort_options=cohorts, panels=tuning_panels(verdict, artifacts or {}),
        provenance=_provenance(verdict, ctx), evaluator_ids=ids,
        css=Markup(asset("report.css")), js=Markup(js), script_hash=script_tag_hash(js),
        data_json=Markup(embed_json(data)))
    return str(page)
