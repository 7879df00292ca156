"""``temperature_mode = per_member`` end to end on real tiny nnU-Net models, into SQLite and PostgreSQL: the batch
stores the member passes, the protocol fits T on the scaled members, the nightly batch pools scaled members, the
export rebuilds p_cal(T), and a temperature is never applied under the other mode."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from sqlalchemy import Select, select

from pipeline.batch.cases import CaseSpec, discover
from pipeline.batch.export import export_map
from pipeline.batch.member_passes import PASS_KIND
from pipeline.batch.protocol_stage import ProtocolOptions, run_protocol
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.errors import InputError
from pipeline.inference.engine import MemberPredictor
from pipeline.inference.grid import Configuration as GridConfiguration
from pipeline.inference.grid import grid_for
from pipeline.inference.model_set import ModelSet
from pipeline.inference.pooling import predict_grid
from pipeline.metrics import evaluate_case
from pipeline.metrics.pooling import pool_members
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import calibration_roi
from pipeline.metrics.temperature import fit_temperature
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import make_engine, session_factory
from pipeline.store.metric_values import result_values
from pipeline.store.schema import Artifact, CaseResult, Configuration, Image, Run, TemperatureFit
from pipeline.store.schema import ModelSet as ModelSetRow
from qa_dashboard.queries import patient
from tests.store.conftest import write_phantom_case

PER_MEMBER = MetricSettings(temperature_mode="per_member", grid_mapping="per_pass")
COMPARED = ("dsc_mean_fg", "ece", "brier", "nll", "ueo_auc", "fp_tp_auc", "fn_tn_auc")


@pytest.fixture(scope="module")
def predictor(model_set: ModelSet) -> MemberPredictor:
    return MemberPredictor(model_set, mixed_precision=False)


def _options(cases: list[CaseSpec], model_set: ModelSet, url: str, artifacts: Path, settings: MetricSettings
             ) -> BatchOptions:
    return BatchOptions(cases=tuple(cases), model_set=model_set, models_source="smoke", database_url=url,
                        artifacts=artifacts, settings=settings, tta=False, progress=False)


def _case(folder: Path, name: str) -> tuple[sitk.Image, np.ndarray, tuple[float, float, float]]:
    image = sitk.ReadImage(str(folder / "images" / f"{name}.nii.gz"))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "references" / f"{name}.nii.gz"))).astype(np.uint8)
    x, y, z = image.GetSpacing()
    return image, labels, (z, y, x)


def _independent_fit(predictor: MemberPredictor, folder: Path, names: list[str], configuration: GridConfiguration
                     ) -> float:
    """T from the metric engine on member logits straight from the predictor (per-pass mapping), at the ROI of the
    uncalibrated pool, cases in the order the protocol concatenates them."""
    scores, labels = [], []
    for name in names:
        image, reference, spacing = _case(folder, name)
        case = predictor.preprocess(image)
        members = [predictor.forward(case, member, view) for member, view in predictor.ordered(
            list(configuration.passes))]
        flat = calibration_roi(pool_members(members, PER_MEMBER.pooling), reference, spacing, PER_MEMBER)
        scores.append(np.stack([m.reshape(m.shape[0], -1)[:, flat] for m in members]))
        labels.append(reference.reshape(-1)[flat])
    return fit_temperature(np.concatenate(scores, axis=-1), np.concatenate(labels), PER_MEMBER).temperature


def _scaled_maps(predictor: MemberPredictor, image: sitk.Image, grid: tuple[GridConfiguration, ...],
                 temperatures: dict[str, float]) -> dict[str, np.ndarray]:
    """p_cal(T) of each named TS configuration as inference makes it: members scaled, then pooled."""
    prediction = predict_grid(predictor, image, grid, PER_MEMBER.pooling, member_temperature=temperatures,
                              grid_mapping="per_pass")
    return {name: probabilities for name, probabilities in prediction if name in temperatures}


def _ts_results(case: str) -> Select[tuple[CaseResult, str, TemperatureFit]]:
    """The case's TS results with their configuration's name and fit."""
    return (select(CaseResult, Configuration.name, TemperatureFit).select_from(CaseResult)
            .join(Configuration, Configuration.id == CaseResult.configuration_id)
            .join(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
            .join(Image, Image.id == CaseResult.image_id).where(Image.name == case))


def _assert_scored_on(stored: dict[str, float | None], probabilities: np.ndarray, labels: np.ndarray,
                      spacing: tuple[float, float, float], what: str) -> None:
    expected = evaluate_case(probabilities, labels, spacing, PER_MEMBER).metrics.to_dict()
    for name in COMPARED:
        assert stored[name] == pytest.approx(expected[name], abs=1e-6, nan_ok=True), f"{what}: {name}"


def test_per_member_temperatures_are_fitted_and_applied_to_the_members(
    store_url: str, tmp_path: Path, phantom_folder: Path, model_set: ModelSet, predictor: MemberPredictor
) -> None:
    artifacts = tmp_path / "artifacts"
    cohort = discover(phantom_folder, "phantom")[:2]
    names = sorted(spec.name for spec in cohort)
    run_batch(_options(cohort, model_set, store_url, artifacts, PER_MEMBER))
    grid = grid_for(model_set, ())
    scaled = [c for c in grid if c.temperature_scaling]
    engine = make_engine(store_url)
    with session_factory(engine).begin() as session:
        kinds = session.scalars(select(Artifact.kind)).all()
        assert kinds.count(PASS_KIND) == 2 * len(model_set.members), "each case stores every unique pass once"
        row = session.scalars(select(ModelSetRow)).one()
        run_protocol(session, ArtifactStore(artifacts), row, ProtocolOptions(cohort="phantom", repeats=1))
    with session_factory(engine)() as session:
        fits = session.execute(select(TemperatureFit, Configuration.name).join(
            Configuration, Configuration.id == TemperatureFit.configuration_id)).all()
        deployed = {name: fit for fit, name in fits if fit.role == "deployed"}
        for configuration in scaled:
            expected = _independent_fit(predictor, phantom_folder, names, configuration)
            assert deployed[configuration.name].temperature == pytest.approx(expected, abs=1e-4), (
                f"{configuration.name}: the protocol fits T on the scaled members")
        assert {fit.temperature_mode for fit, _ in fits} == {"per_member"}
        for name in names:
            image, labels, spacing = _case(phantom_folder, name)
            results = session.execute(_ts_results(name).where(TemperatureFit.role == "crossfit"))
            crossfit = {configuration: (result, fit) for result, configuration, fit in results}
            assert sorted(crossfit) == sorted(c.name for c in scaled)
            maps = _scaled_maps(predictor, image, grid, {c: fit.temperature for c, (_, fit) in crossfit.items()})
            for configuration, (result, fit) in crossfit.items():
                assert result.temperature == fit.temperature and name not in fit.cases
                _assert_scored_on(result_values(session, result.id), maps[configuration], labels, spacing,
                                  f"{name} {configuration}")
    engine.dispose()

    new_case = tmp_path / "new"
    write_phantom_case(new_case, 9004)
    assert run_batch(_options(discover(new_case, "clinical"), model_set, store_url, artifacts, PER_MEMBER)).done == [
        "phantom_9004"]
    image, labels, spacing = _case(new_case, "phantom_9004")
    maps = _scaled_maps(predictor, image, grid, {n: f.temperature for n, f in deployed.items()})
    engine = make_engine(store_url)
    with session_factory(engine)() as session:
        results = session.execute(_ts_results("phantom_9004")).all()
        assert sorted(name for _, name, _ in results) == sorted(c.name for c in scaled)
        for result, name, fit in results:
            assert fit.role == "deployed" and result.temperature == deployed[name].temperature
            _assert_scored_on(result_values(session, result.id), maps[name], labels, spacing, f"nightly {name}")
        case = patient.find_case(session, "phantom_9004")
        assert case is not None
        shown = {r.configuration: r.probabilities_path for r in patient.shown_results(session, case)}
        assert shown["DE"] is not None and shown["DE+TS"] is None, (
            "the slice browser shows no after-pooling rescaling of the twin for a per-member TS result")
    engine.dispose()

    out = export_map(store_url, artifacts, "phantom_9004", "DE+TS", "probabilities", tmp_path / "p.nii.gz")
    exported = sitk.ReadImage(str(out))
    assert exported.GetMetaData("descrip").endswith("per_member")
    np.testing.assert_allclose(sitk.GetArrayFromImage(exported), maps["DE+TS"], atol=1e-6)

    other = tmp_path / "other"
    write_phantom_case(other, 9005)
    with pytest.raises(InputError, match="fitted with temperature_mode per_member, these settings say after_pooling"):
        run_batch(_options(discover(other, "clinical"), model_set, store_url, artifacts, MetricSettings()))


def test_per_member_needs_the_per_pass_grid_mapping(store_url: str, tmp_path: Path, phantom_folder: Path,
                                                    model_set: ModelSet) -> None:
    pooled = MetricSettings(temperature_mode="per_member")
    cohort = discover(phantom_folder, "phantom")[:2]
    with pytest.raises(InputError, match="per_member needs grid_mapping per_pass"):
        run_batch(_options(cohort, model_set, store_url, tmp_path / "a", pooled))
    run_batch(_options(cohort, model_set, store_url, tmp_path / "a", MetricSettings()))
    engine = make_engine(store_url)
    with session_factory(engine).begin() as session:  # a store whose runs say so (written by an older version)
        for run in session.scalars(select(Run)):
            run.options = run.options | {"settings": asdict(pooled)}
    with session_factory(engine).begin() as session, pytest.raises(
            InputError, match="per_member needs grid_mapping per_pass"):
        run_protocol(session, ArtifactStore(tmp_path / "a"), session.scalars(select(ModelSetRow)).one(),
                     ProtocolOptions(cohort="phantom", repeats=1))
    engine.dispose()
