"""Evaluation of a configuration grid: temperatures fitted on calibration cases, metrics on test cases.

Pure orchestration of :mod:`pipeline.metrics` over :class:`pipeline.inference.pooling.GridPrediction` objects:
one temperature per TS configuration (fitted on the ROI voxels of the calibration cases of its pooled twin),
then the whole metric suite per configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.inference.grid import Configuration
from pipeline.metrics.results import CaseMetrics
from pipeline.metrics.settings import DEFAULT_SETTINGS, MetricSettings
from pipeline.metrics.suite import calibration_voxels, evaluate_case
from pipeline.metrics.temperature import TemperatureFit, fit_temperature


@dataclass(frozen=True)
class LabelledPrediction:
    """Pooled probabilities (C, Z, Y, X) per configuration name for one case, with its reference labels."""

    case: str
    probabilities: dict[str, NDArray[np.float32]]
    labels: NDArray[np.integer]
    spacing: tuple[float, float, float]


def fit_grid_temperatures(
    calibration: Sequence[LabelledPrediction],
    configurations: Sequence[Configuration],
    settings: MetricSettings = DEFAULT_SETTINGS,
) -> dict[str, TemperatureFit]:
    """One temperature per TS configuration, fitted on the calibration cases' ROI voxels (after pooling)."""
    if not calibration:
        raise ValueError("temperature scaling needs at least one calibration case")
    fits: dict[str, TemperatureFit] = {}
    for configuration in configurations:
        if not configuration.temperature_scaling:
            continue
        pairs = [
            calibration_voxels(case.probabilities[configuration.name], case.labels, case.spacing, settings)
            for case in calibration
        ]
        scores = np.concatenate([p for p, _ in pairs], axis=1)
        labels = np.concatenate([g for _, g in pairs])
        fits[configuration.name] = fit_temperature(scores, labels, settings)
    return fits


def evaluate_grid(
    case: LabelledPrediction,
    configurations: Sequence[Configuration],
    temperatures: dict[str, float],
    settings: MetricSettings = DEFAULT_SETTINGS,
) -> dict[str, CaseMetrics]:
    """The metric suite of every configuration on one case; TS configurations need their temperature."""
    results = {}
    for configuration in configurations:
        temperature = None
        if configuration.temperature_scaling:
            if configuration.name not in temperatures:
                raise ValueError(f"no fitted temperature for {configuration.name}")
            temperature = temperatures[configuration.name]
        probs = case.probabilities[configuration.name]
        results[configuration.name] = evaluate_case(probs, case.labels, case.spacing, settings, temperature).metrics
    return results
