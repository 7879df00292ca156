"""What a review study measures per reading, on phantoms run by the real batch (committed demo models) in SQLite and
PostgreSQL: a reviewer opens a case, reports activity, opens regions and decides; the clinician's final contour is
attached later with ``attach-reference``; the row's numbers equal the ones computed by hand from the clocks and the
arrays, a case without a final contour has NA, and only approvers and admins see the table (audited)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pypdfium2 as pdfium
import pytest
import SimpleITK as sitk
from sqlalchemy import select

from pipeline.batch.attach import AttachRequest, attach_references
from pipeline.batch.cases import CaseSpec
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.cli import main
from pipeline.errors import NotFoundError
from pipeline.inference.model_set import load_model_set_file
from pipeline.metrics.regions import find_regions
from pipeline.metrics.review_budget import Budget
from pipeline.review.base import ManualClock
from pipeline.review.service import CommandLine, ItemKey, ReviewService
from pipeline.review.study import StudyDefinition
from pipeline.review.study_cases import CaseSelection
from pipeline.review.study_measure import COLUMNS, DTYPES, case_decision, edit_mask
from pipeline.review.workflow import PermissionDenied, Role
from pipeline.settings import DEFAULT_MAX_VOXELS, ReviewSettings, Settings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import make_engine, session_factory
from pipeline.store.review_schema import AuditEntry, ReviewItem
from pipeline.store.schema import Artifact, CaseResult, Configuration, Image
from tests.conftest import REPO_ROOT
from tests.review.conftest import FAST_HASH, PASSWORD, empty_store
from tests.store.conftest import write_phantom_case

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CAP = ReviewSettings().idle_cap_seconds
STUDY = "measured"


@dataclass(frozen=True)
class Measured:
    url: str
    artifacts: Path
    final: Path
    service: ReviewService
    users: dict[str, int]
    images: dict[str, int]
    configuration_id: int
    clock: ManualClock


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def measured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Measured]:
    """Two phantoms run without a reference, a per-case study of both read by ann; ann opens ``p9000`` (clocks,
    regions, decisions), the final clinical contour of ``p9000`` attached afterwards; ``p9001`` never opened."""
    folder = tmp_path_factory.mktemp(f"measure-{request.param}")
    with empty_store(request.param, folder) as url:
        specs, finals = [], {}
        for seed in (9000, 9001):
            ct, finals[f"p{seed}"] = write_phantom_case(folder, seed, f"p{seed}")
            specs.append(CaseSpec(f"p{seed}", ct, None, cohort="clinical"))
        model_set = load_model_set_file(REPO_ROOT / "models" / "demo" / "manifest.json")
        run_batch(BatchOptions(cases=tuple(specs), model_set=model_set, models_source="smoke", database_url=url,
                               artifacts=folder / "artifacts", tta=False, progress=False))
        engine = make_engine(url)
        clock = ManualClock(T0)
        service = ReviewService(engine, password_method=FAST_HASH, clock=clock)
        roles = {"ann": "reviewer", "apo": "approver", "vic": "viewer"}
        users = {n: service.create_user(CommandLine("t"), n, PASSWORD, r).id for n, r in roles.items()}
        with session_factory(engine)() as session:
            images = dict(session.execute(select(Image.name, Image.id)).all())
            configuration_id = session.scalars(select(Configuration.id).where(Configuration.name == "DE")).one()
        service.define_study(CommandLine("t"), StudyDefinition(
            name=STUDY, configuration="DE", budget=Budget("fraction", 0.02),
            cases=CaseSelection(names=("p9000", "p9001")), reviewers=("ann",), design="per-case",
            endpoint="edited-ml-per-minute", seed=3))
        _read(service, clock, users["ann"], images["p9000"], configuration_id)
        done = attach_references(url, folder / "artifacts", [AttachRequest("p9000", finals["p9000"],
                                                                           "final_clinical")],
                                 DEFAULT_MAX_VOXELS, isolate=False)
        assert done.exit_code == 0
        yield Measured(url, folder / "artifacts", finals["p9000"], service, users, images, configuration_id, clock)
        engine.dispose()


def _read(service: ReviewService, clock: ManualClock, ann: int, image_id: int, configuration_id: int) -> None:
    """ann's reading of p9000: 30 s, an idle gap of 500 s (capped), 10 s to the first decision; the spleen edited,
    the lymph nodes accepted then reopened and accepted again; three region clocks on two regions."""
    spleen, nodes = ItemKey(image_id, configuration_id, 2), ItemKey(image_id, configuration_id, 1)
    service.start_review(ann, spleen)  # before the opening: its clock and its decision are not the study's
    clock.tick(5)
    service.record_decision(ann, spleen, "rejected", "before the study")
    clock.tick(100)
    service.open_study_case(ann, STUDY, "p9000")
    service.reopen(ann, spleen)
    first = service.open_region(ann, image_id, configuration_id, 2, 1, 0.02, 1.0)
    clock.tick(30)
    service.report_activity(ann, first)
    clock.tick(500)
    service.report_activity(ann)
    service.open_region(ann, image_id, configuration_id, 2, 1, 0.02, 1.0)
    service.open_region(ann, image_id, configuration_id, 2, 2, 0.02, 1.0)
    clock.tick(10)
    service.record_decision(ann, spleen, "edited", "moved the edge")
    service.start_review(ann, nodes)
    clock.tick(20)
    service.record_decision(ann, nodes, "accepted", None)
    service.reopen(ann, nodes)
    clock.tick(4)
    service.record_decision(ann, nodes, "accepted", None)


EXPECTED_SECONDS = 30 + CAP + 10 + 20 + 4  # the clocks opened since the study's opening


def _expected_edit(measured: Measured) -> tuple[int, int, float, float]:
    """Added and removed voxels, edited mL and the share inside the 2 % regions, from the arrays."""
    engine = make_engine(measured.url)
    store = ArtifactStore(measured.artifacts)
    with session_factory(engine)() as session:
        result = session.scalars(select(CaseResult).where(
            CaseResult.image_id == measured.images["p9000"],
            CaseResult.configuration_id == measured.configuration_id)).one()
        maps = dict(session.execute(select(Artifact.kind, Artifact.path).where(Artifact.result_id == result.id)).all())
        spacing = tuple(float(v) for v in reversed(session.get_one(Image, result.image_id).spacing))
    engine.dispose()
    final = sitk.GetArrayFromImage(sitk.ReadImage(str(measured.final)))
    prediction = store.read(maps["prediction"])
    edited = prediction != final
    added, removed = int((edited & (final > 0)).sum()), int((edited & (final == 0)).sum())
    image = sitk.ReadImage(str(measured.final))
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000
    regions = find_regions(store.read(maps["budget_mask"]).astype(bool), store.read(maps["entropy"]), prediction,
                           spacing, ReviewSettings()).labels  # the stored mask is the 2 % one
    assert added > 0 and removed > 0, "the phantom's models leave edits of both kinds"
    return added, removed, (added + removed) * voxel_ml, float((edited & (regions > 0)).sum() / edited.sum())


def test_a_reading_measures_its_time_decision_regions_and_the_clinicians_edit(measured: Measured) -> None:
    table = measured.service.study_measurements(measured.users["apo"], STUDY, ArtifactStore(measured.artifacts))
    assert tuple(table.columns) == COLUMNS and table.dtypes.astype(str).to_dict() == DTYPES
    assert list(table["case"]) == ["p9000", "p9001"] or list(table["case"]) == ["p9001", "p9000"]
    read = table.set_index("case").loc["p9000"]
    added, removed, edited_ml, inside = _expected_edit(measured)
    assert (read["study"], read["reviewer"], read["opened"], read["final_attached"]) == (STUDY, "ann", True, True)
    assert read["arm"] in ("A", "B") and read["period"] == 1
    assert read["active_seconds"] == pytest.approx(EXPECTED_SECONDS)
    assert read["decision"] == "edited" and read["regions_opened"] == 2
    assert (read["added_voxels"], read["removed_voxels"], bool(read["any_edit"])) == (added, removed, True)
    assert read["edited_ml"] == pytest.approx(edited_ml)
    assert read["edits_in_regions_fraction"] == pytest.approx(inside) and 0 < inside < 1

    unread = table.set_index("case").loc["p9001"]
    assert (unread["opened"], unread["final_attached"], unread["decision"], unread["regions_opened"]) == (
        False, False, None, 0)
    assert math.isnan(unread["active_seconds"]) and math.isnan(unread["edited_ml"])
    assert math.isnan(unread["edits_in_regions_fraction"])
    assert unread["added_voxels"] is pd.NA and unread["removed_voxels"] is pd.NA and unread["any_edit"] is pd.NA


def test_only_approvers_and_admins_see_the_measurements_each_look_audited(measured: Measured) -> None:
    artifacts = ArtifactStore(measured.artifacts)
    for who in ("ann", "vic"):
        with pytest.raises(PermissionDenied):
            measured.service.study_measurements(measured.users[who], STUDY, artifacts)
    measured.service.study_measurements(measured.users["apo"], STUDY, artifacts)
    engine = make_engine(measured.url)
    with session_factory(engine)() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "study.view_results")
                               .order_by(AuditEntry.id)).all()
    assert [(r.actor, r.outcome) for r in rows[-3:]] == [("ann", "denied"), ("vic", "denied"), ("apo", "ok")]
    assert rows[-1].object_id == STUDY and rows[-1].after is not None and rows[-1].after["readings"] == 2
    with pytest.raises(NotFoundError, match="there is no study named 'nope'"):
        measured.service.study_measurements(measured.users["apo"], "nope", artifacts)
    with session_factory(engine)() as session:
        last = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).one()
    engine.dispose()
    assert (last.action, last.actor, last.outcome, last.object_id) == ("study.view_results", "apo", "denied", "nope")


def test_the_command_line_prints_and_writes_the_readings(
    measured: Measured, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(database_url=measured.url, artifacts_dir=measured.artifacts, exports_dir=tmp_path / "x")
    assert main(["study", "readings", STUDY], settings) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert tuple(lines[0]) == COLUMNS and len(lines) == 3
    unread = dict(zip(COLUMNS, next(line for line in lines[1:] if line[1] == "p9001"), strict=True))
    assert (unread["added_voxels"], unread["active_seconds"], unread["decision"]) == ("NA", "NA", "NA")
    out = tmp_path / "out" / "readings.csv"
    assert main(["study", "readings", STUDY, "--csv", str(out)], settings) == 0
    assert f"wrote 2 readings of study {STUDY} to {out}" in capsys.readouterr().out
    written = pd.read_csv(out).set_index("case")
    assert written.loc["p9000", "active_seconds"] == pytest.approx(EXPECTED_SECONDS)
    assert written.loc["p9000", "decision"] == "edited" and math.isnan(written.loc["p9001", "edited_ml"])
    assert main(["study", "readings", "no such study"], settings) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "there is no study named 'no such study'" in err
    assert main(["study", "readings", STUDY, "--csv", str(tmp_path)], settings) == 2
    assert "is a folder, not a file" in capsys.readouterr().err


def test_study_report_writes_the_analysis_as_csv_and_pdf_from_the_store(
    measured: Measured, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """``python -m pipeline study-report``: the analysis of the stored readings as CSV and PDF, twice the same (the
    bootstrap draws from the study's seed); an unknown study or a file as ``--out`` is one line and exit 2."""
    settings = Settings(database_url=measured.url, artifacts_dir=measured.artifacts, exports_dir=tmp_path / "x")
    out = tmp_path / "reports"
    assert main(["study-report", STUDY, "--out", str(out)], settings) == 0
    said = capsys.readouterr().out
    csv_path, pdf_path = out / f"study_{STUDY}.csv", out / f"study_{STUDY}.pdf"
    assert f"wrote {csv_path} and {pdf_path}" in said and "primary endpoint" in said
    first = csv_path.read_text()
    assert first.splitlines()[0].startswith("study,") and STUDY in first
    assert pdf_path.read_bytes().startswith(b"%PDF") and len(pdfium.PdfDocument(pdf_path)) >= 2
    assert main(["study-report", STUDY, "--out", str(out)], settings) == 0
    assert csv_path.read_text() == first, "the same store gives the same report"
    assert sorted(p.name for p in out.iterdir()) == [csv_path.name, pdf_path.name], "no temporary file left"
    capsys.readouterr()
    assert main(["study-report", "no such study", "--out", str(out)], settings) == 2
    assert "there is no study named 'no such study'" in capsys.readouterr().err
    assert main(["study-report", STUDY, "--out", str(csv_path)], settings) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_the_edit_mask_and_the_case_decision_rules() -> None:
    final = np.array([[0, 1, 1, 2, 0, 0]], dtype=np.uint8)
    prediction = np.array([[0, 1, 2, 0, 1, 0]], dtype=np.uint8)
    regions = np.array([[0, 0, 3, 3, 0, 0]], dtype=np.int32)
    edit = edit_mask(prediction != final, final, regions, 0.5)
    assert (edit.added_voxels, edit.removed_voxels, edit.edited_ml) == (2, 1, 1.5)  # 1→2 and 0→2 added, 1→0 removed
    assert edit.in_regions_fraction == pytest.approx(2 / 3)
    assert math.isnan(edit_mask(final != final, final, regions, 0.5).in_regions_fraction)
    assert case_decision([]) is None and case_decision([None, None]) is None
    assert case_decision(["accepted", "rejected", None]) == "rejected"
    assert case_decision(["accepted", "edited", "rejected"]) == "edited"
    assert case_decision(["accepted"]) == "accepted"


def _decide_all(measured: Measured, user: int, image_id: int) -> None:
    """``user`` decides every item of the case: starting those nobody reviewed, reopening those decided."""
    engine = make_engine(measured.url)
    with session_factory(engine)() as session:
        states = dict(session.execute(select(ReviewItem.class_index, ReviewItem.state).where(
            ReviewItem.image_id == image_id, ReviewItem.configuration_id == measured.configuration_id)).all())
    engine.dispose()
    for class_index in (1, 2):
        key = ItemKey(image_id, measured.configuration_id, class_index)
        if states.get(class_index, "pending") == "pending":
            measured.service.start_review(user, key)
        else:
            measured.service.reopen(user, key)
        measured.service.record_decision(user, key, "accepted", None)


def test_a_crossovers_second_reader_is_timed_from_its_opening(measured: Measured) -> None:
    """In a crossover both readers read a case of period 1; the second opens it after the first decided its items
    (another user's, reviewed): its opening starts its clocks and its region clock is allowed, so its whole reading
    is measured; a reviewer outside the study still may not time the items the first reader decided."""
    service, clock = measured.service, measured.clock
    users = {n: service.create_user(CommandLine("t"), n, PASSWORD, Role.REVIEWER).id for n in ("cyd", "dee", "eve")}
    service.define_study(CommandLine("t"), StudyDefinition(
        name="crossed", configuration="DE", budget=Budget("fraction", 0.02),
        cases=CaseSelection(names=("p9000", "p9001")), reviewers=("cyd", "dee"), design="crossover",
        endpoint="minutes-per-case", seed=11, washout_days=0))
    readings = service.show_study(CommandLine("t"), "crossed").readings
    case = next(r.case for r in readings if r.period == 1)
    image_id = measured.images[case]
    service.open_study_case(users["cyd"], "crossed", case)
    clock.tick(20)
    _decide_all(measured, users["cyd"], image_id)  # the first reader's decisions: the items are cyd's

    service.open_study_case(users["dee"], "crossed", case)
    clock.tick(40)
    service.report_activity(users["dee"])
    region = service.open_region(users["dee"], image_id, measured.configuration_id, 1, 1, 0.02, 1.0)
    with pytest.raises(PermissionDenied, match="another user reviews"):
        service.open_region(users["eve"], image_id, measured.configuration_id, 1, 1, 0.02, 1.0)
    clock.tick(10)
    service.report_activity(users["dee"], region)
    _decide_all(measured, users["dee"], image_id)

    table = service.study_measurements(measured.users["apo"], "crossed", ArtifactStore(measured.artifacts))
    read = table[table["case"] == case].set_index("reviewer")
    assert read.loc["cyd", "active_seconds"] == pytest.approx(20)
    assert read.loc["dee", "active_seconds"] == pytest.approx(50)  # from its opening, not from its reopening
    assert read.loc["dee", "regions_opened"] == 1 and read.loc["dee", "decision"] == "accepted"
    assert read.loc["cyd", "decision"] == "accepted"
