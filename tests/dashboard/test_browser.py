"""Every page in headless Chromium against the seeded SQLite store: load, filter, sort, export, click from the
comparison scatter to a patient, scroll slices with the wheel and keys, W/L presets, overlays, budget, probe,
regions, shortcuts, runs and not-found. Screenshots are saved to ``var/screenshots``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from benchmarks.http_client import ADMIN
from qa_dashboard import tables
from tests.dashboard.conftest import PLAN, SeededStore, browser_login

TIMEOUT = 40
SLICES = PLAN.map_shape[0]


def wait_for(driver: webdriver.Chrome, condition: Callable[[], Any], what: str) -> Any:
    """Poll ``condition`` until it returns a truthy value (JS errors and missing elements count as not yet)."""
    def check(_: webdriver.Chrome) -> Any:
        try:
            return condition()
        except Exception:  # the page is still rendering
            return None

    return WebDriverWait(driver, TIMEOUT, poll_frequency=0.2).until(check, message=f"timed out waiting for {what}")


def figure(driver: webdriver.Chrome, graph: str) -> dict[str, Any]:
    """The figure Plotly currently shows in dcc.Graph ``graph`` (data and layout)."""
    return driver.execute_script(
        "const gd = document.querySelector(`#${arguments[0]} .js-plotly-plot`);"
        "return gd && gd.data ? {data: gd.data, layout: gd.layout} : null;", graph)


def title(driver: webdriver.Chrome, graph: str) -> str:
    annotations = figure(driver, graph)["layout"]["annotations"]
    return next(a["text"] for a in annotations if " · " in a["text"])


def overlay(driver: webdriver.Chrome, graph: str = "view-a-axial") -> str:
    return next(t["source"] for t in figure(driver, graph)["data"] if t["name"] == "overlay")


def grid_rows(driver: webdriver.Chrome, grid: str) -> list[dict[str, Any]]:
    """The grid's rows as the user sees them (after its filters and sorting), from the grid's own API."""
    return driver.execute_script(
        "const rows = []; dash_ag_grid.getApi(arguments[0]).forEachNodeAfterFilterAndSort(n => rows.push(n.data));"
        "return rows;", grid)


def shot(driver: webdriver.Chrome, screenshots: Path, name: str) -> None:
    path = screenshots / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000


def open_page(driver: webdriver.Chrome, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda: driver.find_element(By.ID, "disclaimer").is_displayed(), "the app shell")


def test_overview_lists_every_case_and_opens_one(browser: webdriver.Chrome, server: str, screenshots: Path,
                                                 sqlite_store: SeededStore) -> None:
    open_page(browser, server + "/")
    rows = wait_for(browser, lambda: grid_rows(browser, "case-grid") or None, "the case grid")
    assert len(rows) == PLAN.patients + 2
    assert "not a medical device" in browser.find_element(By.ID, "disclaimer").text
    shot(browser, screenshots, "01_overview")
    browser.find_element(By.LINK_TEXT, "phantom_9000").click()
    wait_for(browser, lambda: "axial" in title(browser, "view-a-axial"), "the slice browser")
    assert urlparse(browser.current_url).path == "/patient/phantom_9000"  # the query follows the view (its state)


def test_cohort_table_filters_sorts_and_exports(browser: webdriver.Chrome, server: str, screenshots: Path,
                                                downloads: Path) -> None:
    open_page(browser, server + "/cohort")
    rows = wait_for(browser, lambda: grid_rows(browser, "cohort-grid") or None, "the cohort table")
    assert [r["configuration"] for r in rows[:4]] == list(PLAN.configurations)
    assert all(r["n_repeats"] == PLAN.repeats for r in rows)
    assert browser.find_elements(By.CSS_SELECTOR, "#cohort-grid .qa-best, #cohort-grid .qa-tied"), (
        "best (or tied-for-best) values are marked")
    wait_for(browser, lambda: len(figure(browser, "cohort-reliability")["data"]) == 1 + len(PLAN.configurations),
             "the reliability diagram with every configuration")
    shot(browser, screenshots, "02_cohort")
    # filter: keep repeat 0 only (untick the other repeats in the dropdown)
    browser.find_element(By.ID, "cohort-repeats").click()
    options = wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "[role=listbox] [role=option]")
                       or None, "the repeat options")
    for option in options:
        if option.text.strip() != "repeat 0":
            option.click()
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    wait_for(browser, lambda: not browser.find_elements(By.CSS_SELECTOR, "[role=listbox]"), "the dropdown closed")
    wait_for(browser, lambda: all(r["n_repeats"] == 1 for r in grid_rows(browser, "cohort-grid")),
             "one repeat per row")
    # sort by ECE (ascending): the best ECE comes first
    ece = next(m.name for m in tables.table_metrics() if "ece" in (m.name, m.whole_case))
    header = browser.find_element(By.CSS_SELECTOR, f"#cohort-grid .ag-header-cell[col-id='{ece}']")
    header.click()
    wait_for(browser, lambda: next(r for r in grid_rows(browser, "cohort-grid") if r[ece] is not None)[f"{ece}_mark"]
             in ("best", "tied"), "the best ECE first, marked best or tied")
    best = browser.find_elements(By.CSS_SELECTOR, f"#cohort-grid .ag-cell.qa-best[col-id='{ece}'], "
                                                  f"#cohort-grid .ag-cell.qa-tied[col-id='{ece}']")[0]
    assert best.text.startswith(("★ 0.", "≈ 0.")) and " ± " not in best.text, "one repeat: no SD over repeats"
    browser.find_element(By.ID, "cohort-csv-button").click()
    csv = wait_for(browser, lambda: next(downloads.glob("cohort_calibration*.csv"), None), "the CSV download")
    text = csv.read_text()
    assert text.startswith("configuration,structure,dsc_mean,dsc_sd,dsc_low,dsc_high,dsc_n,dsc_mark")
    assert "DE+TS" in text


def test_comparison_scatter_click_opens_the_patient(browser: webdriver.Chrome, server: str,
                                                    screenshots: Path) -> None:
    open_page(browser, server + "/compare")
    for graph in ("compare-ueo", "compare-recall", "compare-precision"):
        wait_for(browser, lambda g=graph: len(figure(browser, g)["data"]) == 8, f"{graph} with bands")
    wait_for(browser, lambda: "Wilcoxon" in browser.find_element(By.ID, "compare-paired-table").text,
             "the paired comparison")
    shot(browser, screenshots, "03_compare_curves")
    browser.set_window_size(1600, 2100)  # the whole page, paired comparison included
    shot(browser, screenshots, "04_compare_full")
    browser.set_window_size(1600, 1300)
    time.sleep(0.5)  # plotly redraws the resized graphs: points found before the resize are stale
    points = wait_for(browser, lambda: browser.find_elements(
        By.CSS_SELECTOR, "#compare-scatter .scatterlayer .trace:last-of-type .point") or None, "scatter points")
    cases = figure(browser, "compare-scatter")["data"][1]["customdata"]
    ActionChains(browser).move_to_element(points[0]).click().perform()
    wait_for(browser, lambda: "/patient/" in browser.current_url, "navigation to the patient")
    assert browser.current_url.split("/patient/")[1].split("?")[0] in cases
    assert "a=" in browser.current_url and "b=" in browser.current_url
    wait_for(browser, lambda: figure(browser, "view-b-axial")["data"], "configuration B side by side")
    assert browser.find_element(By.ID, "viewer-b-column").is_displayed()


def test_slice_browser_wheel_keys_presets_overlays_budget_probe(browser: webdriver.Chrome, server: str,
                                                                screenshots: Path) -> None:
    open_page(browser, server + "/patient/phantom_9000")
    middle = SLICES // 2 + 1
    wait_for(browser, lambda: title(browser, "view-a-axial").startswith(f"axial {middle}/{SLICES}"), "the axial view")
    axial = browser.find_element(By.ID, "view-a-axial")

    def at(number: int) -> None:
        wait_for(browser, lambda: title(browser, "view-a-axial").startswith(f"axial {number}/{SLICES}"),
                 f"axial slice {number}")

    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(axial), 0, 120).perform()
    at(middle + 1)
    time.sleep(0.1)  # the wheel is rate-limited to one slice per 40 ms
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(axial), 0, -120).perform()
    at(middle)
    coronal = title(browser, "view-a-coronal")
    browser.execute_script("arguments[0].closest('.qa-view').focus();", axial)  # keys act on the focused view
    for key, expected in ((Keys.ARROW_DOWN, middle + 1), (Keys.ARROW_UP, middle), (Keys.PAGE_UP, middle - 10),
                          (Keys.HOME, 1), (Keys.PAGE_DOWN, 11), (Keys.END, SLICES)):
        ActionChains(browser).send_keys(key).perform()
        at(expected)
    assert title(browser, "view-a-coronal") == coronal, "moving the axial slice leaves the coronal picture"
    wait_for(browser, lambda: figure(browser, "view-a-coronal")["layout"]["shapes"][0]["y0"] < 3.0 * 1,
             "the coronal crosshair at the top slice")
    before = overlay(browser)
    ActionChains(browser).send_keys("2").perform()
    wait_for(browser, lambda: "lung" in browser.find_element(By.ID, "viewer-wl").text, "the lung preset")
    browser.find_element(By.CSS_SELECTOR, "label[for='_dbcprivate_checklist_viewer-overlays_input_error']").click()
    wait_for(browser, lambda: overlay(browser) != before, "the error map drawn")
    with_error = overlay(browser)
    thumb = browser.find_element(By.CSS_SELECTOR, "#viewer-budget [role=slider]")
    browser.execute_script("arguments[0].focus();", thumb)
    ActionChains(browser).send_keys(Keys.HOME, *[Keys.ARROW_RIGHT] * 5).perform()  # 0, then 5 steps of 0.1 %
    wait_for(browser, lambda: thumb.get_attribute("aria-valuenow") == "0.005", "the budget at 0.5 %")
    wait_for(browser, lambda: overlay(browser) != with_error, "the mask redrawn at the smaller budget")
    wait_for(browser, lambda: "flagged mL at 0.5 %" in browser.find_element(By.ID, "viewer-metrics").text,
             "the metrics at the new budget")
    ActionChains(browser).move_to_element_with_offset(axial, 0, 0).perform()
    wait_for(browser, lambda: "HU" in browser.find_element(By.ID, "viewer-probe-table").text, "the hover probe")
    probe = browser.find_element(By.ID, "viewer-probe-table").text
    assert "position (mm, LPS)" in probe and "reference" in probe and "Base+TS" not in probe
    browser.find_element(By.ID, "viewer-next-region").click()
    info = wait_for(browser, lambda: browser.find_element(By.ID, "viewer-region-info").text.startswith("region 1 of")
                    and browser.find_element(By.ID, "viewer-region-info").text, "the first uncertain region")
    first, last = (int(s) for s in info.split("slices ")[1].split(",")[0].split("–"))
    wait_for(browser, lambda: first <= int(title(browser, "view-a-axial").split()[1].split("/")[0]) <= last,
             "the axial view inside the region")
    shot(browser, screenshots, "05_patient")
    browser.execute_script("arguments[0].closest('.qa-view').focus();", axial)
    ActionChains(browser).send_keys("?").perform()
    modal = wait_for(browser, lambda: browser.find_element(By.CSS_SELECTOR, ".modal-dialog").text, "the shortcuts")
    assert "PgUp / PgDn" in modal and "lung (1500/-600)" in modal
    shot(browser, screenshots, "06_shortcuts")


def test_runs_page_filters_failures_by_run(browser: webdriver.Chrome, server: str, screenshots: Path) -> None:
    open_page(browser, server + "/runs")
    rows = wait_for(browser, lambda: grid_rows(browser, "runs-grid") or None, "the runs")
    assert [r["status"] for r in rows] == ["failed", "succeeded", "succeeded"]
    failure = wait_for(browser, lambda: grid_rows(browser, "failures-grid"), "the failures")[0]
    assert (failure["case"], failure["worker"]) == ("phantom_broken", "tcp://10.0.0.8:40123")
    workers = wait_for(browser, lambda: grid_rows(browser, "workers-grid") or None, "the cases per worker")
    assert [(w["worker"], w["failed"]) for w in workers] == [
        ("tcp://10.0.0.8:40123", 1), ("tcp://10.0.0.7:40123", 0), ("tcp://10.0.0.8:40123", 0)]
    browser.find_elements(By.CSS_SELECTOR, "#runs-grid .ag-center-cols-container .ag-row")[1].click()
    wait_for(browser, lambda: "run 2: 0 failed case(s)" in browser.find_element(By.ID, "failures-title").text,
             "the failures of run 2")
    assert grid_rows(browser, "failures-grid") == [] and grid_rows(browser, "workers-grid") == []
    shot(browser, screenshots, "07_runs")


@pytest.mark.parametrize("path", ["/patient/nobody", "/no/such/page", "/patient/phantom_9000?a=abc"])
def test_unknown_addresses_show_not_found(browser: webdriver.Chrome, server: str, path: str) -> None:
    open_page(browser, server + path)
    wait_for(browser, lambda: browser.find_element(By.ID, "not-found").is_displayed(), "the not-found content")


def test_navbar_names_the_user_and_logout_returns_to_the_login_form(browser: webdriver.Chrome, server: str) -> None:
    open_page(browser, server + "/runs")
    assert browser.find_element(By.ID, "signed-in-user").text == ADMIN
    assert browser.find_element(By.ID, "signed-in-role").text == "admin"
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, lambda: browser.find_element(By.ID, "login-form").is_displayed(), "the login form")
    browser.get(server + "/cohort")
    wait_for(browser, lambda: "/login?next=/cohort" in browser.current_url, "the redirect to the login form")
    browser_login(browser, server)  # signed in again for any test that runs after this one
