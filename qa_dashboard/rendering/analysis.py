"""What the browser derives from a result's whole maps: the mask of a smaller review budget, the uncertain slice.

The batch stores the top-budget mask U_b0 at one budget b0 (``artifacts.budget``, the batch's ``--budget``). The mask
of a smaller budget b is a prefix of the same ranking, so it is the stored mask narrowed by the review budget's own
rounding and tie rule (:func:`pipeline.metrics.review_budget.narrow_budget_mask`, the worklist's rule too), found once
per result and budget and kept as raster indices. Budgets above b0 need the ROI, which is not stored: the stored mask
stands in for them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from pipeline.metrics.review_budget import narrow_budget_mask
from qa_dashboard.rendering.maps import MapCache

BUDGET_TOLERANCE = 1e-9


def budget_indices(maps: MapCache, entropy_path: str, mask_path: str, roi_voxels: int, budget: float
                   ) -> NDArray[np.intp]:
    """Raster indices (ascending) of U_b for a ``budget`` at or below the stored mask's, of a ROI of ``roi_voxels``."""
    def compute() -> NDArray[np.intp]:
        stored = maps.volume(mask_path).astype(bool)
        return np.flatnonzero(narrow_budget_mask(stored, maps.volume(entropy_path), roi_voxels, budget))

    return maps.derived(("budget-indices", mask_path, round(budget, 6)), compute)


def mask_plane(indices: NDArray[np.intp], shape_zyx: tuple[int, int, int], plane: str, index: int
               ) -> NDArray[np.bool_]:
    """The slice ``index`` of ``plane`` (as the artifact store reads it: axial (Y, X), coronal (Z, X), sagittal
    (Z, Y)) of the mask made of ``indices`` in a volume shaped ``shape_zyx``."""
    z, y, x = np.unravel_index(indices, shape_zyx)
    axis, rows, cols = {"axial": (z, y, x), "coronal": (y, z, x), "sagittal": (x, z, y)}[plane]
    size = {"axial": (1, 2), "coronal": (0, 2), "sagittal": (0, 1)}[plane]
    picked = axis == index
    out = np.zeros((shape_zyx[size[0]], shape_zyx[size[1]]), dtype=bool)
    out[rows[picked], cols[picked]] = True
    return out


def is_stored_budget(budget: float, stored: float) -> bool:
    """Whether ``budget`` is the stored mask's own budget (or above it, which the stored mask stands in for)."""
    return budget >= stored - BUDGET_TOLERANCE


def most_uncertain_slice(maps: MapCache, entropy_path: str) -> int:
    """The axial slice with the largest summed entropy."""
    profile = maps.derived(("entropy-profile", entropy_path),
                           lambda: maps.volume(entropy_path).astype(np.float32).sum(axis=(1, 2)))
    return int(np.argmax(profile))
