"""What the browser derives from a result's whole maps: the mask of a smaller review budget, the uncertain slice.

The batch stores the top-budget mask at one budget b0 (``artifacts.budget``, the batch's ``--budget``). Its voxels
are the ceil(b0·|ROI|) most uncertain of the ROI, so the mask of any smaller budget b is the ceil(b·|ROI|) most
uncertain voxels inside it. Slice by slice that is a threshold on the stored entropy, found once per result and
budget (float16 entropy: voxels tied at the cut are all drawn). Budgets above b0 need the ROI, which is not stored.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from pipeline.review.regions import flagged_count
from qa_dashboard.rendering.maps import MapCache

BUDGET_TOLERANCE = 1e-9


def budget_threshold(maps: MapCache, entropy_path: str, mask_path: str, roi_voxels: int, budget: float
                     ) -> float | None:
    """The entropy at or above which a stored-mask voxel is flagged at ``budget`` (None: nothing is flagged)."""
    ranked = maps.derived(("ranked-entropy", mask_path), lambda: _ranked_entropy(maps, entropy_path, mask_path))
    count = min(flagged_count(budget, roi_voxels), ranked.size)
    return float(ranked[count - 1]) if count > 0 else None


def _ranked_entropy(maps: MapCache, entropy_path: str, mask_path: str) -> NDArray[np.float32]:
    entropy = maps.volume(entropy_path)
    mask = maps.volume(mask_path).astype(bool)
    return np.sort(entropy[mask].astype(np.float32))[::-1]


def budget_mask(mask: NDArray[np.generic], entropy: NDArray[np.floating], threshold: float | None
                ) -> NDArray[np.bool_]:
    """The mask at a budget below the stored one, from the stored mask, entropy and the budget's threshold."""
    if threshold is None:
        return np.zeros(mask.shape, bool)
    return mask.astype(bool) & (entropy >= threshold)


def is_stored_budget(budget: float, stored: float) -> bool:
    """Whether ``budget`` is the stored mask's own budget (or above it, which the stored mask stands in for)."""
    return budget >= stored - BUDGET_TOLERANCE


def most_uncertain_slice(maps: MapCache, entropy_path: str) -> int:
    """The axial slice with the largest summed entropy."""
    profile = maps.derived(("entropy-profile", entropy_path),
                           lambda: maps.volume(entropy_path).astype(np.float32).sum(axis=(1, 2)))
    return int(np.argmax(profile))
