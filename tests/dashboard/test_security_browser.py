"""Issue 17's attacks where the browser matters, in headless Chromium: every page renders and its callbacks run under
the Content-Security-Policy (no violation), while an injected inline handler is blocked; a case named like a
markdown link (``evil](https://evil.example) [x``) is text in the overview and worklist grids, its link the app's
own address of that case."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import pytest
from alembic import command
from selenium import webdriver
from selenium.webdriver.common.by import By
from sqlalchemy import text

from benchmarks.http_client import ensure_user
from benchmarks.store_seed import SeedPlan, seed_store
from pipeline.store.database import alembic_config, make_engine
from qa_dashboard import config
from tests.dashboard.conftest import SeededStore, browser_login
from tests.dashboard.test_browser import figure, grid_rows, open_page, shot, title, wait_for

EVIL = "evil](https://evil.example) [x"
LISTENER = ("window.__csp = []; document.addEventListener('securitypolicyviolation', "
            "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")
PAGES: dict[str, Callable[[webdriver.Chrome], object]] = {
    "/": lambda d: grid_rows(d, "case-grid"),
    "/worklist": lambda d: grid_rows(d, "worklist-cases") and grid_rows(d, "review-items"),
    "/cohort": lambda d: grid_rows(d, "cohort-grid") and figure(d, "cohort-reliability")["data"],
    "/compare": lambda d: figure(d, "compare-ueo")["data"] and d.find_element(By.ID, "compare-paired-table"),
    "/runs": lambda d: grid_rows(d, "runs-grid"),
    "/audit": lambda d: grid_rows(d, "audit-grid") and "intact" in d.find_element(By.ID, "audit-chain-status").text,
    "/sessions": lambda d: grid_rows(d, "sessions-grid"),
    "/patient/phantom_9000": lambda d: "axial" in title(d, "view-a-axial"),
}


@pytest.fixture
def watched(browser: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The browser with a CSP-violation recorder installed before any script of each page runs."""
    added = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": LISTENER})
    try:
        yield browser
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": added["identifier"]})


def test_every_page_renders_and_runs_its_callbacks_under_the_policy(watched: webdriver.Chrome, server: str,
                                                                   screenshots: Path) -> None:
    for path, ready in PAGES.items():
        open_page(watched, server + path)
        wait_for(watched, lambda r=ready: r(watched), f"{path} rendered by its callbacks")
        assert re.fullmatch(r"\d+ unreviewed", watched.find_element(By.ID, "unreviewed-badge").text), path
        assert watched.execute_script("return window.__csp") == [], path
    shot(watched, screenshots, "11_csp_patient")
    watched.execute_script("document.body.insertAdjacentHTML('beforeend', "
                           "'<img id=\"injected\" src=\"data:,x\" onerror=\"window.__pwned = 1\">')")
    wait_for(watched, lambda: watched.execute_script("return window.__csp.length") > 0, "the violation report")
    assert watched.execute_script("return window.__pwned") is None


@pytest.fixture
def evil_store(tmp_path_factory: pytest.TempPathFactory) -> SeededStore:
    """A small seeded store whose first phantom is renamed like a markdown link."""
    folder = tmp_path_factory.mktemp("evil_store")
    url = f"sqlite:///{folder / 'qa.sqlite3'}"
    command.upgrade(alembic_config(url), "head")
    seeded = seed_store(url, folder / "artifacts", SeedPlan(patients=2, configurations=("Base",), repeats=1,
                                                            map_cases=2, map_shape=(8, 24, 24), extra_cases=False))
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE images SET name = :evil WHERE name = 'phantom_9000'"), {"evil": EVIL})
    engine.dispose()
    ensure_user(url)
    return SeededStore("sqlite", url, folder / "artifacts", seeded)


def _links(driver: webdriver.Chrome, grid: str) -> list[tuple[str, str]]:
    return [(a.text, a.get_attribute("href") or "") for a in driver.find_elements(By.CSS_SELECTOR, f"#{grid} a")]


def test_a_case_named_like_a_link_is_text_in_every_grid(browser: webdriver.Chrome, server: str,
                                                        evil_store: SeededStore, screenshots: Path) -> None:
    before = config.settings()
    address = f"{server}/patient/{quote(EVIL, safe='')}"
    config.configure(replace(before, database_url=evil_store.url, artifacts_dir=evil_store.root))
    try:
        browser.delete_all_cookies()
        browser_login(browser, server)
        for path, grid in (("/", "case-grid"), ("/worklist?configuration=Base&budget=2", "worklist-cases"),
                           ("/worklist?configuration=Base&budget=2", "worklist-regions")):
            open_page(browser, server + path)
            wait_for(browser, lambda g=grid: _links(browser, g) or None, f"the links of {grid}")
            links = _links(browser, grid)
            assert all(href.startswith(f"{server}/patient/") for _, href in links), (grid, links)  # none elsewhere
            if grid != "worklist-regions":
                assert (EVIL, address) in [(label, href.split("?")[0]) for label, href in links], (grid, links)
            else:
                assert any(href.startswith(address + "?") for _, href in links), links
        shot(browser, screenshots, "12_link_injection_worklist")
        open_page(browser, server + "/")
        wait_for(browser, lambda: _links(browser, "case-grid") or None, "the overview")
        browser.find_element(By.LINK_TEXT, EVIL).click()
        wait_for(browser, lambda: browser.current_url.split("?")[0] == address, "the slice browser of the case")
        wait_for(browser, lambda: EVIL in browser.find_element(By.ID, "viewer-header").text, "its header")
        assert not browser.find_elements(By.CSS_SELECTOR, "a[href^='https:'], a[href^='//']")
    finally:
        config.configure(before)
        browser.delete_all_cookies()
        browser_login(browser, server)
