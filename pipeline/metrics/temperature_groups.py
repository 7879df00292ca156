"""Per-group temperatures (per scanner): one scalar T per group of calibration cases, the pooled T as the fallback.

A group is fitted on its own calibration cases when it has at least ``temperature_group_min_cases`` of them and
``temperature_group_min_voxels`` calibration (ROI) voxels among them; a smaller group, a case whose group is unknown
(None), and any group with no calibration case at all get the pooled T, fitted on every calibration case (the
one-T-per-configuration fit). An unknown group is never a group of its own: "unknown" may be many scanners.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.metrics.settings import DEFAULT_SETTINGS, MetricSettings
from pipeline.metrics.temperature import TemperatureFit, fit_temperature


@dataclass(frozen=True)
class CalibrationCase:
    """One calibration case's ROI voxels: ``scores`` as :func:`fit_temperature` takes them (voxels on the last
    axis), the reference ``labels`` and the case's ``group`` (its scanner; None when unknown)."""

    scores: NDArray[np.floating]
    labels: NDArray[np.integer]
    group: str | None


@dataclass(frozen=True)
class GroupFit:
    """The pooled fit, the groups fitted on their own, and the calibration cases and voxels of every known group
    (those below the thresholds fall back to the pooled T)."""

    pooled: TemperatureFit
    groups: dict[str, TemperatureFit]
    sizes: dict[str, tuple[int, int]]

    def temperature_for(self, group: str | None) -> float:
        """The T a case of ``group`` gets: its group's own, else the pooled one."""
        fit = self.groups.get(group) if group is not None else None
        return (fit or self.pooled).temperature


def _joined(cases: Sequence[CalibrationCase]) -> tuple[NDArray[np.floating], NDArray[np.integer]]:
    return (np.concatenate([c.scores for c in cases], axis=-1), np.concatenate([c.labels for c in cases]))


def fit_group_temperatures(cases: Sequence[CalibrationCase], settings: MetricSettings = DEFAULT_SETTINGS
                           ) -> GroupFit:
    """The pooled T on every case and one T per group that passes the thresholds (module description)."""
    if not cases:
        raise ValueError("no calibration case")
    pooled = fit_temperature(*_joined(cases), settings)
    members: dict[str, list[CalibrationCase]] = {}
    for case in cases:
        if case.group is not None:
            members.setdefault(case.group, []).append(case)
    sizes = {group: (len(found), sum(int(c.labels.size) for c in found)) for group, found in members.items()}
    groups = {group: fit_temperature(*_joined(found), settings) for group, found in sorted(members.items())
              if sizes[group][0] >= settings.temperature_group_min_cases
              and sizes[group][1] >= settings.temperature_group_min_voxels}
    return GroupFit(pooled, groups, sizes)
