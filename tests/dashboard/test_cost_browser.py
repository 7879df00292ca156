"""The comparison page's cost–benefit view in headless Chromium against the seeded SQLite store: the three charts
with CIs and the Pareto front, the choice in words, the cost axis switch, the table and its audited CSV export."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from pipeline.metrics.cost_benefit import table, verdict
from pipeline.store.cohort_cost import cost_benefit_rows
from pipeline.store.cohort_numbers import CohortFilter
from pipeline.store.database import make_engine, session_factory
from tests.dashboard.conftest import SeededStore
from tests.dashboard.test_browser import figure, open_page, shot, wait_for


def _expected(sqlite_store: SeededStore) -> tuple[pd.DataFrame, str]:
    engine = make_engine(sqlite_store.url)
    with session_factory(engine)() as session:
        rows = cost_benefit_rows(session, CohortFilter(sqlite_store.seeded.protocol_id))
    engine.dispose()
    return table(rows), verdict(rows)


def test_cost_benefit_view_shows_cis_the_front_the_choice_and_exports_its_table(
    browser: webdriver.Chrome, server: str, screenshots: Path, downloads: Path, sqlite_store: SeededStore
) -> None:
    expected, words = _expected(sqlite_store)
    configurations = set(expected["configuration"])
    assert len(configurations) >= 4
    open_page(browser, server + "/compare")
    for graph in ("cost-ueo_auc", "cost-ece", "cost-dsc_mean_fg"):
        wait_for(browser, lambda g=graph: len(figure(browser, g)["data"]) == 2, f"{graph}: points and front")
    points = figure(browser, "cost-ueo_auc")["data"][1]
    assert set(points["customdata"]) == configurations
    assert points["x"] == [pytest.approx(x, rel=1e-9) for x in expected.set_index("configuration").loc[
        points["customdata"], "seconds_per_case"]]
    assert all(len(points["error_y"][k]) == len(configurations) for k in ("array", "arrayminus"))
    front = set(expected.loc[expected["pareto"], "configuration"])
    assert {name for name, symbol in zip(points["customdata"], points["marker"]["symbol"], strict=True)
            if symbol == "diamond"} == front
    assert browser.find_element(By.ID, "cost-verdict").text == words
    assert "Best UEO-AUC" in words
    rows = browser.find_elements(By.CSS_SELECTOR, "#cost-table-rows tbody tr")
    assert len(rows) == len(configurations)
    browser.find_element(By.ID, "cost-verdict").location_once_scrolled_into_view  # noqa: B018
    shot(browser, screenshots, "05_compare_cost_benefit")

    wait_for(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#cost-axis input[value='passes']").click()
             or True, "a click on the passes axis (retried while the page redraws over it)")
    wait_for(browser, lambda: figure(browser, "cost-ece")["layout"]["xaxis"]["title"]["text"]
             == "forward passes per case", "the passes axis")
    assert sorted(set(figure(browser, "cost-ece")["data"][1]["x"])) == sorted(set(expected["forward_passes"]))

    browser.find_element(By.ID, "cost-csv-button").click()
    csv = wait_for(browser, lambda: next(downloads.glob("cost_benefit_*.csv"), None), "the CSV download")
    exported = pd.read_csv(csv)
    assert list(exported.columns[:4]) == ["configuration", "forward_passes", "seconds_per_case", "device"]
    assert set(exported["configuration"]) == configurations
    merged = exported.set_index("configuration").join(expected.set_index("configuration"), rsuffix="_page")
    for column in ("ueo_auc", "ueo_auc_low", "ueo_auc_high", "seconds_per_case"):
        assert (merged[column] - merged[f"{column}_page"]).abs().max() < 1e-5, column
    assert (merged["pareto"] == merged["pareto_page"]).all()
