"""Distribution shift on a fixed ROI: how uncertain a configuration is around a reference structure on one case,
ranked against the same configuration on in-distribution cases.

The metric ROI grows from the prediction, so two configurations (or one configuration on two scans) are scored on
different voxels; an "is this scan out of distribution?" claim needs the same kind of voxels everywhere. Here the
ROI is fixed by the reference alone (``radius_mm`` around one reference structure), and each configuration's mean
entropy there is compared with its OWN values on in-distribution cases (entropy scales differ between single models
and ensembles, so one configuration's number is never compared with another's).

Pure: arrays in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.metrics.roi import dilate_mm
from pipeline.metrics.validation import check_spacing


def fixed_roi_entropy(
    entropy: NDArray[np.floating], structure: NDArray[np.bool_], spacing: Sequence[float], radius_mm: float
) -> float:
    """Mean of ``entropy`` over the voxels within ``radius_mm`` of the reference ``structure``.

    Args:
        entropy: normalised predictive entropy per voxel, shaped (Z, Y, X), in [0, 1].
        structure: the reference structure's mask, shaped (Z, Y, X), boolean; must hold at least one voxel.
        spacing: voxel size (z, y, x) in mm.
        radius_mm: distance from the structure (Euclidean, real spacing), >= 0.

    Returns:
        The mean entropy (float64 accumulation) over the ROI.
    """
    if entropy.shape != structure.shape or entropy.ndim != 3:
        raise ValueError(f"entropy {entropy.shape} and structure {structure.shape} must be the same (Z, Y, X) shape")
    if structure.dtype != np.bool_:
        raise ValueError(f"structure must be a boolean mask, got {structure.dtype}")
    if not (radius_mm >= 0 and math.isfinite(radius_mm)):
        raise ValueError(f"radius_mm must be finite and >= 0, got {radius_mm}")
    if not structure.any():
        raise ValueError("the reference structure holds no voxel: no fixed ROI")
    roi = dilate_mm(structure, check_spacing(spacing), radius_mm)
    return float(np.mean(roi.gather(entropy), dtype=np.float64))


@dataclass(frozen=True)
class ShiftRank:
    """Where one value falls among in-distribution values of the same configuration.

    Attributes:
        value: the case's value.
        below: in-distribution values strictly below it.
        ties: in-distribution values equal to it.
        n: in-distribution values.
    """

    value: float
    below: int
    ties: int
    n: int

    @property
    def percentile(self) -> float:
        """The mid-rank empirical percentile, 0–100: (below + ties / 2) / n × 100."""
        return 100.0 * (self.below + 0.5 * self.ties) / self.n

    @property
    def above_all(self) -> bool:
        """The value exceeds every in-distribution value."""
        return self.below == self.n


def rank_against(value: float, in_distribution: Sequence[float]) -> ShiftRank:
    """Rank ``value`` among ``in_distribution`` (finite numbers, at least one)."""
    reference = np.asarray(in_distribution, dtype=np.float64)
    if reference.ndim != 1 or reference.size == 0:
        raise ValueError("in_distribution must hold at least one value")
    if not (math.isfinite(value) and np.all(np.isfinite(reference))):
        raise ValueError("value and in_distribution must be finite")
    return ShiftRank(value=float(value), below=int(np.count_nonzero(reference < value)),
                     ties=int(np.count_nonzero(reference == value)), n=int(reference.size))
