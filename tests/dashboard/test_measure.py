"""The slice browser's measurement tools (``qa_dashboard.rendering.measure``) against SimpleITK and NumPy oracles on a
volume of anisotropic spacing (1.5 × 1.5 × 3.0 mm, x × y × z) whose y axis runs backwards (direction diag(1, -1, 1)),
in every view; points off the image and empty regions are refused in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.errors import InputError
from qa_dashboard.rendering import measure
from qa_dashboard.rendering.geometry import view_geometry
from qa_dashboard.viewer_measure import checked_request, traces

SHAPE = (12, 20, 30)  # z, y, x
SPACING_XYZ = (1.5, 1.5, 3.0)
SPACING_ZYX = (3.0, 1.5, 1.5)
DIRECTION = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def _image() -> tuple[np.ndarray, sitk.Image]:
    ct = np.random.default_rng(7).integers(-1000, 1500, SHAPE).astype(np.int16)
    image = sitk.GetImageFromArray(ct)
    image.SetSpacing(SPACING_XYZ)
    image.SetDirection(DIRECTION)
    image.SetOrigin((-20.0, 10.0, 5.0))
    return ct, image


def _geometry(plane: str):
    return view_geometry(plane, SHAPE, SPACING_ZYX, DIRECTION)


def _centre_mm(plane: str, voxel: tuple[int, int, int]) -> tuple[float, float]:
    """Figure mm of a voxel's pixel centre: under DIRECTION, z and y run backwards on screen (superior up, anterior
    up or left), x does not."""
    z, y, x = voxel
    row, col = {"axial": (SHAPE[1] - 1 - y, x), "coronal": (SHAPE[0] - 1 - z, x),
                "sagittal": (SHAPE[0] - 1 - z, SHAPE[1] - 1 - y)}[plane]
    return (col + 0.5) * 1.5, (row + 0.5) * {"axial": 1.5, "coronal": 3.0, "sagittal": 3.0}[plane]


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_distance_between_two_clicked_voxels_is_simpleitks_physical_distance(plane: str) -> None:
    _, image = _image()
    start, end = {"axial": ((4, 2, 3), (4, 17, 25)), "coronal": ((1, 9, 2), (10, 9, 28)),
                  "sagittal": ((0, 1, 13), (11, 18, 13))}[plane]
    view = _geometry(plane)
    index = start[("axial", "coronal", "sagittal").index(plane)]
    # a click anywhere in a voxel's pixel gives that voxel
    clicked = [measure.voxel_of(view, index, (x + 0.4, y - 0.6)) for x, y in (_centre_mm(plane, start),
                                                                             _centre_mm(plane, end))]
    assert clicked == [start, end]
    physical = [np.array(image.TransformIndexToPhysicalPoint((v[2], v[1], v[0]))) for v in (start, end)]
    oracle = float(np.linalg.norm(physical[0] - physical[1]))
    assert measure.distance_mm(start, end, SPACING_ZYX) == pytest.approx(oracle, rel=1e-12)
    if plane != "axial":  # the axial plane's pixels are square; the others cross 3 mm slices
        assert oracle != pytest.approx(math.dist(start, end) * 1.5), "the spacing is anisotropic along this path"


def test_points_off_the_image_are_named() -> None:
    view = _geometry("coronal")
    with pytest.raises(ValueError, match=r"the point \(46\.0, 10\.0\) mm is outside the coronal image "
                                         r"\(0–45\.0 × 0–36\.0 mm\)"):
        measure.voxel_of(view, 3, (46.0, 10.0))
    with pytest.raises(ValueError, match="outside the coronal image"):
        measure.region_mask(view, ((1.0, 1.0), (-0.1, 5.0)), "rectangle")
    with pytest.raises(ValueError, match="holds no voxel centre"):
        measure.region_mask(view, ((1.0, 1.0), (1.2, 1.2)), "ellipse")
    with pytest.raises(ValueError, match="rectangle or an ellipse"):
        measure.region_mask(view, ((1.0, 1.0), (9.0, 9.0)), "distance")


def _label_statistics(values: np.ndarray, mask: np.ndarray) -> sitk.LabelStatisticsImageFilter:
    statistics = sitk.LabelStatisticsImageFilter()
    statistics.Execute(sitk.GetImageFromArray(values.astype(np.float64)), sitk.GetImageFromArray(mask.astype(np.uint8)))
    return statistics


def test_rectangle_statistics_equal_simpleitks_label_statistics() -> None:
    ct, _ = _image()
    view = _geometry("coronal")  # rows: z (3 mm), columns: x (1.5 mm)
    index = 9
    shown = ct[::-1, index, :]  # the coronal slice as displayed: superior (high z) up
    corners = ((4.6, 31.0), (20.2, 7.4))  # columns whose centre is in [4.6, 20.2] mm, rows in [7.4, 31.0] mm
    mask = measure.region_mask(view, corners, "rectangle")
    cols = range(math.ceil(4.6 / 1.5 - 0.5), math.floor(20.2 / 1.5 - 0.5) + 1)
    rows = range(math.ceil(7.4 / 3.0 - 0.5), math.floor(31.0 / 3.0 - 0.5) + 1)
    oracle_mask = np.zeros_like(mask)
    oracle_mask[rows.start:rows.stop, cols.start:cols.stop] = True
    assert np.array_equal(mask, oracle_mask)
    entropy = np.random.default_rng(3).random(shown.shape)
    stats = measure.region_stats(shown, mask, 3.0 * 1.5, entropy)
    oracle = _label_statistics(shown, oracle_mask)
    assert stats.voxels == oracle.GetCount(1) == len(rows) * len(cols)
    assert stats.area_mm2 == pytest.approx(len(rows) * 3.0 * len(cols) * 1.5)
    assert stats.mean == pytest.approx(oracle.GetMean(1))
    assert stats.sd == pytest.approx(oracle.GetSigma(1))
    assert (stats.minimum, stats.maximum) == (oracle.GetMinimum(1), oracle.GetMaximum(1))
    assert stats.entropy == pytest.approx(entropy[oracle_mask].mean())


def test_ellipse_holds_the_pixel_centres_inside_the_inscribed_ellipse() -> None:
    ct, _ = _image()
    view = _geometry("axial")
    corners = ((30.0, 4.0), (6.0, 25.0))
    mask = measure.region_mask(view, corners, "ellipse")
    oracle = np.zeros_like(mask)
    for row in range(view.n_rows):
        for col in range(view.n_cols):
            x, y = (col + 0.5) * 1.5, (row + 0.5) * 1.5
            oracle[row, col] = ((x - 18.0) / 12.0) ** 2 + ((y - 14.5) / 10.5) ** 2 <= 1
    assert np.array_equal(mask, oracle)
    stats = measure.region_stats(ct[5], mask, 1.5 * 1.5)
    assert stats.mean == pytest.approx(_label_statistics(ct[5], oracle).GetMean(1))
    assert stats.entropy is None
    one = np.zeros_like(mask)
    one[0, 0] = True
    single = measure.region_stats(ct[5], one, 2.25)
    assert single.voxels == 1 and single.sd is None, "one voxel has no sample SD"
    assert measure.area_text(99.0) == "99.0 mm²" and measure.area_text(250.0) == "2.50 cm²"


def test_measurements_are_drawn_on_their_own_slice_only() -> None:
    kept = [{"tool": "distance", "plane": "axial", "index": 4, "points": [[1.0, 2.0], [3.0, 4.0]], "label": "2.8 mm"},
            {"tool": "ellipse", "plane": "axial", "index": 5, "points": [[1.0, 2.0], [9.0, 6.0]], "label": "x"},
            {"tool": "rectangle", "plane": "coronal", "index": 4, "points": [[1.0, 2.0], [9.0, 6.0]], "label": "y"}]
    drawn = traces(kept, "axial", 4)
    assert len(drawn) == 1 and drawn[0]["x"] == [1.0, 3.0] and drawn[0]["text"] == ["", "2.8 mm"]
    (rectangle,) = traces(kept, "coronal", 4)
    assert rectangle["x"] == [1.0, 9.0, 9.0, 1.0, 1.0] and rectangle["y"] == [2.0, 2.0, 6.0, 6.0, 2.0]
    (ellipse,) = traces(kept, "axial", 5)
    assert max(ellipse["x"]) == pytest.approx(9.0) and min(ellipse["y"]) == pytest.approx(2.0)


def test_a_malformed_request_is_a_user_error() -> None:
    drawn = {"tool": "distance", "plane": "coronal", "side": "a", "points": [[1.0, 2.0], [3.5, 4.0]]}
    assert checked_request(drawn) == {**drawn, "points": ((1.0, 2.0), (3.5, 4.0))}
    for change, message in (({"points": [[1.0, 2.0]]}, "points must hold two points, not 1"),
                            ({"points": [[1.0], [0, 0]]}, r"points\[0\] must be a point \[x, y\] in mm"),
                            ({"tool": "angle"}, "tool must be one of distance, rectangle, ellipse"),
                            ({"points": [[1.0, float("nan")], [0, 0]]}, r"points\[0\]\[1\] must be a number")):
        with pytest.raises(InputError, match=message):
            checked_request({**drawn, **change})
