"""Review-study blinding in headless Chromium: an arm-A reader's slice browser offers no overlay, control or download
derived from uncertainty (the server refuses them anyway: ``test_study_blinding.py``)."""

from __future__ import annotations

from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By

from pipeline.review.service import CommandLine
from pipeline.review.study_allocation import Arm
from tests.dashboard.conftest import SeededStore, browser_login
from tests.dashboard.test_browser import open_page, overlay, shot, wait_for
from tests.dashboard.test_study_blinding import define_study


def test_an_arm_a_readers_slice_browser_offers_no_entropy(browser: webdriver.Chrome, server: str,
                                                          screenshots: Path, sqlite_store: SeededStore) -> None:
    study = define_study(sqlite_store.url, sqlite_store.seeded.map_cases)
    reader = study.readers[Arm.STANDARD]
    try:
        browser.delete_all_cookies()
        browser_login(browser, server, reader.username)
        open_page(browser, server + f"/patient/{reader.case}")
        note = wait_for(browser, lambda: browser.find_element(By.ID, "study-arm").text, "the study reading's note")
        assert "standard review (arm A)" in note
        labels = wait_for(browser, lambda: [e.text for e in browser.find_elements(
            By.CSS_SELECTOR, "#viewer-overlays label")] or None, "the overlay switches")
        assert "predicted contour" in labels
        assert not any("entropy" in label or "budget" in label for label in labels), labels
        assert not browser.find_element(By.ID, "viewer-most-uncertain").is_displayed()
        assert not browser.find_element(By.ID, "viewer-opacity").is_displayed()
        assert not browser.find_elements(By.ID, "download-regions")
        wait_for(browser, lambda: overlay(browser), "the axial picture with its overlay")
        shot(browser, screenshots, "study_arm_a_slice_browser")
    finally:
        study.service.close_study(CommandLine("t"), study.name)
        browser.delete_all_cookies()
        browser_login(browser, server)  # signed in again as the admin for any test that runs after this one
