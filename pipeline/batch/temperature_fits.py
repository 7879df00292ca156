"""The protocol's temperature fits of every granularity (one T per configuration, a class-wise vector, per scanner)
from a cohort's stored maps: which configurations get fitted, the calibration voxels of each case, one fit's
``temperature_fits`` columns (:mod:`pipeline.store.temperatures`, ``docs/metrics.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from pipeline.batch.member_passes import member_logits
from pipeline.batch.stored_maps import StoredMaps
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import calibration_roi
from pipeline.metrics.temperature import fit_class_temperatures, fit_temperature
from pipeline.metrics.temperature_groups import CalibrationCase, fit_group_temperatures
from pipeline.store.configurations import twin_of
from pipeline.store.schema import Configuration, Image, Processing
from pipeline.store.temperatures import granularity_configuration, scanner_of


@dataclass(frozen=True)
class StoredCase:
    """A processed image of the protocol: its processing, reference (None: none) and spacing (z, y, x) in mm."""

    image: Image
    processing: Processing
    labels: NDArray[np.uint8] | None
    spacing: tuple[float, float, float]



Target = tuple[Configuration, Configuration, str]  # a TS configuration, its uncalibrated twin, its granularity


def fit_targets(session: Session, configurations: list[Configuration], settings: MetricSettings) -> list[Target]:
    """Each TS configuration of the grid with its twin, then its granularity configurations (created when new)."""
    grid = [c for c in configurations if c.temperature_scaling and c.temperature_granularity == "configuration"]
    targets = []
    for configuration in grid:
        twin = twin_of(configuration, configurations)
        for granularity in settings.temperature_granularities:
            chosen = granularity_configuration(configuration, granularity, configurations)
            if chosen.id is None:
                session.add(chosen)
                session.flush()
                configurations.append(chosen)
            targets.append((chosen, twin, granularity))
    return targets


def calibration_cases(loader: StoredMaps, cases: Sequence[StoredCase], configuration: Configuration,
                       twin: Configuration) -> dict[str, CalibrationCase]:
    """Each case's calibration ROI voxels (the twin's ROI): of the twin's pooled map, or of the member passes."""
    settings, found = loader.settings, {}
    for case in cases:
        assert case.labels is not None
        probabilities = loader.probabilities(case.processing.id, case.image.name, twin)
        flat = calibration_roi(probabilities, case.labels, case.spacing, settings)
        if settings.temperature_mode == "per_member":
            passes = loader.passes(case.processing.id, case.image.name, configuration)
            scores = member_logits(loader.store, passes, flat)
        else:
            scores = probabilities.reshape(probabilities.shape[0], -1)[:, flat]
        found[case.image.name] = CalibrationCase(scores, case.labels.reshape(-1)[flat],
                                                 scanner_of(case.image.acquisition))
    return found


class LastCalibration:
    """:func:`calibration_cases` of the last (configuration's passes, twin, cases) asked for: the granularities of one
    TS configuration share them, and one twin's voxels at a time are held in memory."""

    def __init__(self, loader: StoredMaps) -> None:
        self.loader = loader
        self._key: tuple[object, ...] | None = None
        self._found: dict[str, CalibrationCase] = {}

    def __call__(self, cases: Sequence[StoredCase], configuration: Configuration, twin: Configuration
                 ) -> dict[str, CalibrationCase]:
        per_member = self.loader.settings.temperature_mode == "per_member"
        key = (configuration.id if per_member else None, twin.id, tuple(c.image.name for c in cases))
        if key != self._key:
            self._found, self._key = {}, None  # the previous twin's voxels go before the next are read
            self._found, self._key = calibration_cases(self.loader, cases, configuration, twin), key
        return self._found


def fit_columns(cases: Sequence[CalibrationCase], granularity: str, settings: MetricSettings) -> dict[str, object]:
    """The ``temperature_fits`` columns of one fit of ``granularity`` on the calibration cases' voxels."""
    if granularity == "scanner":
        grouped = fit_group_temperatures(cases, settings)
        fit = grouped.pooled
        groups = {group: {"cases": n, "voxels": voxels, "temperature": grouped.groups[group].temperature
                          if group in grouped.groups else None} for group, (n, voxels) in grouped.sizes.items()}
        return {"temperature": fit.temperature, "nll_before": fit.nll_before, "nll_after": fit.nll_after,
                "voxels": fit.n_voxels, "granularity": granularity, "temperatures": groups}
    scores = np.concatenate([c.scores for c in cases], axis=-1)
    labels = np.concatenate([c.labels for c in cases])
    if granularity == "class":
        vector = fit_class_temperatures(scores, labels, settings)
        return {"temperature": vector.scalar.temperature, "nll_before": vector.nll_before,
                "nll_after": vector.nll_after, "voxels": vector.n_voxels, "granularity": granularity,
                "temperatures": list(vector.temperatures)}
    fit = fit_temperature(scores, labels, settings)
    return {"temperature": fit.temperature, "nll_before": fit.nll_before, "nll_after": fit.nll_after,
            "voxels": fit.n_voxels, "granularity": granularity, "temperatures": None}
