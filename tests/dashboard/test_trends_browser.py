"""The trend page in headless Chromium against the seeded SQLite store: the admin sets levels for one configuration
through the form, the run's point turns into a "beyond action" mark on the chart, the run on the runs page, the
cases on the overview and on the worklist are marked; clearing the levels takes every mark away again."""

from __future__ import annotations

from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.dashboard.test_browser import figure, grid_rows, open_page, shot, wait_for

CONFIGURATION = "Base"


def _markers(driver: webdriver.Chrome) -> dict[str, int]:
    """Trace name → number of points of the trend chart's marker traces."""
    shown = figure(driver, "trend-graph")
    return {t["name"]: len(t["y"]) for t in shown["data"] if t.get("mode") == "markers"}


def _set_bound(driver: webdriver.Chrome, name: str, value: str) -> None:
    field = driver.find_element(By.ID, f"levels-{name}")
    field.clear()
    field.send_keys(value)


def test_levels_set_on_the_trend_page_mark_the_run_and_its_cases(browser: webdriver.Chrome, server: str,
                                                                 screenshots: Path) -> None:
    open_page(browser, server + "/trends")
    assert wait_for(browser, lambda: _markers(browser) or None, "the trend chart") == {"within tolerance": 1}
    assert "no levels set" in browser.find_element(By.ID, "trend-summary").text

    _set_bound(browser, "tolerance_high", "0.01")
    _set_bound(browser, "action_high", "0.02")
    browser.find_element(By.ID, "levels-this-configuration").click()
    browser.find_element(By.ID, "levels-save").click()
    alert = wait_for(browser, lambda: browser.find_element(By.ID, "levels-alert").text, "the levels saved")
    assert alert == f"Set the levels of {CONFIGURATION} Mean entropy (ROI)."
    assert wait_for(browser, lambda: _markers(browser) == {"beyond action": 1}, "the marked point")
    shapes = figure(browser, "trend-graph")["layout"]["shapes"]
    assert [s["y0"] for s in shapes if s["type"] == "line"] == [0.02]  # the action level, dashed
    rows = grid_rows(browser, "levels-grid")
    assert [(r["quantity"], r["configuration"], r["tolerance_high"], r["action_high"]) for r in rows] == [
        ("mean_entropy_roi", CONFIGURATION, 0.01, 0.02)]
    shot(browser, screenshots, "trends_01_beyond_action")

    try:
        open_page(browser, server + "/runs")
        runs = wait_for(browser, lambda: grid_rows(browser, "runs-grid") or None, "the runs")
        assert {r["run"]: r["levels"] for r in runs} == {3: "", 2: "", 1: "beyond action"}
        assert runs[-1]["levels_line"].startswith("run 1: 1 of 1 values out of tolerance, 1 beyond action: Base ")
        shot(browser, screenshots, "trends_02_runs")

        open_page(browser, server + "/")
        cases = wait_for(browser, lambda: grid_rows(browser, "case-grid") or None, "the overview")
        marked = {r["case"] for r in cases if r["levels"] == "beyond action"}
        assert marked and marked <= {r["case"] for r in cases}

        open_page(browser, server + f"/worklist?configuration={CONFIGURATION}")
        listed = wait_for(browser, lambda: grid_rows(browser, "worklist-cases") or None, "the worklist")
        assert {r["name"] for r in listed if r["levels"] == "beyond action"} == marked & {r["name"] for r in listed}
        shot(browser, screenshots, "trends_03_worklist")
    finally:
        open_page(browser, server + "/trends")
        wait_for(browser, lambda: _markers(browser) or None, "the trend chart")
        browser.find_element(By.ID, "levels-this-configuration").click()
        browser.find_element(By.ID, "levels-clear").click()
        alert = wait_for(browser, lambda: browser.find_element(By.ID, "levels-alert").text, "the levels cleared")
    assert alert == f"Cleared the levels of {CONFIGURATION} Mean entropy (ROI)."
    assert wait_for(browser, lambda: _markers(browser) == {"within tolerance": 1}, "the point unmarked")
    assert grid_rows(browser, "levels-grid") == []
