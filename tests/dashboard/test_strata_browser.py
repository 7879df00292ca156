"""The cohort page's acquisition filter and grouping in headless Chromium against the seeded SQLite store: the
groups with their n, the table filtered to one scanner, the per-group table regrouped by slice thickness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from sqlalchemy import select, update

from pipeline.store.database import make_engine, session_factory
from pipeline.store.schema import Image, SplitRole
from pipeline.store.strata import UNKNOWN_GROUP
from tests.dashboard.conftest import SeededStore
from tests.dashboard.test_browser import grid_rows, open_page, shot, wait_for
from tests.dashboard.test_strata import ALPHA, BETA


@pytest.fixture
def two_scanners(sqlite_store: SeededStore) -> Iterator[dict[str, str]]:
    """The protocol's cases on two scanners, one without acquisition (the seeded SQLite store the server reads)."""
    engine = make_engine(sqlite_store.url)
    with session_factory(engine)() as session:
        names = sorted(session.scalars(select(Image.name).join(SplitRole, SplitRole.image_id == Image.id)
                                       .where(SplitRole.protocol_id == sqlite_store.seeded.protocol_id).distinct()))
        for name in names[:-1]:
            record = ALPHA if name in names[:3] else BETA
            session.execute(update(Image).where(Image.name == name).values(acquisition=record))
        session.commit()
    try:
        yield {n: "SimCT Alpha 64" if n in names[:3] else "VoxelWorks Beta 16" if n != names[-1] else UNKNOWN_GROUP
               for n in names}
    finally:
        with session_factory(engine)() as session:
            session.execute(update(Image).where(Image.name.in_(names)).values(acquisition=None))
            session.commit()
        engine.dispose()


def _choose(driver: webdriver.Chrome, dropdown: str, starts: str) -> None:
    driver.find_element(By.ID, dropdown).click()
    option = wait_for(driver, lambda: next(o for o in driver.find_elements(
        By.CSS_SELECTOR, "[role=listbox] [role=option]") if o.text.strip().startswith(starts)), f"the option {starts}")
    option.click()
    wait_for(driver, lambda: not driver.find_elements(By.CSS_SELECTOR, "[role=listbox]"), "the dropdown closed")


def test_cohort_page_filters_and_groups_by_acquisition(browser: webdriver.Chrome, server: str, screenshots: Path,
                                                       two_scanners: dict[str, str]) -> None:
    beta = sum(g == "VoxelWorks Beta 16" for g in two_scanners.values())
    open_page(browser, server + "/cohort")
    rows = wait_for(browser, lambda: grid_rows(browser, "cohort-strata") or None, "the per-group table")
    assert {r["group"] for r in rows} == {"SimCT Alpha 64", "VoxelWorks Beta 16", UNKNOWN_GROUP}
    assert all(r["n_cases"] >= 1 for r in rows) and not next(
        r for r in rows if r["group"] == UNKNOWN_GROUP)["differs"], "a lone unknown case is never flagged"
    assert "Grouped by scanner" in browser.find_element(By.ID, "cohort-strata-note").text
    configurations = {r["configuration"] for r in rows}
    every = wait_for(browser, lambda: (lambda shown: shown if set(shown) >= configurations else None)(
        {r["configuration"]: r["n_cases"] for r in grid_rows(browser, "cohort-grid")
         if r["structure"] == "all foreground"}), "the cohort table of every scan")
    shot(browser, screenshots, "02b_cohort_by_scanner")

    _choose(browser, "cohort-group", f"VoxelWorks Beta 16 (n = {beta})")
    wait_for(browser, lambda: all(r["group"] == "VoxelWorks Beta 16" for r in grid_rows(browser, "cohort-strata")),
             "the per-group table of the chosen scanner")
    tested = {r["configuration"]: r["n_cases"] for r in grid_rows(browser, "cohort-strata")}
    wait_for(browser, lambda: {r["configuration"]: r["n_cases"] for r in grid_rows(browser, "cohort-grid")
                               if r["structure"] == "all foreground"} == tested, "the cohort table of that scanner")
    assert all(tested[c] < every[c] for c in tested)

    _choose(browser, "cohort-stratum", "Slice thickness")
    wait_for(browser, lambda: {r["group"] for r in grid_rows(browser, "cohort-strata")} == {
        "12 mm", "24 mm", UNKNOWN_GROUP}, "the cases regrouped by slice thickness, every scan again")
    labels = wait_for(browser, lambda: browser.find_element(By.ID, "cohort-group").text or None, "the group choice")
    assert labels.startswith(f"every scan (n = {len(two_scanners)})")
