"""The batch on real tiny nnU-Net models, into SQLite and PostgreSQL: rows, failures, idempotency, protocol."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from sqlalchemy import func, select

from pipeline.batch.cases import CaseSpec, discover
from pipeline.batch.export import export_map
from pipeline.batch.locking import claim
from pipeline.batch.member_passes import PASS_KIND
from pipeline.batch.protocol_stage import ProtocolOptions, run_protocol
from pipeline.batch.runner import BatchOptions, RunSummary, run_batch
from pipeline.errors import StoreNotReadyError
from pipeline.inference.model_set import ModelSet, ModelSetError, load_model_set_file
from pipeline.metrics import evaluate_case, registry
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.audit_chain import ChainReport
from pipeline.store.database import make_engine, session_factory
from pipeline.store.metric_values import result_values
from pipeline.store.review_schema import AuditEntry
from pipeline.store.schema import (
    WHOLE_CASE,
    Artifact,
    CaseFailure,
    CaseResult,
    Configuration,
    CurvePoint,
    Image,
    MetricValue,
    ReliabilityBin,
    Run,
    StructureResult,
    TemperatureFit,
)
from tests.store.conftest import write_phantom_case

BUDGET_POINTS = 51


def _options(cases: list[CaseSpec], model_set: ModelSet, url: str, artifacts: Path, **extra: Any) -> BatchOptions:
    return BatchOptions(cases=tuple(cases), model_set=model_set, models_source="smoke", database_url=url,
                        artifacts=artifacts, tta=False, progress=False, **extra)


def _bad_cases(folder: Path, good: Path) -> list[CaseSpec]:
    """A corrupt CT, a reference on another grid, an empty reference and an unreadable DICOM folder."""
    corrupt = folder / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8bnot really a gzip stream")
    ct = sitk.ReadImage(str(good))
    shifted = sitk.Image(ct.GetSize(), sitk.sitkUInt8)
    shifted.CopyInformation(ct)
    shifted.SetOrigin((5.0, 0.0, 0.0))
    sitk.WriteImage(shifted, str(folder / "shifted_ref.nii.gz"))
    empty = sitk.Image(ct.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(ct)
    sitk.WriteImage(empty, str(folder / "empty_ref.nii.gz"))
    dicom = folder / "broken_dicom"
    dicom.mkdir()
    (dicom / "slice1.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00garbage")
    return [
        CaseSpec("corrupt", corrupt),
        CaseSpec("geometry", good, folder / "shifted_ref.nii.gz"),
        CaseSpec("empty_reference", good, folder / "empty_ref.nii.gz"),
        CaseSpec("bad_dicom", dicom),
    ]


def _count(url: str, table: type) -> int:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        value = session.scalar(select(func.count()).select_from(table))
    engine.dispose()
    return int(value or 0)


def test_batch_stores_good_cases_and_records_each_bad_one(
    store_url: str, tmp_path: Path, phantom_folder: Path, model_set: ModelSet
) -> None:
    good = discover(phantom_folder, "phantom")[:1]
    cases = good + _bad_cases(tmp_path, good[0].ct)
    artifacts = tmp_path / "artifacts"
    summary = run_batch(_options(cases, model_set, store_url, artifacts))
    assert summary.done == ["phantom_9000"]
    stages = {name: stage for name, stage, _ in summary.failed}
    assert stages == {"corrupt": "read", "geometry": "geometry", "empty_reference": "reference", "bad_dicom": "read"}
    reasons = {name: reason for name, _, reason in summary.failed}
    assert "corrupt.nii.gz" in reasons["corrupt"] and "shifted_ref.nii.gz" in reasons["geometry"]
    assert summary.exit_code == 1
    engine = make_engine(store_url)
    with session_factory(engine)() as session:
        run = session.scalars(select(Run)).one()
        assert (run.status, run.cases_done, run.cases_failed, run.cases_total) == ("failed", 1, 4, 5)
        assert run.audit_check["ok"] is True and summary.audit is not None and summary.audit.ok  # checked at the end
        failures = session.scalars(select(CaseFailure)).all()
        assert {f.case_name for f in failures} == set(stages)
        names = session.scalars(select(Configuration.name).order_by(Configuration.position)).all()
        assert names == ["Base", "Base+TS", "DE", "DE+TS", "CE", "CE+TS"]
        results = session.scalars(select(CaseResult)).all()
        assert len(results) == 3, "without a deployed temperature only the uncalibrated configurations run"
        values = [result_values(session, r.id) for r in results]
        assert all(r.has_reference for r in results)
        assert all(v["dsc_mean_fg"] is not None and 0 <= v["ueo_auc"] <= 1 for v in values)  # type: ignore[operator]
        whole = session.scalar(select(func.count()).select_from(MetricValue)
                               .where(MetricValue.class_index == WHOLE_CASE))
        assert whole == len(results) * len(registry.case_metrics()), "a row per result and case metric of the registry"
        per_structure = [m for m in registry.structure_metrics() if m.table == "metric_values"]
        foreground = session.scalar(select(func.count()).select_from(StructureResult).where(
            StructureResult.result_id == results[0].id, StructureResult.class_index > 0))
        stored = session.scalar(select(func.count()).select_from(MetricValue))
        assert stored == whole + len(results) * foreground * len(per_structure), "and per foreground structure"
        per_result = {r.id: 0 for r in results}
        for point in session.scalars(select(CurvePoint)):
            per_result[point.result_id] += 1
        assert set(per_result.values()) == {BUDGET_POINTS}
        assert session.scalar(select(func.count()).select_from(ReliabilityBin)) == 3 * 15
        assert session.scalar(select(func.count()).select_from(StructureResult)) == 3 * 3
        kinds = sorted(session.scalars(select(Artifact.kind).where(Artifact.result_id == results[0].id)))
        assert kinds == ["budget_mask", "entropy", "error", "prediction"]
        image = session.scalars(select(Image).where(Image.name == "phantom_9000")).one()
        ct_path = session.scalars(select(Artifact.path).where(Artifact.image_id == image.id,
                                                              Artifact.kind == "ct")).one()
    engine.dispose()
    stored_ct = ArtifactStore(artifacts).read(ct_path)
    assert np.array_equal(stored_ct, sitk.GetArrayFromImage(sitk.ReadImage(str(good[0].ct))).astype(stored_ct.dtype))

    again = run_batch(_options(cases, model_set, store_url, artifacts))
    assert again.skipped == ["phantom_9000"] and not again.done
    assert _count(store_url, CaseResult) == 3, "a re-run must not redo or duplicate finished work"


def test_changed_image_is_redone_and_dry_run_changes_nothing(
    store_url: str, tmp_path: Path, model_set: ModelSet
) -> None:
    ct, _ = write_phantom_case(tmp_path / "cohort", 9003)
    cases = discover(tmp_path / "cohort")
    artifacts = tmp_path / "artifacts"
    run_batch(_options(cases, model_set, store_url, artifacts))
    image = sitk.ReadImage(str(ct))
    array = sitk.GetArrayFromImage(image)
    array[10, 30, 30] += 50.0
    changed = sitk.GetImageFromArray(array)
    changed.CopyInformation(image)
    sitk.WriteImage(changed, str(ct))
    dry = run_batch(_options(cases, model_set, store_url, artifacts, dry_run=True))
    assert dry.would_run == ["phantom_9003"] and dry.run_id is None
    assert _count(store_url, Run) == 1, "a dry run records nothing"
    redo = run_batch(_options(cases, model_set, store_url, artifacts))
    assert redo.done == ["phantom_9003"]
    assert _count(store_url, CaseResult) == 3, "the redone case replaces its rows"


def test_protocol_fits_temperatures_and_the_batch_then_runs_every_configuration(
    store_url: str, tmp_path: Path, phantom_folder: Path, model_set: ModelSet
) -> None:
    artifacts = tmp_path / "artifacts"
    run_batch(_options(discover(phantom_folder, "phantom")[:2], model_set, store_url, artifacts))
    engine = make_engine(store_url)
    with session_factory(engine).begin() as session:
        from pipeline.store.schema import ModelSet as ModelSetRow

        row = session.scalars(select(ModelSetRow)).one()
        run_protocol(session, ArtifactStore(artifacts), row, ProtocolOptions(cohort="phantom", repeats=2))
    with session_factory(engine)() as session:
        fits = session.scalars(select(TemperatureFit)).all()
        roles = [f.role for f in fits]
        assert (roles.count("repeat"), roles.count("deployed"), roles.count("crossfit")) == (3 * 2, 3, 3 * 2), (
            "per TS configuration: one fit per repeat, one on the whole cohort, one cross-fit per fold (2 cases)")
        assert all(f.nll_after <= f.nll_before + 1e-9 for f in fits)
        assert {f.temperature_mode for f in fits} == {"after_pooling"}, "the runs' settings are the default's"
        assert not session.scalars(select(Artifact).where(Artifact.kind == PASS_KIND)).all(), (
            "an after_pooling run stores no member passes")
        ts_results = session.execute(select(CaseResult, Image.name, TemperatureFit).join(
            Image, Image.id == CaseResult.image_id).join(
            TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)).all()
        assert len(ts_results) == 3 * 2 * 1 + 3 * 2, "repeat test cases (1 of 2 per repeat) and deployed (both)"
        assert all(name not in fit.cases for _, name, fit in ts_results), (
            "out of sample everywhere: no TS result comes from a temperature fitted on its own case")
        assert {fit.role for _, _, fit in ts_results} == {"repeat", "crossfit"}, "cohort cases use cross-fits"
        changes = session.scalars(select(AuditEntry).where(AuditEntry.action == "config.deploy_ts")).all()
        deployed = {f.configuration_id: f.temperature for f in fits if f.role == "deployed"}
        assert len(changes) == 3 and all(c.before is None and c.actor.startswith("cli:") for c in changes)
        assert sorted(c.after["temperature"] for c in changes) == sorted(deployed.values())
        assert all(len(c.after["crossfit"]) == 2 for c in changes)
    with session_factory(engine).begin() as session:  # a second protocol: the audit row keeps the replaced value
        run_protocol(session, ArtifactStore(artifacts), row, ProtocolOptions(cohort="phantom", repeats=2, seed=1))
    with session_factory(engine)() as session:
        changes = session.scalars(select(AuditEntry).where(AuditEntry.action == "config.deploy_ts")
                                  .order_by(AuditEntry.id)).all()
        assert len(changes) == 6
        assert sorted(c.before["temperature"] for c in changes[3:]) == sorted(deployed.values())
    engine.dispose()
    new_case = tmp_path / "new"
    write_phantom_case(new_case, 9004)
    summary = run_batch(_options(discover(new_case, "clinical"), model_set, store_url, artifacts))
    assert summary.done == ["phantom_9004"]
    engine = make_engine(store_url)
    with session_factory(engine)() as session:
        image = session.scalars(select(Image).where(Image.name == "phantom_9004")).one()
        rows = session.scalars(select(CaseResult).where(CaseResult.image_id == image.id)).all()
        assert len(rows) == 6, "with deployed temperatures the batch runs all six configurations"
        by_fit = {r.temperature_fit_id is not None: r for r in rows}
        assert by_fit[True].temperature is not None and by_fit[True].temperature > 0
        applied = session.get_one(TemperatureFit, by_fit[True].temperature_fit_id)
        assert applied.role == "deployed", "a new case gets the whole-cohort fit"
        scaled = session.scalars(select(CaseResult).join(Configuration).where(
            CaseResult.image_id == image.id, Configuration.name == "DE+TS")).one()
        stored = result_values(session, scaled.id)
    engine.dispose()
    # an auditor recomputes the stored numbers from the exported probabilities, outside the project's store
    out = export_map(store_url, artifacts, "phantom_9004", "DE+TS", "probabilities", tmp_path / "p.nii.gz")
    exported = sitk.ReadImage(str(out))
    description = exported.GetMetaData("descrip")
    assert description.startswith("DE+TS ") and f"T={scaled.temperature:.6g}" in description
    probabilities = sitk.GetArrayFromImage(exported)  # (C, Z, Y, X): the class is the NIfTI's 4th axis
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(new_case / "references" / "phantom_9004.nii.gz")))
    spacing = tuple(reversed(exported.GetSpacing()[:3]))
    recomputed = evaluate_case(probabilities.astype(np.float32), reference, spacing).metrics
    for name in ("dsc_mean_fg", "ece", "brier", "nll", "ueo_auc"):
        assert recomputed.to_dict()[name] == pytest.approx(stored[name], abs=1e-5), name


def test_case_without_reference_gets_maps_but_no_reference_metrics(
    store_url: str, tmp_path: Path, model_set: ModelSet
) -> None:
    ct, _ = write_phantom_case(tmp_path / "c", 9005)
    summary = run_batch(_options([CaseSpec("prospective", ct)], model_set, store_url, tmp_path / "a"))
    assert summary.done == ["prospective"]
    engine = make_engine(store_url)
    with session_factory(engine)() as session:
        results = session.scalars(select(CaseResult)).all()
        values = [result_values(session, r.id) for r in results]
        assert results and all(not r.has_reference and r.roi_voxels > 0 for r in results)
        assert all(v["ece"] is None and v["dsc_mean_fg"] is None for v in values)
        assert all(0 <= v["mean_entropy_roi"] <= 1 for v in values)  # type: ignore[operator]
        kinds = set(session.scalars(select(Artifact.kind)))
        assert {"entropy", "prediction", "budget_mask", "ct"} <= kinds and "error" not in kinds
    engine.dispose()
    entropy = export_map(store_url, tmp_path / "a", "prospective", "DE", "entropy", tmp_path / "entropy.nii.gz")
    exported, original = sitk.ReadImage(str(entropy)), sitk.ReadImage(str(ct))
    assert exported.GetSize() == original.GetSize() and exported.GetSpacing() == original.GetSpacing()
    assert exported.GetOrigin() == original.GetOrigin() and exported.GetDirection() == original.GetDirection()
    values = sitk.GetArrayFromImage(exported)
    assert values.dtype == np.float32 and values.min() >= 0 and values.max() <= 1
    with pytest.raises(ValueError, match="unknown case 'nobody'"):
        export_map(store_url, tmp_path / "a", "nobody", "DE", "entropy", tmp_path / "x.nii.gz")
    with pytest.raises(ValueError, match="no stored error map of DE"):
        export_map(store_url, tmp_path / "a", "prospective", "DE", "error", tmp_path / "x.nii.gz")


def test_a_store_behind_head_is_refused_with_the_command_to_run(
    empty_store_url: str, tmp_path: Path, phantom_folder: Path, model_set: ModelSet
) -> None:
    with pytest.raises(StoreNotReadyError, match="alembic upgrade head"):
        run_batch(_options(discover(phantom_folder), model_set, empty_store_url, tmp_path))


def test_a_missing_checkpoint_is_named_before_any_case_runs(smoke_run: tuple[Path, dict[str, Any]],
                                                             tmp_path: Path) -> None:
    copy = tmp_path / "models"
    shutil.copytree(smoke_run[0], copy)
    victim = next(copy.rglob("checkpoint_cycle_*.pth"))
    victim.unlink()
    with pytest.raises(ModelSetError, match=victim.name):
        load_model_set_file(copy / "manifest.json")


def test_two_claims_on_one_case_exclude_each_other(store_url: str) -> None:
    engine = make_engine(store_url)
    with claim(engine, "case-a") as first, claim(engine, "case-a") as second, claim(engine, "case-b") as other:
        assert (first, second, other) == (True, False, True)
    with claim(engine, "case-a") as again:
        assert again, "a released claim can be taken again"
    engine.dispose()


def test_summary_exit_code() -> None:
    assert RunSummary().exit_code == 0
    assert RunSummary(failed=[("a", "read", "x")]).exit_code == 1
    assert RunSummary(audit=ChainReport(3, 2, "0" * 64, 3, "edited")).exit_code == 1
