"""The slice browser's tools in headless Chromium on the seeded store: a distance and a rectangle drawn with the mouse
read the values SimpleITK gives on the stored CT (the 2×2 layout's fourth cell shows them too); the wheel at a view's
first or last slice scrolls the page; the contour controls change the picture the server sends and the address."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import SimpleITK as sitk
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from qa_dashboard import viewer
from qa_dashboard.rendering import views
from qa_dashboard.store import get_store
from tests.dashboard.conftest import PLAN, decode_png
from tests.dashboard.test_browser import figure, open_page, overlay, shot, title, wait_for

CASE = "phantom_9000"
SLICES = PLAN.map_shape[0]


def _box(driver: webdriver.Chrome, graph: str) -> dict[str, float]:
    return driver.execute_script("const r = document.querySelector(`#${arguments[0]} image`).getBoundingClientRect();"
                                 "return {left: r.left, top: r.top, width: r.width, height: r.height};", graph)


def _client(driver: webdriver.Chrome, graph: str, row: float, col: float) -> tuple[int, int]:
    """Viewport pixels of a point of a view given in display pixels (rows, columns; fractions inside a pixel)."""
    g = views.geometry(viewer.load(get_store(), CASE).case, graph.split("-")[2])
    box = _box(driver, graph)
    return round(box["left"] + col * box["width"] / g.n_cols), round(box["top"] + row * box["height"] / g.n_rows)


def _voxel(plane: str, index: int, row: int, col: int) -> tuple[int, int, int]:
    g = views.geometry(viewer.load(get_store(), CASE).case, plane)
    voxel = [0, 0, 0]
    voxel[("axial", "coronal", "sagittal").index(plane)] = index
    voxel[g.rows_axis], voxel[g.cols_axis] = g.flip(row, col)
    return voxel[0], voxel[1], voxel[2]


def _measured(driver: webdriver.Chrome, box: str = "viewer-measure-list") -> dict[str, str]:
    """The newest measurement's rows (label → value)."""
    return dict(driver.execute_script(
        "const t = document.querySelector(`#${arguments[0]} table`);"
        "return t ? Array.from(t.querySelectorAll('tr')).map(r => [r.cells[0].innerText, r.cells[1].innerText]) : [];",
        box))


def _image() -> tuple[Any, sitk.Image]:
    view = viewer.load(get_store(), CASE)
    case = view.case
    image = sitk.GetImageFromArray(get_store().maps.volume(case.ct_path).astype(np.float64))
    image.SetSpacing(case.spacing_xyz)
    image.SetOrigin(case.origin_xyz)
    image.SetDirection(case.direction)
    return view, image


def test_distance_and_rectangle_read_the_oracles_values(browser: webdriver.Chrome, server: str,
                                                        screenshots: Path) -> None:
    open_page(browser, server + f"/patient/{CASE}")
    wait_for(browser, lambda: title(browser, "view-a-coronal").startswith("coronal "), "the coronal view")
    ActionChains(browser).move_to_element(browser.find_element(By.ID, "signed-in-user")).perform()
    coronal = browser.find_element(By.ID, "view-a-coronal")
    browser.execute_script("arguments[0].closest('.qa-view').focus({preventScroll: true});", coronal)
    ActionChains(browser).send_keys("d").perform()  # the distance tool, by its key on the focused view
    wait_for(browser, lambda: browser.find_element(By.ID, "_dbcprivate_radioitems_viewer-tool_input_distance")
             .is_selected(), "the distance tool chosen")

    index = int(parse_qs(urlparse(browser.current_url).query)["at"][0].split(",")[1])
    ends = [(3, 10), (18, 50)]  # display (row, column) of the coronal view: rows 3 mm apart, columns 1.5 mm
    clicks = ActionBuilder(browser)
    for row, col in ends:
        clicks.pointer_action.move_to_location(*_client(browser, "view-a-coronal", row + 0.5, col + 0.5)).click()
    clicks.perform()
    rows = wait_for(browser, lambda: _measured(browser).get("distance") and _measured(browser), "the distance")
    view, image = _image()
    voxels = [_voxel("coronal", index, r, c) for r, c in ends]
    assert rows["from voxel (z, y, x)"] == ", ".join(map(str, voxels[0]))
    assert rows["to voxel (z, y, x)"] == ", ".join(map(str, voxels[1]))
    points = [np.array(image.TransformIndexToPhysicalPoint((v[2], v[1], v[0]))) for v in voxels]
    oracle = float(np.linalg.norm(points[0] - points[1]))
    assert rows["distance"] == f"{oracle:.2f} mm"
    wait_for(browser, lambda: any(t.get("name") == "measurement" and t["text"][-1] == f"{oracle:.1f} mm"
                                  for t in figure(browser, "view-a-coronal")["data"]), "the distance drawn")

    browser.find_element(By.CSS_SELECTOR, "label[for='_dbcprivate_radioitems_viewer-tool_input_rectangle']").click()
    axial_index = int(parse_qs(urlparse(browser.current_url).query)["at"][0].split(",")[0])
    (r0, c0), (r1, c1) = (20, 12), (40, 30)  # display pixels, inclusive: corners a quarter pixel outside them
    drag = ActionBuilder(browser)
    drag.pointer_action.move_to_location(*_client(browser, "view-a-axial", r0 + 0.25, c0 + 0.25)).pointer_down()
    drag.pointer_action.move_to_location(*_client(browser, "view-a-axial", r1 + 0.75, c1 + 0.75)).pointer_up()
    drag.perform()
    rows = wait_for(browser, lambda: "mean" in _measured(browser) and _measured(browser), "the region's statistics")
    g = views.geometry(view.case, "axial")
    ct = sitk.GetArrayFromImage(image)[axial_index]
    shown = ct[::-1] if g.flip_rows else ct
    shown = shown[:, ::-1] if g.flip_cols else shown
    mask = np.zeros(shown.shape, np.uint8)
    mask[r0:r1 + 1, c0:c1 + 1] = 1
    statistics = sitk.LabelStatisticsImageFilter()
    statistics.Execute(sitk.GetImageFromArray(np.ascontiguousarray(shown)), sitk.GetImageFromArray(mask))
    assert rows["voxels"] == str(statistics.GetCount(1)) == str((r1 - r0 + 1) * (c1 - c0 + 1))
    assert rows["mean"] == f"{statistics.GetMean(1):.1f} HU"
    assert rows["SD"] == f"{statistics.GetSigma(1):.1f} HU"
    assert (rows["min"], rows["max"]) == (f"{statistics.GetMinimum(1):.1f} HU", f"{statistics.GetMaximum(1):.1f} HU")
    area = statistics.GetCount(1) * g.row_mm * g.col_mm
    assert rows["area"] == (f"{area / 100:.2f} cm²" if area >= 100 else f"{area:.1f} mm²")
    a = int(parse_qs(urlparse(browser.current_url).query)["a"][0])
    result = view.results[a]
    entropy = get_store().maps.volume(result.maps["entropy"])[axial_index].astype(np.float64)
    entropy = entropy[::-1] if g.flip_rows else entropy
    entropy = entropy[:, ::-1] if g.flip_cols else entropy
    assert rows[f"mean entropy ({result.configuration})"] == f"{entropy[mask.astype(bool)].mean():.3f}"
    assert title(browser, "view-a-axial").startswith(f"axial {axial_index + 1}/"), "a drag measures, never pans"

    browser.find_element(By.CSS_SELECTOR, "label[for='_dbcprivate_radioitems_viewer-grid_input_2x2']").click()
    wait_for(browser, lambda: browser.find_element(By.ID, "viewer-readout").is_displayed(), "the fourth cell")
    assert _measured(browser, "viewer-measure-cell") == rows, "the 2×2 layout's fourth cell shows the measurements"
    shot(browser, screenshots, "21_measurements_2x2")
    browser.execute_script("document.getElementById('view-a-axial').scrollIntoView({block: 'center'});")
    outside = ActionBuilder(browser)
    outside.pointer_action.move_to_location(*_client(browser, "view-a-axial", 10, 10)).pointer_down()
    outside.pointer_action.move_to_location(*_client(browser, "view-a-axial", 10, -1)).pointer_up()  # left of it
    outside.perform()
    wait_for(browser, lambda: "is outside the axial image" in browser.find_element(By.ID, "viewer-measure-list").text,
             "a corner off the image named")
    browser.find_element(By.ID, "viewer-measure-clear").click()
    wait_for(browser, lambda: not _measured(browser), "the measurements cleared")


def test_the_wheel_at_a_views_ends_scrolls_the_page(browser: webdriver.Chrome, server: str) -> None:
    open_page(browser, server + f"/patient/{CASE}")
    wait_for(browser, lambda: title(browser, "view-a-axial").startswith(f"axial {SLICES // 2 + 1}/"), "the view")
    axial = browser.find_element(By.ID, "view-a-axial")
    ActionChains(browser).move_to_element(browser.find_element(By.ID, "signed-in-user")).perform()
    browser.execute_script("arguments[0].closest('.qa-view').focus({preventScroll: true});", axial)

    def scrolled() -> int:
        return int(browser.execute_script("return Math.round(window.scrollY)"))

    def wheel(delta: int) -> None:
        ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(axial), 0, delta).perform()

    wheel(120)  # inside the range: the slice moves, the page stays
    wait_for(browser, lambda: title(browser, "view-a-axial").startswith(f"axial {SLICES // 2 + 2}/"), "the next")
    assert scrolled() == 0
    ActionChains(browser).send_keys(Keys.END).perform()
    wait_for(browser, lambda: title(browser, "view-a-axial").startswith(f"axial {SLICES}/"), "the last slice")
    wheel(120)
    wait_for(browser, lambda: scrolled() > 0, "the page scrolled down past the last slice")
    assert title(browser, "view-a-axial").startswith(f"axial {SLICES}/")
    ActionChains(browser).send_keys(Keys.HOME).perform()
    wait_for(browser, lambda: title(browser, "view-a-axial").startswith("axial 1/"), "the first slice")
    down = scrolled()
    wheel(-120)
    wait_for(browser, lambda: scrolled() < down, "the page scrolled up past the first slice")
    assert title(browser, "view-a-axial").startswith("axial 1/")


def test_contour_controls_change_the_picture_and_the_address(browser: webdriver.Chrome, server: str) -> None:
    colour = "#ff0000"
    open_page(browser, server + f"/patient/{CASE}?overlays=reference,prediction")
    wait_for(browser, lambda: overlay(browser), "the overlay")

    def changed(before: np.ndarray) -> int:
        return int(np.any(decode_png(overlay(browser)) != before, axis=-1).sum())

    def query() -> dict[str, list[str]]:
        return parse_qs(urlparse(browser.current_url).query)

    first = decode_png(overlay(browser))
    thumb = browser.find_element(By.CSS_SELECTOR, "#viewer-thickness [role=slider]")
    thumb.click()
    ActionChains(browser).send_keys(Keys.END).perform()  # the thickest contour, 4 px
    wait_for(browser, lambda: changed(first) > 0, "thicker contours drawn")
    wait_for(browser, lambda: query().get("thickness") == ["4"], "the thickness in the address")
    thick = decode_png(overlay(browser))
    assert (thick[..., 3] > 0).sum() > (first[..., 3] > 0).sum(), "a thicker contour covers more pixels"

    browser.find_element(By.CSS_SELECTOR, "label[for='viewer-fill']").click()
    wait_for(browser, lambda: changed(thick) > 0, "the structures filled")
    wait_for(browser, lambda: query().get("fill") == ["1"], "the fill in the address")
    filled = decode_png(overlay(browser))

    # a colour input opens the system's picker, which no driver can click: its value is set as the picker sets it
    browser.execute_script(
        "const input = document.querySelector('#viewer-colour-pickers input[type=color]');"
        "Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(input, arguments[0]);"
        "input.dispatchEvent(new Event('input', {bubbles: true}));", colour)
    wait_for(browser, lambda: changed(filled) > 0, "the first structure in its new colour")
    wait_for(browser, lambda: query().get("colours", [""])[0].startswith(colour[1:]), "the colour in the address")
    red = decode_png(overlay(browser))
    assert np.all(red[..., :3] == (255, 0, 0), axis=-1).sum() > 0

    open_page(browser, browser.current_url)  # the address alone reproduces the picture
    wait_for(browser, lambda: np.array_equal(decode_png(overlay(browser)), red), "the same picture from the link")
