"""How a volume's axes appear in each view, in radiological convention.

Axial: patient right on the viewer's left, anterior up. Coronal: right on the left, superior up. Sagittal:
anterior on the left, superior up. Which way the array runs is read from the sign of the direction cosines'
diagonal (SimpleITK, LPS), so flipped scans display the same way; oblique scans are shown along their nearest axes.
"""

from __future__ import annotations

from dataclasses import dataclass

PLANES = ("axial", "coronal", "sagittal")
PLANE_COLOURS = {"axial": "#ff3b30", "sagittal": "#ffd60a", "coronal": "#34c759"}
AXIS_PLANE = ("axial", "coronal", "sagittal")  # the plane whose slice index runs along volume axis z, y, x
_VIEW_AXES = {"axial": (1, 2), "coronal": (0, 2), "sagittal": (0, 1)}  # (rows, columns) as volume axes (z, y, x)
# the flips below always give these orientations: (top, bottom, left, right)
EDGE_LETTERS = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L"), "sagittal": ("S", "I", "A", "P")}


@dataclass(frozen=True)
class ViewGeometry:
    """One plane's display: volume axes on rows and columns, whether each is flipped, sizes and mm per pixel."""

    plane: str
    rows_axis: int
    cols_axis: int
    flip_rows: bool
    flip_cols: bool
    n_rows: int
    n_cols: int
    row_mm: float
    col_mm: float

    def flip(self, row: int, col: int) -> tuple[int, int]:
        """Display pixel ↔ volume indices along (``rows_axis``, ``cols_axis``); the mapping is its own inverse."""
        return (self.n_rows - 1 - row if self.flip_rows else row, self.n_cols - 1 - col if self.flip_cols else col)

    def pixel_at(self, x_mm: float, y_mm: float) -> tuple[int, int] | None:
        """The display pixel under figure coordinates (mm from the image's top-left corner), or None outside."""
        row, col = int(y_mm // self.row_mm), int(x_mm // self.col_mm)
        if 0 <= row < self.n_rows and 0 <= col < self.n_cols:
            return row, col
        return None

    def voxel(self, index: int, x_mm: float, y_mm: float) -> tuple[int, int, int] | None:
        """The voxel (z, y, x) under figure coordinates of slice ``index`` of this view, or None outside the image."""
        pixel = self.pixel_at(x_mm, y_mm)
        if pixel is None:
            return None
        voxel = [0, 0, 0]
        voxel[AXIS_PLANE.index(self.plane)] = index
        voxel[self.rows_axis], voxel[self.cols_axis] = self.flip(*pixel)
        return voxel[0], voxel[1], voxel[2]


def view_geometry(plane: str, shape_zyx: tuple[int, int, int], spacing_zyx: tuple[float, float, float],
                  direction: tuple[float, ...]) -> ViewGeometry:
    """The display of ``plane`` for a volume of ``shape_zyx`` (SimpleITK ``direction``, row-major 3 × 3)."""
    if plane not in _VIEW_AXES:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
    rows_axis, cols_axis = _VIEW_AXES[plane]
    # diagonal of the direction matrix for volume axes z, y, x (SimpleITK orders it x, y, z)
    sign = {0: direction[8], 1: direction[4], 2: direction[0]}
    # low index is superior/anterior/right when the axis runs towards -z/-y/-x in LPS; superior must be up
    flip = {0: sign[0] > 0, 1: sign[1] < 0, 2: sign[2] < 0}
    return ViewGeometry(plane, rows_axis, cols_axis, flip[rows_axis], flip[cols_axis], shape_zyx[rows_axis],
                        shape_zyx[cols_axis], spacing_zyx[rows_axis], spacing_zyx[cols_axis])
