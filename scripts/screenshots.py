"""Re-make the report screenshots in docs/img/ (used by docs/report.md).

Source of the report, in order of preference:

1. ``--from DIR``: a report folder holding ``report.html`` (e.g. ``tunegate-report/gate`` after
   ``make demo``);
2. ``--fake``: the same gate over the support example's test split, answered by the scripted fake
   backend of the unit tests (``tests/fakes.py``): each row is answered correctly (its expected JSON,
   tool call or reply) or wrongly (a truncated JSON object, a wrong tool, a vague reply) by a hash of
   candidate and row id, the incumbent right on ~55% of rows and the candidate on ~75%. Seconds to
   run; the page is real, the model behaviour is not;
3. otherwise a real gate over the shipped support example with the embedded SmolLM2 model — the
   incumbent (``examples/support/incumbent.yaml``) against the shipped candidate
   (``examples/support/candidate.yaml``) on the **test** split under ``examples/support/policy.yaml``
   — run into a temporary store (cached model calls make a re-run fast; minutes on an idle 2-core
   machine, much longer on a loaded one).

Screenshots are taken in Debian's headless Chromium (``/usr/bin/chromium``) through Playwright's
client, viewport 1400 px wide. Run: ``python scripts/screenshots.py [--from DIR] [--out docs/img]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def demo_report(work: Path, split: str | None) -> Path:
    """Gate the support example's candidate against its incumbent on the test split (real model)."""
    ex = REPO / "examples" / "support"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TUNEGATE_DB": os.environ.get("TUNEGATE_SCREENSHOT_DB", str(work / "store.db"))}
    cmd = [sys.executable, "-m", "tunegate.cli.main", "gate", "--dataset", str(ex / "dataset.jsonl"),
           "--baseline-candidate", str(ex / "incumbent.yaml"), "--candidate", str(ex / "candidate.yaml"),
           "--policy", str(ex / "policy.yaml"), *(["--split", split] if split else []),
           "--report-dir", str(work / "report")]
    print("running:", " ".join(cmd[2:]), flush=True)
    rc = subprocess.call(cmd, env=env, cwd=REPO)
    if rc not in (0, 1, 3):
        raise SystemExit(f"gate failed with exit code {rc}")
    return work / "report"


def fake_report(work: Path, split: str | None) -> Path:
    """The support example's test-split gate with the scripted fake backend (see the docstring)."""
    import hashlib
    import json

    sys.path.insert(0, str(REPO))
    from tests.fakes import FakeBackend

    from tunegate.core.candidate import load_candidate
    from tunegate.core.example import ToolCall
    from tunegate.core.loading import load_dataset
    from tunegate.core.policy import load_policy
    from tunegate.core.result import ModelOutput
    from tunegate.engine.gate.runs import gate_runs
    from tunegate.engine.run.executor import run_plan
    from tunegate.engine.run.plan import plan_run
    from tunegate.engine.run.suite import resolve_suite
    from tunegate.report.files import write_report
    from tunegate.store.sqlite import Store

    ex = REPO / "examples" / "support"
    ds = load_dataset(str(ex / "dataset.jsonl"))
    policy = load_policy(str(ex / "policy.yaml"))
    evs = list(dict.fromkeys(policy.gated_evaluators() + policy.cohort_evaluators()))
    suite = resolve_suite(evs, ds)
    rows = list(ds)

    def key(r: Any) -> str | None:
        """The text of the row's last user turn (its input, or the last user message)."""
        if r.input:
            return str(r.input)
        users = [m.content for m in r.messages or [] if m.role == "user" and m.content]
        return str(users[-1]) if users else None

    def script_for(name: str, right_pct: int) -> object:
        def script(req: object) -> ModelOutput:
            text = next(m.content for m in reversed(req.messages) if m.role == "user") or ""  # type: ignore[attr-defined]
            row = next(r for r in rows if (key(r) or "\0") in text)
            ok = int(hashlib.sha256(f"{name}:{row.id}".encode()).hexdigest(), 16) % 100 < right_pct
            if row.expected_tool_calls:
                calls = [ToolCall(name=c.name, arguments=dict(c.arguments)) for c in row.expected_tool_calls] \
                    if ok else [ToolCall(name="escalate_to_human", arguments={})]
                return ModelOutput(text="", tool_calls=calls)
            if row.json_schema is not None:
                full = json.dumps(row.expected, ensure_ascii=False)
                return ModelOutput(text=full if ok else full[: max(8, len(full) // 2)])
            exp = row.expected if isinstance(row.expected, str) else json.dumps(row.expected)
            return ModelOutput(text=exp if ok else "Let me check on that for you and get back to you soon.")
        return script

    with Store(work / "store.db") as store:
        ids = []
        for path, pct in ((ex / "incumbent.yaml", 55), (ex / "candidate.yaml", 75)):
            cand = load_candidate(str(path))
            plan = plan_run(ds, suite, candidate=cand, split=split)  # type: ignore[arg-type]
            ids.append(run_plan(plan, store, FakeBackend(script_for(cand.name, pct), name="scripted-fake")).run_id)  # type: ignore[arg-type]
        res = gate_runs(store, ids[0], ids[1], policy, record=False)
    write_report(res, work / "report")
    return work / "report"


def shoot(report: Path, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
        page.goto((report / "report.html").resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']", state="attached", timeout=60_000)
        # the sticky table of contents would cover the top of element screenshots
        page.evaluate("() => { document.querySelector('nav.toc').style.position = 'static'; }")

        def snap(name: str, selector: str | None = None) -> None:
            path = out / f"report-{name}.png"
            if selector is None:
                page.screenshot(path=str(path))
            else:
                page.locator(selector).screenshot(path=str(path))
            made.append(path)

        snap("verdict")  # the first screen: verdict, why, rules
        snap("forest", "#forest")
        if page.locator("#cohorts").count():
            snap("heatmap", "#cohorts")
        broke = page.locator("[data-filter='b']")
        flag = "b" if "(0)" not in broke.inner_text() else "c"
        page.click(f"[data-filter='{flag}']")
        if page.locator("#row-list details.row").count():
            page.click("#row-list details.row >> nth=0 >> summary")
            page.evaluate("document.querySelector('#rows').scrollIntoView()")
            snap("rows", "#rows")
        for panel in ("optimizer", "training", "forgetting", "contamination"):
            if page.locator(f"#panel-{panel}").count():
                snap(panel, f"#panel-{panel}")
        browser.close()
    return made


def main() -> int:
    ap = argparse.ArgumentParser(description="Re-make docs/img/report-*.png")
    ap.add_argument("--from", dest="src", type=Path, default=None, help="report folder with report.html")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    ap.add_argument("--fake", action="store_true", help="scripted fake backend instead of the embedded model")
    ap.add_argument("--split", choices=["train", "dev", "test", "all"], default="test",
                    help="rows gated (all: the 178 rows, so cohorts reach min_rows)")
    a = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found (apt-get install -y chromium)")
        return 2
    if a.src is not None:
        made = shoot(a.src, a.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            split = None if a.split == "all" else a.split
            made = shoot(fake_report(Path(tmp), split) if a.fake else demo_report(Path(tmp), split), a.out)
    for m in made:
        print(m.relative_to(REPO) if m.is_relative_to(REPO) else m)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
