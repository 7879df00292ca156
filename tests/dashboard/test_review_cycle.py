"""A review cycle in headless Chromium by two users, as the README's demo walk-through has it: a reviewer signs in,
opens the worklist, follows a region to the slice browser, starts a review of an item and accepts it (approval is
not offered to the reviewer); then an approver signs in, approves it and switches to a time budget. The header's
unreviewed count follows. And the worklist's time estimate: the labelled placeholder rate until enough reviews are
measured, the time the browser reported for a region and an item, then the measured median."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from benchmarks.http_client import ADMIN, ensure_user
from pipeline.review.workflow import Role
from pipeline.store.database import make_engine, session_factory
from pipeline.store.review_schema import ReviewItem, ReviewTime, User
from pipeline.store.schema import Configuration
from tests.dashboard.conftest import SeededStore, browser_login
from tests.dashboard.test_browser import grid_rows, open_page, shot, wait_for

WORKLIST = "/worklist?configuration=Base&budget=2"


def _click(driver: webdriver.Chrome, find: Callable[[], WebElement], what: str) -> None:
    """Scroll the element to the middle of the window and click it, retrying while the page re-renders over it."""
    def attempt() -> bool:
        element = find()
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        element.click()
        return True

    wait_for(driver, attempt, what)


def _select(driver: webdriver.Chrome, row_id: str) -> None:
    """Tick the row's checkbox as a user would (the row scrolled into view first, again at each try: the grid may
    redraw its rows in between)."""
    driver.execute_script("dash_ag_grid.getApi('review-items').deselectAll();")
    box = f"#review-items .ag-row[row-id='{row_id}'] .ag-selection-checkbox .ag-checkbox-input-wrapper"

    def find() -> WebElement:
        driver.execute_script("const api = dash_ag_grid.getApi('review-items');"
                              "api.ensureNodeVisible(api.getRowNode(arguments[0]));", row_id)
        return driver.find_element(By.CSS_SELECTOR, box)

    _click(driver, find, "a click on the row's checkbox")
    wait_for(driver, lambda: driver.execute_script(
        "return dash_ag_grid.getApi('review-items').getSelectedRows().length === 1"), "the selection")


def _act(driver: webdriver.Chrome, button: str, expected: str) -> None:
    _click(driver, lambda: driver.find_element(By.ID, button), f"a click on {button}")
    wait_for(driver, lambda: expected in driver.find_element(By.ID, "review-alert").text, f"'{expected}'")


def _state_badge(driver: webdriver.Chrome, row_id: str, field: str) -> tuple[str, set[str]]:
    """The rendered cell of the item's ``field``: the badge's text and classes (QATrack+-style state badges)."""
    cell = f"#review-items .ag-row[row-id='{row_id}'] [col-id='{field}'] .badge"
    driver.execute_script("dash_ag_grid.getApi('review-items').ensureColumnVisible(arguments[0]);", field)
    badge = wait_for(driver, lambda: driver.find_element(By.CSS_SELECTOR, cell), f"the {field} badge")
    return badge.text, set(badge.get_attribute("class").split())


def _state(driver: webdriver.Chrome, row_id: str) -> str:
    return next(r["state"] for r in grid_rows(driver, "review-items") if r["id"] == row_id)


def _badge(driver: webdriver.Chrome) -> int:
    text = wait_for(driver, lambda: re.fullmatch(r"(\d+) unreviewed", driver.find_element(
        By.ID, "unreviewed-badge").text), "the unreviewed badge")
    return int(text.group(1))


def test_a_reviewer_accepts_and_a_second_user_approves(browser: webdriver.Chrome, server: str, screenshots: Path,
                                                       sqlite_store: SeededStore) -> None:
    reviewer, approver = f"rev-{uuid.uuid4().hex[:6]}", f"appr-{uuid.uuid4().hex[:6]}"
    ensure_user(sqlite_store.url, reviewer, Role.REVIEWER)
    ensure_user(sqlite_store.url, approver, Role.APPROVER)
    try:
        browser.delete_all_cookies()
        browser_login(browser, server, reviewer)
        open_page(browser, server + WORKLIST)
        cases = wait_for(browser, lambda: grid_rows(browser, "worklist-cases") or None, "the ranked cases")
        assert [c["rank"] for c in cases] == list(range(1, len(cases) + 1))
        rows = wait_for(browser, lambda: grid_rows(browser, "review-items") or None, "the review items")
        item = next(r for r in rows if r["state"] == "pending" and r["regions"] > 0)
        unreviewed = _badge(browser)
        assert browser.find_element(By.ID, "review-approve").get_attribute("disabled") is not None
        shot(browser, screenshots, "08_worklist")

        first = grid_rows(browser, "worklist-regions")[0]
        assert (first["case_rank"], first["region"]) == (1, 1), "regions are listed best first"
        link = browser.find_element(By.CSS_SELECTOR, "#worklist-regions .ag-row[row-index='0'] a")
        target = link.get_attribute("href")
        assert re.search(r"/patient/[^?]+\?a=\d+&at=\d+%2C\d+%2C\d+&region=1&budget=2$", target), target
        link.click()
        wait_for(browser, lambda: browser.current_url == target, "the slice browser at the region")
        panel = wait_for(browser, lambda: [r for r in grid_rows(browser, "review-items")
                                           if browser.find_elements(By.ID, "viewer")] or None,
                         "the case's review panel below the slice browser")
        assert {r["case"] for r in panel} == {first["case"]}
        assert first["structure"] in {r["structure"] for r in panel}
        assert "/export/regions/" in browser.find_element(By.ID, "download-regions").get_attribute("href")

        open_page(browser, server + WORKLIST)
        wait_for(browser, lambda: grid_rows(browser, "review-items") or None, "the review items")
        _select(browser, item["id"])
        _act(browser, "review-start", "now in_review")
        _select(browser, item["id"])
        _act(browser, "review-accept", "now reviewed (accepted)")
        assert _state(browser, item["id"]) == "reviewed"
        assert _state_badge(browser, item["id"], "state") == ("reviewed", {"badge", "rounded-pill", "qa-state",
                                                                          "text-bg-info"})
        wait_for(browser, lambda: _badge(browser) == unreviewed - 1, "the badge to count one less")

        _click(browser, lambda: browser.find_element(By.ID, "logout"), "a click on logout")
        wait_for(browser, lambda: browser.find_elements(By.ID, "login-form"), "the login form")
        browser_login(browser, server, approver)
        open_page(browser, server + WORKLIST)
        wait_for(browser, lambda: grid_rows(browser, "review-items") or None, "the review items")
        assert _state(browser, item["id"]) == "reviewed"
        _select(browser, item["id"])
        _act(browser, "review-approve", "now approved")
        row = next(r for r in grid_rows(browser, "review-items") if r["id"] == item["id"])
        assert (row["state"], row["decision"], row["reviewer"], row["approver"]) == (
            "approved", "accepted", reviewer, approver)
        assert _state_badge(browser, item["id"], "state")[1] >= {"badge", "text-bg-success"}
        assert _state_badge(browser, item["id"], "decision")[1] >= {"badge", "bg-success-subtle"}
        shot(browser, screenshots, "09_worklist_approved")
        _click(browser, lambda: browser.find_element(By.XPATH, "//label[text()='minutes per patient']"),
               "a click on the time budget")
        wait_for(browser, lambda: "Base at 5 min per patient" in browser.find_element(By.ID, "worklist-summary").text,
                 "the worklist at a time budget")
        assert browser.find_element(By.ID, "worklist-minutes").is_enabled()
        open_page(browser, server + "/audit")
        entries = wait_for(browser, lambda: grid_rows(browser, "audit-grid") or None, "the audit trail")
        mine = [(e["actor"], e["action"], e["outcome"]) for e in entries if e["actor"] in (reviewer, approver)]
        assert (approver, "review.approve", "ok") in mine and (reviewer, "review.decide", "ok") in mine
        shot(browser, screenshots, "10_audit")
    finally:
        browser.delete_all_cookies()
        browser_login(browser, server, ADMIN)


def _clocks(url: str, username: str) -> list[ReviewTime]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return list(session.scalars(select(ReviewTime).join(User, User.id == ReviewTime.user_id)
                                        .where(User.username == username).order_by(ReviewTime.id)))
    finally:
        engine.dispose()


def _estimate(driver: webdriver.Chrome, rate: float, label: str) -> None:
    """The worklist's per-case minutes are its flagged mL at ``rate`` s/mL, the line above sums them, labelled."""
    line = wait_for(driver, lambda: label in (text := driver.find_element(By.ID, "worklist-time").text) and text,
                    f"the rate label {label!r}")
    cases = grid_rows(driver, "worklist-cases")
    assert cases and all(c["expected_minutes"] == round(c["flagged_ml"] * rate / 60, 1) for c in cases)
    total = float(re.search(r"Expected review time: ([\d.]+) min for the list", line).group(1))
    assert abs(total - sum(c["flagged_ml"] for c in cases) * rate / 60) < 0.06


def _base(session: Session) -> int:
    """The id of the seeded store's Base configuration (the worklist the timing tests review)."""
    return session.scalars(select(Configuration.id).where(Configuration.name == "Base")).one()


def test_the_worklist_estimates_review_time_from_measured_reviews(browser: webdriver.Chrome, server: str,
                                                                  screenshots: Path,
                                                                  sqlite_store: SeededStore) -> None:
    reviewer = f"timer-{uuid.uuid4().hex[:6]}"
    ensure_user(sqlite_store.url, reviewer, Role.REVIEWER)
    engine = make_engine(sqlite_store.url)
    try:
        with session_factory(engine).begin() as session:  # the other browser tests' reviews measured nothing here
            session.execute(delete(ReviewTime))
            session.execute(delete(ReviewItem).where(ReviewItem.configuration_id == _base(session)))  # all pending
        browser.delete_all_cookies()
        browser_login(browser, server, reviewer)
        open_page(browser, server + WORKLIST)
        _estimate(browser, 30.0, "placeholder: 30 s/mL until 20 measured items; n measured = 0")
        shot(browser, screenshots, "11_worklist_time_placeholder")

        row = next(r for r in grid_rows(browser, "worklist-regions") if r["state"] == "pending")
        open_page(browser, server + row["open_href"])  # a region nobody reviews: its link, as the grid makes it
        wait_for(browser, lambda: _clocks(sqlite_store.url, reviewer), "the region's clock (first activity report)")
        region = _clocks(sqlite_store.url, reviewer)[0]
        assert (region.region_rank, region.budget) == (row["region"], 0.02)
        assert region.flagged_ml == pytest.approx(row["volume_ml"], abs=1e-3) and region.closed_at is None

        open_page(browser, server + WORKLIST)
        rows = wait_for(browser, lambda: grid_rows(browser, "review-items") or None, "the review items")
        item = next(r for r in rows if r["state"] == "pending" and r["flagged_ml"] > 0)
        _select(browser, item["id"])
        _act(browser, "review-start", "now in_review")
        _select(browser, item["id"])
        _act(browser, "review-accept", "now reviewed (accepted)")
        timed = [c for c in _clocks(sqlite_store.url, reviewer) if c.region_rank is None]
        assert len(timed) == 1 and timed[0].closed_at is not None and timed[0].seconds > 0
        assert timed[0].flagged_ml == item["flagged_ml"], "the item's flagged volume as the server's worklist has it"
        open_page(browser, server + WORKLIST)
        _estimate(browser, 30.0, "n measured = 1")

        with session_factory(engine).begin() as session:  # 20 more measured reviews at 60 s/mL
            user = timed[0].user_id
            session.add_all(ReviewTime(image_id=timed[0].image_id, configuration_id=timed[0].configuration_id,
                                       class_index=100 + n, user_id=user, flagged_ml=2.0, seconds=120.0,
                                       opened_at=timed[0].opened_at, last_active_at=timed[0].opened_at,
                                       closed_at=timed[0].opened_at) for n in range(20))
        open_page(browser, server + WORKLIST)
        _estimate(browser, 60.0, "measured: 60 s/mL (median of 21 reviewed items)")
        shot(browser, screenshots, "12_worklist_time_measured")
    finally:
        with session_factory(engine).begin() as session:
            session.execute(delete(ReviewTime))
        engine.dispose()
        browser.delete_all_cookies()
        browser_login(browser, server, ADMIN)
