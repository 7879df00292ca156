"""The slice browser's measurement tools as pure functions of arrays: a distance between two voxels and the HU
statistics of a rectangle or ellipse drawn on one view.

Points come as figure coordinates of a view (mm from the image's top-left corner, :mod:`.views`); a point is the voxel
whose pixel it falls in (its centre, as the hover probe reads it). A region holds the voxels whose pixel centres lie
inside the rectangle spanned by two corners, or inside the ellipse inscribed in it. Distances use the volume's own
spacing along each axis (z, y, x in mm), so a coronal or sagittal distance across thick slices is right.
Invalid points raise ``ValueError`` with one line naming the point and the view's extent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from qa_dashboard.rendering.geometry import ViewGeometry

TOOLS = ("distance", "rectangle", "ellipse")
Point = tuple[float, float]  # (x, y) in mm from the view's top-left corner
Voxel = tuple[int, int, int]  # (z, y, x) indices


def voxel_of(view: ViewGeometry, index: int, point: Point) -> Voxel:
    """The voxel (z, y, x) of slice ``index`` of ``view`` under ``point``; ValueError outside the image."""
    x, y = point
    voxel = view.voxel(index, x, y) if math.isfinite(x) and math.isfinite(y) else None
    if voxel is None:
        raise ValueError(f"the point ({x:.1f}, {y:.1f}) mm is outside the {view.plane} image "
                         f"(0–{view.n_cols * view.col_mm:.1f} × 0–{view.n_rows * view.row_mm:.1f} mm)")
    return voxel


def distance_mm(start: Voxel, end: Voxel, spacing_zyx: tuple[float, float, float]) -> float:
    """The distance in mm between the centres of voxels ``start`` and ``end`` (z, y, x) of a volume whose voxels
    measure ``spacing_zyx`` mm (anisotropic: each axis its own)."""
    return float(math.sqrt(sum(((a - b) * s) ** 2 for a, b, s in zip(start, end, spacing_zyx, strict=True))))


def region_mask(view: ViewGeometry, corners: tuple[Point, Point], tool: str) -> NDArray[np.bool_]:
    """The pixels (display rows × columns, ``view``'s n_rows × n_cols) of a ``tool`` region ("rectangle" or
    "ellipse") spanned by two opposite ``corners`` (mm): those whose centre lies inside the rectangle, or inside
    the ellipse inscribed in it. Both corners must lie on the image (ValueError otherwise); so must one pixel centre."""
    if tool not in TOOLS[1:]:
        raise ValueError(f"a region is a rectangle or an ellipse, not {tool!r}")
    for corner in corners:
        voxel_of(view, 0, corner)
    (x0, y0), (x1, y1) = corners
    left, right, top, bottom = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    cy = (np.arange(view.n_rows) + 0.5)[:, None] * view.row_mm
    cx = (np.arange(view.n_cols) + 0.5)[None, :] * view.col_mm
    if tool == "rectangle":
        mask = (cx >= left) & (cx <= right) & (cy >= top) & (cy <= bottom)
    else:
        rx, ry = (right - left) / 2, (bottom - top) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            mask = ((cx - (left + rx)) / rx) ** 2 + ((cy - (top + ry)) / ry) ** 2 <= 1
    if not mask.any():
        raise ValueError(f"the {tool} holds no voxel centre: draw a larger one")
    return mask


@dataclass(frozen=True)
class RegionStats:
    """HU statistics of a region: voxel count, area (mm²), mean, sample SD (n − 1, as SimpleITK's label
    statistics; None for one voxel), minimum and maximum (HU), and the mean normalised entropy (0–1) when given."""

    voxels: int
    area_mm2: float
    mean: float
    sd: float | None
    minimum: float
    maximum: float
    entropy: float | None = None


def region_stats(ct: NDArray[np.generic], mask: NDArray[np.bool_], pixel_mm2: float,
                 entropy: NDArray[np.floating] | None = None) -> RegionStats:
    """The statistics of the ``mask`` pixels of one CT slice ``ct`` (HU, same rows × columns), each pixel
    ``pixel_mm2`` mm² (row mm × column mm); with ``entropy`` (normalised entropy of the same slice, 0–1) its mean."""
    if ct.shape != mask.shape or (entropy is not None and entropy.shape != mask.shape):
        raise ValueError(f"the CT {ct.shape}, mask {mask.shape} and entropy slices must have one shape")
    values = ct[mask].astype(np.float64)
    if values.size == 0:
        raise ValueError("the region holds no voxel")
    return RegionStats(int(values.size), float(values.size * pixel_mm2), float(values.mean()),
                       float(values.std(ddof=1)) if values.size > 1 else None, float(values.min()),
                       float(values.max()), None if entropy is None else float(entropy[mask].astype(np.float64).mean()))


def outline_points(corners: tuple[Point, Point], tool: str, steps: int = 64) -> tuple[list[float], list[float]]:
    """The closed outline (x list, y list, mm) of a rectangle or of the ellipse inscribed in it, to draw."""
    (x0, y0), (x1, y1) = corners
    if tool == "rectangle":
        return [x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0]
    angles = np.linspace(0, 2 * np.pi, steps + 1)
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2, abs(y1 - y0) / 2
    return (cx + rx * np.cos(angles)).round(3).tolist(), (cy + ry * np.sin(angles)).round(3).tolist()


def area_text(area_mm2: float) -> str:
    """An area in mm² below 1 cm², else in cm²."""
    return f"{area_mm2:.1f} mm²" if area_mm2 < 100 else f"{area_mm2 / 100:.2f} cm²"
