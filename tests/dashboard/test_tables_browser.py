"""Every page with a table, in headless Chromium at 1280×720 and 1600×1000 on the seeded SQLite store: no cell or
header whose text overflows its box (wrapped, never cut), a metric header's definition, range and link to the
metrics document on hover, and "—" for an undefined value. Screenshots of each page at each size are kept in the
session's ``screenshots`` folder (``var/screenshots``) for a human look."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from pipeline.metrics import registry
from pipeline.store.cohort_numbers import ALL_FOREGROUND
from qa_dashboard import tables
from qa_dashboard.components import DOCS_PATH
from tests.dashboard.test_browser import grid_rows, open_page, shot, wait_for

SIZES = ((1280, 720), (1600, 1000))
SETTLE_SECONDS = 10
#: page → its grids that the seeded store fills (rows are waited for) and those that may be empty
PAGES = {
    "/": (("case-grid",), ()),
    "/cohort": (("cohort-grid",), ()),
    "/runs": (("runs-grid", "failures-grid"), ()),
    "/worklist": (("worklist-cases", "worklist-regions"), ("review-items",)),
    "/trends": ((), ("levels-grid",)),
    "/sessions": (("sessions-grid",), ("blocked-grid",)),
    "/audit": (("audit-grid",), ()),
}
#: every element whose text a grid could cut: cells, their values and wrappers, header labels; plus any element
#: styled to cut its text with an ellipsis. An element overflows when its content is wider or taller than its box.
OVERFLOWING = """
const selectors = '.ag-cell, .ag-cell-value, .ag-cell-wrapper, .ag-header-cell-label, .ag-header-cell-text, '
    + '.ag-header-group-text, td, th';
const found = new Set(document.querySelectorAll('#page ' + selectors));
for (const element of document.querySelectorAll('#page .ag-root-wrapper *, #page table *')) {
    if (getComputedStyle(element).textOverflow === 'ellipsis') { found.add(element); }
}
const bad = [];
for (const element of found) {
    const box = element.getBoundingClientRect();
    if (!element.textContent.trim() || box.width === 0 || box.height === 0) { continue; }
    if (element.scrollWidth > element.clientWidth + 1 || element.scrollHeight > element.clientHeight + 1) {
        const grid = element.closest('[id]');
        bad.push(`${grid ? grid.id : '?'} ${element.className}: "${element.textContent.trim().slice(0, 60)}" `
                 + `${element.scrollWidth}x${element.scrollHeight} in ${element.clientWidth}x${element.clientHeight}`);
    }
}
return bad;
"""


@pytest.fixture(params=SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def window(request: pytest.FixtureRequest, browser: webdriver.Chrome, server: str) -> Iterator[tuple[int, int]]:
    """The browser window at one of the two sizes for the test, restored afterwards."""
    before = browser.get_window_size()
    browser.set_window_size(*request.param)
    yield request.param
    browser.set_window_size(before["width"], before["height"])


def _overflowing(driver: webdriver.Chrome) -> list[str]:
    return list(driver.execute_script(OVERFLOWING))


def _settled(driver: webdriver.Chrome, grids: tuple[str, ...]) -> list[str]:
    """The overflowing elements once the filled grids show rows and every cell has been measured (row heights
    follow their wrapped text a frame after the rows appear: poll until nothing overflows, or report what does)."""
    for grid in grids:
        wait_for(driver, lambda g=grid: grid_rows(driver, g) or None, f"the rows of {grid}")
    deadline = time.monotonic() + SETTLE_SECONDS
    while (overflowing := _overflowing(driver)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return overflowing


@pytest.mark.parametrize("path", list(PAGES))
def test_no_cell_or_header_text_overflows(browser: webdriver.Chrome, server: str, screenshots: Path,
                                          window: tuple[int, int], path: str) -> None:
    filled, others = PAGES[path]
    open_page(browser, server + path)
    for grid in (*filled, *others):
        wait_for(browser, lambda g=grid: browser.find_element(By.CSS_SELECTOR, f"#{g} .ag-header-cell"),
                 f"the grid {grid}")
    overflowing = _settled(browser, filled)
    name = path.strip("/") or "overview"
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});",
                           browser.find_element(By.ID, (*filled, *others)[0]))
    shot(browser, screenshots, f"tables_{window[0]}x{window[1]}_{name}")
    assert not overflowing, "\n".join(overflowing)


def _cell(driver: webdriver.Chrome, grid: str, row: int, column: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, f"#{grid} .ag-center-cols-container .ag-row[row-index='{row}'] "
                                                f".ag-cell[col-id='{column}']")


def test_metric_headers_define_the_metric_and_undefined_cells_show_a_dash(
        browser: webdriver.Chrome, server: str, screenshots: Path, window: tuple[int, int]) -> None:
    open_page(browser, server + "/cohort")
    rows = wait_for(browser, lambda: grid_rows(browser, "cohort-grid") or None, "the cohort table")
    metric = next(m for m in tables.table_metrics() if "ueo_auc" in (m.name, m.whole_case))
    header = browser.find_element(By.CSS_SELECTOR, f"#cohort-grid .ag-header-cell[col-id='{metric.name}']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'});", header)
    label = header.find_element(By.CSS_SELECTOR, ".ag-header-cell-text")

    def hovered() -> Any:
        """The header's tooltip, the pointer brought onto the header's label from outside the grid first."""
        ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h3")).pause(0.2).move_to_element(
            label).pause(0.8).perform()
        return next((t for t in browser.find_elements(By.CSS_SELECTOR, ".qa-tooltip") if metric.definition in t.text),
                    None)

    tip = wait_for(browser, hovered, "the header's tooltip")
    assert f"Range {metric.range_text()}" in tip.text
    link = tip.find_element(By.TAG_NAME, "a")
    assert link.get_attribute("href") == server + DOCS_PATH + "#" + metric.anchor.split("#")[1]
    shot(browser, screenshots, f"tables_{window[0]}x{window[1]}_cohort_header_tooltip")
    # a structure row has no NLL (a case-level metric without a per-structure counterpart): "—", not blank
    index = next(i for i, r in enumerate(rows) if r["structure"] != ALL_FOREGROUND)
    assert rows[index]["nll"] is None
    cell = _cell(browser, "cohort-grid", index, "nll")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'});", cell)
    assert wait_for(browser, lambda: _cell(browser, "cohort-grid", index, "nll").text.strip() or None,
                    "the structure row's NLL cell") == "—"


def test_the_tooltip_link_opens_the_metric_section(browser: webdriver.Chrome, server: str) -> None:
    anchor = registry.metric("ece").anchor.split("#")[1]
    browser.get(server + DOCS_PATH + "#" + anchor)
    heading = wait_for(browser, lambda: browser.find_element(By.ID, anchor), "the metric's section")
    assert heading.text == "ECE (ROI)"
    assert wait_for(browser, lambda: browser.execute_script(
        "const top = arguments[0].getBoundingClientRect().top; return top >= 0 && top < window.innerHeight;",
        heading), "the section scrolled into view")
