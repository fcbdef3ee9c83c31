"""Re-make the report screenshots in docs/img/ (used by docs/report.md).

Source of the report, in order of preference:

1. ``--from DIR``: a report folder holding ``report.html`` (e.g. ``tunegate-report/gate`` after
   ``make demo``);
2. otherwise a real gate over the shipped support example with the embedded SmolLM2 model — the
   incumbent (``examples/support/incumbent.yaml``) against the shipped candidate
   (``examples/support/candidate.yaml``) on the **test** split under ``examples/support/policy.yaml``
   — run into a temporary store (cached model calls make a re-run fast).

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

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def demo_report(work: Path) -> Path:
    """Gate the support example's candidate against its incumbent on the test split (real model)."""
    ex = REPO / "examples" / "support"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TUNEGATE_DB": os.environ.get("TUNEGATE_SCREENSHOT_DB", str(work / "store.db"))}
    cmd = [sys.executable, "-m", "tunegate.cli.main", "gate", "--dataset", str(ex / "dataset.jsonl"),
           "--baseline-candidate", str(ex / "incumbent.yaml"), "--candidate", str(ex / "candidate.yaml"),
           "--policy", str(ex / "policy.yaml"), "--split", "test", "--report-dir", str(work / "report")]
    print("running:", " ".join(cmd[2:]), flush=True)
    rc = subprocess.call(cmd, env=env, cwd=REPO)
    if rc not in (0, 1, 3):
        raise SystemExit(f"gate failed with exit code {rc}")
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
    a = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found (apt-get install -y chromium)")
        return 2
    if a.src is not None:
        made = shoot(a.src, a.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            made = shoot(demo_report(Path(tmp)), a.out)
    for m in made:
        print(m.relative_to(REPO) if m.is_relative_to(REPO) else m)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
