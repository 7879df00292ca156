"""The ``export-map`` verb: a stored voxel map (pipeline.store) as NIfTI (pipeline.io) on the CT's original grid."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from pipeline.errors import InputError
from pipeline.io.maps import export_nifti
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import check_at_head, make_engine, session_factory
from pipeline.store.deployed import deployed_result
from pipeline.store.schema import Artifact, CaseResult, Configuration, Image, TemperatureFit

IMAGE_MAPS = ("ct", "reference")


def export_map(url: str, root: Path, case: str, configuration: str | None, kind: str, out: Path) -> Path:
    """Write ``kind`` of ``case`` (and ``configuration``, for result maps) to ``out``; InputError when absent.

    For a TS configuration the map of the deployed temperature fit is exported.
    """
    engine = make_engine(url)
    check_at_head(engine)
    try:
        with session_factory(engine)() as session:
            image = session.scalar(select(Image).where(Image.name == case))
            if image is None:
                raise InputError(f"unknown case {case!r}")
            query = select(Artifact.path).where(Artifact.image_id == image.id, Artifact.kind == kind)
            if kind not in IMAGE_MAPS:
                if not configuration:
                    raise InputError(f"--configuration is needed for the {kind} map")
                query = (query.join(CaseResult, CaseResult.id == Artifact.result_id)
                         .join(Configuration, Configuration.id == CaseResult.configuration_id)
                         .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
                         .where(Configuration.name == configuration, deployed_result())
                         .order_by(CaseResult.id.desc()))
            path = session.scalars(query).first()
            if path is None:
                what = f"{kind} map of {configuration}" if kind not in IMAGE_MAPS else f"{kind} map"
                raise InputError(f"case {case!r} has no stored {what}")
            array = ArtifactStore(root).read(path)
            return export_nifti(array, out, image.spacing, image.origin, image.direction)
    finally:
        engine.dispose()
