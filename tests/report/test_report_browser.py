"""report.html in a real headless Chromium: opens clean and offline, says what verdict.json says,
draws one heatmap cell per cohort × evaluator, filters exactly, and never runs row text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.report.browser import Opened, launch, open_page
from tests.report.helpers import XSS
from tunegate.cli.main import main

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("report-browser")]  # one browser, one worker


@pytest.fixture(scope="module")
def browser(gate: dict[str, Any]) -> Iterator[Any]:
    # after the gate: Playwright's sync client keeps an event loop running in this thread, so the
    # runs (asyncio.run) must be made before the browser starts
    yield from launch()


@pytest.fixture(scope="module")
def opened(browser: Any, gate: dict[str, Any]) -> Iterator[Opened]:
    o = open_page(browser, gate["html"])
    yield o
    o.page.context.close()


def _matched(page: Any, n: int) -> None:
    """Wait until the row browser reports ``n`` matching rows (search is debounced)."""
    from playwright.sync_api import expect

    expect(page.locator("#rows-status")).to_have_attribute("data-matched", str(n))


def _search_one(page: Any, row_id: str) -> None:
    """Search for ``row_id`` and wait until it is the only row listed."""
    from playwright.sync_api import expect

    page.fill("#search", row_id)
    expect(page.locator("#row-list details.row")).to_have_count(1)
    expect(page.locator("#row-list details.row")).to_have_attribute("data-id", row_id)


def _visible_ids(o: Opened) -> list[str]:
    o.page.select_option("#pagesize", "1000")
    return list(o.page.eval_on_selector_all("#row-list details.row", "els => els.map(e => e.dataset.id)"))


def test_opens_with_no_console_errors_and_no_network(opened: Opened) -> None:
    assert opened.console_errors == []
    assert opened.blocked == []
    assert all(u.startswith(("file://", "data:")) for u in opened.requests), opened.requests
    assert opened.dialogs == []


def test_verdict_and_rules_match_verdict_json(opened: Opened, gate: dict[str, Any]) -> None:
    v = gate["verdict"]
    assert opened.page.inner_text("#decision").strip() == v["decision"]
    assert opened.page.get_attribute("body", "data-decision") == v["decision"]
    shown = opened.page.eval_on_selector_all(
        "#rules tbody tr", "els => els.map(e => [e.cells[0].innerText.trim(), e.dataset.status])")
    assert sorted(map(tuple, shown)) == sorted((r["name"], r["status"]) for r in v["rules"])
    reasons = opened.page.eval_on_selector_all("#reasons li", "els => els.map(e => e.innerText.trim())")
    assert reasons == [r.strip() for r in v["reasons"]]
    undecided = [r for r in v["rules"] if r["status"] == "undecided" and r.get("rows_needed")]
    for r in undecided:
        assert f"about {r['rows_needed']} paired rows" in opened.page.inner_text("#rules")


def test_heatmap_has_one_cell_per_cohort_and_evaluator(opened: Opened, gate: dict[str, Any]) -> None:
    comp = gate["verdict"]["comparison"]
    cells = opened.page.eval_on_selector_all(
        "table.heatmap td.hm-cell", "els => els.map(e => [e.dataset.cohort, e.dataset.evaluator, e.className])")
    pairs = [(c, e) for c, e, _ in cells]
    expected = {(c, e["evaluator"]) for c in comp["cohorts"] for e in comp["evaluators"]}
    assert len(pairs) == len(expected) and set(pairs) == expected
    small = {(c, e) for c, e, cls in cells if "small" in cls}
    assert small == {("tiny", e["evaluator"]) for e in comp["evaluators"]}  # 5 rows < min_rows 20
    for c, e, cls in cells:  # significance marks follow the corrected p-values of verdict.json
        cell = next(x for ev in comp["evaluators"] if ev["evaluator"] == e for x in ev["cells"] if x["cohort"] == c)
        if "small" not in cls and cell["p_adjusted"] is not None:
            assert ("sig-" in cls) == (cell["p_adjusted"] < comp["alpha"]), (c, e, cls)


def test_forest_plot_has_every_evaluator_and_thresholds(opened: Opened, gate: dict[str, Any]) -> None:
    names = opened.page.eval_on_selector_all("svg.forest g.forest-row", "els => els.map(e => e.dataset.evaluator)")
    assert names == [e["evaluator"] for e in gate["verdict"]["comparison"]["evaluators"]]
    assert opened.page.locator("svg.forest line.threshold").count() >= 2  # improve (0) and non_inferior (-2 pt)
    # the floor rule bounds the candidate's mean: its own level chart, the minimum as a tick
    floor = next(r for r in gate["verdict"]["rules"] if r["rule"] == "floor")
    assert opened.page.eval_on_selector_all("svg.floors g.forest-row", "els => els.map(e => e.dataset.evaluator)") \
        == ["exact_match"]
    tick = opened.page.locator("svg.floors line.threshold title").text_content() or ""
    assert f"floor {floor['threshold'] * 100:.1f} % ({floor['status']})" in tick
    value = opened.page.locator("svg.floors g.forest-row text.value").text_content() or ""
    assert value.startswith(f"{floor['estimate'] * 100:.1f} [")


@pytest.mark.parametrize(("flag", "pick"), [
    ("b", lambda r: "broke" in r["flips"].values()),
    ("f", lambda r: "fixed" in r["flips"].values() and "broke" not in r["flips"].values()),
])
def test_filters_show_exactly_their_rows(opened: Opened, gate: dict[str, Any], flag: str, pick: Any) -> None:
    want = [r["id"] for r in gate["rows"] if pick(r)]
    assert want, "fixture must have rows of this kind"
    opened.page.click(f"[data-filter='{flag}']")
    assert _visible_ids(opened) == want
    assert opened.page.get_attribute("#rows-status", "data-matched") == str(len(want))
    opened.page.click("[data-filter='all']")


def test_errored_filter_and_cohort_and_search(opened: Opened, gate: dict[str, Any]) -> None:
    p = opened.page
    p.click("[data-filter='x']")
    assert set(_visible_ids(opened)) == gate["missing"]
    p.click("[data-filter='all']")
    p.select_option("#cohort", "tiny")
    assert _visible_ids(opened) == [r["id"] for r in gate["rows"] if "tiny" in r["cohorts"]]
    p.select_option("#cohort", "")
    _search_one(p, "refunds-0012")
    assert _visible_ids(opened) == ["refunds-0012"]
    p.fill("#search", "")
    _matched(p, len(gate["rows"]))


def test_row_detail_diff_json_and_scores(opened: Opened, gate: dict[str, Any]) -> None:
    p = opened.page
    broke = next(r for r in gate["rows"] if "broke" in r["flips"].values())
    _search_one(p, broke["id"])
    p.click("#row-list details.row >> summary")
    # the diff is drawn when the row opens: wait for it (count() alone does not wait)
    p.locator("#row-list pre.base del").first.wait_for()
    p.locator("#row-list pre.cand ins").first.wait_for()
    from playwright.sync_api import expect

    expect(p.locator("#row-list table.scores tbody tr")).to_have_count(len(gate["verdict"]["comparison"]["evaluators"]))
    reason = broke["candidate"]["scores"]["exact_match"]["reason"]
    assert reason and reason in p.inner_text("#row-list table.scores")
    json_row = next(r for r in gate["rows"] if (r["candidate"]["output"] or "").startswith('{"answer"'))
    _search_one(p, json_row["id"])
    p.click("#row-list details.row >> summary")
    assert '\n  "answer": "refund"' in p.inner_text("#row-list pre.cand")  # pretty-printed
    p.fill("#search", "")


def test_script_in_a_row_is_inert(browser: Any, gate: dict[str, Any]) -> None:
    raw = gate["html"].read_text()
    assert XSS not in raw and "</script><script>window.__pwned" not in raw
    o = open_page(browser, gate["html"])
    try:
        p = o.page
        _search_one(p, gate["xss_id"])
        p.click("#row-list details.row >> summary")
        assert XSS in p.inner_text("#row-list pre.cand")  # shown as text, exactly
        assert p.evaluate("window.__pwned === undefined")
        assert p.locator("#row-list img").count() == 0
        assert o.dialogs == [] and o.console_errors == []
    finally:
        o.page.context.close()


def test_index_site_opens_and_links_every_verdict(browser: Any, gate: dict[str, Any]) -> None:
    site = gate["tmp"] / "site"
    assert main(["--db", str(gate["db"]), "report", "--index", "-o", str(site)]) == 0
    o = open_page(browser, site / "index.html", wait_ready=False)
    try:
        links = o.page.eval_on_selector_all("#verdict-table a", "els => els.map(e => e.getAttribute('href'))")
        assert len(links) == 1 and (site / links[0]).is_file()
        assert o.console_errors == [] and o.blocked == []
        assert o.page.inner_text("#verdict-table tbody tr td:first-child").strip() == gate["verdict"]["decision"]
    finally:
        o.page.context.close()
    o = open_page(browser, site / links[0])
    try:
        assert o.console_errors == [] and o.blocked == []
        assert o.page.inner_text("#decision").strip() == gate["verdict"]["decision"]
    finally:
        o.page.context.close()


def test_dashboard_page_opens_clean(browser: Any, tmp_path: Path) -> None:
    from tests.report.test_html import DASH
    from tunegate.report.html_dashboard import render_dashboard

    page = tmp_path / "dashboard.html"
    page.write_text(render_dashboard(DASH))
    o = open_page(browser, page, wait_ready=False)
    try:
        assert o.console_errors == [] and o.blocked == []
        assert o.page.locator("section.route table.arms tbody tr").count() == 2
    finally:
        o.page.context.close()
