"""A CT too small for the model's plan (the real 3-slice dcmqi series under the demo plan's 12 mm slices) is bad
input, refused in one line before any inference: the batch records the case as failed and goes on (SQLite and
PostgreSQL), ``predict`` exits 2. The minimum is the plan's, and it is exactly what nnU-Net's preprocessing needs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from sqlalchemy import select

from pipeline.batch.cases import CaseSpec
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.cli import main
from pipeline.errors import InputError
from pipeline.inference.engine import MemberPredictor
from pipeline.inference.extent import check_extent, minimum_voxels
from pipeline.inference.model_set import ModelSet, load_model_set_file
from pipeline.settings import Settings
from pipeline.store.database import make_engine, session_factory
from pipeline.store.schema import CaseFailure, Image
from tests.conftest import REPO_ROOT
from tests.store.conftest import write_phantom_case

DEMO = REPO_ROOT / "models" / "demo" / "manifest.json"
TOO_FEW = r"3 slices of 1 mm are too few for the model: its plan resamples them to 12 mm, which needs at least 7 " \
          r"slices \(7 mm\)"


@pytest.fixture(scope="module")
def model_set() -> ModelSet:
    """The committed demo models (real nnU-Net members, 3-D plan of 12 × 7 × 7 mm voxels)."""
    return load_model_set_file(DEMO)


def _ct(slices: int, spacing_z: float) -> sitk.Image:
    image = sitk.GetImageFromArray(np.full((slices, 32, 32), -1000, dtype=np.int16))
    image.SetSpacing((7.0, 7.0, spacing_z))
    return image


def test_the_plans_minimum_is_the_fewest_slices_nnunets_preprocessing_takes(
    model_set: ModelSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = MemberPredictor(model_set)
    assert predictor.configuration_manager.spacing[0] == 12.0
    needed = minimum_voxels(1.0, 12.0)
    assert needed == 7 and minimum_voxels(2.5, 12.0) == 3 and minimum_voxels(12.0, 12.0) == 1
    with pytest.raises(InputError, match=r"6 slices of 1 mm are too few .* at least 7 slices"):
        predictor.preprocess(_ct(needed - 1, 1.0))
    assert predictor.preprocess(_ct(needed, 1.0)).data.shape[1] == 1
    monkeypatch.setattr(MemberPredictor, "check_extent", lambda *args, **kwargs: None)
    with pytest.raises(ValueError, match="zero-size array"):  # nnU-Net itself, without the check
        predictor.preprocess(_ct(needed - 1, 1.0))


def test_a_2d_plan_keeps_its_slice_axis_and_checks_in_plane() -> None:
    check_extent((3, 64, 64), (1.0, 0.8, 0.8), (0.8, 0.8), (0, 1, 2), "ct")  # 2-D: the slices are not resampled
    with pytest.raises(InputError, match=r"^ct: 2 columns of 0\.8 mm are too few .* at least 3 columns"):
        check_extent((3, 64, 2), (1.0, 0.8, 0.8), (4.0, 4.0), (0, 1, 2), "ct")


def test_the_3_slice_series_fails_as_bad_input_and_the_batch_goes_on(
    store_url: str, tmp_path: Path, shared_data: Path, model_set: ModelSet, capsys: pytest.CaptureFixture[str]
) -> None:
    series = shared_data / "dcmqi_ct3slice" / "ct"
    phantom, _ = write_phantom_case(tmp_path / "cohort", 9006)
    summary = run_batch(BatchOptions(cases=(CaseSpec("ct3slice", series), CaseSpec("phantom", phantom)),
                                     model_set=model_set, models_source="demo", database_url=store_url,
                                     artifacts=tmp_path / "artifacts", tta=False, progress=False))
    assert summary.done == ["phantom"] and summary.exit_code == 1
    ((case, stage, reason),) = summary.failed
    assert (case, stage) == ("ct3slice", "read") and re.fullmatch(f"{re.escape(str(series))}: {TOO_FEW}", reason)
    engine = make_engine(store_url)
    with session_factory(engine)() as session:
        failure = session.scalars(select(CaseFailure)).one()
        assert (failure.case_name, failure.stage, failure.reason) == ("ct3slice", "read", reason)
        assert set(session.scalars(select(Image.name))) == {"phantom"}, "nothing stored of the refused case"
    engine.dispose()

    capsys.readouterr()
    settings = Settings(database_url=store_url, artifacts_dir=tmp_path / "artifacts", exports_dir=tmp_path / "x")
    assert main(["predict", "--models", str(DEMO), "--ct", str(series), "--out", str(tmp_path / "p")],
                settings) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error")] == [f"error: {series}: "
                                                                               + TOO_FEW.replace("\\", "")]
    assert "Traceback" not in err and not (tmp_path / "p").exists()
