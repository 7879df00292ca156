"""Temperature granularities through the batch and the protocol, on SQLite and PostgreSQL: one T per configuration,
a class-wise vector and per-scanner temperatures (scanners from manifest columns), each fitted out of sample on the
calibration cases and evaluated on the same test cases; the per-scanner fallback below the threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from sqlalchemy import select

from pipeline.batch.cases import discover
from pipeline.batch.export import export_map
from pipeline.batch.protocol_stage import ProtocolOptions, run_protocol
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.inference.model_set import load_model_set_file
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.temperature import apply_temperature
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.cohort_rows import latest_protocol, protocol_case_rows
from pipeline.store.database import make_engine, session_factory
from pipeline.store.schema import Artifact, CaseResult, Configuration, Image, ModelSet, TemperatureFit
from pipeline.store.temperatures import scanner_of
from tests.store.conftest import write_phantom_case

SETTINGS = MetricSettings(temperature_granularities=("configuration", "class", "scanner"),
                          temperature_group_min_cases=2, temperature_group_min_voxels=1)
SCANNERS = {"phantom_9000": "Acme,CT1", "phantom_9001": "Acme,CT1", "phantom_9002": "Acme,CT1",
            "phantom_9003": "Other,CT2"}


def _manifest(folder: Path, phantom_folder: Path) -> Path:
    """Four phantoms with references; three from one scanner, one from another (manifest acquisition columns)."""
    write_phantom_case(folder, 9003)
    rows = ["case,ct,reference,manufacturer,manufacturer_model"]
    for name, scanner in SCANNERS.items():
        root = folder if name == "phantom_9003" else phantom_folder
        rows.append(f"{name},{root / 'images' / name}.nii.gz,{root / 'references' / name}.nii.gz,{scanner}")
    manifest = folder / "cohort.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def _protocol(url: str, tmp_path: Path, phantom_folder: Path, smoke_run: tuple[Path, dict[str, Any]]) -> Path:
    artifacts = tmp_path / "artifacts"
    cases = discover(_manifest(tmp_path, phantom_folder), "phantom")
    summary = run_batch(BatchOptions(cases=tuple(cases), model_set=load_model_set_file(smoke_run[0] / "manifest.json"),
                                     models_source="smoke", database_url=url, artifacts=artifacts, tta=False,
                                     progress=False, settings=SETTINGS))
    assert len(summary.done) == 4
    engine = make_engine(url)
    with session_factory(engine).begin() as session:
        model_set = session.scalars(select(ModelSet)).one()
        run_protocol(session, ArtifactStore(artifacts), model_set, ProtocolOptions(cohort="phantom", repeats=3))
    engine.dispose()
    return artifacts


def _ts_results(session: Any) -> list[tuple[CaseResult, Image, Configuration, TemperatureFit]]:
    return list(session.execute(
        select(CaseResult, Image, Configuration, TemperatureFit).join(Image, Image.id == CaseResult.image_id)
        .join(Configuration, Configuration.id == CaseResult.configuration_id)
        .join(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)).all())


def test_three_granularities_out_of_sample_on_the_same_test_cases(
    store_url: str, tmp_path: Path, phantom_folder: Path, smoke_run: tuple[Path, dict[str, Any]]
) -> None:
    artifacts = _protocol(store_url, tmp_path, phantom_folder, smoke_run)
    engine = make_engine(store_url)
    with session_factory(engine)() as session:
        configurations = {c.name: c for c in session.scalars(select(Configuration))}
        assert {c.temperature_granularity for c in configurations.values() if c.name.endswith("/class")} == {"class"}
        assert {"DE+TS", "DE+TS/class", "DE+TS/scanner"} <= set(configurations)
        assert all(configurations[f"DE+TS/{g}"].position > configurations["DE+TS"].position
                   for g in ("class", "scanner"))
        rows = protocol_case_rows(session, latest_protocol(session, "phantom"))
        pairs = {name: set(zip(group["repeat"], group["case"], strict=True))
                 for name, group in rows.groupby("configuration")}
        for stem in ("Base", "DE"):
            assert pairs[f"{stem}+TS"] == pairs[f"{stem}+TS/class"] == pairs[f"{stem}+TS/scanner"] == pairs[stem], (
                "every granularity on the same test cases as its uncalibrated twin")
        results = _ts_results(session)
        assert results and all(image.name not in fit.cases for _, image, _, fit in results), "out of sample"
        assert {fit.granularity for *_, fit in results} == {"configuration", "class", "scanner"}
        scalar_fits = {(f.configuration_id, f.repeat, f.role, tuple(f.cases)): f
                       for f in session.scalars(select(TemperatureFit).where(
                           TemperatureFit.granularity == "configuration"))}
        for result, image, configuration, fit in results:
            assert fit.granularity == configuration.temperature_granularity
            if fit.granularity == "class":
                assert result.temperature is None and len(fit.temperatures) == 3
                assert all(0.05 <= t <= 20 for t in fit.temperatures)
                twin = configurations[configuration.name.removesuffix("/class")]
                scalar = scalar_fits[(twin.id, fit.repeat, fit.role, tuple(fit.cases))]
                assert fit.temperature == pytest.approx(scalar.temperature), "the vector starts from the scalar fit"
                assert fit.nll_after <= scalar.nll_after + 1e-9, "same calibration voxels, one more degree of freedom"
            elif fit.granularity == "scanner":
                own = fit.temperatures.get(scanner_of(image.acquisition), {}).get("temperature")
                assert result.temperature == (own if own is not None else fit.temperature)
                for group, entry in fit.temperatures.items():
                    assert entry["cases"] == sum(scanner_of(session.scalars(select(Image.acquisition).where(
                        Image.name == name)).one()) == group for name in fit.cases)
                    assert (entry["temperature"] is None) == (entry["cases"] < 2), "fallback below 2 cases"
            else:
                assert result.temperature == fit.temperature
        deployed = {c.name: f for f, c in session.execute(select(TemperatureFit, Configuration).join(
            Configuration, Configuration.id == TemperatureFit.configuration_id).where(
            TemperatureFit.role == "deployed")).all()}
        groups = deployed["DE+TS/scanner"].temperatures
        assert groups["Acme CT1"]["cases"] == 3 and groups["Acme CT1"]["temperature"] is not None
        assert groups["Other CT2"] == {"cases": 1, "voxels": groups["Other CT2"]["voxels"], "temperature": None}
        vector = deployed["DE+TS/class"].temperatures
        class_result, image = next((r, i) for r, i, c, f in results
                                   if c.name == "DE+TS/class" and f.role == "crossfit")
        prediction = ArtifactStore(artifacts).read(session.scalars(select(Artifact.path).where(
            Artifact.result_id == class_result.id, Artifact.kind == "prediction")).one())
        twin_probabilities = ArtifactStore(artifacts).read(session.scalars(select(Artifact.path).where(
            Artifact.image_id == image.id, Artifact.kind == "probabilities",
            Artifact.configuration_id == configurations["DE"].id)).one())
        class_fit = session.get_one(TemperatureFit, class_result.temperature_fit_id)
    engine.dispose()
    calibrated = apply_temperature(twin_probabilities.astype(np.float32), tuple(class_fit.temperatures))
    assert np.array_equal(prediction, calibrated.argmax(axis=0)), "a class-wise result's argmax is the calibrated one"
    assert len(vector) == 3
    out = export_map(store_url, artifacts, image.name, "DE+TS/class", "probabilities", tmp_path / "p.nii.gz")
    exported = sitk.ReadImage(str(out))
    assert "T=" + ",".join(f"{t:.6g}" for t in class_fit.temperatures) in exported.GetMetaData("descrip")
    assert np.allclose(sitk.GetArrayFromImage(exported), calibrated, atol=1e-6), "the export applies the vector"
