"""Review-budget measures over ROI voxels ranked by uncertainty: the UEO curve and the error-detection AUCs.

Voxels are ranked by uncertainty with the review budget's rounding and tie rule
(:mod:`pipeline.metrics.review_budget`). One ranking of the ROI serves the UEO curve, the budget mask and both AUCs: a
subset of a ranking, taken in order, is a ranking of the subset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from pipeline.metrics.kernels import ranked_auroc_pair
from pipeline.metrics.review_budget import descending_order, flagged_count


def budget_counts(budgets: Sequence[Fraction], n: int) -> NDArray[np.int64]:
    """|U_b| = ceil(b·n) for each exact budget fraction b: how many of n voxels each budget flags."""
    return np.array([flagged_count(b, n) for b in budgets], dtype=np.int64)


@dataclass(frozen=True)
class BudgetCurve:
    """UEO and companions over the budget grid; every array has one value per budget.

    Attributes:
        budgets: b, fraction of ROI voxels flagged.
        flagged_voxels: |U_b| = ceil(b·|R|).
        flagged_ml: |U_b| times the voxel volume, in mL.
        hits: |U_b ∩ E|.
        ueo: 2|U_b ∩ E| / (|U_b| + |E|); 0 at b = 0; NaN throughout when E is empty and the policy excludes.
        recall: |U_b ∩ E| / |E| (NaN when E is empty).
        precision: |U_b ∩ E| / |U_b| (NaN when nothing is flagged).
    """

    budgets: NDArray[np.float64]
    flagged_voxels: NDArray[np.int64]
    flagged_ml: NDArray[np.float64]
    hits: NDArray[np.int64]
    ueo: NDArray[np.float64]
    recall: NDArray[np.float64]
    precision: NDArray[np.float64]

    def area(self) -> float:
        """UEO-AUC: trapezoid area of UEO(b) over the grid divided by the budget range (mean UEO), in [0, 1]."""
        width = float(self.budgets[-1] - self.budgets[0])
        return float(np.trapezoid(self.ueo, self.budgets) / width)


def ueo_curve(
    order: NDArray[np.signedinteger],
    errors: NDArray[np.bool_],
    budgets: Sequence[Fraction],
    voxel_ml: float,
    exclude_if_no_error: bool = False,
) -> BudgetCurve:
    """UEO curve of ROI voxels ranked by ``order`` (from :func:`descending_order` of their entropy).

    Args:
        order: the ranking of the |R| ROI voxels, most uncertain first, or its first ceil(max(b)·|R|) entries.
        errors: E as booleans over the same voxels, shape (|R|,).
        budgets: exact budget fractions b in [0, 1], ascending.
        voxel_ml: volume of one voxel in mL.
        exclude_if_no_error: with no error voxel, UEO is NaN (instead of 0) so cohort means skip the case.
    """
    n = int(errors.size)
    flagged = budget_counts(budgets, n)
    if order.ndim != 1 or errors.ndim != 1 or not int(flagged.max()) <= order.size <= n:
        raise ValueError(
            f"order must rank at least the {int(flagged.max())} most uncertain of the {n} voxels of errors, "
            f"got {order.shape} for errors {errors.shape}"
        )
    cumulative = np.concatenate(([0], np.cumsum(errors[order[: int(flagged.max())]], dtype=np.int64)))
    hits = cumulative[flagged]
    n_errors = int(np.count_nonzero(errors))
    denominator = (flagged + n_errors).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ueo = np.where(denominator > 0, 2.0 * hits / denominator, 0.0)
        recall = hits / n_errors if n_errors else np.full(flagged.shape, np.nan)
        precision = np.where(flagged > 0, hits / flagged, np.nan)
    ueo[flagged == 0] = 0.0
    if n_errors == 0 and exclude_if_no_error:
        ueo = np.full(flagged.shape, np.nan)
    return BudgetCurve(
        budgets=np.array([float(b) for b in budgets]),
        flagged_voxels=flagged,
        flagged_ml=flagged * voxel_ml,
        hits=hits,
        ueo=ueo,
        recall=np.asarray(recall, dtype=np.float64),
        precision=np.asarray(precision, dtype=np.float64),
    )


def auroc(scores: NDArray[np.floating], positive: NDArray[np.bool_]) -> float:
    """AUROC of finite ``scores`` (n,) separating ``positive`` (n,) from the rest; average ranks for ties; NaN
    when either class is empty."""
    if scores.shape != positive.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and positive {positive.shape} must be 1-D of equal length")
    everything = np.ones(scores.shape, dtype=bool)
    return ranked_auroc_pair(descending_order(scores), scores, positive.astype(bool, copy=False), everything)[0]


def capture_area(ranked_positive: NDArray[np.bool_], budgets: Sequence[Fraction]) -> float:
    """Mean fraction of positives captured when flagging the top ceil(b·n) of n ranked voxels, over the budgets.

    ``ranked_positive`` (n,) flags positives, most uncertain voxel first. Trapezoid area of recall(b) divided by
    the budget range; NaN when there is no positive.
    """
    n = int(ranked_positive.size)
    n_pos = int(np.count_nonzero(ranked_positive))
    if n_pos == 0:
        return math.nan
    flagged = budget_counts(budgets, n)
    cumulative = np.concatenate(([0], np.cumsum(ranked_positive[: int(flagged.max())], dtype=np.int64)))
    recall = cumulative[flagged] / n_pos
    grid = np.array([float(b) for b in budgets])
    return float(np.trapezoid(recall, grid) / (grid[-1] - grid[0]))
