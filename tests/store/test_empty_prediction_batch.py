"""A configuration that predicts nothing, through a real batch: a CT of air (-1000 HU everywhere, the phantom's grid)
under the committed demo models, once without and once with a reference, into SQLite and PostgreSQL. Nothing fails;
every result whose prediction is empty is stored flagged, per case and per structure; without a reference its ROI
(the spec's ``pred`` rule: grown from the prediction) is empty, so its ROI metrics are None and nothing is flagged at
any budget; with one the ROI grows from the reference. The worklist, its CSV and the dashboard's worklist rows say
:data:`EMPTY_PREDICTION` and :data:`NO_REFERENCE`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from sqlalchemy import select

from pipeline.batch.cases import CaseSpec
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.inference.model_set import ModelSet, load_model_set_file
from pipeline.metrics.review_budget import Budget, ReviewRate
from pipeline.phantoms.ct import generate_phantom
from pipeline.review.exports import write_worklist
from pipeline.review.worklist import EMPTY_PREDICTION, NO_REFERENCE, build_worklist
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import make_engine, session_factory
from pipeline.store.metric_values import result_values
from pipeline.store.schema import Artifact, CaseFailure, CaseResult, Configuration, CurvePoint, Image, StructureResult
from qa_dashboard.queries.worklist import case_rows as page_rows
from tests.conftest import REPO_ROOT

EMPTY_CONFIGURATION = "DE"  # the demo models' deep ensemble predicts nothing on air (Base and CE some voxels)


@pytest.fixture(scope="module")
def model_set() -> ModelSet:
    """The committed demo models (real nnU-Net members: no training in the test)."""
    return load_model_set_file(REPO_ROOT / "models" / "demo" / "manifest.json")


def _air_case(folder: Path) -> tuple[Path, Path]:
    """A CT of air on the phantom's grid, and the phantom's labels as its reference."""
    phantom = generate_phantom(9004)
    folder.mkdir(parents=True)
    air = sitk.GetImageFromArray(np.full(phantom.ct.shape, -1000, dtype=np.int16))
    air.SetSpacing(tuple(reversed(phantom.spacing)))
    labels = sitk.GetImageFromArray(phantom.labels)
    labels.CopyInformation(air)
    sitk.WriteImage(air, str(folder / "air.nii.gz"))
    sitk.WriteImage(labels, str(folder / "labels.nii.gz"))
    return folder / "air.nii.gz", folder / "labels.nii.gz"


def test_an_empty_prediction_is_stored_flagged_and_listed_whole(store_url: str, tmp_path: Path,
                                                                 model_set: ModelSet) -> None:
    ct, labels = _air_case(tmp_path / "air")
    artifacts = tmp_path / "artifacts"
    summary = run_batch(BatchOptions(cases=(CaseSpec("air", ct), CaseSpec("air_referenced", ct, labels)),
                                     model_set=model_set, models_source="demo", database_url=store_url,
                                     artifacts=artifacts, tta=False, progress=False))
    assert summary.done == ["air", "air_referenced"] and not summary.failed and summary.exit_code == 0
    store = ArtifactStore(artifacts)
    engine = make_engine(store_url)
    with session_factory(engine)() as session:
        assert not session.scalars(select(CaseFailure)).all()
        empty = set()
        for result, case, configuration in session.execute(
                select(CaseResult, Image.name, Configuration.name).join(Image, Image.id == CaseResult.image_id)
                .join(Configuration, Configuration.id == CaseResult.configuration_id)):
            maps = {a.kind: a.path for a in session.scalars(select(Artifact).where(Artifact.result_id == result.id))}
            predicted = store.read(maps["prediction"])
            assert result.empty_prediction == (not predicted.any()), (case, configuration)
            assert result.has_reference == (case == "air_referenced")
            if not result.empty_prediction:
                continue
            empty.add((case, configuration))
            flags = dict(session.execute(select(StructureResult.class_index, StructureResult.empty_prediction)
                                         .where(StructureResult.result_id == result.id)).all())
            assert flags == {0: False, 1: True, 2: True}, "every structure to review whole"
            values = result_values(session, result.id)
            if case == "air":  # the pred rule: no predicted voxel, no ROI, nothing flagged at any budget
                flagged = session.scalars(select(CurvePoint.flagged_ml).where(CurvePoint.result_id == result.id))
                assert result.roi_voxels == 0 and values["mean_entropy_roi"] is None and set(flagged) == {0.0}
                assert not store.read(maps["budget_mask"]).any() and values["dsc_mean_fg"] is None
            else:  # the union ROI grows from the reference
                assert result.roi_voxels > 0 and values["mean_entropy_roi"] is not None
                assert values["dsc_mean_fg"] == 0.0 and store.read(maps["error"]).any()
        assert empty >= {("air", EMPTY_CONFIGURATION), ("air_referenced", EMPTY_CONFIGURATION)}
        worklist = build_worklist(session, store, EMPTY_CONFIGURATION, Budget("fraction", 0.02))
    engine.dispose()

    cases = {case.case: case for case in worklist.cases}
    assert cases["air"].empty_prediction and not cases["air"].has_reference and cases["air"].regions == ()
    assert [(i.structure, i.empty_prediction) for i in cases["air"].items] == [("lymph_nodes", True),
                                                                               ("spleen", True)]
    assert cases["air_referenced"].empty_prediction and cases["air_referenced"].has_reference
    rows = list(csv.DictReader(io.StringIO(write_worklist(worklist, tmp_path / "w.csv", "csv").read_text())))
    air = [row for row in rows if row["case"] == "air"]
    assert {(r["structure"], r["structure_prediction"], r["prediction"], r["reference"]) for r in air} == {
        ("lymph_nodes", EMPTY_PREDICTION, EMPTY_PREDICTION, NO_REFERENCE),
        ("spleen", EMPTY_PREDICTION, EMPTY_PREDICTION, NO_REFERENCE)}
    shown = {row["case"]: row for row in page_rows(worklist, ReviewRate(30.0, False, 0, 20))}
    assert (shown["air"]["prediction"], shown["air"]["reference"]) == (EMPTY_PREDICTION, NO_REFERENCE)
    assert (shown["air_referenced"]["prediction"], shown["air_referenced"]["reference"]) == (EMPTY_PREDICTION, "yes")
