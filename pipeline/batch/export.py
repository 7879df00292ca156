"""The ``export-map`` verb: a stored voxel map (pipeline.store) as NIfTI (pipeline.io) on the CT's original grid.

Result maps are those of the case's deployed result (:mod:`pipeline.store.deployed`) of one configuration of one model
set (:func:`~pipeline.store.configurations.resolve_configuration`). ``probabilities`` is the 4-D class-probability map
the stored result was scored on: the pooled probabilities of the configuration, calibrated with the result's
temperature for a TS configuration, with the configuration, model set and temperature in the NIfTI description, so an
auditor can recompute every stored number outside the project (docs/metrics.md says how). A ``per_member`` TS result's
map is p_cal(T) rebuilt from the stored member passes (:mod:`pipeline.batch.member_passes`); its description ends in
``per_member``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.batch.member_passes import calibrated_map, configuration_passes, stored_passes
from pipeline.errors import InputError
from pipeline.io.maps import export_nifti, write_probabilities
from pipeline.metrics.temperature import apply_temperature
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.configurations import resolve_configuration, twin_of
from pipeline.store.database import check_at_head, make_engine, session_factory
from pipeline.store.deployed import deployed_result
from pipeline.store.run_settings import processing_settings
from pipeline.store.schema import Artifact, CaseResult, Configuration, Image, ModelSet, TemperatureFit
from pipeline.store.temperatures import result_scaling

IMAGE_MAPS = ("ct", "reference")
RESULT_MAPS = ("entropy", "prediction", "error", "budget_mask")
KINDS = (*IMAGE_MAPS, *RESULT_MAPS, "probabilities")


def stored_grid(image: Image) -> sitk.Image:
    """An empty image on the stored CT's grid (size, spacing, origin, direction): what a reference is read onto."""
    grid = sitk.Image([int(v) for v in image.size], sitk.sitkUInt8)
    grid.SetSpacing([float(v) for v in image.spacing])
    grid.SetOrigin([float(v) for v in image.origin])
    grid.SetDirection([float(v) for v in image.direction])
    return grid


def export_map(url: str, root: Path, case: str, configuration: str | None, kind: str, out: Path,
               model_set: str | None = None) -> Path:
    """Write ``kind`` of ``case`` (and ``configuration`` of ``model_set``, for result maps) to ``out``; InputError
    when absent."""
    if kind not in KINDS:
        raise InputError(f"--map must be one of {', '.join(KINDS)}, got {kind!r}")
    engine = make_engine(url)
    check_at_head(engine)
    try:
        with session_factory(engine)() as session:
            image = session.scalar(select(Image).where(Image.name == case))
            if image is None:
                raise InputError(f"unknown case {case!r}")
            artifacts = ArtifactStore(root)
            if kind in IMAGE_MAPS:
                path = session.scalar(select(Artifact.path).where(Artifact.image_id == image.id, Artifact.kind == kind))
                if path is None:
                    raise InputError(f"case {case!r} has no stored {kind} map")
                return export_nifti(artifacts.read(path), out, image.spacing, image.origin, image.direction)
            if not configuration:
                raise InputError(f"--configuration is needed for the {kind} map")
            chosen = resolve_configuration(session, configuration, model_set)
            result = session.scalars(
                select(CaseResult).outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
                .where(CaseResult.image_id == image.id, CaseResult.configuration_id == chosen.id, deployed_result())
                .order_by(CaseResult.id.desc())).first()
            if result is None:
                raise InputError(f"case {case!r} has no stored result of {configuration}")
            if kind == "probabilities":
                return _probabilities(session, artifacts, image, chosen, result, out)
            path = session.scalar(select(Artifact.path).where(Artifact.result_id == result.id, Artifact.kind == kind))
            if path is None:
                raise InputError(f"case {case!r} has no stored {kind} map of {configuration}")
            return export_nifti(artifacts.read(path), out, image.spacing, image.origin, image.direction)
    finally:
        engine.dispose()


def _probabilities(session: Session, artifacts: ArtifactStore, image: Image, configuration: Configuration,
                   result: CaseResult, out: Path) -> Path:
    fit = session.get(TemperatureFit, result.temperature_fit_id) if result.temperature_fit_id is not None else None
    model_set = session.get_one(ModelSet, configuration.model_set_id)
    scaling = result_scaling(fit, result.temperature)
    temperature = "none" if scaling is None else ",".join(f"{t:.6g}" for t in np.atleast_1d(scaling))
    description = f"{configuration.name} {model_set.identity} T={temperature}"
    if fit is not None and fit.temperature_mode == "per_member":
        settings = processing_settings(session, result.processing_id)
        if settings is None:
            raise InputError(f"case {image.name!r}: the run of its {configuration.name} result stored no settings")
        passes = configuration_passes(configuration, stored_passes(session, artifacts, result.processing_id,
                                                                   image.name), image.name)
        probabilities = calibrated_map(artifacts, passes, settings, fit.temperature)
        write_probabilities(out, probabilities, stored_grid(image), f"{description} per_member")
        return out
    siblings = session.scalars(select(Configuration).where(
        Configuration.model_set_id == configuration.model_set_id)).all()
    twin = twin_of(configuration, siblings)
    path = session.scalar(select(Artifact.path).where(
        Artifact.processing_id == result.processing_id, Artifact.configuration_id == twin.id,
        Artifact.kind == "probabilities"))
    if path is None:
        raise InputError(f"case {image.name!r} has no stored probabilities of {twin.name}")
    probabilities = artifacts.read(path).astype(np.float32, copy=False)
    probabilities = apply_temperature(probabilities, scaling)
    write_probabilities(out, probabilities, stored_grid(image), description)
    return out
