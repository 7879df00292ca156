"""The acquisition of a case through the batch: manifest columns for an image file, a DICOM header completed by the
manifest, the stored ``images.acquisition`` read back on SQLite and PostgreSQL, and a changed manifest value stored
by a run that skips the unchanged case (the input hash stays). The batch on the real DICOM series stores theirs in
tests/store/test_unreferenced.py."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pipeline.batch.cases import discover, load_case
from pipeline.batch.persist import ImageRecord, refresh_acquisition, upsert_image
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.inference.model_set import ModelSet
from pipeline.io.acquisition import Acquisition
from pipeline.phantoms.ct import LABELS
from pipeline.store.database import make_engine, session_factory
from pipeline.store.schema import Image, Processing
from qa_dashboard.queries.patient import find_case
from tests.store.conftest import write_phantom_case

COLUMNS = "case,ct,manufacturer,manufacturer_model,convolution_kernel,slice_thickness_mm,kvp,contrast_agent,site"


def _manifest(folder: Path, rows: list[str]) -> Path:
    manifest = folder / "night.csv"
    manifest.write_text("\n".join([COLUMNS, *rows]) + "\n")
    return manifest


def test_manifest_columns_reach_the_case_and_complete_a_dicom_header(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ct, _ = write_phantom_case(tmp_path, 11)
    (tmp_path / "ibsi").symlink_to(shared_data / "ibsi_sts_019" / "dicom" / "CT" / "image", target_is_directory=True)
    manifest = _manifest(tmp_path, [f"nifti,{ct},GE,Revolution,STANDARD,2.5,100,,room 2",
                                    "dicom,ibsi,Philips,,,,,Omnipaque 350,"])
    nifti, dicom = discover(manifest)
    assert nifti.acquisition.record() == {"manufacturer": "GE", "manufacturer_model": "Revolution",
                                          "convolution_kernel": "STANDARD", "slice_thickness_mm": 2.5, "kvp": 100.0}
    assert load_case(nifti, tuple(LABELS)).acquisition == nifti.acquisition
    with caplog.at_level(logging.WARNING, logger="pipeline.batch.cases"):
        loaded = load_case(dicom, tuple(LABELS))
    assert loaded.acquisition.get("manufacturer") == "GE MEDICAL SYSTEMS", "the header's tag wins"
    assert loaded.acquisition.get("contrast_agent") == "Omnipaque 350", "the manifest fills what the header lacks"
    assert loaded.acquisition.get("kvp") == 140.0
    assert "manufacturer 'Philips' differs from the DICOM header's 'GE MEDICAL SYSTEMS'" in caplog.text
    (tmp_path / "bad.csv").write_text(f"{COLUMNS}\na,{ct},GE,,,2.5,120 kV,,\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: column kvp: '120 kV' is not a number"):
        discover(tmp_path / "bad.csv")


def _record(name: str, acquisition: Acquisition) -> ImageRecord:
    return ImageRecord(name, "p1", {"cohort": "c", "source_kind": "dicom", "source_path": "/x", "size": [2, 2, 2],
                                    "spacing": [1.0, 1.0, 1.0], "origin": [0.0, 0.0, 0.0],
                                    "direction": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], "content_hash": "0" * 64,
                                    "acquisition": acquisition.record()})


def test_stored_acquisition_reads_back_exactly(store_url: str) -> None:
    header = Acquisition.of({"manufacturer": "GE MEDICAL SYSTEMS",
                             "convolution_kernel": "Br38f\\3", "slice_thickness_mm": 3.26999999999998, "kvp": 140.0})
    engine = make_engine(store_url)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        upsert_image(session, _record("scan", header))
        upsert_image(session, _record("unknown", Acquisition()))
    with sessions() as session:
        case, unknown = find_case(session, "scan"), find_case(session, "unknown")
        assert case is not None and case.acquisition == header, "floats and the backslash survive the JSON column"
        assert unknown is not None and not unknown.acquisition.values
        assert session.scalar(select(Image.acquisition).where(Image.name == "unknown")) is None
    changed = Acquisition.of({**(header.record() or {}), "kvp": 120.0})
    with sessions.begin() as session:
        assert not refresh_acquisition(session, "scan", header.record()), "equal: no write"
        assert refresh_acquisition(session, "scan", changed.record())
        assert not refresh_acquisition(session, "nobody", changed.record())
    with sessions() as session:
        case = find_case(session, "scan")
        assert case is not None and case.acquisition.get("kvp") == 120.0
    engine.dispose()


def _stored(url: str) -> tuple[dict[str, Any] | None, str]:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        acquisition, input_hash = session.execute(
            select(Image.acquisition, Processing.input_hash).join(Processing, Processing.image_id == Image.id)).one()
    engine.dispose()
    return acquisition, input_hash


def test_a_changed_manifest_value_is_stored_without_redoing_the_case(
    store_url: str, tmp_path: Path, model_set: ModelSet
) -> None:
    ct, _ = write_phantom_case(tmp_path, 9006)

    def run(kvp: str, **extra: Any) -> Any:
        cases = discover(_manifest(tmp_path, [f"scan,{ct},GE,Revolution,STANDARD,2.5,{kvp},,"]))
        return run_batch(BatchOptions(cases=tuple(cases), model_set=model_set, models_source="smoke",
                                      database_url=store_url, artifacts=tmp_path / "artifacts", tta=False,
                                      progress=False, **extra))

    assert run("120").done == ["scan"]
    first, input_hash = _stored(store_url)
    assert first == {"manufacturer": "GE", "manufacturer_model": "Revolution", "convolution_kernel": "STANDARD",
                     "slice_thickness_mm": 2.5, "kvp": 120.0}
    assert run("100", dry_run=True).skipped == ["scan"] and _stored(store_url) == (first, input_hash), "dry run"
    again = run("100")
    assert again.skipped == ["scan"] and not again.done, "the acquisition is no input: the case is not redone"
    assert _stored(store_url) == ({**first, "kvp": 100.0}, input_hash)
    assert run("").skipped == ["scan"] and _stored(store_url) == ({k: v for k, v in first.items() if k != "kvp"},
                                                                  input_hash), "a value taken out is dropped"
