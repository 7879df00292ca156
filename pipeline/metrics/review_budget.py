"""The review budget, owned here: its default, its cap, its rounding, its tie rule and the top-budget mask U_b.

Spec (``shared/spec/metrics.md``, "Review budget"): a budget b is a fraction of the case's ROI voxels R, in
[0, budget_max] (``MetricSettings.budget_max``, 5 % by default: the cap); U_b is the ceil(b·|R|) voxels of R with the
highest normalised entropy, ties broken stably.

- **Rounding** (:func:`flagged_count`): |U_b| = ceil(b·|R|) on the exact decimal value of b (``Fraction(str(b))``,
  so 0.02 · 50 is 1, not 2 from binary rounding), never more than |R|.
- **Tie rule** (:func:`descending_order`): ROI voxels ranked by entropy, highest first; among equal entropies the
  voxel earlier in raster (C) order of the volume ranks first. One compiled stable radix sort does it.
- **Mask** (:func:`top_budget_indices`, :func:`top_budget_mask`): the first |U_b| voxels of that ranking. The metric
  suite, the review regions, the worklist, the exports and the slice browser all take U_b from here, so they flag the
  same voxels for the same entropy.
- **Narrowing** (:func:`narrow_budget_mask`): a smaller budget's U_b is a prefix of a larger one's ranking, so it
  follows from a stored mask and the entropy without the ROI.
- **Default** (:data:`DEFAULT_FRACTION`, 2 %): the budget of the mask the batch stores, the worklist's, the slice
  browser's and the exports' when none is given.
- **Time budgets** (:class:`Budget` of kind ``minutes``): minutes per patient become millilitres at a review rate
  (seconds per mL), then a fraction of the case's ROI volume, capped at the cap; given budget steps (the fractions the
  batch stores review regions at), rounded down to the largest step at or below it, so the list never flags more
  than the minutes allow and opens from the store; below the smallest step the fraction is kept as it is.
- **Review rate** (:func:`review_rate`): the department's median seconds per flagged mL over its measured review
  items once there are at least ``measured_items`` of them (``ReviewSettings``, 20 by default), else the configured
  placeholder, labelled as such. The worklist's time budgets and its expected minutes both use it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from pipeline.errors import InputError
from pipeline.metrics.kernels import stable_descending_order
from pipeline.metrics.settings import DEFAULT_SETTINGS

DEFAULT_FRACTION = 0.02
"""The default review budget: 2 % of ROI voxels."""

DEFAULT_CAP = DEFAULT_SETTINGS.budget_max
"""The cap of the spec's default settings (5 %); a run's own cap is its ``MetricSettings.budget_max``."""


def flagged_count(fraction: float | Fraction, roi_voxels: int) -> int:
    """|U_b| = ceil(b·|R|) for a budget ``fraction`` b of ``roi_voxels`` |R| (exact decimal b; at most |R|)."""
    exact = fraction if isinstance(fraction, Fraction) else Fraction(str(fraction))
    return min(roi_voxels, math.ceil(exact * roi_voxels))


def descending_order(scores: NDArray[np.floating]) -> NDArray[np.signedinteger]:
    """Indices sorting non-negative ``scores`` (n,) from highest to lowest; ties keep ascending index order.

    With ``scores`` the entropies of ROI voxels in raster order, this is the budget's ranking and tie rule.
    """
    values = scores if scores.dtype in (np.float32, np.float64) else scores.astype(np.float32)
    return stable_descending_order(values)


def top_budget_indices(entropy: NDArray[np.floating], flat: NDArray[np.intp], fraction: float) -> NDArray[np.intp]:
    """Raster indices of U_b: the ``flagged_count(fraction, len(flat))`` voxels among ``flat`` (ascending raster
    indices of the ROI into ``entropy``, a (Z, Y, X) map) with the highest entropy, in rank order."""
    values = entropy.ravel()[flat]
    return flat[descending_order(values)[: flagged_count(fraction, flat.size)]]


def top_budget_mask(entropy: NDArray[np.floating], roi: NDArray[np.bool_], fraction: float) -> NDArray[np.bool_]:
    """U_b as a boolean (Z, Y, X) mask: the top-``fraction`` voxels of the ROI ``roi`` by ``entropy``."""
    if entropy.shape != roi.shape:
        raise ValueError(f"entropy {entropy.shape} and ROI {roi.shape} must have one shape")
    return _mask(entropy.shape, top_budget_indices(entropy, np.flatnonzero(roi), fraction))


def narrow_budget_mask(
    stored: NDArray[np.bool_], entropy: NDArray[np.floating], roi_voxels: int, fraction: float
) -> NDArray[np.bool_]:
    """U_b from a stored U_b0 (b <= b0) of a ROI of ``roi_voxels``: its ceil(b·|R|) highest-entropy voxels.

    Exact because U_b is a prefix of the ranking U_b0 is a prefix of, given the same entropy values the mask was
    made from (the store keeps the float32 entropy).
    """
    if entropy.shape != stored.shape:
        raise ValueError(f"entropy {entropy.shape} and mask {stored.shape} must have one shape")
    flat = np.flatnonzero(stored)
    wanted = flagged_count(fraction, roi_voxels)
    if wanted > flat.size:
        raise InputError(f"a budget of {fraction} needs {wanted} voxels, the stored mask holds {flat.size}")
    values = entropy.ravel()[flat]
    return _mask(entropy.shape, flat[descending_order(values)[:wanted]])


def _mask(shape: tuple[int, ...], indices: NDArray[np.intp]) -> NDArray[np.bool_]:
    mask = np.zeros(shape, dtype=bool)
    mask.ravel()[indices] = True
    return mask


@dataclass(frozen=True)
class Budget:
    """A review budget: ``fraction`` of ROI voxels (0..1), or ``minutes`` of review per patient."""

    kind: Literal["fraction", "minutes"]
    value: float

    def __post_init__(self) -> None:
        if self.kind not in ("fraction", "minutes"):
            raise InputError(f"budget kind must be 'fraction' or 'minutes', got {self.kind!r}")
        if not math.isfinite(self.value) or self.value < 0 or (self.kind == "fraction" and self.value > 1):
            bound = "in [0, 1]" if self.kind == "fraction" else "finite and >= 0"
            raise InputError(f"a {self.kind} budget must be {bound}, got {self.value}")

    def fraction(self, roi_voxels: int, voxel_ml: float, seconds_per_ml: float, cap: float = DEFAULT_CAP,
                 steps: Sequence[float] = ()) -> tuple[float, bool]:
        """The fraction of this case's ROI voxels to flag, and whether a time budget was capped to fit.

        A time budget flags ``minutes × 60 / seconds_per_ml`` mL, i.e. that volume over the ROI's volume, at most
        ``cap`` (the run's ``budget_max``), rounded down to the largest of ``steps`` at or below it (when one is).
        """
        if self.kind == "fraction":
            return self.value, False
        if roi_voxels <= 0 or voxel_ml <= 0:
            return 0.0, False
        wanted = self.value * 60.0 / seconds_per_ml / (roi_voxels * voxel_ml)
        fitting = min(wanted, cap)
        below = [step for step in steps if step <= fitting]
        return (max(below) if below else fitting), wanted > cap

    def describe(self) -> str:
        """``2.0 % of ROI voxels`` or ``5 min per patient``."""
        if self.kind == "fraction":
            return f"{100 * self.value:g} % of ROI voxels"
        return f"{self.value:g} min per patient"


DEFAULT_BUDGET = Budget("fraction", DEFAULT_FRACTION)
"""The default review budget as a :class:`Budget`."""


@dataclass(frozen=True)
class ReviewRate:
    """The review rate in force: ``seconds_per_ml``, whether it is ``measured`` (else the placeholder), how many
    measured items there are (``n_measured``) and how many the measured rate needs (``needed``)."""

    seconds_per_ml: float
    measured: bool
    n_measured: int
    needed: int

    def minutes(self, flagged_ml: float) -> float:
        """Expected review minutes for ``flagged_ml`` mL of flagged volume."""
        return flagged_ml * self.seconds_per_ml / 60.0

    def label(self) -> str:
        """Where the rate comes from, e.g. ``placeholder: 30 s/mL until 20 measured items; n measured = 3``."""
        if self.measured:
            return f"measured: {self.seconds_per_ml:.3g} s/mL (median of {self.n_measured} reviewed items)"
        return (f"placeholder: {self.seconds_per_ml:g} s/mL until {self.needed} measured items; "
                f"n measured = {self.n_measured}")


def review_rate(measured_seconds_per_ml: Sequence[float], placeholder: float, needed: int) -> ReviewRate:
    """The rate rule: the median of ``measured_seconds_per_ml`` (one value per measured review item: its active
    seconds over its flagged mL) when there are at least ``needed`` values, else ``placeholder`` (s/mL)."""
    values = [float(v) for v in measured_seconds_per_ml if math.isfinite(v) and v > 0]
    if len(values) >= needed:
        return ReviewRate(statistics.median(values), True, len(values), needed)
    return ReviewRate(placeholder, False, len(values), needed)
