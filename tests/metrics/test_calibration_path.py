"""The temperature fitted is the temperature applied: one probability floor for the fit (float64) and for the
application (float32), so confidently wrong voxels (p = 0 for the reference class) weigh the same in both."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import calibration_voxels, evaluate_case
from pipeline.metrics.temperature import PROBABILITY_FLOOR, fit_temperature, log_probabilities


def _confidently_missed_wedge() -> tuple[np.ndarray, np.ndarray]:
    """A float32 two-class map whose model misses a wedge of the structure with p(structure) exactly 0 there."""
    labels = np.zeros((6, 30, 30), dtype=np.uint8)
    labels[1:5, 5:25, 5:25] = 1
    p = np.where(labels == 1, 0.99, 0.01).astype(np.float32)
    p[1:5, 5:6, 5:25] = 0.0  # the missed wedge: certain and wrong
    return np.stack([1.0 - p, p]).astype(np.float32), labels


def test_one_floor_for_every_dtype() -> None:
    zeros = [log_probabilities(np.zeros(1, dtype=t))[0] for t in (np.float32, np.float64)]
    assert zeros[0] == pytest.approx(zeros[1]) == pytest.approx(np.log(PROBABILITY_FLOOR))


def test_the_fitted_nll_is_the_nll_where_the_temperature_is_applied() -> None:
    probs, labels = _confidently_missed_wedge()
    settings = MetricSettings(roi_mode="whole_volume")
    scores, picked = calibration_voxels(probs, labels, (2.0, 1.0, 1.0), settings)
    fit = fit_temperature(scores.astype(np.float64), picked, settings)
    applied = evaluate_case(probs, labels, (2.0, 1.0, 1.0), settings, temperature=fit.temperature).metrics
    assert applied.nll == pytest.approx(fit.nll_after, rel=1e-5)
    # with a float64 floor in the fit (ln p = -708 for p = 0) T ran into the search bound (20) and the fitted NLL
    # was 1.10 against 0.64 where T was applied
    assert 2.0 < fit.temperature < 10.0
