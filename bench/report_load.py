"""How fast does a 10,000-row report.html become interactive in a real browser, and how big is it?

Builds a real gate at production size through the normal path (a 10,000-row dataset in 8 cohorts,
two scored runs with exact_match + token_f1, ``gate_runs``, ``write_report``), then opens the
report in Debian's headless Chromium (Playwright's client pointed at /usr/bin/chromium) several
times, each in a fresh context, and reads:

* **DOMContentLoaded** and **interactive**: navigation start → the row browser has parsed the
  embedded rows and drawn its first page (``window.__tunegateReadyAt``, set by report.js);
* **filter "broke"**, **1,000 rows per page** and **search** (synchronous work after the event);
* the file size, and the Python time to render the page.

Peer arm (``--plotly-js PATH`` to a ``plotly.min.js``, e.g. from the ``plotly`` wheel's
``package_data``): the same forest plot and heatmap drawn by Plotly with its bundle inlined — what
"Plotly, script inlined" would cost before any row is shown. Skipped when no bundle is given.

Nothing is asserted; figures go to stdout and ``bench/results/report_load.json``. They are from
this run on this shared machine; read the ratios. Run: ``python bench/report_load.py [--rows N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tunegate.core import Dataset, Example
from tunegate.core.outputs import load_outputs
from tunegate.core.policy import GatePolicy
from tunegate.engine.gate.runs import gate_runs
from tunegate.engine.run.executor import run_plan
from tunegate.engine.run.plan import plan_run
from tunegate.evaluators.registry import load_suite
from tunegate.report.files import write_report
from tunegate.store.sqlite import Store

__all__ = ["build_report", "main"]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
COHORTS = ["billing", "refunds", "shipping", "account", "returns", "warranty", "es", "tiny"]
_TEXT = ("the order was shipped on tuesday and should arrive within three business days please keep your "
         "tracking number handy refund requests take five to seven days to process")
WORDS = _TEXT.split()


def _text(i: int, n: int) -> str:
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(n))


def build_report(rows: int, folder: Path) -> dict[str, Any]:
    """A real gate of ``rows`` rows written to ``folder/out``; returns timings and sizes."""
    exs = []
    for i in range(rows):
        co = COHORTS[i % (len(COHORTS) - 1)] if i >= 10 else "tiny"
        exs.append(Example(id=f"r{i:05d}", input=f"Question {i}: {_text(i, 12 + i % 30)}?",
                           expected=_text(i, 8 + i % 20), cohorts=[co]))
    ds = Dataset.of(exs, name="report-load")
    for side, mod in (("b", 2), ("c", 3)):
        with (folder / f"{side}.jsonl").open("w") as fh:
            for k, ex in enumerate(ds):
                good = k % mod != 1
                out = ex.expected if good else _text(k + 3, 10 + k % 60)
                if k % 97 == 0:
                    out = json.dumps({"answer": out, "confidence": round((k % 10) / 10, 1), "tags": [side, str(k)]})
                fh.write(json.dumps({"id": ex.id, "output": out}) + "\n")
    policy = GatePolicy.model_validate({
        "name": "load", "headline": {"evaluator": "exact_match", "rule": "improve"},
        "guards": [{"evaluator": "token_f1", "rule": "non_inferior", "margin": 0.02}],
        "cohorts": {"rule": "non_inferior", "margin": 0.05, "min_rows": 20}})
    t0 = time.perf_counter()
    with Store(folder / "store.db") as store:
        ids = [run_plan(plan_run(ds, load_suite("exact_match,token_f1"),
                                 outputs=load_outputs(folder / f"{s}.jsonl")), store).run_id for s in ("b", "c")]
        t1 = time.perf_counter()
        res = gate_runs(store, ids[0], ids[1], policy, record=False)
    t2 = time.perf_counter()
    paths = write_report(res, folder / "out")
    t3 = time.perf_counter()
    return {"rows": rows, "score_s": round(t1 - t0, 2), "gate_s": round(t2 - t1, 2),
            "write_report_s": round(t3 - t2, 2), "html": str(paths["report.html"]),
            "html_bytes": paths["report.html"].stat().st_size, "rows_jsonl_bytes": paths["rows.jsonl"].stat().st_size,
            "verdict": str(paths["verdict.json"]), "decision": res.verdict.decision}


def plotly_page(verdict_path: Path, plotly_js: Path, out: Path) -> Path:
    """The forest plot and heatmap drawn by Plotly, bundle inlined (the peer arm)."""
    v = json.loads(verdict_path.read_text())
    comp = v["comparison"]
    evs = [e["evaluator"] for e in comp["evaluators"]]
    over = [next(c for c in e["cells"] if c["cohort"] == "*") for e in comp["evaluators"]]
    z = [[next((c["delta"] for c in e["cells"] if c["cohort"] == co), None) for e in comp["evaluators"]]
         for co in comp["cohorts"]]
    spec = {"forest": {"x": [c["delta"] for c in over], "y": evs,
                       "lo": [c["delta"] - c["ci_low"] for c in over], "hi": [c["ci_high"] - c["delta"] for c in over]},
            "heat": {"z": z, "x": evs, "y": comp["cohorts"]}}
    js = plotly_js.read_text(encoding="utf-8")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><script>" + js + "</script></head><body>"
            "<div id='f' style='width:760px;height:300px'></div><div id='h' style='width:760px;height:400px'></div>"
            "<script>var S=" + json.dumps(spec) + ";var n=0;function done(){if(++n===2){"
            "window.__tunegateReadyAt=performance.now();document.body.dataset.ready='1';}}"
            "Plotly.newPlot('f',[{type:'scatter',mode:'markers',x:S.forest.x,y:S.forest.y,error_x:{type:'data',"
            "symmetric:false,array:S.forest.hi,arrayminus:S.forest.lo}}]).then(done);"
            "Plotly.newPlot('h',[{type:'heatmap',z:S.heat.z,x:S.heat.x,y:S.heat.y,colorscale:'RdBu'}]).then(done);"
            "</script></body></html>")
    out.write_text(page, encoding="utf-8")
    return out


def measure(browser: Any, path: Path, repeats: int, interactions: bool) -> dict[str, Any]:
    runs: list[dict[str, float]] = []
    for _ in range(repeats):
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        errors: list[str] = []
        page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        page.goto(path.resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']", state="attached", timeout=120_000)
        r = page.evaluate("""() => ({dcl: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
                                     ready: window.__tunegateReadyAt})""")
        if interactions:
            r.update(page.evaluate("""() => {
                const t = (f) => { const a = performance.now(); f(); return performance.now() - a; };
                const broke = t(() => document.querySelector("[data-filter='b']").click());
                const all = t(() => document.querySelector("[data-filter='all']").click());
                const sel = document.getElementById('pagesize');
                const page1000 = t(() => { sel.value = '1000'; sel.dispatchEvent(new Event('change')); });
                sel.value = '50'; sel.dispatchEvent(new Event('change'));
                return {broke_ms: broke, all_ms: all, page1000_ms: page1000};
            }"""))
            t0 = time.perf_counter()
            page.fill("#search", "r09999")
            page.wait_for_selector("#rows-status[data-matched='1']", state="attached")
            r["search_ms_incl_debounce"] = (time.perf_counter() - t0) * 1000
        r["console_errors"] = len(errors)
        runs.append(r)
        ctx.close()
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float))]
    return {k: round(statistics.median(float(x[k]) for x in runs), 1) for k in keys} | {"repeats": repeats}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--plotly-js", type=Path, default=None, help="plotly.min.js to inline for the peer arm")
    ap.add_argument("--out", type=Path, default=Path("bench/results/report_load.json"))
    a = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"skipped: {CHROMIUM} not found (apt-get install -y chromium)")
        return 0
    from playwright.sync_api import sync_playwright

    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        built = build_report(a.rows, Path(tmp))  # before Playwright: its sync client owns an event loop
        peer = plotly_page(Path(built["verdict"]), a.plotly_js, Path(tmp) / "plotly.html") \
            if a.plotly_js and a.plotly_js.is_file() else None
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            ours = measure(browser, Path(built["html"]), a.repeats, True)
            theirs = measure(browser, peer, a.repeats, False) if peer else None
            version = browser.version
            browser.close()
        peer_bytes = peer.stat().st_size if peer else None
    result = {"when": time.strftime("%Y-%m-%d %H:%M"), "chromium": version, "cpus": os.cpu_count(),
              "loadavg_1_5_15": [round(x, 2) for x in load], "build": {k: v for k, v in built.items()
                                                                      if k not in ("html", "verdict")},
              "tunegate_report": ours, "plotly_inlined_charts_only": theirs, "plotly_page_bytes": peer_bytes}
    print(f"rows {a.rows} · report.html {built['html_bytes'] / 1e6:.2f} MB (rows.jsonl "
          f"{built['rows_jsonl_bytes'] / 1e6:.2f} MB) · write_report {built['write_report_s']} s · "
          f"Chromium {version} · load {load[0]:.1f}")
    print(f"tunegate report.html: DOMContentLoaded {ours['dcl']} ms, interactive {ours['ready']} ms, "
          f"filter broke {ours.get('broke_ms')} ms, 1000/page {ours.get('page1000_ms')} ms, "
          f"search {ours.get('search_ms_incl_debounce')} ms incl. 120 ms debounce (median of {a.repeats})")
    if theirs and peer_bytes:
        print(f"Plotly inlined, 2 charts, no rows: {peer_bytes / 1e6:.2f} MB, charts drawn at {theirs['ready']} ms "
              f"→ ours is {theirs['ready'] / ours['ready']:.1f}x faster to interactive with all {a.rows} rows")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
