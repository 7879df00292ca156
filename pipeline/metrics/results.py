"""Typed results of the per-case metric suite, with a JSON-ready view."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.metrics.budget import BudgetCurve
from pipeline.metrics.calibration import ReliabilityBins
from pipeline.metrics.review_budget import flagged_count


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _list(values: NDArray[np.generic]) -> list[Any]:
    return [_finite_or_none(float(v)) if isinstance(v, float) else v for v in values.tolist()]


def _per_class(values: tuple[float, ...]) -> dict[str, float | None]:
    return {str(c): _finite_or_none(value) for c, value in enumerate(values)}


@dataclass(frozen=True)
class CaseMetrics:
    """The spec's per-case numbers for one configuration.

    Attributes:
        dsc: DSC per class, index = class (background included), on the full volume; NaN for a class absent from
            both prediction and reference under the ``exclude`` empty-structure policy.
        dsc_mean_fg: mean DSC over the foreground classes 1..C-1 whose DSC is defined.
        ece: ROI-masked ECE in the configured mode; reliability: its per-bin sums.
        brier: ROI-masked Brier score (0..2). nll: ROI mean negative log-likelihood of the reference (nats).
        curve: UEO, recall, precision and flagged volume over the budget grid; ueo_auc: its normalised area.
        fp_tp_auc, fn_tn_auc: AUROC (or capture area) of entropy for FP vs TP and FN vs TN ROI voxels; NaN if a
            side is empty.
        ece_structure, brier_structure, ueo_auc_structure, fp_tp_auc_structure, fn_tn_auc_structure: the same per
            class, index = class, one-vs-rest on the structure's ROI R_c (``docs/metrics.md``); NaN for the
            background, for a class whose seed is empty, and for an undefined value.
        roi_voxels: |R|; error_voxels: |E|; mean_entropy_roi: mean normalised entropy over R.
        voxel_ml: volume of one voxel in mL; temperature: T applied (None = no scaling).
    """

    dsc: tuple[float, ...]
    dsc_mean_fg: float
    ece: float
    reliability: ReliabilityBins
    brier: float
    nll: float
    curve: BudgetCurve
    ueo_auc: float
    fp_tp_auc: float
    fn_tn_auc: float
    ece_structure: tuple[float, ...]
    brier_structure: tuple[float, ...]
    ueo_auc_structure: tuple[float, ...]
    fp_tp_auc_structure: tuple[float, ...]
    fn_tn_auc_structure: tuple[float, ...]
    roi_voxels: int
    error_voxels: int
    mean_entropy_roi: float
    voxel_ml: float
    temperature: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN written as None) with the keys of ``python -m pipeline evaluate``."""
        return {
            "dsc": _per_class(self.dsc),
            "dsc_mean_fg": _finite_or_none(self.dsc_mean_fg),
            "ece": _finite_or_none(self.ece),
            "brier": _finite_or_none(self.brier),
            "nll": _finite_or_none(self.nll),
            "ueo_auc": _finite_or_none(self.ueo_auc),
            "fp_tp_auc": _finite_or_none(self.fp_tp_auc),
            "fn_tn_auc": _finite_or_none(self.fn_tn_auc),
            "ece_structure": _per_class(self.ece_structure),
            "brier_structure": _per_class(self.brier_structure),
            "ueo_auc_structure": _per_class(self.ueo_auc_structure),
            "fp_tp_auc_structure": _per_class(self.fp_tp_auc_structure),
            "fn_tn_auc_structure": _per_class(self.fn_tn_auc_structure),
            "budgets": _list(self.curve.budgets),
            "ueo_curve": _list(self.curve.ueo),
            "error_recall": _list(self.curve.recall),
            "error_precision": _list(self.curve.precision),
            "flagged_ml": _list(self.curve.flagged_ml),
            "roi_voxels": self.roi_voxels,
            "error_voxels": self.error_voxels,
            "mean_entropy_roi": _finite_or_none(self.mean_entropy_roi),
            "temperature": self.temperature,
            "reliability": {
                "count": self.reliability.count.tolist(),
                "sum_confidence": self.reliability.sum_confidence.tolist(),
                "sum_correct": self.reliability.sum_correct.tolist(),
            },
        }


@dataclass(frozen=True)
class CaseMaps:
    """Voxel maps of one case and configuration, each shaped (Z, Y, X) on the original grid.

    Attributes:
        prediction: argmax class (uint8). entropy: normalised entropy of p_cal (float32, 0..1).
        error: prediction != reference (bool). budget_mask: U_b, the top-``budget`` ROI voxels by entropy (bool).
        ranking: raster indices (into the flattened map) of the ROI's highest-entropy voxels in the budget's rank
            order (:func:`pipeline.metrics.review_budget.descending_order`), as many as the larger of ``budget`` and
            the settings' ``budget_max`` flag; every U_b up to that budget is a prefix of it (:meth:`mask_at`).
        roi_voxels: |R|, the ROI's size (0: no ROI, nothing flagged).
    """

    prediction: NDArray[np.uint8]
    entropy: NDArray[np.float32]
    error: NDArray[np.bool_]
    budget_mask: NDArray[np.bool_]
    budget: float
    ranking: NDArray[np.intp]
    roi_voxels: int

    def mask_at(self, fraction: float) -> NDArray[np.bool_] | None:
        """U_b at ``fraction`` as a (Z, Y, X) mask: the first ceil(b·|R|) voxels of :attr:`ranking`; None when the
        ranking is too short for it (a budget above the ones it was made for)."""
        count = flagged_count(fraction, self.roi_voxels)
        if count > self.ranking.size:
            return None
        mask = np.zeros(self.prediction.shape, dtype=bool)
        mask.ravel()[self.ranking[:count]] = True
        return mask


@dataclass(frozen=True)
class CaseResult:
    """What :func:`pipeline.metrics.suite.evaluate_case` returns: metrics, and maps when asked for."""

    metrics: CaseMetrics
    maps: CaseMaps | None
