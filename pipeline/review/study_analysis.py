"""A review study's analysis: per-arm numbers, the arm differences (B − A) with a case-level bootstrap CI, and the
pre-registered primary endpoint flagged. Pure: a frame of readings in, a :class:`StudyAnalysis` out (no database;
``pipeline.review.study_measure.reading_rows`` builds the frame from the store).

The frame has one row per reading (reviewer × case) and the columns :data:`COLUMNS`. Definitions (units in brackets):

- a reading is **decided** when its reviewer recorded a decision (``decision`` not None); only decided readings are
  analysed (an allocated reading never finished measures nothing);
- **minutes per case** [min]: ``active_seconds / 60`` of a decided reading with an active time; the arm's mean and
  median over those readings;
- **edited mL per minute** [mL/min]: over the decided readings with a final contour (``final_attached`` and
  ``edited_ml`` known) and an active time, Σ ``edited_ml`` / Σ active minutes (a ratio of sums: long readings
  weigh more, as they should for a rate);
- **edit detected** [fraction of readings]: a decided reading whose decision is ``edited`` (the reviewer said the
  contour needed an edit; ``docs/review-study.md``), over decided readings. In a per-case design a reading is a case;
- **agreement**: Cohen's kappa of the decisions of every pair of decided readings of the same case in the same arm
  (each unordered pair of reviewers once, the alphabetically first as rater 1), pooled over cases; None without a
  double-read case in the arm, NaN when every decision falls in one category (kappa undefined).

Each endpoint (:class:`~pipeline.review.study_allocation.Endpoint`) is a ratio of per-case sums, so a bootstrap
resample of cases is a matrix product (:func:`pipeline.metrics.statistics.bootstrap_weights`, seeded from the
study's seed). The difference B − A and its percentile CI:

- **unpaired** (per-case design: each case is read in one arm): the cases of each arm are resampled separately
  (arm A with the seed, arm B with seed + 1), the cases being those with at least one usable reading in that arm;
- **paired** (crossover: every case is read in both arms, by different reviewers): the cases with a usable reading
  in both arms are resampled together, so a case's difficulty cancels; the estimate is over those cases too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pipeline.metrics.statistics import DEFAULT_STATISTICS, StatisticsSettings, bootstrap_weights
from pipeline.review.study_allocation import Arm, Design, Endpoint

COLUMNS = ("study", "case", "reviewer", "arm", "period", "opened", "active_seconds", "decision", "final_attached",
           "added_voxels", "removed_voxels", "edited_ml", "any_edit", "edits_in_regions_fraction", "regions_opened")
EDITED = "edited"  # the decision that counts as an edit detected (pipeline.review.workflow's Decision.EDITED)
HIGHER_IS_BETTER = {Endpoint.EDITED_ML_PER_MINUTE: True, Endpoint.MINUTES_PER_CASE: False,
                    Endpoint.EDIT_DETECTED_FRACTION: True}
UNITS = {Endpoint.EDITED_ML_PER_MINUTE: "mL/min", Endpoint.MINUTES_PER_CASE: "min",
         Endpoint.EDIT_DETECTED_FRACTION: "fraction"}


@dataclass(frozen=True)
class ArmSummary:
    """One arm's numbers (module description for the definitions).

    Attributes:
        arm: A (standard review) or B (uncertainty-guided review).
        readings: allocated readings; ``opened`` of them opened, ``decided`` with a decision.
        cases: distinct cases among the decided readings.
        mean_minutes, median_minutes: active minutes per decided reading [min]; NaN without one.
        edited_ml_per_minute: Σ edited mL / Σ active minutes [mL/min]; NaN without a final contour.
        edit_detected_fraction: decided readings with decision ``edited`` / decided readings; NaN without one.
        mean_edits_in_regions: mean fraction of edited voxels inside the budget regions [0-1]; NaN without one.
        kappa: Cohen's kappa of double reads; None without any (``kappa_pairs`` pairs of readings).
    """

    arm: Arm
    readings: int
    opened: int
    decided: int
    cases: int
    mean_minutes: float
    median_minutes: float
    edited_ml_per_minute: float
    edit_detected_fraction: float
    mean_edits_in_regions: float
    kappa: float | None
    kappa_pairs: int

    def value(self, endpoint: Endpoint) -> float:
        """The arm's value of ``endpoint`` (its unit: :data:`UNITS`)."""
        return {Endpoint.EDITED_ML_PER_MINUTE: self.edited_ml_per_minute,
                Endpoint.MINUTES_PER_CASE: self.mean_minutes,
                Endpoint.EDIT_DETECTED_FRACTION: self.edit_detected_fraction}[endpoint]


@dataclass(frozen=True)
class ArmDifference:
    """B − A of one endpoint with its percentile bootstrap CI (unit: :data:`UNITS`).

    ``a`` and ``b`` are the arms' values over the cases the difference rests on (all usable cases of each arm when
    unpaired, the cases usable in both when ``paired``); ``cases_a`` / ``cases_b`` count them (equal when paired).
    """

    endpoint: Endpoint
    a: float
    b: float
    estimate: float
    low: float
    high: float
    cases_a: int
    cases_b: int
    paired: bool
    primary: bool

    @property
    def favours(self) -> str:
        """``B``, ``A`` or ``neither``: the arm the CI excludes 0 in favour of (``higher is better`` per endpoint)."""
        if math.isnan(self.low) or self.low <= 0 <= self.high:
            return "neither"
        return "B" if (self.low > 0) == HIGHER_IS_BETTER[self.endpoint] else "A"


@dataclass(frozen=True)
class StudyAnalysis:
    """A study's analysis: both arms, one difference per endpoint (in :class:`Endpoint` order), how it was done."""

    study: str
    design: Design
    endpoint: Endpoint
    seed: int
    confidence: float
    n_bootstrap: int
    arms: tuple[ArmSummary, ArmSummary]
    differences: tuple[ArmDifference, ...]

    @property
    def primary(self) -> ArmDifference:
        """The pre-registered primary endpoint's difference."""
        return next(d for d in self.differences if d.primary)


def checked(readings: pd.DataFrame) -> pd.DataFrame:
    """``readings`` if it has every column of :data:`COLUMNS`, one study, arms A/B and no reading twice.

    Raises ValueError naming what is wrong (the frame comes from the loader: a bad frame is a bug, not user input).
    """
    missing = [column for column in COLUMNS if column not in readings.columns]
    if missing:
        raise ValueError(f"study readings lack column(s) {', '.join(missing)}")
    if readings["study"].nunique() > 1:
        raise ValueError(f"study readings mix studies: {sorted(readings['study'].unique())}")
    arms = set(readings["arm"]) - {arm.value for arm in Arm}
    if arms:
        raise ValueError(f"study readings have arm(s) {sorted(map(str, arms))}, not A or B")
    if readings.duplicated(["case", "reviewer"]).any():
        raise ValueError("study readings hold a reviewer's reading of a case twice")
    return readings


def cohen_kappa(first: list[str], second: list[str]) -> float:
    """Cohen's kappa of two raters' labels of the same items: (p_o − p_e) / (1 − p_e); NaN when p_e is 1."""
    if len(first) != len(second) or not first:
        raise ValueError("cohen_kappa needs two equally long, non-empty label lists")
    labels = sorted(set(first) | set(second))
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / len(first)
    expected = sum((first.count(label) / len(first)) * (second.count(label) / len(second)) for label in labels)
    return math.nan if expected == 1 else (observed - expected) / (1 - expected)


def _kappa(decided: pd.DataFrame) -> tuple[float | None, int]:
    first: list[str] = []
    second: list[str] = []
    for _, rows in decided.sort_values("reviewer").groupby("case"):
        decisions = list(rows["decision"])
        for i in range(len(decisions)):
            for j in range(i + 1, len(decisions)):
                first.append(decisions[i])
                second.append(decisions[j])
    return (cohen_kappa(first, second) if first else None), len(first)


def _decided(readings: pd.DataFrame) -> pd.DataFrame:
    return readings[readings["decision"].notna()]


def _minutes(readings: pd.DataFrame) -> pd.Series:
    return readings["active_seconds"].astype("float64") / 60.0


def case_sums(readings: pd.DataFrame, endpoint: Endpoint) -> pd.DataFrame:
    """Per case (index) the endpoint's ``num`` and ``den`` sums over one arm's usable readings: the arm's value is
    Σ num / Σ den. Cases without a usable reading are left out."""
    decided = _decided(readings)
    minutes = _minutes(decided)
    if endpoint is Endpoint.MINUTES_PER_CASE:
        usable = minutes.notna()
        parts = pd.DataFrame({"num": minutes[usable], "den": 1.0})
    elif endpoint is Endpoint.EDITED_ML_PER_MINUTE:
        ml = decided["edited_ml"].astype("float64")
        usable = decided["final_attached"].fillna(False).astype(bool) & ml.notna() & minutes.notna()
        parts = pd.DataFrame({"num": ml[usable], "den": minutes[usable]})
    else:
        usable = pd.Series(True, index=decided.index)
        parts = pd.DataFrame({"num": (decided["decision"] == EDITED).astype("float64"), "den": 1.0})
    sums = parts.groupby(decided.loc[usable, "case"]).sum()
    return sums[sums["den"] > 0]


def _ratio(weights: NDArray[np.float64], sums: pd.DataFrame) -> NDArray[np.float64]:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ sums["num"].to_numpy()) / (weights @ sums["den"].to_numpy())


def difference(readings: pd.DataFrame, endpoint: Endpoint, paired: bool,
               settings: StatisticsSettings = DEFAULT_STATISTICS, primary: bool = False) -> ArmDifference:
    """B − A of ``endpoint`` over checked ``readings`` with its case-level percentile bootstrap CI (module
    description: ``paired`` resamples the cases usable in both arms together). NaN where an arm has no usable case."""
    sums = {arm: case_sums(readings[readings["arm"] == arm.value], endpoint) for arm in Arm}
    a, b = sums[Arm.STANDARD], sums[Arm.GUIDED]
    if paired:
        shared = a.index.intersection(b.index)
        a, b = a.loc[shared], b.loc[shared]
    if a.empty or b.empty:
        return ArmDifference(endpoint, math.nan, math.nan, math.nan, math.nan, math.nan, len(a), len(b), paired,
                             primary)
    value_a, value_b = (float(_ratio(np.ones((1, len(s))), s)[0]) for s in (a, b))
    weights_a = bootstrap_weights(len(a), settings)
    weights_b = weights_a if paired else bootstrap_weights(len(b), replace(settings, seed=settings.seed + 1))
    resampled = _ratio(weights_b, b) - _ratio(weights_a, a)
    tail = (1 - settings.confidence) / 2
    low, high = np.nanquantile(resampled, [tail, 1 - tail])
    return ArmDifference(endpoint, value_a, value_b, value_b - value_a, float(low), float(high), len(a), len(b),
                         paired, primary)


def _nan_mean(values: pd.Series) -> float:
    values = values.astype("float64").dropna()
    return float(values.mean()) if len(values) else math.nan


def summarise_arm(readings: pd.DataFrame, arm: Arm) -> ArmSummary:
    """One arm's :class:`ArmSummary` from checked ``readings`` (module description)."""
    rows = readings[readings["arm"] == arm.value]
    decided = _decided(rows)
    minutes = _minutes(decided).dropna()

    def ratio(endpoint: Endpoint) -> float:
        sums = case_sums(rows, endpoint)
        return float(_ratio(np.ones((1, len(sums))), sums)[0]) if len(sums) else math.nan

    kappa, pairs = _kappa(decided)
    return ArmSummary(arm, len(rows), int(rows["opened"].fillna(False).astype(bool).sum()), len(decided),
                      int(decided["case"].nunique()), float(minutes.mean()) if len(minutes) else math.nan,
                      float(minutes.median()) if len(minutes) else math.nan, ratio(Endpoint.EDITED_ML_PER_MINUTE),
                      ratio(Endpoint.EDIT_DETECTED_FRACTION), _nan_mean(decided["edits_in_regions_fraction"]),
                      kappa, pairs)


def analyse_study(readings: pd.DataFrame, design: Design | str, endpoint: Endpoint | str, seed: int,
                  settings: StatisticsSettings = DEFAULT_STATISTICS) -> StudyAnalysis:
    """The study's analysis from its readings (one row per reading, :data:`COLUMNS`).

    Args:
        readings: the study's readings (``study_measure.reading_rows``).
        design: ``per-case`` (unpaired differences) or ``crossover`` (paired by case).
        endpoint: the pre-registered primary endpoint, flagged among the differences.
        seed: the study's seed; the bootstrap's resamples are drawn from it (same store, same CIs).
        settings: the CI level and number of resamples (its seed is replaced by ``seed``).

    Raises ValueError for a frame that lacks a column, mixes studies or arms outside A/B, or repeats a reading.
    """
    frame = checked(readings)
    chosen, primary = Design(design), Endpoint(endpoint)
    settings = replace(settings, seed=seed)
    differences = tuple(difference(frame, e, chosen is Design.CROSSOVER, settings, e is primary) for e in Endpoint)
    study = str(frame["study"].iloc[0]) if len(frame) else ""
    return StudyAnalysis(study, chosen, primary, seed, settings.confidence, settings.n_bootstrap,
                         (summarise_arm(frame, Arm.STANDARD), summarise_arm(frame, Arm.GUIDED)), differences)
