"""The maps a stored result is scored on, rebuilt from what the batch stored (no inference): the pooled
probabilities of each uncalibrated configuration and, under ``temperature_mode`` ``per_member``, the member passes
(:mod:`pipeline.batch.member_passes`). The protocol stage fits and evaluates temperatures on them;
``attach-reference`` recomputes a case's results on them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.batch.member_passes import calibrated_map, configuration_passes, stored_passes
from pipeline.errors import NotFoundError
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.shift import body_region
from pipeline.metrics.temperature import apply_temperature
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.schema import Artifact, Configuration
from pipeline.store.temperatures import Scaling


class StoredMaps:
    """Stored probabilities of the processings of one session, read once each, and the metric settings they are
    scored with."""

    def __init__(self, session: Session, store: ArtifactStore, settings: MetricSettings) -> None:
        self.session, self.store, self.settings = session, store, settings
        self._cache: dict[tuple[int, int], NDArray[np.float32]] = {}
        self._bodies: dict[int, NDArray[np.bool_]] = {}

    def passes(self, processing_id: int, case: str, configuration: Configuration) -> list[str]:
        """The stored member passes ``configuration`` pools for the processing (``per_member``)."""
        found = stored_passes(self.session, self.store, processing_id, case)
        return configuration_passes(configuration, found, case)

    def scored(self, processing_id: int, case: str, configuration: Configuration, twin: Configuration,
               temperature: Scaling) -> tuple[NDArray[np.float32], float | None]:
        """The map a TS result is scored on and the temperature still to apply to it: the twin's pooled map and T
        (``after_pooling``), or p_cal(T) rebuilt from the member passes and None (``per_member``). A class-wise
        vector (``after_pooling`` only) may change the argmax: the result is scored on p_cal itself and None."""
        if isinstance(temperature, tuple):
            return apply_temperature(self.probabilities(processing_id, case, twin), temperature), None
        if self.settings.temperature_mode == "after_pooling":
            return self.probabilities(processing_id, case, twin), temperature
        return calibrated_map(self.store, self.passes(processing_id, case, configuration), self.settings,
                              temperature), None

    def body(self, image_id: int, case: str) -> NDArray[np.bool_]:
        """The case's body region (:func:`~pipeline.metrics.shift.body_region`, (Z, Y, X) bool) from its stored CT."""
        if image_id not in self._bodies:
            path = self.session.scalar(select(Artifact.path).where(
                Artifact.image_id == image_id, Artifact.kind == "ct", Artifact.result_id.is_(None)))
            if path is None:
                raise NotFoundError(f"{case}: no stored CT; rerun the batch")
            self._bodies[image_id] = body_region(self.store.read(path), self.settings.ood_body_hu)
        return self._bodies[image_id]

    def probabilities(self, processing_id: int, case: str, configuration: Configuration) -> NDArray[np.float32]:
        """The pooled probabilities (C, Z, Y, X) float32 the batch stored for an uncalibrated configuration."""
        key = (processing_id, configuration.id)
        if key not in self._cache:
            path = self.session.scalar(select(Artifact.path).where(
                Artifact.processing_id == processing_id, Artifact.configuration_id == configuration.id,
                Artifact.kind == "probabilities"))
            if path is None:
                raise NotFoundError(f"{case}: no stored probabilities of {configuration.name}; rerun the batch")
            self._cache[key] = self.store.read(path).astype(np.float32, copy=False)
        return self._cache[key]
