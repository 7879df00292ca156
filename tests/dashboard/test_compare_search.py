"""The comparison page's first view (the best configuration shown, no title under Plotly's toolbar, every case's
point in the box plots), the navbar's case search and the slice browser's DICOM context: queries on SQLite and
PostgreSQL, pages in headless Chromium (a twelve-configuration store for the comparison)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from alembic import command
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from sqlalchemy import select

from benchmarks.http_client import ensure_user
from benchmarks.store_seed import FULL_GRID, SeedPlan, seed_store
from pipeline.metrics import registry
from pipeline.store.cohort_numbers import CohortFilter, summary
from pipeline.store.database import alembic_config, make_engine, session_factory
from pipeline.store.schema import Image
from qa_dashboard import config
from qa_dashboard.case_context import dicom_context
from qa_dashboard.charts import PRIMARY, SHOWN_AT_FIRST, first_shown
from qa_dashboard.queries.patient import find_case
from qa_dashboard.queries.search import find_cases
from qa_dashboard.store import get_store
from tests.dashboard.conftest import PLAN, SeededStore, browser_login
from tests.dashboard.test_browser import figure, open_page, shot, wait_for

GRID_PLAN = SeedPlan(configurations=FULL_GRID, map_cases=0, extra_cases=False, repeats=2)
BOXES = tuple(m.name for m in registry.case_metrics() if m.boxplot)
GRAPHS = ("compare-ueo", "compare-recall", "compare-precision", *(f"compare-{m}-box" for m in BOXES))


# --- queries, on both backends ---------------------------------------------------------------------------------------

def test_search_finds_cases_by_name_or_pseudonym_prefix(store: SeededStore) -> None:
    phantoms = sorted(store.seeded.phantoms)
    with get_store().session() as session:
        found = find_cases(session, "PHANTOM_90")
        assert [c[0] for c in found.cases] == phantoms and not found.more
        few = find_cases(session, "phantom_90", limit=3)
        assert [c[0] for c in few.cases] == phantoms[:3] and few.more
        assert few.unique("phantom_90") is None
        exact = find_cases(session, f" {phantoms[2]} ")
        assert exact.cases[0][0] == phantoms[2] and exact.unique(phantoms[2].upper()) == phantoms[2]
        by_pseudonym = find_cases(session, "p00007")
        assert [c[0] for c in by_pseudonym.cases] == ["prospective_001"]
        assert by_pseudonym.unique("p00007") == "prospective_001"
        for nothing in ("nobody", "%", "_", "phantom%", "   "):
            assert find_cases(session, nothing).cases == [], nothing


UIDS = ("1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2", "1.2.826.0.1.3680043.8.498.3")
#: as the batch stores the TotalSegmentator series' header (tests/test_acquisition.py), with a study description
#: long enough to wrap
ACQUISITION = {"study_description": "CT abdomen with contrast, portal venous phase, follow-up " * 5,
               "series_description": "CT Body 3.0", "manufacturer": "SIEMENS",
               "manufacturer_model": "Biograph40_mCT 4R", "convolution_kernel": "Br38f\\3",
               "slice_thickness_mm": 3.0, "kvp": 120.0}
SHOWN = {"Series": "CT Body 3.0", "Manufacturer": "SIEMENS",
         "Model": "Biograph40_mCT 4R", "Kernel": "Br38f\\3", "Slice thickness": "3 mm", "kVp": "120",
         "Contrast": "—"}


def _as_dicom(image: Image) -> None:
    image.source_kind, (image.study_uid, image.series_uid, image.frame_of_reference_uid) = "dicom", UIDS
    image.acquisition = ACQUISITION


def _text(component: Any) -> str:
    """The text a component shows: its children's strings, one space between words."""
    if isinstance(component, str):
        return " ".join(component.split())
    if isinstance(component, list | tuple):
        return " ".join(text for c in component if (text := _text(c)))
    return _text(getattr(component, "children", None) or "")


def test_dicom_context_shows_the_stored_uids_and_acquisition(store: SeededStore) -> None:
    with get_store().session() as session:
        nifti = find_case(session, "phantom_9000")
        assert nifti is not None and nifti.dicom_uids == (None, None, None) and not nifti.acquisition.values
        assert "not DICOM: no study or series; acquisition not given" in str(dicom_context(nifti))
        image = session.scalars(select(Image).where(Image.name == "phantom_9001")).one()
        _as_dicom(image)
        session.flush()
        case = find_case(session, "phantom_9001")
        image.source_kind, image.acquisition = "nifti", {"manufacturer": "GE", "kvp": 100}
        session.flush()
        listed = find_case(session, "phantom_9001")
        session.rollback()
    assert case is not None and case.dicom_uids == UIDS and case.acquisition.record() == ACQUISITION
    shown = _text(dicom_context(case))
    assert all(uid in shown for uid in UIDS) and "Series UID" in shown
    assert all(f"{label} {value}" in shown for label, value in SHOWN.items()), shown
    assert ACQUISITION["study_description"] in shown, "in full"
    assert listed is not None
    listed_shown = _text(dicom_context(listed))
    assert "not DICOM: no study or series" in listed_shown and "acquisition not given" not in listed_shown
    assert "Manufacturer GE" in listed_shown and "kVp 100" in listed_shown
    assert listed_shown.count("—") == len(SHOWN) - 1, "every field the manifest left out"


def test_first_shown_keeps_the_reference_and_the_best_others() -> None:
    grid = list(range(1, 13))
    means = {c: c / 100 for c in grid}
    higher = PRIMARY.direction == "higher"
    shown = first_shown(grid, means)
    assert len(shown) == SHOWN_AT_FIRST and shown[0] == 1
    assert (max(grid) if higher else 2) in shown
    assert first_shown(grid, {}) == grid[:SHOWN_AT_FIRST], "without means: grid order"
    assert first_shown([7], {7: 0.5}) == [7] and first_shown([], {}) == []


# --- pages in the browser --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def grid_store(tmp_path_factory: pytest.TempPathFactory) -> SeededStore:
    """A SQLite store with the full grid of twelve configurations (no voxel maps), whose first four in grid order
    do not include the best."""
    folder = tmp_path_factory.mktemp("grid_store")
    url = f"sqlite:///{folder / 'qa.sqlite3'}"
    command.upgrade(alembic_config(url), "head")
    seeded = SeededStore("sqlite", url, folder / "artifacts", seed_store(url, folder / "artifacts", GRID_PLAN))
    ensure_user(url)
    return seeded


@pytest.fixture
def on_grid_store(browser: webdriver.Chrome, server: str, grid_store: SeededStore) -> Iterator[SeededStore]:
    """The served app reading the twelve-configuration store, the browser signed in there; afterwards the session's
    store again, signed in there (accounts and sessions live in the store)."""
    before = config.settings()
    config.configure(replace(before, database_url=grid_store.url, artifacts_dir=grid_store.root))
    try:
        browser_login(browser, server)
        yield grid_store
    finally:
        config.configure(before)
        browser_login(browser, server)


def _box(driver: webdriver.Chrome, selector: str) -> dict[str, float] | None:
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); if (!e) return null;"
        "const r = e.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top, bottom: r.bottom};",
        selector)


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def _best(seeded: SeededStore) -> str:
    """The configuration with the best cohort mean of the page's primary metric, found with the cohort owner."""
    with get_store().session() as session:
        overall, _ = summary(session, CohortFilter(seeded.seeded.protocol_id))
    column = overall.set_index("configuration_id")[f"{PRIMARY.name}_mean"]
    best = column.idxmax() if PRIMARY.direction == "higher" else column.idxmin()
    return next(n for n, i in seeded.seeded.configurations.items() if i == best)


def test_comparison_shows_the_best_titles_clear_of_the_toolbar_and_every_case(
        browser: webdriver.Chrome, server: str, on_grid_store: SeededStore, screenshots: Path) -> None:
    best = _best(on_grid_store)
    assert best not in FULL_GRID[:SHOWN_AT_FIRST], "the old default (the first four) would hide the best"
    open_page(browser, server + "/compare")
    for graph in GRAPHS:
        wait_for(browser, lambda g=graph: figure(browser, g)["data"], f"{graph} drawn")
    names = {t.get("name") for t in figure(browser, "compare-ueo")["data"]}
    assert best in names and FULL_GRID[0] in names
    assert len([t for t in figure(browser, "compare-ueo")["data"] if t.get("showlegend") is not False]) == \
        SHOWN_AT_FIRST
    note = browser.find_element(By.ID, "compare-shown-note").text
    assert f"{FULL_GRID[0]} (the grid's reference)" in note and best in note and PRIMARY.label in note
    for graph in GRAPHS:  # the toolbar appears on hover: it must never sit on the title
        ActionChains(browser).move_to_element(browser.find_element(By.ID, graph)).perform()
        wait_for(browser, lambda g=graph: browser.execute_script(
            "return getComputedStyle(document.querySelector(`#${arguments[0]} .modebar`)).opacity", g) == "1",
            f"{graph}'s toolbar shown")
        title, bar = _box(browser, f"#{graph} .gtitle"), _box(browser, f"#{graph} .modebar")
        assert title and bar and title["right"] > title["left"], graph
        assert not _overlap(title, bar), f"{graph}: title {title} under the toolbar {bar}"
    shot(browser, screenshots, "21_compare_best_shown")
    for metric in BOXES:
        graph = f"compare-{metric}-box"
        traces = figure(browser, graph)["data"]
        assert len(traces) == SHOWN_AT_FIRST and all(t["boxpoints"] == "all" for t in traces)
        counts = [len(t["y"]) for t in traces]
        assert all(f"n = {n}" in t["name"] for t, n in zip(traces, counts, strict=True))
        drawn = browser.find_elements(By.CSS_SELECTOR, f"#{graph} .boxlayer .point")
        tested = set().union(*on_grid_store.seeded.test_roles.values())
        assert len(drawn) == sum(counts) and max(counts) == len(tested), graph


def _typed(driver: webdriver.Chrome, text: str, *keys: str) -> None:
    field = driver.find_element(By.ID, "case-search")
    field.clear()
    field.send_keys(text, *keys)


def test_search_lists_opens_and_says_when_nothing_matches(browser: webdriver.Chrome, server: str,
                                                          screenshots: Path) -> None:
    open_page(browser, server + "/runs")
    _typed(browser, "phantom_90")
    items = wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#case-search-list a") or None,
                     "the matching cases")
    assert [i.text.split()[0] for i in items] == sorted(f"phantom_{9000 + i}" for i in range(PLAN.patients))
    shot(browser, screenshots, "20_case_search")
    _typed(browser, "nobody")
    assert "No case matches 'nobody'" in wait_for(
        browser, lambda: browser.find_element(By.ID, "case-search-none").text, "the no-match message")
    _typed(browser, "P00001", Keys.ENTER)
    wait_for(browser, lambda: urlparse(browser.current_url).path == "/patient/phantom_9001", "the only match opened")
    wait_for(browser, lambda: browser.find_element(By.ID, "case-dicom").text, "the case's DICOM context")
    assert browser.find_element(By.ID, "case-search").get_attribute("value") == ""
    _typed(browser, "phantom_9")
    link = wait_for(browser, lambda: next(a for a in browser.find_elements(By.CSS_SELECTOR, "#case-search-list a")
                                          if a.text.startswith("phantom_9004")), "phantom_9004 in the list")
    link.click()
    wait_for(browser, lambda: urlparse(browser.current_url).path == "/patient/phantom_9004", "the chosen case opened")


@pytest.fixture
def dicom_case(sqlite_store: SeededStore) -> Iterator[str]:
    """phantom_9001 of the served store as a DICOM case with the stored acquisition (restored afterwards), read
    afresh by the served app (the image's update changes the store's version, so the app's cached case is
    dropped)."""
    engine = make_engine(sqlite_store.url)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        image = session.scalars(select(Image).where(Image.name == "phantom_9001")).one()
        before = (image.source_kind, image.study_uid, image.series_uid, image.frame_of_reference_uid,
                  image.acquisition)
        _as_dicom(image)
    try:
        yield "phantom_9001"
    finally:
        with sessions.begin() as session:
            image = session.scalars(select(Image).where(Image.name == "phantom_9001")).one()
            (image.source_kind, image.study_uid, image.series_uid, image.frame_of_reference_uid,
             image.acquisition) = before
        engine.dispose()


def test_the_slice_browser_header_shows_the_acquisition_in_full(
        browser: webdriver.Chrome, server: str, dicom_case: str, screenshots: Path) -> None:
    size = browser.get_window_size()
    try:
        for width, height in ((1600, 1000), (1280, 720)):
            browser.set_window_size(width, height)
            open_page(browser, f"{server}/patient/{dicom_case}")
            text = wait_for(browser, lambda: browser.find_element(By.ID, "case-acquisition").text, "the acquisition")
            assert all(f"{label} {value}" in text for label, value in SHOWN.items()), text
            assert ACQUISITION["study_description"].strip() in " ".join(text.split()), "the long description in full"
            pairs = browser.find_elements(By.CSS_SELECTOR, "#case-acquisition > span.d-inline-block")
            assert len(pairs) == len(ACQUISITION) + 1
            header = _box(browser, "#case-dicom")
            assert header is not None
            for pair in pairs:
                box = pair.rect
                assert header["left"] - 0.5 <= box["x"] and box["x"] + box["width"] <= header["right"] + 0.5, pair.text
                assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth;", pair)
            assert pairs[0].rect["height"] > 1.5 * pairs[-1].rect["height"], "the long description wraps"
            shot(browser, screenshots, f"21_case_acquisition_{width}")
    finally:
        browser.set_window_size(size["width"], size["height"])
