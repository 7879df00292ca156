"""``attach-reference`` on real tiny nnU-Net models, into SQLite and PostgreSQL: a case run without its reference and
given it later gets exactly the rows the batch stores for the same case run with it (every configuration, TS results
with their deployed fit), without inference, in one transaction, with its history and audit rows."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pipeline.batch import attach as attach_module
from pipeline.batch.attach import AttachRequest, attach_references
from pipeline.batch.cases import CaseSpec, discover
from pipeline.batch.protocol_stage import ProtocolOptions, run_protocol
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.cli import main
from pipeline.inference import engine as inference_engine
from pipeline.inference.model_set import ModelSet, load_model_set_file
from pipeline.metrics.settings import MetricSettings
from pipeline.settings import DEFAULT_MAX_VOXELS, ReviewSettings, Settings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.audit_chain import verify_engine
from pipeline.store.database import make_engine, session_factory
from pipeline.store.review_schema import AuditEntry
from pipeline.store.schema import (
    Artifact,
    CaseResult,
    Configuration,
    CurvePoint,
    Image,
    MetricValue,
    Processing,
    ReferenceAttachment,
    ReliabilityBin,
    StructureResult,
    TemperatureFit,
)
from pipeline.store.schema import ModelSet as ModelSetRow
from pipeline.store.stored_regions import ResultRegions
from tests.conftest import REPO_ROOT
from tests.store.conftest import write_phantom_case

RESULT_COLUMNS = ("temperature", "has_reference", "roi_voxels", "error_voxels", "voxel_ml")
CHILDREN = {MetricValue: ("class_index", "name", "value"),
            StructureResult: ("class_index", "structure", "dsc", "predicted_ml", "reference_ml"),
            CurvePoint: ("budget_index", "budget", "ueo", "recall", "precision", "flagged_ml"),
            ReliabilityBin: ("group", "bin", "count", "sum_confidence", "sum_correct"),
            ResultRegions: ("budget", "connectivity", "structure_search_mm", "regions")}
MAPS = ("entropy", "prediction", "error", "budget_mask")
MAX_VOXELS = DEFAULT_MAX_VOXELS


@pytest.fixture(scope="module")
def model_set() -> ModelSet:
    """The committed demo models (real nnU-Net members: no training in the test)."""
    return load_model_set_file(REPO_ROOT / "models" / "demo" / "manifest.json")


def _options(cases: list[CaseSpec], model_set: ModelSet, url: str, artifacts: Path) -> BatchOptions:
    return BatchOptions(cases=tuple(cases), model_set=model_set, models_source="smoke", database_url=url,
                        artifacts=artifacts, tta=False, progress=False)


def _rows(session: Session, store: ArtifactStore, case: str) -> dict[tuple[str, int | None], dict[str, Any]]:
    """Every stored row of a case's results, keyed by (configuration, temperature fit), without ids or timings;
    the result maps as arrays."""
    found = {}
    for result, name in session.execute(select(CaseResult, Configuration.name).join(Configuration).join(
            Image, Image.id == CaseResult.image_id).where(Image.name == case)):
        rows: dict[str, Any] = {"result": tuple(getattr(result, c) for c in RESULT_COLUMNS)}
        for table, columns in CHILDREN.items():
            rows[table.__name__] = sorted(
                tuple(getattr(row, c) for c in columns)
                for row in session.scalars(select(table).where(table.result_id == result.id)))
        for kind, path in session.execute(select(Artifact.kind, Artifact.path).where(Artifact.result_id == result.id)):
            rows[kind] = store.read(path)
        found[(name, result.temperature_fit_id)] = rows
    return found


def _assert_same(later: dict[tuple[str, int | None], dict[str, Any]],
                 from_start: dict[tuple[str, int | None], dict[str, Any]]) -> None:
    assert later.keys() == from_start.keys()
    for key, rows in from_start.items():
        for part in ("result", *(t.__name__ for t in CHILDREN)):
            assert later[key][part] == rows[part], (key, part)
        for kind in MAPS:
            np.testing.assert_array_equal(later[key][kind], rows[kind], err_msg=f"{key} {kind}")


def _no_inference(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("attach-reference must not run inference")

    monkeypatch.setattr(inference_engine.MemberPredictor, "__init__", refuse)
    monkeypatch.setattr(inference_engine.MemberPredictor, "forward", refuse)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_a_reference_attached_later_gives_the_rows_the_batch_stores_with_it(
    store_url: str, tmp_path: Path, phantom_folder: Path, model_set: ModelSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifacts = tmp_path / "artifacts"
    run_batch(_options(discover(phantom_folder, "phantom")[:2], model_set, store_url, artifacts))
    engine = make_engine(store_url)
    with session_factory(engine).begin() as session:
        row = session.scalars(select(ModelSetRow)).one()
        run_protocol(session, ArtifactStore(artifacts), row, ProtocolOptions(cohort="phantom", repeats=1))
    ct, reference = write_phantom_case(tmp_path / "new", 9004)
    summary = run_batch(_options([CaseSpec("from_start", ct, reference, cohort="clinical"),
                                  CaseSpec("later", ct, None, cohort="clinical")], model_set, store_url, artifacts))
    assert summary.done == ["from_start", "later"]
    store = ArtifactStore(artifacts)
    with session_factory(engine)() as session:
        expected = _rows(session, store, "from_start")
        assert {fit is not None for _, fit in expected} == {True, False}, "TS results with their deployed fit too"
        processings = sorted(tuple(r) for r in session.execute(select(Processing.id, Processing.forward_passes)))
        before = _rows(session, store, "later")
        assert {rows["result"][1] for rows in before.values()} == {False}
        assert all(len(rows["ResultRegions"]) == len(ReviewSettings().region_budgets) for rows in expected.values())

    _no_inference(monkeypatch)
    done = attach_references(store_url, artifacts, [AttachRequest("later", reference, "final_clinical")],
                             MAX_VOXELS, isolate=False)
    assert [a.results for a in done.attached] == [len(expected)] and done.exit_code == 0
    with session_factory(engine)() as session:
        _assert_same(_rows(session, store, "later"), expected)
        passes = sorted(tuple(r) for r in session.execute(select(Processing.id, Processing.forward_passes)))
        assert passes == processings, "no processing added or redone: no forward pass"
        images = {i.name: i for i in session.scalars(select(Image))}
        assert images["later"].reference_hash == images["from_start"].reference_hash
        first = session.scalars(select(ReferenceAttachment)).one()
        assert (first.kind, first.source_format, first.superseded_at) == ("final_clinical", "image", None)
        assert {r["has_reference"] for r in first.replaced["results"]} == {False}
        assert first.replaced["reference_hash"] is None

    corrected = sitk.GetArrayFromImage(sitk.ReadImage(str(reference)))
    corrected[corrected == 1] = 0  # the clinician removed the lymph nodes: a corrected reference
    fixed = sitk.GetImageFromArray(corrected)
    fixed.CopyInformation(sitk.ReadImage(str(reference)))
    sitk.WriteImage(fixed, str(tmp_path / "corrected.nii.gz"))
    with session_factory(engine)() as session:
        ids = sorted(session.scalars(select(CaseResult.id).join(Image).where(Image.name == "later")))
    attach_references(store_url, artifacts, [AttachRequest("later", tmp_path / "corrected.nii.gz")],
                      MAX_VOXELS, isolate=False)
    with session_factory(engine)() as session:
        history = session.scalars(select(ReferenceAttachment).order_by(ReferenceAttachment.id)).all()
        assert [h.superseded_at is None for h in history] == [False, True]
        assert [h.kind for h in history] == ["final_clinical", "research"], "research unless declared"
        replaced = {(r["configuration"], r["temperature_fit"]): r for r in history[1].replaced["results"]}
        assert history[1].replaced["reference_hash"] == history[0].reference_hash
        for key, rows in expected.items():
            dsc = [v for i, n, v in rows["MetricValue"] if i == -1 and n == "dsc_mean_fg"]
            assert replaced[key]["metrics"]["dsc_mean_fg"] == dsc[0], "the replaced numbers are kept"
        assert sorted(session.scalars(select(CaseResult.id).join(Image).where(Image.name == "later"))) == ids, (
            "results keep their ids (review rows hang off them)")
        lymph = session.scalars(select(StructureResult.reference_ml).join(CaseResult).join(Image).where(
            Image.name == "later", StructureResult.structure == "lymph_nodes")).all()
        assert set(lymph) == {0.0}
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "reference.attach")
                                .order_by(AuditEntry.id)).all()
        assert [(a.object_id, a.after["attachment"]) for a in audit] == [("later", h.id) for h in history]
        assert audit[1].before["reference_hash"] == audit[0].after["reference_hash"]
        assert audit[0].before == {"reference_hash": None, "attachment": None, "kind": None}
    assert verify_engine(engine).ok
    files = _files(artifacts)
    assert not any("@ref1" in str(p) for p in files), "the replaced maps are removed after the commit"

    # a failure half-way leaves the store as it was: no row changed, no new map left behind
    with session_factory(engine)() as session:
        stored = _rows(session, store, "later")
        audit_rows = len(session.scalars(select(AuditEntry)).all())
    calls = {"n": 0}
    real = attach_module.evaluate_configuration

    def fail_third(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(attach_module, "evaluate_configuration", fail_third)
    with pytest.raises(RuntimeError, match="disk full"):
        attach_references(store_url, artifacts, [AttachRequest("later", reference, "final_clinical")],
                          MAX_VOXELS, isolate=False)
    with session_factory(engine)() as session:
        _assert_same(_rows(session, store, "later"), stored)
        assert len(session.scalars(select(ReferenceAttachment)).all()) == 2
        assert len(session.scalars(select(AuditEntry)).all()) == audit_rows
    assert _files(artifacts) == files
    engine.dispose()


def _rtstruct(shared_data: Path, out: Path, name: str | None = None, frame: str | None = None) -> Path:
    """The IBSI STS_019 RTSTRUCT, its ROI renamed and its frame of reference changed when asked."""
    dataset = pydicom.dcmread(shared_data / "ibsi_sts_019" / "dicom" / "CT" / "mask" / "RS.dcm")
    for roi in dataset.StructureSetROISequence:
        roi.ROIName = name or roi.ROIName
        roi.ReferencedFrameOfReferenceUID = frame or roi.ReferencedFrameOfReferenceUID
    dataset.save_as(out)
    return out


def _state(url: str, artifacts: Path) -> tuple[object, ...]:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        state = (sorted(tuple(r) for r in session.execute(select(
                     MetricValue.result_id, MetricValue.class_index, MetricValue.name, MetricValue.value))),
                 sorted(tuple(r) for r in session.execute(select(Image.name, Image.reference_hash))),
                 len(session.scalars(select(AuditEntry)).all()),
                 len(session.scalars(select(ReferenceAttachment)).all()),
                 sorted(session.scalars(select(Artifact.path))), _files(artifacts))
    engine.dispose()
    return state


def test_command_line_rtstruct_label_image_manifest_and_refusals(
    store_url: str, tmp_path: Path, model_set: ModelSet, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifacts = tmp_path / "artifacts"
    ibsi = shared_data / "ibsi_sts_019"
    phantom_ct, phantom_reference = write_phantom_case(tmp_path / "p", 9005)
    summary = run_batch(_options([CaseSpec("ibsi", ibsi / "dicom" / "CT" / "image", cohort="clinical"),
                                  CaseSpec("phantom", phantom_ct, cohort="clinical")], model_set, store_url, artifacts))
    assert summary.done == ["ibsi", "phantom"]
    settings = Settings(database_url=store_url, artifacts_dir=artifacts, exports_dir=tmp_path / "exports")
    capsys.readouterr()
    unchanged = _state(store_url, artifacts)
    refusals = {
        "unmapped ROI": (["ibsi", "--reference", str(ibsi / "dicom" / "CT" / "mask" / "RS.dcm")],
                         r"no ROI \(GTV_Mass_CT\) matches the model's labels lymph_nodes, spleen"),
        "other frame": (["ibsi", "--reference", str(_rtstruct(shared_data, tmp_path / "f.dcm", "Spleen", "1.2.3.4"))],
                        r"ROI 'Spleen' is in frame of reference 1\.2\.3\.4, the image is in 1\.3\.6"),
        "unknown case": (["nobody", "--reference", str(phantom_reference)], r"unknown case 'nobody'"),
        "geometry": (["ibsi", "--reference", str(phantom_reference)], r"reference grid differs from the CT: size"),
        "no reference": (["ibsi"], r"give a case and --reference, or --manifest"),
    }
    for what, (argv, message) in refusals.items():
        assert main(["attach-reference", *argv], settings) == 2, what
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error")]
        assert len(errors) == 1 and re.match(r"error: .*" + message, errors[0]), (what, err)
        assert "Traceback" not in err, what
        assert _state(store_url, artifacts) == unchanged, f"{what}: nothing written"

    assert main(["attach-reference", "ibsi", "--reference", str(_rtstruct(shared_data, tmp_path / "s.dcm", "Spleen")),
                 "--kind", "final_clinical"], settings) == 0
    assert capsys.readouterr().out == "attach-reference: 1 attached, 0 failed\n"
    manifest = tmp_path / "attach.csv"
    manifest.write_text(f"case,reference,kind\nnobody,{phantom_reference},\nphantom,{phantom_reference},\n"
                        f"ibsi,{ibsi / 'nifti' / 'CT_mask.nii.gz'},research\n")
    assert main(["attach-reference", "--manifest", str(manifest)], settings) == 1, "one bad row: exit 1"
    out = capsys.readouterr().out.splitlines()
    assert out == ["attach-reference: 2 attached, 1 failed", "  FAILED nobody: unknown case 'nobody'"]
    engine = make_engine(store_url)
    with session_factory(engine)() as session:
        history = session.execute(select(Image.name, ReferenceAttachment.kind, ReferenceAttachment.source_format,
                                         ReferenceAttachment.superseded_at.is_(None)).select_from(ReferenceAttachment)
                                  .join(Image, Image.id == ReferenceAttachment.image_id)
                                  .order_by(ReferenceAttachment.id)).all()
        assert [tuple(h) for h in history] == [("ibsi", "final_clinical", "rtstruct", False),
                                               ("phantom", "research", "image", True),
                                               ("ibsi", "research", "image", True)]
        spleen = session.scalars(select(StructureResult.reference_ml).join(CaseResult).join(Image).where(
            Image.name == "ibsi", StructureResult.structure == "lymph_nodes")).all()
        assert spleen and all(v > 0 for v in spleen), "the NIfTI mask's label 1 is the lymph nodes"
        assert all(r.has_reference for r in session.scalars(select(CaseResult)))
    engine.dispose()


def test_under_per_member_the_attached_reference_scores_the_stored_member_passes(
    store_url: str, tmp_path: Path, phantom_folder: Path, model_set: ModelSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``temperature_mode`` ``per_member``: the TS results are recomputed on p_cal(T) rebuilt from the stored passes,
    equal to what the batch stored for the case run with its reference."""
    artifacts = tmp_path / "artifacts"
    per_member = MetricSettings(temperature_mode="per_member", grid_mapping="per_pass")
    options = _options(discover(phantom_folder, "phantom")[:2], model_set, store_url, artifacts)
    run_batch(replace(options, settings=per_member))
    engine = make_engine(store_url)
    with session_factory(engine).begin() as session:
        row = session.scalars(select(ModelSetRow)).one()
        run_protocol(session, ArtifactStore(artifacts), row, ProtocolOptions(cohort="phantom", repeats=1))
    ct, reference = write_phantom_case(tmp_path / "new", 9004)
    cases = [CaseSpec("from_start", ct, reference, cohort="clinical"), CaseSpec("later", ct, None, cohort="clinical")]
    run_batch(replace(_options(cases, model_set, store_url, artifacts), settings=per_member))
    _no_inference(monkeypatch)
    attach_references(store_url, artifacts, [AttachRequest("later", reference, "final_clinical")], MAX_VOXELS,
                      isolate=False)
    store = ArtifactStore(artifacts)
    with session_factory(engine)() as session:
        modes = set(session.scalars(select(TemperatureFit.temperature_mode).join(
            CaseResult, CaseResult.temperature_fit_id == TemperatureFit.id).join(Image).where(Image.name == "later")))
        assert modes == {"per_member"}
        _assert_same(_rows(session, store, "later"), _rows(session, store, "from_start"))
    engine.dispose()


def test_a_redone_case_keeps_the_reference_attached_to_it_when_its_input_gives_none(
    store_url: str, tmp_path: Path, model_set: ModelSet, caplog: pytest.LogCaptureFixture
) -> None:
    """The nightly batch redoes a case whose input has no reference (its input hash changed): it is scored against
    the reference attached since, so its redone rows are those the attachment left; the next night skips it; a CT
    now on another grid cannot take the attached reference and fails, leaving the stored case as it was, as does a
    reference map gone from the store."""
    artifacts = tmp_path / "artifacts"
    ct, reference = write_phantom_case(tmp_path / "new", 9004)
    options = _options([CaseSpec("later", ct, None, cohort="clinical")], model_set, store_url, artifacts)
    run_batch(options)
    attach_references(store_url, artifacts, [AttachRequest("later", reference, "final_clinical")], MAX_VOXELS,
                      isolate=False)
    store = ArtifactStore(artifacts)
    engine = make_engine(store_url)
    with session_factory(engine).begin() as session:
        attached = _rows(session, store, "later")
        assert {rows["result"][1] for rows in attached.values()} == {True}
        image = session.scalars(select(Image)).one()
        kept = (image.reference_hash, image.reference_path, image.reference_note)
        session.execute(update(Processing).values(input_hash="settings changed since"))  # forces a redo

    caplog.set_level(logging.INFO, logger="pipeline.batch.kept_reference")
    redone = run_batch(options)
    assert redone.done == ["later"] and not redone.failed
    assert re.search(r"case=later: the input gives no reference; using the attached final_clinical reference "
                     rf"{re.escape(str(reference))} \(attachment \d+\)", caplog.text)
    with session_factory(engine)() as session:
        _assert_same(_rows(session, store, "later"), attached)  # has_reference and every metric value kept
        image = session.scalars(select(Image)).one()
        assert (image.reference_hash, image.reference_path, image.reference_note) == kept
        attachment = session.scalars(select(ReferenceAttachment)).one()
        assert (attachment.kind, attachment.superseded_at) == ("final_clinical", None)
        assert session.scalar(select(Processing.run_id)) == redone.run_id, "a new processing: really redone"
    assert run_batch(options).skipped == ["later"], "the input hash stays the input's: the next night skips it"

    moved = sitk.ReadImage(str(ct))
    moved.SetOrigin((5.0, 0.0, 0.0))
    sitk.WriteImage(moved, str(tmp_path / "moved.nii.gz"))
    refused = run_batch(_options([CaseSpec("later", tmp_path / "moved.nii.gz", None, cohort="clinical")], model_set,
                                 store_url, artifacts))
    ((case, stage, reason),) = refused.failed
    assert (case, stage) == ("later", "reference") and "the CT's grid differs from the one the attached " \
        f"reference ({reference}) was read onto (origin)" in reason
    with session_factory(engine).begin() as session:
        _assert_same(_rows(session, store, "later"), attached)
        store.delete(session.scalars(select(Artifact.path).where(Artifact.kind == "reference")).one())
        session.execute(update(Processing).values(input_hash="settings changed again"))
    lost = run_batch(options)  # the stored reference map is gone: the case fails, the run ends normally
    assert [(case, stage) for case, stage, _ in lost.failed] == [("later", "reference")] and not lost.done
    engine.dispose()
