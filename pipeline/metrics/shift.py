"""Distribution shift: how uncertain a configuration is on one scan over a region that its own prediction does not
choose, ranked against the same configuration on in-distribution cases.

The metric ROI grows from the prediction, so two configurations (or one configuration on two scans) are scored on
different voxels; an "is this scan out of distribution?" claim needs the same kind of voxels everywhere. The region
here is the body (:func:`body_region`, CT numbers above a threshold): it needs neither a reference (so every scan,
referenced or not, gets the stored per-scan score, :func:`ood_score`) nor any configuration's prediction. Each
configuration's mean entropy there is compared with its OWN values on in-distribution cases (entropy scales differ
between single models and ensembles, so one configuration's number is never compared with another's).

On the demo (committed models, 6 phantoms against the real TotalSegmentator CT) the body region flags the real CT
for 10 of 12 configurations; the consensus of all configurations' predictions grown by 15 mm flagged 6 of 12, the
majority consensus is empty on the real CT, and 15 mm around the reference spleen (the earlier fixed ROI, which needs
a reference) flagged none (README, "A night in the clinic").

Pure: arrays in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


def body_region(ct: NDArray[np.number], threshold_hu: float) -> NDArray[np.bool_]:
    """The voxels of ``ct`` (Z, Y, X, CT numbers in HU) above ``threshold_hu``: the body (and the couch), not the
    air around it, whatever any model predicts."""
    if ct.ndim != 3:
        raise ValueError(f"ct must be a (Z, Y, X) volume, got shape {ct.shape}")
    return np.asarray(ct > threshold_hu)


def region_mean_entropy(entropy: NDArray[np.floating], region: NDArray[np.bool_]) -> float | None:
    """Mean of ``entropy`` (Z, Y, X, normalised, 0..1) over ``region`` (same shape, boolean), float64
    accumulation; None when the region holds no voxel."""
    if entropy.shape != region.shape:
        raise ValueError(f"entropy {entropy.shape} and region {region.shape} must have the same shape")
    if not region.any():
        return None
    return float(np.mean(entropy[region], dtype=np.float64))


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


@dataclass(frozen=True)
class OodScore:
    """A scan's out-of-distribution score for one configuration.

    Attributes:
        percentile: the mid-rank percentile (0-100) of its value among the configuration's in-distribution values;
            None when fewer than the minimum ("not enough reference cases").
        reference_n: how many in-distribution values it was ranked against (or found, when too few).
        flagged: percentile at or above the flag threshold; None when not ranked.
    """

    percentile: float | None
    reference_n: int
    flagged: bool | None


def ood_score(value: float, in_distribution: Sequence[float], min_reference: int, flag_percentile: float
              ) -> OodScore:
    """Rank ``value`` (finite) among ``in_distribution`` (finite; the same configuration's values on the
    in-distribution cases, the scan itself left out) when there are at least ``min_reference`` of them, and flag it
    at or above ``flag_percentile`` (0-100]."""
    if len(in_distribution) < min_reference:
        return OodScore(None, len(in_distribution), None)
    rank = rank_against(value, in_distribution)
    return OodScore(rank.percentile, rank.n, rank.percentile >= flag_percentile)
