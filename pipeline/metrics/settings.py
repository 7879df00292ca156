"""Every option of ``shared/spec/metrics.md`` as one typed, validated settings object.

The defaults are the spec's defaults; each field names the spec line it follows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Literal

PoolingRule = Literal["prob_mean", "logit_mean"]
TemperatureMode = Literal["after_pooling", "per_member"]
RoiMode = Literal["union", "pred", "gt", "whole_volume"]
EceMode = Literal["top_label", "foreground", "classwise"]
BrierMode = Literal["all_classes", "foreground"]
EmptyErrorPolicy = Literal["zero", "exclude"]
EmptyStructurePolicy = Literal["exclude", "one"]
AucMode = Literal["roc", "capture"]
GridMapping = Literal["pooled", "per_pass"]
TEMPERATURE_GRANULARITIES = ("configuration", "class", "scanner")
"""One T per configuration (the spec's), one T_c per class (a vector), one T per scanner (pooled T as fallback)."""

_CHOICES: dict[str, tuple[str, ...]] = {
    "pooling": ("prob_mean", "logit_mean"),
    "temperature_mode": ("after_pooling", "per_member"),
    "roi_mode": ("union", "pred", "gt", "whole_volume"),
    "ece_mode": ("top_label", "foreground", "classwise"),
    "brier_mode": ("all_classes", "foreground"),
    "empty_error_policy": ("zero", "exclude"),
    "empty_structure_policy": ("exclude", "one"),
    "auc_mode": ("roc", "capture"),
    "grid_mapping": ("pooled", "per_pass"),
}


@dataclass(frozen=True)
class MetricSettings:
    """Options of the metric definitions (spec defaults).

    Attributes:
        pooling: member pooling; ``prob_mean`` = mean of member softmaxes (spec default),
            ``logit_mean`` = softmax of the mean logit (nnU-Net's native rule).
        temperature_mode: ``after_pooling`` = p_cal = softmax(log p̄ / T) (default);
            ``per_member`` = T applied to each member's logits before pooling.
        temperature_min, temperature_max: bounds of the 1-D search over log T.
        temperature_max_voxels: size of the seeded subsample of calibration ROI voxels.
        temperature_seed: seed of that subsample.
        temperature_granularities: which temperatures the protocol fits, each out of sample on the calibration
            cases and evaluated on the same test cases: ``configuration`` (one T per TS configuration, the spec's;
            always fitted, always first), ``class`` (one T_c per class: the configuration ``X+TS/class``) and
            ``scanner`` (one T per scanner, :meth:`pipeline.io.acquisition.Acquisition.scanner`: ``X+TS/scanner``).
            ``class`` needs ``temperature_mode`` ``after_pooling``. Default: ``configuration`` only.
        temperature_group_min_cases, temperature_group_min_voxels: a scanner gets its own T only with at least
            this many calibration cases and calibration ROI voxels among them; otherwise (and for a scan whose
            scanner is unknown) the pooled T of all calibration cases applies.
        roi_mode: which foreground the ROI grows from (``union`` of reference and prediction by default).
        roi_radius_mm: ROI radius in millimetres (Euclidean, real spacing).
        ece_bins: number of equal-width confidence bins on (0, 1].
        ece_mode: ``top_label`` (default), ``foreground`` (binary P(foreground) vs [g > 0]) or ``classwise``.
        brier_mode: ``all_classes`` (sum over all C classes, range 0..2) or ``foreground`` (classes 1..C-1).
        budget_max: the largest review budget, a fraction of ROI voxels.
        budget_points: points of the budget grid on [0, budget_max], both ends included.
        empty_error_policy: a case with no error voxel gets UEO(b) = 0 (``zero``) or NaN (``exclude``).
        empty_structure_policy: a class absent from both the prediction and the reference: ``exclude`` (default)
            leaves its DSC undefined (NaN; stored NULL, shown "—") and out of the foreground mean, so a structure
            that is not there cannot lift the mean; ``one`` gives it DSC = 1, the spec's formula read literally.
        auc_mode: ``roc`` = full AUROC (default); ``capture`` = area of the error-capture curve over the budget range.
        sum_tolerance: largest accepted |Σ_c p_c - 1| of an input probability map.
        grid_mapping: where the pooled map lives: ``pooled`` (default) pools softmax probabilities on the network's
            grid and maps each configuration's pooled map to the CT grid once; ``per_pass`` (validation) maps every
            pass's logits to the CT grid first and pools there.
        ood_body_hu: the out-of-distribution score's region is the scan's voxels above this CT number (HU): the
            body, found from the CT alone, the same kind of voxels for every configuration and every scan, with or
            without a reference (:mod:`pipeline.metrics.shift`).
        ood_min_reference: the fewest in-distribution values a configuration needs before a scan is ranked;
            fewer: "not enough reference cases", no percentile and no flag.
        ood_flag_percentile: a scan whose mean body entropy ranks at or above this percentile (0-100, mid-rank) of
            the same configuration's in-distribution values is flagged out of distribution.
    """

    pooling: PoolingRule = "prob_mean"
    temperature_mode: TemperatureMode = "after_pooling"
    temperature_min: float = 0.05
    temperature_max: float = 20.0
    temperature_max_voxels: int = 2_000_000
    temperature_seed: int = 0
    temperature_granularities: tuple[str, ...] = ("configuration",)
    temperature_group_min_cases: int = 3
    temperature_group_min_voxels: int = 10_000
    roi_mode: RoiMode = "union"
    roi_radius_mm: float = 15.0
    ece_bins: int = 15
    ece_mode: EceMode = "top_label"
    brier_mode: BrierMode = "all_classes"
    budget_max: float = 0.05
    budget_points: int = 51
    empty_error_policy: EmptyErrorPolicy = "zero"
    empty_structure_policy: EmptyStructurePolicy = "exclude"
    auc_mode: AucMode = "roc"
    sum_tolerance: float = 1e-3
    grid_mapping: GridMapping = "pooled"
    ood_body_hu: float = -500.0
    ood_min_reference: int = 5
    ood_flag_percentile: float = 95.0

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"MetricSettings.{name} must be one of {allowed}, got {value!r}")
        if not 0 < self.temperature_min < self.temperature_max:
            raise ValueError(
                "MetricSettings.temperature_min and temperature_max must satisfy 0 < min < max, "
                f"got {self.temperature_min}, {self.temperature_max}"
            )
        granularities = tuple(self.temperature_granularities)
        object.__setattr__(self, "temperature_granularities", granularities)  # a JSON list comes back as a tuple
        if not granularities or granularities[0] != "configuration" or len(set(granularities)) != len(granularities) \
                or not set(granularities) <= set(TEMPERATURE_GRANULARITIES):
            raise ValueError("MetricSettings.temperature_granularities must start with 'configuration' and name each "
                             f"of {TEMPERATURE_GRANULARITIES} at most once, got {granularities!r}")
        if "class" in granularities and self.temperature_mode != "after_pooling":
            raise ValueError("MetricSettings.temperature_granularities 'class' needs temperature_mode "
                             "'after_pooling' (the vector scales the pooled map)")
        if self.temperature_group_min_cases < 1 or self.temperature_group_min_voxels < 1:
            raise ValueError("MetricSettings.temperature_group_min_cases and temperature_group_min_voxels must be "
                             f">= 1, got {self.temperature_group_min_cases}, {self.temperature_group_min_voxels}")
        if self.temperature_max_voxels < 1:
            raise ValueError(f"MetricSettings.temperature_max_voxels must be >= 1, got {self.temperature_max_voxels}")
        if not self.roi_radius_mm >= 0:
            raise ValueError(f"MetricSettings.roi_radius_mm must be >= 0, got {self.roi_radius_mm}")
        if self.ece_bins < 1:
            raise ValueError(f"MetricSettings.ece_bins must be >= 1, got {self.ece_bins}")
        if not 0 < self.budget_max <= 1:
            raise ValueError(f"MetricSettings.budget_max must be in (0, 1], got {self.budget_max}")
        if self.budget_points < 2:
            raise ValueError(f"MetricSettings.budget_points must be >= 2, got {self.budget_points}")
        if not math.isfinite(self.ood_body_hu):
            raise ValueError(f"MetricSettings.ood_body_hu must be finite, got {self.ood_body_hu}")
        if self.ood_min_reference < 1:
            raise ValueError(f"MetricSettings.ood_min_reference must be >= 1, got {self.ood_min_reference}")
        if not 0 < self.ood_flag_percentile <= 100:
            raise ValueError(f"MetricSettings.ood_flag_percentile must be in (0, 100], got {self.ood_flag_percentile}")
        if not 0 < self.sum_tolerance < 1:
            raise ValueError(f"MetricSettings.sum_tolerance must be in (0, 1), got {self.sum_tolerance}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> MetricSettings:
        """Settings from a mapping of field names (e.g. a JSON settings file); the defaults fill what it leaves out.

        Unknown names and invalid values raise ``ValueError`` naming them.
        """
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown metric settings {unknown}; known: {sorted(known)}")
        for name, value in values.items():
            wanted = type(getattr(DEFAULT_SETTINGS, name))
            if wanted is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
                continue
            if wanted is float and isinstance(value, int) and not isinstance(value, bool):
                continue
            if not isinstance(value, wanted) or isinstance(value, bool) != (wanted is bool):
                raise ValueError(f"MetricSettings.{name} must be a {wanted.__name__}, got {value!r}")
        return cls(**values)  # type: ignore[arg-type]

    def budget_fractions(self) -> list[Fraction]:
        """The budget grid as exact fractions: b_i = budget_max * i / (budget_points - 1)."""
        top = Fraction(str(self.budget_max))
        return [top * i / (self.budget_points - 1) for i in range(self.budget_points)]


DEFAULT_SETTINGS = MetricSettings()
"""The spec's defaults."""
