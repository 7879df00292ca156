"""The dashboard's download URLs on SQLite and PostgreSQL, on the review tests' store (two synthetic cases and the
real IBSI STS_019 DICOM CT): each file is what the clinic needs (the RTSTRUCT re-imports onto the regions' voxels of
the original series, the NIfTI maps lie on the CT's grid, the PDF renders), each download writes one audit row and
keeps the file with the SHA-256 that row names, and bad or unauthenticated requests get no data."""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dash
import numpy as np
import pypdfium2
import pytest
import SimpleITK as sitk
from openpyxl import load_workbook
from sqlalchemy import select

from benchmarks.http_client import ensure_user, login
from pipeline.io.dicom import read_ct_series
from pipeline.io.rtstruct import read_rtstruct
from pipeline.metrics.review_budget import Budget
from pipeline.review.workflow import Role
from pipeline.review.worklist import NO_REFERENCE, build_worklist, case_regions, deployed_results
from pipeline.settings import Settings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import make_engine, session_factory
from pipeline.store.review_schema import AuditEntry
from tests.review.conftest import IBSI_IMAGE, STORED_BUDGET, Seeded, seeded  # noqa: F401

QUERY = f"configuration=DE&kind=fraction&value={STORED_BUDGET}"


@pytest.fixture
def app_on(seeded: Seeded, dash_app: dash.Dash, tmp_path: Path,  # noqa: F811
           configure_app: Callable[..., Settings]) -> tuple[Seeded, Any, Path]:
    """The app on the seeded store with exports under ``tmp_path``; a client signed in as a reviewer."""
    configure_app(database_url=seeded.url, artifacts_dir=seeded.artifacts, exports_dir=tmp_path / "exports")
    name = f"reviewer-{uuid.uuid4().hex[:8]}"
    ensure_user(seeded.url, name, Role.REVIEWER)
    client = dash_app.server.test_client()
    assert login(client, name).status_code == 302
    return seeded, client, tmp_path / "exports"


def _audit(url: str) -> list[AuditEntry]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return list(session.scalars(select(AuditEntry).where(AuditEntry.action.startswith("export."))
                                        .order_by(AuditEntry.id)))
    finally:
        engine.dispose()


def _download(client: Any, url: str, store: Seeded, kind: str) -> bytes:
    """GET a download; check it is an attachment and that exactly one audit row names the kept file."""
    before = len(_audit(store.url))
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Disposition"].startswith("attachment;")
    rows = _audit(store.url)[before:]
    assert [(r.action, r.outcome) for r in rows] == [(f"export.{kind}", "ok")]
    kept = Path(rows[0].after["path"])
    assert kept.read_bytes() == response.data
    assert rows[0].after["sha256"] == hashlib.sha256(response.data).hexdigest()
    return bytes(response.data)


def test_worklist_downloads_match_the_worklist(app_on: tuple[Seeded, Any, Path]) -> None:
    store, client, _ = app_on
    engine = make_engine(store.url)
    with session_factory(engine)() as session:
        expected = build_worklist(session, ArtifactStore(store.artifacts), "DE", Budget("fraction", STORED_BUDGET))
    engine.dispose()
    rows = list(csv.DictReader(io.StringIO(_download(client, f"/export/worklist.csv?{QUERY}", store,
                                                     "worklist_csv").decode())))
    regions = [r for r in rows if r["region_rank"]]
    assert len(regions) == sum(len(c.regions) for c in expected.cases)
    assert [r["case"] for r in rows][:1] == [expected.cases[0].case]
    assert {(r["case"], r["reference"]) for r in rows} == {(c.case, "yes" if c.has_reference else NO_REFERENCE)
                                                          for c in expected.cases}, "the case's state on every row"
    book = load_workbook(io.BytesIO(_download(client, f"/export/worklist.xlsx?{QUERY}", store, "worklist_xlsx")))
    assert book.sheetnames == ["about", "cases", "regions"]
    assert [row[1].value for row in book["cases"].iter_rows(min_row=2)] == [c.case for c in expected.cases]


def test_region_maps_lie_on_the_ct_grid_and_the_rtstruct_round_trips(app_on: tuple[Seeded, Any, Path],
                                                                    tmp_path: Path) -> None:
    store, client, _ = app_on
    bundle = zipfile.ZipFile(io.BytesIO(_download(client, f"/export/regions/ibsi.zip?{QUERY}", store,
                                                  "regions_nifti")))
    assert sorted(bundle.namelist()) == ["ibsi_DE_entropy.nii.gz", "ibsi_DE_regions.nii.gz"]
    series = read_ct_series(IBSI_IMAGE)
    ct = series.image
    engine = make_engine(store.url)
    artifacts = ArtifactStore(store.artifacts)
    with session_factory(engine)() as session:
        regions, _, _ = case_regions(session, artifacts, deployed_results(session, "DE", "ibsi")[0],
                                     Budget("fraction", STORED_BUDGET))
    engine.dispose()
    target = tmp_path / "regions.nii.gz"
    target.write_bytes(bundle.read("ibsi_DE_regions.nii.gz"))
    image = sitk.ReadImage(str(target))
    assert image.GetSize() == ct.GetSize()
    np.testing.assert_allclose(image.GetOrigin(), ct.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), ct.GetSpacing(), atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(image), regions.labels)

    dicom = _download(client, f"/export/rtstruct/ibsi.dcm?{QUERY}", store, "rtstruct")
    path = tmp_path / "rtstruct.dcm"
    path.write_bytes(dicom)
    back = read_rtstruct(path, ct, series.frame_of_reference_uid)
    assert list(back) == ["QA spleen"]
    assert int(np.count_nonzero(back["QA spleen"] != (regions.labels > 0))) == 0


def test_the_report_renders_and_the_audit_log_downloads_for_an_approver(app_on: tuple[Seeded, Any, Path],
                                                                        dash_app: dash.Dash) -> None:
    store, client, _ = app_on
    pdf = _download(client, f"/export/report.pdf?{QUERY}", store, "audit_report")
    document = pypdfium2.PdfDocument(pdf)
    try:
        assert len(document) >= 5
        pixels = np.asarray(document[0].render(scale=0.5).to_pil().convert("L"))
        assert 0.002 < float((pixels < 200).mean()) < 0.5
    finally:
        document.close()
    name = f"approver-{uuid.uuid4().hex[:8]}"
    ensure_user(store.url, name, Role.APPROVER)
    approver = dash_app.server.test_client()
    login(approver, name)
    log = list(csv.DictReader(io.StringIO(_download(approver, "/export/audit.csv?action=export.", store,
                                                    "audit_csv").decode())))
    assert log and {row["action"] for row in log} <= {"export.worklist_csv", "export.worklist_xlsx",
                                                       "export.regions_nifti", "export.rtstruct",
                                                       "export.audit_report", "export.audit_csv"}
    assert "export.audit_report" in {row["action"] for row in log}
    malformed = approver.get("/export/audit.csv?since=yesterday")
    assert malformed.status_code == 400 and "'yesterday' is not an ISO date" in malformed.get_json()["error"]
    assert [(r.action, r.outcome) for r in _audit(store.url)[-1:]] == [("export.audit_csv", "failure")]


def test_bad_requests_get_a_reason_and_no_file(app_on: tuple[Seeded, Any, Path], dash_app: dash.Dash) -> None:
    _store, client, exports = app_on
    cases = [("/export/worklist.csv", 400, "configuration=NAME"),
             ("/export/worklist.csv?configuration=DE&kind=fraction&value=7", 400, "in [0, 1]"),
             ("/export/worklist.csv?configuration=DE&kind=fraction&value=nan", 400, "kind=fraction"),
             ("/export/worklist.csv?configuration=CE", 404, "no stored result of configuration 'CE'"),
             (f"/export/regions/nobody.zip?{QUERY}", 404, "'nobody' has no stored result"),
             (f"/export/rtstruct/synthetic-1.dcm?{QUERY}", 422, "not a DICOM series"),
             ("/export/audit.csv", 403, "needs the role admin or approver"),
             ("/export/audit.csv?since=yesterday", 403, "needs the role")]
    for url, status, reason in cases:
        response = client.get(url)
        assert response.status_code == status, (url, response.get_data(as_text=True))
        assert reason in response.get_json()["error"], (url, response.get_json())
    assert not any(p.is_file() for p in exports.rglob("*")), "a refused or failed export left a file"
    anonymous = dash_app.server.test_client()
    for url in (f"/export/worklist.csv?{QUERY}", f"/export/regions/ibsi.zip?{QUERY}", "/export/audit.csv",
                f"/export/rtstruct/ibsi.dcm?{QUERY}", f"/export/report.pdf?{QUERY}"):
        response = anonymous.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), url
        assert b"case" not in response.data and b"PDF" not in response.data
