"""The worklist as a plan, in headless Chromium: its controls keep the address in step without a reload, its regions
count slices from 1 as the slice browser does, a region opens the slice browser at the list's budget (the same one
in its review panel and downloads) with "next region" and "back to list", and an opened region is ticked."""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, urlsplit

from selenium import webdriver
from selenium.webdriver.common.by import By
from sqlalchemy import delete, select

from benchmarks.http_client import ADMIN, ensure_user
from pipeline.review.workflow import Role
from pipeline.store.database import make_engine, session_factory
from pipeline.store.review_schema import ReviewItem, ReviewTime
from pipeline.store.schema import Configuration
from tests.dashboard.conftest import SeededStore, browser_login
from tests.dashboard.test_browser import grid_rows, open_page, wait_for
from tests.dashboard.test_review_cycle import _click, _clocks

WORKLIST = "/worklist?configuration=Base&budget=2"


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_the_address_follows_the_controls_without_a_reload(browser: webdriver.Chrome, server: str,
                                                           sqlite_store: SeededStore) -> None:
    open_page(browser, server + WORKLIST)
    wait_for(browser, lambda: grid_rows(browser, "worklist-cases") or None, "the ranked cases")
    browser.execute_script("window.qaMarker = 1;")
    _click(browser, lambda: browser.find_element(By.XPATH, "//label[text()='minutes per patient']"),
           "a click on the time budget")
    wait_for(browser, lambda: "minutes" in _query(browser.current_url), "the time budget in the address")
    query = _query(browser.current_url)
    assert query["configuration"] == ["Base"] and query["minutes"] == ["5"] and "budget" not in query
    assert browser.execute_script("return window.qaMarker;") == 1, "the page did not reload"
    open_page(browser, browser.current_url)  # the copied address opens the same list
    wait_for(browser, lambda: "Base at 5 min per patient" in browser.find_element(By.ID, "worklist-summary").text,
             "the list at the address's time budget")


def test_a_region_opens_at_the_lists_budget_with_next_and_back_and_is_ticked(
        browser: webdriver.Chrome, server: str, sqlite_store: SeededStore) -> None:
    reviewer = f"plan-{uuid.uuid4().hex[:6]}"
    ensure_user(sqlite_store.url, reviewer, Role.REVIEWER)
    engine = make_engine(sqlite_store.url)
    try:
        with session_factory(engine).begin() as session:  # other tests' reviews would stop this user's clock
            base = session.scalars(select(Configuration.id).where(Configuration.name == "Base")).one()
            session.execute(delete(ReviewItem).where(ReviewItem.configuration_id == base))
        browser.delete_all_cookies()
        browser_login(browser, server, reviewer)
        open_page(browser, server + WORKLIST)
        rows = wait_for(browser, lambda: grid_rows(browser, "worklist-regions") or None, "the regions")
        for row in rows:  # slices are numbered from 1 and hold the region's voxel (0-based z in the address)
            first, last = (int(s) for s in row["slices"].split("–"))
            z = int(_query(row["open_href"])["at"][0].split(",")[0])
            assert 1 <= first <= z + 1 <= last
        start = next(r for r in rows if not r["opened"])
        following = rows[rows.index(start) + 1]
        open_page(browser, server + start["open_href"])
        position = wait_for(browser, lambda: browser.find_element(By.ID, "region-position").text, "the region bar")
        assert f"{rows.index(start) + 1} of {len(rows)} in the list at 2 % of ROI voxels" in position
        assert "2 % of ROI voxels" in browser.find_element(By.ID, "download-budget").text
        assert "value=0.02" in browser.find_element(By.ID, "download-regions").get_attribute("href")
        back = browser.find_element(By.ID, "region-back").get_attribute("href")
        assert _query(back)["configuration"] == ["Base"] and _query(back)["budget"] == ["2"]
        wait_for(browser, lambda: _clocks(sqlite_store.url, reviewer), "the region's clock (first activity report)")
        nxt = browser.find_element(By.ID, "region-next").get_attribute("href")
        assert nxt == server + following["open_href"]
        _click(browser, lambda: browser.find_element(By.ID, "region-back"), "a click on back to list")
        wait_for(browser, lambda: urlsplit(browser.current_url).path == "/worklist", "the worklist")
        ticked = wait_for(browser, lambda: [r for r in grid_rows(browser, "worklist-regions") if r["opened"]] or None,
                          "a ticked region")
        assert {(r["case"], r["region"]) for r in ticked} >= {(start["case"], start["region"])}
        assert all(r["opened"] == "✓" for r in ticked)
    finally:
        with session_factory(engine).begin() as session:
            session.execute(delete(ReviewTime))
        engine.dispose()
        browser.delete_all_cookies()
        browser_login(browser, server, ADMIN)


def test_the_slice_browser_budget_comes_from_the_address(browser: webdriver.Chrome, server: str,
                                                         sqlite_store: SeededStore) -> None:
    open_page(browser, server + WORKLIST)
    row = wait_for(browser, lambda: grid_rows(browser, "worklist-cases") or None, "the ranked cases")[0]
    href = re.sub(r"&?region=\d+", "", row["case_href"]) + "&budget=1"
    open_page(browser, server + href)
    text = wait_for(browser, lambda: browser.find_element(By.ID, "download-budget").text, "the downloads")
    assert "1 % of ROI voxels" in text and not browser.find_elements(By.ID, "region-nav")
    assert "value=0.01" in browser.find_element(By.ID, "download-regions").get_attribute("href")
