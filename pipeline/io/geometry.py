"""The voxel grid of an image in patient space, and the check that two grids are the same within a tolerance.

A reference must lie on its CT's grid (the batch) or on its probability map's grid (``evaluate``): same size, and
spacing, origin and direction cosines within :data:`GEOMETRY_TOLERANCE`. A reference with flipped direction
cosines has the same array shape and spacing but puts every voxel elsewhere in the patient, so all four are compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

GEOMETRY_TOLERANCE = 1e-3  # mm (spacing, origin) and direction cosines


@dataclass(frozen=True)
class Geometry:
    """A 3-D grid in SimpleITK order: size (x, y, z) in voxels, spacing and origin (x, y, z) in mm, direction
    cosines as 9 numbers (row-major 3 × 3, columns = the image axes in patient space)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        """The first three axes of ``image`` (a 4-D class-probability NIfTI keeps its spatial grid)."""
        n = image.GetDimension()
        cosines = np.reshape(image.GetDirection(), (n, n))[:3, :3]
        return cls(tuple(int(v) for v in image.GetSize()[:3]), tuple(float(v) for v in image.GetSpacing()[:3]),
                   tuple(float(v) for v in image.GetOrigin()[:3]), tuple(float(v) for v in cosines.ravel()))

    def describe(self) -> str:
        """One line: ``size 64x64x48, spacing (7, 7, 12), origin (0, 0, 0), direction (1, 0, 0, 0, 1, 0, 0, 0, 1)``."""
        def numbers(values: tuple[float, ...]) -> str:
            return "(" + ", ".join(f"{round(v, 4):g}" for v in values) + ")"

        return (f"size {'x'.join(str(v) for v in self.size)}, spacing {numbers(self.spacing)}, origin "
                f"{numbers(self.origin)}, direction {numbers(self.direction)}")


def mismatch(expected: Geometry, actual: Geometry, tolerance: float = GEOMETRY_TOLERANCE) -> str | None:
    """The first of size, spacing, origin, direction in which ``actual`` differs from ``expected`` (None: same)."""
    if actual.size != expected.size:
        return "size"
    for what in ("spacing", "origin", "direction"):
        if not np.allclose(getattr(expected, what), getattr(actual, what), rtol=0, atol=tolerance):
            return what
    return None
