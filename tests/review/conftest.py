"""Review fixtures: stores on SQLite and PostgreSQL (the store tests' fixtures), accounts, and a seeded results store.

``seeded`` holds one model set (Base, DE) and three cases, written through the ORM and the artifact store as the
batch would: two synthetic cases with a reference (``synthetic-1``, ``synthetic-2``; image files) and the real IBSI
STS_019 DICOM CT (``ibsi``; its shipped mask is the prediction of class 2). Every result has the entropy,
prediction and top-budget (2 %) maps, 51-point curves and reliability bins.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from alembic import command
from scipy.ndimage import gaussian_filter
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from pipeline.io.dicom import read_ct_series
from pipeline.metrics.review_budget import top_budget_mask
from pipeline.metrics.roi import dilate_mm
from pipeline.review.service import ReviewService
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import alembic_config, make_engine, session_factory
from pipeline.store.schema import (
    WHOLE_CASE,
    Artifact,
    CaseResult,
    Configuration,
    CurvePoint,
    Image,
    MetricValue,
    ModelSet,
    Patient,
    Processing,
    ReliabilityBin,
    StructureResult,
)
from tests.conftest import SHARED_DATA
from tests.store.conftest import _drop_postgres, _fresh_postgres, empty_store_url, store_url  # noqa: F401

FAST_HASH = "scrypt:1024:8:1"  # tests only: the production default is werkzeug's scrypt (n = 32768)
PASSWORD = "correct horse battery staple"
LABELS = ["background", "lymph_nodes", "spleen"]
STORED_BUDGET = 0.02
IBSI_IMAGE = SHARED_DATA / "ibsi_sts_019" / "dicom" / "CT" / "image"
IBSI_MASK = SHARED_DATA / "ibsi_sts_019" / "nifti" / "CT_mask.nii.gz"


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:  # noqa: F811  (the imported fixture)
    """An engine on a migrated store of each backend."""
    engine = make_engine(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def service(engine: Engine) -> ReviewService:
    return ReviewService(engine, password_method=FAST_HASH)


@pytest.fixture
def users(service: ReviewService) -> dict[str, int]:
    """One account per role plus a second reviewer and approver: name → id."""
    from pipeline.review.service import CommandLine

    names = {"viewer": "viewer", "reviewer": "reviewer", "approver": "approver", "admin": "admin",
             "reviewer2": "reviewer", "approver2": "approver"}
    return {name: service.create_user(CommandLine("tester"), name, PASSWORD, role).id for name, role in names.items()}


@dataclass(frozen=True)
class Seeded:
    """A seeded store: its URL, artifact root and the ids tests need."""

    url: str
    artifacts: Path
    image_ids: dict[str, int]
    configuration_ids: dict[str, int]


def synthetic_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference, prediction, entropy) of a (12, 40, 40) case: a spleen block and a lymph node, blurred edges."""
    rng = np.random.default_rng(seed)
    reference = np.zeros((12, 40, 40), dtype=np.uint8)
    reference[3:9, 8:22, 8:20] = 2
    reference[4:7, 28:33, 26:31] = 1
    prediction = np.roll(reference, 1 + seed % 2, axis=2)
    soft = gaussian_filter((prediction > 0).astype(np.float32), 1.0)
    entropy = (4 * soft * (1 - soft) + 0.02 * rng.random(soft.shape)).clip(0, 1).astype(np.float16)
    return reference, prediction, entropy


def _ibsi_case() -> tuple[sitk.Image, np.ndarray, np.ndarray]:
    image = read_ct_series(IBSI_IMAGE).image
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(IBSI_MASK))).astype(np.uint8)
    soft = gaussian_filter(mask.astype(np.float32), 1.5)
    entropy = (4 * soft * (1 - soft)).astype(np.float16)
    return image, (2 * mask).astype(np.uint8), entropy


def _write_case(session: Session, store: ArtifactStore, model_set: ModelSet, configurations: list[Configuration],
                name: str, geometry: sitk.Image, reference: np.ndarray | None, prediction: np.ndarray,
                entropy: np.ndarray, source_kind: str, source: str) -> int:
    spacing_xyz = geometry.GetSpacing()
    spacing = (spacing_xyz[2], spacing_xyz[1], spacing_xyz[0])
    voxel_ml = float(np.prod(spacing)) / 1000
    patient = Patient(pseudonym=f"P-{name}")
    image = Image(patient=patient, name=name, cohort="review-test", source_kind=source_kind, source_path=source,
                  size=list(geometry.GetSize()), spacing=list(spacing_xyz), origin=list(geometry.GetOrigin()),
                  direction=list(geometry.GetDirection()), content_hash="0" * 64,
                  frame_of_reference_uid=None)
    session.add(image)
    session.flush()
    if reference is not None:
        path = store.write(f"{name}/reference.zarr", reference)
        session.add(Artifact(image_id=image.id, kind="reference", path=path, dtype="uint8",
                             shape=list(reference.shape)))
    seed = prediction > 0 if reference is None else (prediction > 0) | (reference > 0)
    roi = dilate_mm(seed, spacing, 15.0).dense()
    processing = Processing(image_id=image.id, model_set_id=model_set.id, input_hash="1" * 64, code_version="t",
                            forward_passes=1, seconds_inference=0.0, seconds_metrics=0.0, seconds_storage=0.0)
    session.add(processing)
    session.flush()
    for position, configuration in enumerate(configurations):
        scaled = (entropy.astype(np.float32) * (1.0 - 0.2 * position)).astype(np.float16)
        result = CaseResult(processing_id=processing.id, image_id=image.id, configuration_id=configuration.id,
                            has_reference=reference is not None, roi_voxels=int(roi.sum()),
                            error_voxels=int((prediction != reference).sum()) if reference is not None else None,
                            voxel_ml=voxel_ml, seconds=0.1)
        session.add(result)
        session.flush()
        values = {"mean_entropy_roi": float(scaled[roi].astype(np.float64).mean()),
                  "dsc_mean_fg": 0.8 + 0.05 * position, "ece": 0.05, "brier": 0.1, "nll": 0.3,
                  "ueo_auc": 0.4 + 0.1 * position, "fp_tp_auc": 0.7, "fn_tn_auc": 0.8}
        session.add_all(MetricValue(result_id=result.id, class_index=WHOLE_CASE, name=name, value=value)
                        for name, value in values.items())
        mask = top_budget_mask(scaled, roi, STORED_BUDGET)
        folder = f"{name}/{configuration.name}"
        for kind, array in (("entropy", scaled), ("prediction", prediction), ("budget_mask", mask.astype(np.uint8))):
            path = store.write(f"{folder}/{kind}.zarr", array)
            session.add(Artifact(image_id=image.id, result_id=result.id, configuration_id=configuration.id,
                                 kind=kind, path=path, dtype=str(array.dtype), shape=list(array.shape),
                                 budget=STORED_BUDGET if kind == "budget_mask" else None))
        for c in range(len(LABELS)):
            session.add(StructureResult(result_id=result.id, class_index=c, structure=LABELS[c],
                                        dsc=0.8, predicted_ml=float((prediction == c).sum() * voxel_ml),
                                        reference_ml=None))
        if reference is not None:
            for index, budget in enumerate(np.linspace(0, 0.05, 51)):
                recall = min(1.0, budget * (10 + 4 * position))
                session.add(CurvePoint(result_id=result.id, budget_index=index, budget=float(budget),
                                       ueo=recall * 0.8, recall=recall, precision=0.5, flagged_ml=0.0))
            for b in range(15):
                count = 100 + 10 * b
                confidence = (b + 0.5) / 15
                session.add(ReliabilityBin(result_id=result.id, group=0, bin=b, count=count,
                                           sum_confidence=confidence * count,
                                           sum_correct=int(count * min(1.0, confidence + 0.05 * position))))
    return image.id


def seed_store(url: str, artifacts: Path) -> Seeded:
    """Fill a migrated store (module docstring)."""
    engine = make_engine(url)
    store = ArtifactStore(artifacts)
    ids: dict[str, int] = {}
    with session_factory(engine).begin() as session:
        model_set = ModelSet(identity="review-test", name="review-test", source="tests", nnunet_configuration="3d",
                             labels=LABELS)
        configurations = [Configuration(name=n, position=p, members=["m"], views=[[]], temperature_scaling=False)
                          for p, n in enumerate(("Base", "DE"))]
        model_set.configurations = configurations
        session.add(model_set)
        session.flush()
        for seed in (1, 2):
            reference, prediction, entropy = synthetic_case(seed)
            geometry = sitk.GetImageFromArray(reference)
            geometry.SetSpacing((1.0, 1.0, 2.0))
            ids[f"synthetic-{seed}"] = _write_case(session, store, model_set, configurations, f"synthetic-{seed}",
                                                   geometry, reference, prediction, entropy, "image",
                                                   f"/data/synthetic-{seed}.nii.gz")
        image, prediction, entropy = _ibsi_case()
        ids["ibsi"] = _write_case(session, store, model_set, configurations, "ibsi", image, None, prediction,
                                  entropy, "dicom", str(IBSI_IMAGE))
        configuration_ids = {c.name: c.id for c in configurations}
    engine.dispose()
    return Seeded(url, artifacts, ids, configuration_ids)


@contextmanager
def empty_store(backend: str, folder: Path) -> Iterator[str]:
    """The URL of an empty store at the head revision on ``backend``: a SQLite file in ``folder``, or a fresh
    PostgreSQL database, dropped afterwards."""
    if backend == "sqlite":
        url, name = f"sqlite:///{folder / 'store.sqlite3'}", None
    else:
        name, url = _fresh_postgres()
    try:
        command.upgrade(alembic_config(url), "head")
        yield url
    finally:
        if name is not None:
            _drop_postgres(name)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A seeded store per backend, shared by a module's tests (they must only add rows)."""
    folder = tmp_path_factory.mktemp(f"seeded-{request.param}")
    with empty_store(request.param, folder) as url:
        yield seed_store(url, folder / "artifacts")
