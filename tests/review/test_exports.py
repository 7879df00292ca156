"""The worklist from a seeded store, its CSV / Excel exports, NIfTI maps on the original grid, the case RTSTRUCT of a
DICOM case, the audit report PDF (rendered to PNG) and the command-line verbs, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pypdfium2
import pytest
import SimpleITK as sitk
from openpyxl import load_workbook
from sqlalchemy import func, select

from pipeline.cli import main
from pipeline.io.dicom import read_ct_series
from pipeline.io.rtstruct import read_rtstruct
from pipeline.io.rtstruct_export import RtstructError
from pipeline.metrics.review_budget import Budget, flagged_count
from pipeline.metrics.roi import roi_of
from pipeline.metrics.settings import MetricSettings
from pipeline.review.exports import (
    STATE_COLUMNS,
    export_case_rtstruct,
    export_region_maps,
    write_audit_csv,
    write_worklist,
)
from pipeline.review.report import gather_report
from pipeline.review.report_pdf import write_report
from pipeline.review.service import CommandLine, ItemKey, ReviewService
from pipeline.review.workflow import State
from pipeline.review.worklist import (
    EMPTY_PREDICTION,
    NO_REFERENCE,
    Worklist,
    build_worklist,
    case_regions,
    deployed_results,
    run_metric_settings,
    spacing_zyx,
    unreviewed_count,
)
from pipeline.settings import ReviewSettings, Settings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import make_engine, session_factory
from pipeline.store.review_schema import AuditEntry
from pipeline.store.schema import Artifact, CaseResult, Configuration, Image, Processing, Run, StructureResult
from pipeline.store.schema import ModelSet as ModelSetRow
from tests.dciodvfy import dciodvfy_errors
from tests.review.conftest import (
    FAST_HASH,
    IBSI_IMAGE,
    PASSWORD,
    STORED_BUDGET,
    Seeded,
    seed_store,
    synthetic_case,
)


def _worklist(seeded: Seeded, configuration: str, budget: Budget) -> Worklist:
    engine = make_engine(seeded.url)
    with session_factory(engine)() as session:
        worklist = build_worklist(session, ArtifactStore(seeded.artifacts), configuration, budget)
    engine.dispose()
    return worklist


def test_worklist_ranks_cases_and_regions(seeded: Seeded) -> None:
    worklist = _worklist(seeded, "DE", Budget("fraction", STORED_BUDGET))
    assert [c.rank for c in worklist.cases] == [1, 2, 3]
    assert {c.case for c in worklist.cases} == {"synthetic-1", "synthetic-2", "ibsi"}
    scores = [c.score for c in worklist.cases]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    for case in worklist.cases:
        assert [r.rank for r in case.regions] == list(range(1, len(case.regions) + 1))
        assert case.flagged_ml == pytest.approx(sum(r.volume_ml for r in case.regions))
        assert {item.state for item in case.items} == {State.PENDING}
        assert sum(len(item.regions) for item in case.items) == len(case.regions)
    ibsi = next(c for c in worklist.cases if c.case == "ibsi")
    assert [i.structure for i in ibsi.items] == ["spleen"] and ibsi.expected_recall == pytest.approx(0.28)
    synthetic = next(c for c in worklist.cases if c.case == "synthetic-1")
    assert [i.structure for i in synthetic.items] == ["lymph_nodes", "spleen"]
    assert worklist.unreviewed() == 5


def test_budgets_below_and_above_the_stored_one(seeded: Seeded) -> None:
    stored = _worklist(seeded, "Base", Budget("fraction", STORED_BUDGET))
    smaller = _worklist(seeded, "Base", Budget("fraction", 0.01))
    larger = _worklist(seeded, "Base", Budget("fraction", 0.04))  # regrows the ROI from the stored maps
    for case in stored.cases:
        small = next(c for c in smaller.cases if c.case == case.case)
        large = next(c for c in larger.cases if c.case == case.case)
        assert small.flagged_ml < case.flagged_ml < large.flagged_ml
        assert large.flagged_ml == pytest.approx(2 * case.flagged_ml, rel=0.01)
    minutes = _worklist(seeded, "Base", Budget("minutes", 0.5))  # 0.5 min at 30 s/mL = 1 mL per case
    steps = ReviewSettings().region_budgets  # rounded down to the largest stored budget within it, where one is
    for case in minutes.cases:
        assert case.capped or case.flagged_ml <= 1.0 + 0.01
        assert case.fraction in steps or case.flagged_ml == pytest.approx(1.0, abs=0.01)
    assert any(case.fraction in steps for case in minutes.cases)


def test_worklist_csv_and_excel(seeded: Seeded, tmp_path: Path) -> None:
    service = ReviewService(make_engine(seeded.url), password_method=FAST_HASH)
    reviewer = service.create_user(CommandLine("t"), "csv-reviewer", PASSWORD, "reviewer").id
    key = ItemKey(seeded.image_ids["synthetic-2"], seeded.configuration_ids["Base"], 2)
    service.start_review(reviewer, key)
    service.record_decision(reviewer, key, "rejected", "=HYPERLINK(\"http://x\")  formula-looking comment")
    worklist = _worklist(seeded, "Base", Budget("fraction", STORED_BUDGET))
    rows = list(csv.DictReader(io.StringIO(write_worklist(worklist, tmp_path / "w.csv", "csv").read_text())))
    assert len(rows) == sum(max(1, len(i.regions)) for c in worklist.cases for i in c.items)
    decided = [r for r in rows if r["case"] == "synthetic-2" and r["structure"] == "spleen"]
    assert {r["state"] for r in decided} == {"reviewed"} and {r["reviewer"] for r in decided} == {"csv-reviewer"}
    assert decided[0]["comment"].startswith("'=HYPERLINK")  # never a live formula
    regions = {(c.case, r.rank): r for c in worklist.cases for r in c.regions}
    placed = [r for r in rows if r["region_rank"]]
    assert placed and all((int(r["first_slice"]), int(r["last_slice"])) == tuple(
        s + 1 for s in regions[r["case"], int(r["region_rank"])].slices) for r in placed)  # 1-based, as the viewer
    book = load_workbook(write_worklist(worklist, tmp_path / "w.xlsx", "xlsx"))
    assert book.sheetnames == ["about", "cases", "regions"]
    cases = list(book["cases"].values)
    assert cases[0][:2] == ("rank", "case") and len(cases) == 1 + len(worklist.cases)
    sheet = list(book["regions"].values)
    first = sheet[0].index("first_slice")
    assert sorted(str(row[first]) for row in sheet[1:] if row[first] is not None) == sorted(
        r["first_slice"] for r in placed)
    comments = [row[6] for row in book["regions"].iter_rows(min_row=2) if row[6].value]
    assert comments and all(c.value.startswith("=HYPERLINK") and c.data_type == "s" for c in comments)
    with pytest.raises(ValueError, match="csv or xlsx"):
        write_worklist(worklist, tmp_path / "w.pdf", "pdf")  # type: ignore[arg-type]


OOD_STORED = {"synthetic-1": (100.0, 6, True), "synthetic-2": (40.0, 6, False), "ibsi": (None, None, None)}
OOD_WORDS = {"synthetic-1": ("out of distribution (percentile 100 of 6 reference cases)", "True"),
             "synthetic-2": ("in distribution (percentile 40 of 6 reference cases)", "False"),
             "ibsi": ("not scored", "")}


def test_worklist_exports_carry_each_cases_reference_empty_prediction_and_ood_state(store_url: str,
                                                                                     tmp_path: Path) -> None:
    """The CSV's region rows, the Excel cases and regions sheets and the audit report's worklist say per case
    whether it has a reference, per structure whether nothing of it was predicted, and the stored OOD score."""
    seeded = seed_store(store_url, tmp_path / "artifacts")
    engine = make_engine(store_url)
    with session_factory(engine).begin() as session:
        for name, (percentile, count, flag) in OOD_STORED.items():
            for result in session.scalars(select(CaseResult).join(Image).where(Image.name == name)):
                result.ood_percentile, result.ood_reference_n, result.ood_flag = percentile, count, flag
        # the IBSI case has no reference and nothing predicted of the lymph nodes: flagged, as the batch flags it
        for row in session.scalars(select(StructureResult).join(CaseResult).join(Image).where(
                Image.name == "ibsi", StructureResult.class_index == 1)):
            row.empty_prediction = True
    worklist = _worklist(seeded, "DE", Budget("fraction", STORED_BUDGET))
    rows = list(csv.DictReader(io.StringIO(write_worklist(worklist, tmp_path / "w.csv", "csv").read_text())))
    assert tuple(rows[0])[-len(STATE_COLUMNS) - 1:] == ("structure_prediction", *STATE_COLUMNS)
    for row in rows:
        assert row["reference"] == (NO_REFERENCE if row["case"] == "ibsi" else "yes")
        assert (row["ood"], row["ood_flag"]) == OOD_WORDS[row["case"]]
        assert row["prediction"] == "", "every case predicted some foreground"
        empty = (row["case"], row["structure"]) == ("ibsi", "lymph_nodes")
        assert row["structure_prediction"] == (EMPTY_PREDICTION if empty else ""), row
    assert ("ibsi", "lymph_nodes") in {(r["case"], r["structure"]) for r in rows}, "the flagged item is listed"
    book = load_workbook(write_worklist(worklist, tmp_path / "w.xlsx", "xlsx"))
    header, *cases = [list(row) for row in book["cases"].values]
    assert header[-len(STATE_COLUMNS):] == list(STATE_COLUMNS)
    states = {row[1]: row[-len(STATE_COLUMNS):] for row in cases}
    assert states == {"synthetic-1": ["yes", None, OOD_WORDS["synthetic-1"][0], True],
                      "synthetic-2": ["yes", None, OOD_WORDS["synthetic-2"][0], False],
                      "ibsi": [NO_REFERENCE, None, "not scored", None]}
    columns, *values = list(book["regions"].values)
    regions = [dict(zip(columns, row, strict=True)) for row in values]
    assert {(r["case"], r["structure"]) for r in regions if r["structure_prediction"]} == {("ibsi", "lymph_nodes")}
    with session_factory(engine)() as session:
        content = gather_report(session, ArtifactStore(seeded.artifacts), "sqlite:///test", "DE",
                                Budget("fraction", STORED_BUDGET))
    engine.dispose()
    document = pypdfium2.PdfDocument(str(write_report(content, tmp_path / "report.pdf")))
    try:
        text = next(t for t in (page.get_textpage().get_text_range() for page in document)
                    if "Worklist — DE" in t)  # the worklist page
    finally:
        document.close()
    assert "notes" in text and NO_REFERENCE in text and OOD_WORDS["synthetic-1"][0] in text
    assert OOD_WORDS["synthetic-2"][0] not in text, "only a flagged score is a note"


def test_region_and_entropy_maps_as_nifti_on_the_original_grid(seeded: Seeded, tmp_path: Path) -> None:
    engine = make_engine(seeded.url)
    with session_factory(engine)() as session:
        regions, entropy = export_region_maps(session, ArtifactStore(seeded.artifacts), "ibsi", "DE",
                                              Budget("fraction", STORED_BUDGET), tmp_path)
    engine.dispose()
    ct = read_ct_series(IBSI_IMAGE).image
    for path in (regions, entropy):
        image = sitk.ReadImage(str(path))
        assert image.GetSize() == ct.GetSize()
        np.testing.assert_allclose(image.GetOrigin(), ct.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(image.GetSpacing(), ct.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(image.GetDirection(), ct.GetDirection(), atol=1e-6)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(regions)))
    worklist = _worklist(seeded, "DE", Budget("fraction", STORED_BUDGET))
    case = next(c for c in worklist.cases if c.case == "ibsi")
    assert int(labels.max()) == len(case.regions)
    assert [int((labels == r.rank).sum()) for r in case.regions] == [r.voxels for r in case.regions]


def test_case_rtstruct_references_the_dicom_series_and_round_trips(seeded: Seeded, tmp_path: Path) -> None:
    engine = make_engine(seeded.url)
    artifacts = ArtifactStore(seeded.artifacts)
    budget = Budget("fraction", STORED_BUDGET)
    with session_factory(engine)() as session:
        path = export_case_rtstruct(session, artifacts, "ibsi", "DE", budget, tmp_path / "qa.dcm")
        with pytest.raises(RtstructError, match="not a DICOM series"):
            export_case_rtstruct(session, artifacts, "synthetic-1", "DE", budget, tmp_path / "no.dcm")
        with pytest.raises(LookupError, match="no stored result of configuration 'CE'"):
            export_case_rtstruct(session, artifacts, "ibsi", "CE", budget, tmp_path / "no.dcm")
        from pipeline.review.worklist import case_regions, deployed_results

        regions, _, _ = case_regions(session, artifacts, deployed_results(session, "DE", "ibsi")[0], budget)
    engine.dispose()
    series = read_ct_series(IBSI_IMAGE)
    back = read_rtstruct(path, series.image, series.frame_of_reference_uid)
    assert dciodvfy_errors(path) == []
    assert list(back) == ["QA spleen"]
    assert int(np.count_nonzero(back["QA spleen"] != (regions.labels > 0))) == 0


def test_audit_report_pdf_renders(seeded: Seeded, tmp_path: Path) -> None:
    engine = make_engine(seeded.url)
    with session_factory(engine)() as session:
        content = gather_report(session, ArtifactStore(seeded.artifacts), "sqlite:///test", "DE",
                                Budget("fraction", STORED_BUDGET))
    engine.dispose()
    assert content.cohort.chosen is None and content.cohort.summary.empty  # no protocol: no cohort numbers
    assert content.cohort.filters[0].startswith("No protocol has been run yet")
    path = write_report(content, tmp_path / "report.pdf")
    document = pypdfium2.PdfDocument(str(path))
    try:
        assert len(document) == 7  # cover, charts, cost-benefit chart and table, worklist, decisions, sign-off
        for index in range(len(document)):
            pixels = np.asarray(document[index].render(scale=0.6).to_pil().convert("L"))
            ink = float((pixels < 200).mean())
            assert 0.002 < ink < 0.5, f"page {index + 1} looks blank or black ({ink:.4f} inked)"
    finally:
        document.close()


def _cli(argv: list[str], settings: Settings) -> int:
    return main(argv, settings)


def _settings(url: str, seeded: Seeded, tmp_path: Path) -> Settings:
    return Settings(database_url=url, artifacts_dir=seeded.artifacts, exports_dir=tmp_path / "exports")


def test_command_line_verbs(seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    settings = _settings(seeded.url, seeded, tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    engine = make_engine(seeded.url)

    def audit_count() -> int:
        with session_factory(engine)() as session:
            return int(session.scalar(select(func.count()).select_from(AuditEntry)) or 0)

    before = audit_count()
    assert _cli(["users", "add", "--username", "cli-approver", "--role", "approver"], settings) == 0
    assert ReviewService(engine, password_method=FAST_HASH).authenticate("cli-approver", PASSWORD).role == "approver"
    assert _cli(["users", "list"], settings) == 0
    assert "cli-approver\tapprover\tactive" in capsys.readouterr().out
    assert _cli(["export-worklist", "--configuration", "DE", "--format", "xlsx", "--out",
                 str(tmp_path / "w.xlsx")], settings) == 0
    assert _cli(["export-rtstruct", "--case", "ibsi", "--configuration", "DE", "--minutes", "0.5", "--out",
                 str(tmp_path / "rs.dcm")], settings) == 0
    assert _cli(["export-regions", "--case", "ibsi", "--configuration", "DE", "--out-dir", str(tmp_path)],
                settings) == 0
    assert _cli(["audit-report", "--out", str(tmp_path / "r.pdf")], settings) == 0
    assert _cli(["export-rtstruct", "--case", "nope", "--configuration", "DE", "--out", str(tmp_path / "x.dcm")],
                settings) == 2
    assert "error: case 'nope' has no stored result" in capsys.readouterr().err
    with session_factory(engine)() as session:
        rows = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id).offset(before)))
    assert [(r.action, r.outcome) for r in rows] == [
        ("user.create", "ok"), ("login", "ok"), ("export.worklist_xlsx", "ok"), ("export.rtstruct", "ok"),
        ("export.regions_nifti", "ok"), ("export.audit_report", "ok"), ("export.rtstruct", "failure")]
    assert {r.actor for r in rows} - {"cli-approver"} == {f"cli:{CommandLine().os_user}"}
    assert "NotFoundError: case 'nope'" in rows[-1].after["reason"]
    assert all((tmp_path / name).stat().st_size > 0 for name in ("w.xlsx", "rs.dcm", "r.pdf"))
    assert dciodvfy_errors(tmp_path / "rs.dcm") == []
    assert audit_count() == before + 7
    assert _cli(["audit-report", "--repeat", "0", "--out", str(tmp_path / "x.pdf")], settings) == 2
    assert "--repeat and --reference filter a protocol: add --protocol ID" in capsys.readouterr().err
    assert _cli(["audit-report", "--protocol", "999999", "--out", str(tmp_path / "x.pdf")], settings) == 2
    assert "there is no protocol 999999" in capsys.readouterr().err
    assert audit_count() == before + 8  # the unknown protocol is an audited failure; the bad option is refused first
    written = write_audit_csv(ReviewService(engine).audit_entries(CommandLine()), tmp_path / "audit.csv")
    assert len(list(csv.DictReader(written.open()))) == audit_count()
    with session_factory(engine)() as session:
        assert unreviewed_count(session, "DE") == 5  # 2 + 2 + 1 predicted structures, none reviewed under DE
    engine.dispose()
    assert _cli(["users", "list"], _settings(f"sqlite:///{tmp_path / 'empty.sqlite3'}", seeded, tmp_path)) == 2
    assert re.search(r"error: the store .* is empty, .* run `alembic upgrade head`", capsys.readouterr().err)


def test_accounts_are_changed_from_the_command_line(seeded: Seeded, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    settings = _settings(seeded.url, seeded, tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert _cli(["users", "add", "--username", "cli-viewer", "--role", "viewer"], settings) == 0
    assert _cli(["users", "set", "--username", "cli-viewer", "--role", "reviewer", "--deactivate"], settings) == 0
    assert "cli-viewer: reviewer, deactivated" in capsys.readouterr().out
    assert _cli(["users", "set", "--username", "cli-viewer"], settings) == 2
    assert "error: nothing to change" in capsys.readouterr().err
    assert _cli(["users", "set", "--username", "ghost", "--activate"], settings) == 2
    assert "error: there is no user named 'ghost'" in capsys.readouterr().err


def test_unknown_configurations_and_missing_maps(seeded: Seeded) -> None:
    """Runs last in this module: it adds a configuration whose only result points at maps that are not there."""
    engine = make_engine(seeded.url)
    artifacts = ArtifactStore(seeded.artifacts)
    unknown = r"no stored result of configuration 'XX' \(stored: Base, DE\)"
    with session_factory(engine)() as session, pytest.raises(LookupError, match=unknown):
        build_worklist(session, artifacts, "XX", Budget("fraction", 0.02))
    with session_factory(engine).begin() as session:
        base = session.get_one(Configuration, seeded.configuration_ids["Base"])
        broken = Configuration(model_set_id=base.model_set_id, name="CE+TTA", position=9, members=[], views=[],
                               temperature_scaling=False)
        session.add(broken)
        session.flush()
        image_id = seeded.image_ids["synthetic-1"]
        processing = session.scalars(select(Processing.id).where(Processing.image_id == image_id)).first()
        result = CaseResult(processing_id=processing, image_id=image_id, configuration_id=broken.id,
                            has_reference=False, roi_voxels=100, voxel_ml=0.002, seconds=0.0)
        session.add(result)
        session.flush()
        session.add_all([Artifact(image_id=image_id, result_id=result.id, kind=kind, path=f"gone/{kind}.zarr",
                                  dtype="uint8", shape=[1, 1, 1], budget=0.02) for kind in ("entropy", "prediction",
                                                                                           "budget_mask")])
    with session_factory(engine)() as session:
        worklist = build_worklist(session, artifacts, "CE+TTA", Budget("fraction", 0.02))
    engine.dispose()
    assert worklist.cases == () and len(worklist.skipped) == 1
    assert worklist.skipped[0].startswith("synthetic-1: ") and "gone/entropy.zarr" in worklist.skipped[0]


def test_the_worklist_follows_the_metric_settings_its_run_stored(seeded: Seeded) -> None:
    """The ROI regrown above the stored budget and the cap of a time budget are those of the run that computed the
    result (``runs.options``), not the defaults."""
    settings = MetricSettings(roi_radius_mm=8.0, budget_max=0.03)
    engine = make_engine(seeded.url)
    with session_factory(engine)() as session:
        (ref,) = deployed_results(session, "Base", "synthetic-1")
        run = Run(kind="run", status="succeeded", host="h", pid=1, code_version="t",
                  options={"settings": asdict(settings)})
        session.add(run)
        session.flush()
        session.get(Processing, ref.result.processing_id).run_id = run.id
        session.flush()
        assert run_metric_settings(session, ref.result) == settings
        artifacts = ArtifactStore(seeded.artifacts)
        reference, prediction, _ = synthetic_case(1)
        roi = roi_of(prediction, reference, spacing_zyx(ref.image), settings)
        regions, fraction, capped = case_regions(session, artifacts, ref, Budget("fraction", 0.04))
        assert (fraction, capped) == (0.04, False)
        assert sum(r.voxels for r in regions.regions) == flagged_count(0.04, roi.n_voxels)
        _, fraction, capped = case_regions(session, artifacts, ref, Budget("minutes", 60.0))
        assert (fraction, capped) == (0.03, True)
        session.rollback()
    engine.dispose()


def test_two_model_sets_are_never_mixed(seeded: Seeded) -> None:
    """A second model set with its own "DE": the worklist shows one model set's results — the newest by default, the
    other when named — and the stored results of both stay apart."""
    engine = make_engine(seeded.url)
    with session_factory(engine)() as session:
        old = session.get_one(Configuration, seeded.configuration_ids["DE"])
        newer = ModelSetRow(identity="review-test-2", name="review-test-2", source="tests",
                            nnunet_configuration="3d", labels=["background", "lymph_nodes", "spleen"])
        newer.configurations = [Configuration(name="DE", position=0, members=["m"], views=[[]],
                                              temperature_scaling=False)]
        session.add(newer)
        session.flush()
        (ref,) = deployed_results(session, "DE", "synthetic-2")
        session.add(CaseResult(processing_id=ref.result.processing_id, image_id=ref.image.id,
                               configuration_id=newer.configurations[0].id, has_reference=True,
                               roi_voxels=ref.result.roi_voxels, voxel_ml=ref.result.voxel_ml, seconds=0.0))
        session.flush()
        newest = deployed_results(session, "DE")
        assert [r.image.name for r in newest] == ["synthetic-2"]
        assert {r.result.configuration_id for r in newest} == {newer.configurations[0].id}
        named = deployed_results(session, "DE", model_set="review-test")
        assert sorted(r.image.name for r in named) == ["ibsi", "synthetic-1", "synthetic-2"]
        assert {r.result.configuration_id for r in named} == {old.id}
        assert unreviewed_count(session, "DE", "review-test") == 5
        with pytest.raises(LookupError, match="of model set 'nowhere'"):
            deployed_results(session, "DE", model_set="nowhere")
        session.rollback()
    engine.dispose()
