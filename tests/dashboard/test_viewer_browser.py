"""The slice browser as a reading room, in headless Chromium at 1280×720 and 1600×1000: the whole axial image on
the first screen, layouts and fullscreen, keys only on a view, the sticky navbar, W/L readout and right-drag,
Ctrl + wheel zoom kept alike in every view. Screenshots are saved to the session's ``screenshots`` folder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.mouse_button import MouseButton
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.dashboard.conftest import PLAN
from tests.dashboard.test_browser import figure, open_page, shot, title, wait_for

SLICES = PLAN.map_shape[0]


@pytest.fixture(params=[(1280, 720), (1600, 1000)], ids=["1280x720", "1600x1000"])
def screen(request: pytest.FixtureRequest, browser: webdriver.Chrome) -> Iterator[tuple[int, int]]:
    """The browser's viewport at the given size for the test, as it was afterwards."""
    width, height = request.param
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    try:
        yield width, height
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _image_box(driver: webdriver.Chrome, graph: str) -> dict[str, float]:
    return driver.execute_script(
        "const r = document.querySelector(`#${arguments[0]} image`).getBoundingClientRect();"
        "return {left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width,"
        " vw: window.innerWidth, vh: window.innerHeight};", graph)


def _shown(driver: webdriver.Chrome, graph: str) -> bool:
    return bool(driver.find_element(By.ID, graph).is_displayed())


def test_reading_room_layout_keys_zoom_and_window_level(browser: webdriver.Chrome, server: str, screenshots: Path,
                                                        screen: tuple[int, int]) -> None:
    width, height = screen
    open_page(browser, server + "/patient/phantom_9000")
    middle = SLICES // 2 + 1
    wait_for(browser, lambda: title(browser, "view-a-axial").startswith(f"axial {middle}/"), "the axial view")
    wait_for(browser, lambda: _image_box(browser, "view-a-axial")["width"] > 0.3 * height, "the axial image sized")
    box = _image_box(browser, "view-a-axial")
    assert box["vw"] == width and box["vh"] == height
    assert box["left"] >= 0 and box["top"] >= 0 and box["right"] <= width and box["bottom"] <= height, box
    assert box["width"] >= 0.55 * (height - 170), f"the axial view is no thumbnail: {box}"
    assert browser.execute_script("return window.scrollY") == 0
    shot(browser, screenshots, f"20_reading_room_{width}x{height}")

    # keys act only on a view with focus or under the pointer: with the pointer on the (sticky) navbar, PgDn and Home
    # scroll the page and move no slice (were the pointer left where the page scrolls, a view could come under it)
    planes = ("axial", "coronal", "sagittal")
    before = [title(browser, f"view-a-{p}") for p in planes]
    browser.find_element(By.ID, "viewer-header").click()
    ActionChains(browser).move_to_element(browser.find_element(By.ID, "signed-in-user")).perform()
    ActionChains(browser).send_keys(Keys.PAGE_DOWN, Keys.HOME).perform()
    time.sleep(1)  # what a key would have changed has been drawn by now
    assert [title(browser, f"view-a-{p}") for p in planes] == before, "keys outside the views move no slice"
    browser.execute_script("window.scrollTo({top: 0, behavior: 'instant'});")
    wait_for(browser, lambda: browser.execute_script("return window.scrollY") == 0, "the page back at its top")
    axial = browser.find_element(By.ID, "view-a-axial")
    browser.execute_script("arguments[0].closest('.qa-view').focus({preventScroll: true});", axial)
    ActionChains(browser).send_keys(Keys.PAGE_DOWN).perform()
    wait_for(browser, lambda: title(browser, "view-a-axial").startswith(f"axial {min(SLICES, middle + 10)}/"),
             "PgDn on the focused axial view")

    # W/L: typed values and a right-drag, both read out on the image
    def readout() -> str:
        return next(a["text"] for a in figure(browser, "view-a-axial")["layout"]["annotations"]
                    if a.get("name") == "readout")

    assert readout() == "W 400 / L 40"
    ActionChains(browser).send_keys("2").perform()
    wait_for(browser, lambda: readout() == "W 1500 / L -600", "the lung preset read out")
    drag = ActionBuilder(browser)
    drag.pointer_action.move_to(axial).pointer_down(MouseButton.RIGHT).move_by(50, -20).pointer_up(MouseButton.RIGHT)
    drag.perform()
    wait_for(browser, lambda: readout() == "W 1700 / L -560", "window wider and level higher after a right-drag")

    # Ctrl + wheel zooms every view alike; reset brings the whole image back
    def span(graph: str) -> float:
        x = figure(browser, graph)["layout"]["xaxis"]["range"]
        return float(x[1] - x[0])

    whole, sagittal = span("view-a-coronal"), span("view-a-sagittal")
    browser.execute_script(
        "const r = arguments[0].getBoundingClientRect(); arguments[0].querySelector('.nsewdrag').dispatchEvent("
        "new WheelEvent('wheel', {deltaY: -100, ctrlKey: true, bubbles: true, cancelable: true,"
        " clientX: r.left + r.width / 2, clientY: r.top + r.height / 2}));", axial)
    wait_for(browser, lambda: abs(span("view-a-coronal") - whole / 1.25) < 0.01 * whole, "the coronal view zoomed")
    assert abs(span("view-a-sagittal") - sagittal / 1.25) < 0.01 * sagittal, "the sagittal view zoomed alike"
    ActionChains(browser).send_keys(Keys.DOWN).perform()
    wait_for(browser, lambda: title(browser, "view-a-axial").startswith(f"axial {min(SLICES, middle + 11)}/"),
             "the next slice")
    assert abs(span("view-a-coronal") - whole / 1.25) < 0.01 * whole, "a new slice keeps the zoom"
    wait_for(browser, lambda: abs(span("view-a-axial") - whole / 1.25) < 0.01 * whole, "the redrawn view zoomed too")
    assert browser.execute_script("return window.scrollY") == 0, "keys, wheel and drags on a view never scroll the page"
    state = browser.execute_script("const r = document.getElementById('viewer-reset-zoom').getBoundingClientRect();"
                                   "return [window.scrollY, r.top, document.activeElement.className,"
                                   " document.scrollingElement.scrollTop, document.body.scrollTop];")
    assert state[0] == 0 and state[1] > 0, state
    browser.find_element(By.ID, "viewer-reset-zoom").click()
    wait_for(browser, lambda: abs(span("view-a-coronal") - whole) < 1e-6, "the zoom reset")

    # layouts and fullscreen
    for key, shown in (("1x1", {"axial"}), ("1x3", {"axial", "coronal", "sagittal"}),
                       ("2x2", {"axial", "coronal", "sagittal"}), ("mpr", {"axial", "coronal", "sagittal"})):
        browser.find_element(By.CSS_SELECTOR, f"label[for='_dbcprivate_radioitems_viewer-grid_input_{key}']").click()
        wait_for(browser, lambda k=key: f"qa-layout-{k}" in browser.find_element(By.ID, "viewer-stage")
                 .get_attribute("class"), f"the {key} layout")
        assert {p for p in ("axial", "coronal", "sagittal") if _shown(browser, f"view-a-{p}")} == shown
        if key == "1x3":
            tops = {round(browser.find_element(By.ID, f"view-a-{p}").rect["y"]) for p in shown}
            assert len(tops) == 1, "one row"
        box = _image_box(browser, "view-a-axial")
        assert box["bottom"] <= height and box["right"] <= width, (key, box)
    browser.find_element(By.ID, "viewer-fullscreen").click()
    wait_for(browser, lambda: browser.execute_script("return document.fullscreenElement && "
                                                     "document.fullscreenElement.id") == "viewer-reading",
             "the views fullscreen")
    browser.execute_script("document.exitFullscreen();")
    wait_for(browser, lambda: browser.execute_script("return !document.fullscreenElement"), "fullscreen left")

    # the navbar stays on screen when the page scrolls (a scroll asked for while the window leaves fullscreen is lost)
    wait_for(browser, lambda: browser.execute_script(
        "window.scrollTo(0, document.body.scrollHeight); return window.scrollY") > 0, "the page scrolled")
    assert browser.find_element(By.ID, "signed-in-user").rect["y"] - browser.execute_script(
        "return window.scrollY") < 60, "the navbar (and Log out) stays on screen"


def test_the_address_reproduces_the_view(browser: webdriver.Chrome, server: str) -> None:
    """Window and level, overlays, layout, zoom and slices from the address; the address bar follows the view, and
    the copied link opens it as it was."""
    open_page(browser, server + "/patient/phantom_9000?w=1500&l=-600&overlays=reference,budget&grid=1x3"
                                "&zoom=2,12,32,32&at=5,32,32")
    wait_for(browser, lambda: title(browser, "view-a-axial").startswith("axial 6/"), "the axial view at slice 6")

    def readout() -> str:
        return next(a["text"] for a in figure(browser, "view-a-axial")["layout"]["annotations"]
                    if a.get("name") == "readout")

    def span(graph: str) -> float:
        x = figure(browser, graph)["layout"]["xaxis"]["range"]
        return float(x[1] - x[0])

    wait_for(browser, lambda: readout() == "W 1500 / L -600", "the address's window and level")
    assert "qa-layout-1x3" in browser.find_element(By.ID, "viewer-stage").get_attribute("class")
    checked = browser.execute_script("return Array.from(document.querySelectorAll('#viewer-overlays input'))"
                                     ".filter(i => i.checked).map(i => i.value);")
    assert checked == ["reference", "budget"]
    whole = PLAN.map_shape[2] * PLAN.spacing_xyz[0]
    wait_for(browser, lambda: abs(span("view-a-coronal") - whole / 2) < 0.01 * whole, "the coronal view zoomed ×2")

    axial = browser.find_element(By.ID, "view-a-axial")
    # the pointer off the views (a view under the pointer, left there by an earlier test, would take the key)
    ActionChains(browser).move_to_element(browser.find_element(By.ID, "signed-in-user")).perform()
    browser.execute_script("arguments[0].closest('.qa-view').focus({preventScroll: true});", axial)
    wait_for(browser, lambda: browser.execute_script(
        "return document.activeElement === arguments[0].closest('.qa-view');", axial), "the axial view focused")
    ActionChains(browser).send_keys(Keys.ARROW_DOWN).perform()
    wait_for(browser, lambda: title(browser, "view-a-axial").startswith("axial 7/"), "the next slice")
    wait_for(browser, lambda: "at=6,32,32" in browser.current_url, "the address follows the slice")
    link = browser.current_url
    for part in ("w=1500", "l=-600", "overlays=reference,budget", "grid=1x3", "zoom=2,"):
        assert part in link, (part, link)
    browser.find_element(By.ID, "viewer-copy-link").click()
    wait_for(browser, lambda: browser.find_element(By.ID, "viewer-copy-link").text == "Link copied", "copied")

    open_page(browser, server + "/")
    open_page(browser, link)
    wait_for(browser, lambda: title(browser, "view-a-axial").startswith("axial 7/"), "the link's slice")
    wait_for(browser, lambda: readout() == "W 1500 / L -600", "the link's window and level")
    wait_for(browser, lambda: abs(span("view-a-coronal") - whole / 2) < 0.01 * whole, "the link's zoom")

    open_page(browser, server + "/patient/phantom_9000?grid=3x3")
    wait_for(browser, lambda: "grid='3x3' must be one of" in browser.find_element(By.ID, "not-found").text,
             "a bad layout named")


def test_views_zoomed_while_slices_are_drawn_show_every_slice_at_the_zoom(browser: webdriver.Chrome,
                                                                         server: str) -> None:
    """Ctrl + wheel while new slices are being drawn: a relayout in the middle of dcc.Graph's draw would leave the
    draw's promise unresolved and the view frozen on its slice (every later figure queues behind it), and a redrawn
    view comes with the whole image's ranges. Every view ends on its last slice, all at the same zoom."""
    open_page(browser, server + "/patient/phantom_9000?zoom=2,12,32,32&at=5,32,32")
    wait_for(browser, lambda: title(browser, "view-a-axial").startswith("axial 6/"), "the axial view at slice 6")

    def span(graph: str) -> float:
        x = figure(browser, graph)["layout"]["xaxis"]["range"]
        return float(x[1] - x[0])

    axial = browser.find_element(By.ID, "view-a-axial")
    for step in range(1, 4):
        browser.execute_script(f"""
            window.dash_clientside.set_props('slice-axial', {{data: {5 + step}}});
            window.dash_clientside.set_props('slice-sagittal', {{data: {32 + step}}});
            const r = arguments[0].getBoundingClientRect();
            arguments[0].querySelector('.nsewdrag').dispatchEvent(new WheelEvent('wheel', {{deltaY: -100,
                ctrlKey: true, bubbles: true, cancelable: true, clientX: r.left + r.width / 2,
                clientY: r.top + r.height / 2}}));""", axial)
        time.sleep(0.05)
    wait_for(browser, lambda: title(browser, "view-a-axial").startswith("axial 9/"), "the axial view's last slice")
    wait_for(browser, lambda: title(browser, "view-a-sagittal").startswith("sagittal 36/"), "the sagittal's last")
    factor = 2 * 1.25 ** 3
    for graph, whole in (("view-a-axial", PLAN.map_shape[2] * PLAN.spacing_xyz[0]),
                         ("view-a-coronal", PLAN.map_shape[2] * PLAN.spacing_xyz[0]),
                         ("view-a-sagittal", PLAN.map_shape[1] * PLAN.spacing_xyz[1])):
        wait_for(browser, lambda g=graph, w=whole: abs(span(g) - w / factor) < 0.01 * w, f"{graph} at the zoom")
