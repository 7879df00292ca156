"""The metric registry: one declaration per metric, the only place a metric's name, label and format are written.

The store (``pipeline/store/metric_values.py``), the batch, the report, the demo and the dashboard read every metric
from here at call time, so a metric added to :data:`METRICS` (with an accessor on
:class:`~pipeline.metrics.results.CaseMetrics`) reaches the stored values, the cohort queries, tables and CSV exports
without another change. Case-level metrics are one number per result, structure-level metrics one number per
foreground class; both are stored in ``metric_values`` (a structure's value with its class index), except the DSC
per structure, which ``table`` says is kept in ``structure_results`` beside the volumes.

Pure: no store or web import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.metrics.results import CaseMetrics

Direction = Literal["higher", "lower"]
Level = Literal["case", "structure"]
Table = Literal["metric_values", "structure_results"]
DOCS = "docs/metrics.md"


@dataclass(frozen=True)
class Metric:
    """One metric.

    Attributes:
        name: the key in results, the store and CSV columns (``ece``).
        label: what people read (``ECE (ROI)``).
        unit: ``""`` for unitless numbers, else the unit (``nats``, ``mL``).
        range: (low, high) of the values; high None when unbounded.
        direction: which way is better; None for a descriptive number.
        needs_reference: NULL (None) without a reference segmentation.
        level: ``case`` (one number per result) or ``structure`` (one per class, index = class).
        definition: one sentence, for tooltips.
        anchor: where ``docs/metrics.md`` explains it (``docs/metrics.md#ece-roi``).
        digits: decimals shown.
        in_summary: shown in the cohort summary (the demo's printout and the PDF report).
        read: the value of a case's metrics: a number (case level) or one number per class (structure level).
        whole_case: for a structure-level metric, the case-level metric that a table's whole-case row shows in its
            column (DSC per structure → the mean foreground DSC).
        boxplot: the comparison page shows its per-case distribution per configuration as box plots.
        table: where the store keeps it: ``metric_values`` rows, or the ``structure_results`` column of its name.
        trend: the nightly trends follow it (:mod:`pipeline.store.trends`): ``case`` (levels judge each case and
            the run's mean) or ``run`` (only the run's mean, over the cases that define it); None: no trend.
    """

    name: str
    label: str
    unit: str
    range: tuple[float, float | None]
    direction: Direction | None
    needs_reference: bool
    level: Level
    definition: str
    anchor: str
    digits: int
    in_summary: bool
    read: Callable[[CaseMetrics], float | Sequence[float]]
    whole_case: str | None = None
    boxplot: bool = False
    table: Table = "metric_values"
    trend: Literal["case", "run"] | None = None

    def format(self, value: float) -> str:
        """``value`` with the metric's digits (no unit)."""
        return f"{value:.{self.digits}f}"

    def range_text(self) -> str:
        """The range as people write it: ``0–1``, ``≥ 0``."""
        low, high = self.range
        text = f"≥ {low:g}" if high is None else f"{low:g}–{high:g}"
        return f"{text} {self.unit}".rstrip()

    def describe(self) -> str:
        """Definition, range and direction in one line (header tooltips)."""
        better = f"; {self.direction} is better" if self.direction is not None else ""
        return f"{self.definition} Range {self.range_text()}{better}."


def _anchor(slug: str) -> str:
    return f"{DOCS}#{slug}"


METRICS: tuple[Metric, ...] = (
    Metric("dsc_mean_fg", "DSC (mean foreground)", "", (0.0, 1.0), "higher", True, "case",
           "Mean over the foreground structures of the Dice overlap of prediction and reference on the whole volume.",
           _anchor("dsc-mean-foreground"), 3, True, lambda m: m.dsc_mean_fg),
    Metric("dsc", "DSC", "", (0.0, 1.0), "higher", True, "structure",
           "Dice overlap of the predicted and the reference structure on the whole volume (undefined when both are "
           "empty).",
           _anchor("dsc-per-structure"), 3, False, lambda m: m.dsc, whole_case="dsc_mean_fg",
           table="structure_results"),
    Metric("ece", "ECE (ROI)", "", (0.0, 1.0), "lower", True, "case",
           "Voxel-weighted mean gap between stated confidence and observed accuracy over 15 confidence bins of the "
           "ROI voxels.", _anchor("ece-roi"), 3, True, lambda m: m.ece, trend="run"),
    Metric("brier", "Brier (ROI)", "", (0.0, 2.0), "lower", True, "case",
           "Mean over the ROI voxels of the squared distance between the probability vector and the one-hot "
           "reference.", _anchor("brier-roi"), 3, True, lambda m: m.brier),
    Metric("nll", "NLL", "nats", (0.0, None), "lower", True, "case",
           "Mean over the ROI voxels of minus the natural log of the probability given to the reference class.",
           _anchor("nll"), 3, False, lambda m: m.nll),
    Metric("ueo_auc", "UEO-AUC", "", (0.0, 1.0), "higher", True, "case",
           "Mean Dice overlap of the most uncertain ROI voxels with the wrong ones over review budgets of 0–5 %.",
           _anchor("ueo-auc"), 3, True, lambda m: m.ueo_auc, trend="run"),
    Metric("fp_tp_auc", "FP-TP AUC", "", (0.0, 1.0), "higher", True, "case",
           "AUROC of entropy for false against true positives among the ROI voxels predicted foreground (0.5 = "
           "chance).", _anchor("fp-tp-auc"), 3, True, lambda m: m.fp_tp_auc, boxplot=True),
    Metric("fn_tn_auc", "FN-TN AUC", "", (0.0, 1.0), "higher", True, "case",
           "AUROC of entropy for false against true negatives among the ROI voxels predicted background (0.5 = "
           "chance).", _anchor("fn-tn-auc"), 3, True, lambda m: m.fn_tn_auc, boxplot=True),
    Metric("ece_structure", "ECE", "", (0.0, 1.0), "lower", True, "structure",
           "Voxel-weighted mean gap between the structure's probability and its presence over the confidence bins of "
           "the structure's ROI voxels.", _anchor("ece-brier-ueo-auc-and-the-aucs-per-structure"), 3, False,
           lambda m: m.ece_structure, whole_case="ece"),
    Metric("brier_structure", "Brier", "", (0.0, 1.0), "lower", True, "structure",
           "Mean over the structure's ROI voxels of the squared gap between its probability and its presence.",
           _anchor("ece-brier-ueo-auc-and-the-aucs-per-structure"), 3, False, lambda m: m.brier_structure,
           whole_case="brier"),
    Metric("ueo_auc_structure", "UEO-AUC", "", (0.0, 1.0), "higher", True, "structure",
           "Mean Dice overlap of the most uncertain voxels of the structure's ROI with its wrong ones over review "
           "budgets of 0–5 %.", _anchor("ece-brier-ueo-auc-and-the-aucs-per-structure"), 3, False,
           lambda m: m.ueo_auc_structure, whole_case="ueo_auc"),
    Metric("fp_tp_auc_structure", "FP-TP AUC", "", (0.0, 1.0), "higher", True, "structure",
           "AUROC of entropy for false against true positives among the structure's ROI voxels predicted as it "
           "(0.5 = chance).", _anchor("ece-brier-ueo-auc-and-the-aucs-per-structure"), 3, False,
           lambda m: m.fp_tp_auc_structure, whole_case="fp_tp_auc"),
    Metric("fn_tn_auc_structure", "FN-TN AUC", "", (0.0, 1.0), "higher", True, "structure",
           "AUROC of entropy for missed against true negative voxels among the structure's ROI voxels predicted "
           "otherwise (0.5 = chance).", _anchor("ece-brier-ueo-auc-and-the-aucs-per-structure"), 3, False,
           lambda m: m.fn_tn_auc_structure, whole_case="fn_tn_auc"),
    Metric("mean_entropy_roi", "Mean entropy (ROI)", "", (0.0, 1.0), None, False, "case",
           "Mean normalised predictive entropy over the ROI voxels (0 = certain, 1 = every class equally likely).",
           _anchor("mean-entropy-roi"), 3, False, lambda m: m.mean_entropy_roi, trend="case"),
)


def metric(name: str) -> Metric:
    """The metric called ``name``; KeyError for an unknown name."""
    for item in METRICS:
        if item.name == name:
            return item
    raise KeyError(f"no metric {name!r} in the registry")


def case_metrics() -> tuple[Metric, ...]:
    """The case-level metrics (one number per result), in registry order."""
    return tuple(m for m in METRICS if m.level == "case")


def structure_metrics() -> tuple[Metric, ...]:
    """The structure-level metrics (one number per class), in registry order."""
    return tuple(m for m in METRICS if m.level == "structure")


def summary_metrics() -> tuple[Metric, ...]:
    """The case-level metrics of the cohort summary (demo printout, PDF report)."""
    return tuple(m for m in case_metrics() if m.in_summary)


def reference_metrics() -> tuple[Metric, ...]:
    """The case-level metrics that need a reference (NULL without one)."""
    return tuple(m for m in case_metrics() if m.needs_reference)


def trend_metrics() -> tuple[Metric, ...]:
    """The case-level metrics the nightly trends follow, in registry order."""
    return tuple(m for m in case_metrics() if m.trend is not None)


def names(metrics: Sequence[Metric]) -> tuple[str, ...]:
    """The names of ``metrics``."""
    return tuple(m.name for m in metrics)
