"""The metric engine: pure functions of NumPy arrays implementing ``shared/spec/metrics.md``.

Nothing here imports a web, database or deep-learning package.
"""

from pipeline.metrics.budget import BudgetCurve, auroc, capture_area, ueo_curve
from pipeline.metrics.calibration import (
    ReliabilityBins,
    brier_score,
    expected_calibration_error,
    normalized_entropy,
    reliability_bins,
)
from pipeline.metrics.cohort import PairedComparison, paired_comparison, pooled_bins, summarise_repeats
from pipeline.metrics.overlap import dice_per_class
from pipeline.metrics.pooling import MemberPool, pool_members, softmax
from pipeline.metrics.results import CaseMaps, CaseMetrics, CaseResult
from pipeline.metrics.review_budget import Budget, descending_order, flagged_count, top_budget_mask
from pipeline.metrics.roi import Roi, dilate_mm
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import evaluate_case
from pipeline.metrics.temperature import TemperatureFit, apply_temperature, fit_temperature

__all__ = [
    "Budget",
    "BudgetCurve",
    "CaseMaps",
    "CaseMetrics",
    "CaseResult",
    "MemberPool",
    "MetricSettings",
    "PairedComparison",
    "ReliabilityBins",
    "Roi",
    "TemperatureFit",
    "apply_temperature",
    "auroc",
    "brier_score",
    "capture_area",
    "descending_order",
    "dice_per_class",
    "dilate_mm",
    "evaluate_case",
    "expected_calibration_error",
    "fit_temperature",
    "flagged_count",
    "normalized_entropy",
    "paired_comparison",
    "pool_members",
    "pooled_bins",
    "reliability_bins",
    "softmax",
    "summarise_repeats",
    "top_budget_mask",
    "ueo_curve",
]
