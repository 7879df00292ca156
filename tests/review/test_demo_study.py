"""The demo's simulated review study on phantoms run by the real batch (committed demo models), SQLite and PostgreSQL:
the scripted readings become records through their owners, the measurement of each equals what the model drew
(time by the idle-cap rule, decision, regions), the study ends closed with its readers deactivated, the audit chain
verifies, a second seeding leaves it alone, and its report is written from the store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import SimpleITK as sitk
from sqlalchemy import select

from pipeline.batch.attach import AttachRequest, attach_references
from pipeline.batch.cases import CaseSpec
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.cli import main
from pipeline.demo_study import SIMULATED_READERS, SIMULATED_STUDY, StudyPlan, seed_simulated_study, study_line
from pipeline.errors import InputError
from pipeline.inference.model_set import load_model_set_file
from pipeline.review.service import CommandLine, ReviewService
from pipeline.review.study_simulation import ReaderModel, SimulatedReading
from pipeline.settings import DEFAULT_MAX_VOXELS, ReviewSettings, Settings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import make_engine, session_factory
from pipeline.store.references import FINAL_CLINICAL, reference_kind
from pipeline.store.review_schema import AuditEntry, ReviewTime
from pipeline.store.schema import Image
from tests.conftest import REPO_ROOT
from tests.review.conftest import empty_store
from tests.store.conftest import write_phantom_case

START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
CAP = ReviewSettings().idle_cap_seconds
MODEL = ReaderModel(break_probability=1.0)  # every reading walks away once: the idle cap must bite


@dataclass(frozen=True)
class Simulated:
    settings: Settings
    drawn: dict[tuple[str, str], SimulatedReading]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def simulated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulated]:
    """Two phantoms run with their labels as the (research) reference and the sweep (results without maps), then the
    simulated study seeded on them."""
    folder = tmp_path_factory.mktemp(f"simulated-{request.param}")
    with empty_store(request.param, folder) as url:
        specs, finals = [], {}
        for seed in (9000, 9001):
            ct, finals[f"phantom_{seed}"] = write_phantom_case(folder, seed, f"phantom_{seed}")
            specs.append(CaseSpec(f"phantom_{seed}", ct, finals[f"phantom_{seed}"], cohort="phantom"))
        model_set = load_model_set_file(REPO_ROOT / "models" / "demo" / "manifest.json")
        run_batch(BatchOptions(cases=tuple(specs), model_set=model_set, models_source="smoke", database_url=url,
                               artifacts=folder / "artifacts", tta=False, sweep=True, progress=False))
        settings = Settings(database_url=url, artifacts_dir=folder / "artifacts", exports_dir=folder / "exports")
        drawn = seed_simulated_study(settings, StudyPlan(finals, model=MODEL), START)
        assert drawn is not None
        yield Simulated(settings, drawn)


def test_each_measured_reading_is_what_the_model_drew(simulated: Simulated) -> None:
    engine = make_engine(simulated.settings.database_url)
    service = ReviewService(engine)
    table = service.study_measurements(CommandLine("t"), SIMULATED_STUDY, ArtifactStore(
        simulated.settings.artifacts_dir)).set_index(["case", "reviewer"])
    assert set(table.index) == set(simulated.drawn) and len(table) == 2
    assert {reviewer for _, reviewer in simulated.drawn} == set(SIMULATED_READERS), "per case: one case each"
    for key, drawn in simulated.drawn.items():
        row = table.loc[key]
        assert (row["arm"], row["opened"], row["decision"]) == (drawn.arm.value, True, drawn.decision)
        assert row["active_seconds"] == pytest.approx(drawn.measured_seconds(CAP))
        assert row["active_seconds"] < sum(drawn.gaps), "the break was capped"
        assert row["regions_opened"] == drawn.regions_opened
        assert row["final_attached"] and row["edited_ml"] > 0
    with session_factory(engine)() as session:
        kinds = {image.name: reference_kind(session, image.id, True) for image in session.scalars(select(Image))}
        rates = session.scalars(select(ReviewTime.flagged_ml).where(ReviewTime.region_rank.is_(None))).all()
    assert kinds == {"phantom_9000": FINAL_CLINICAL, "phantom_9001": FINAL_CLINICAL}
    assert rates and all(ml is None for ml in rates), "simulated times never enter the measured review rate"
    engine.dispose()


def test_the_study_ends_closed_its_readers_deactivated_and_the_audit_chain_verifies(simulated: Simulated) -> None:
    engine = make_engine(simulated.settings.database_url)
    service = ReviewService(engine)
    study = next(s for s in service.studies(CommandLine("t")) if s.name == SIMULATED_STUDY)
    assert study.closed_at is not None and "SIMULATED" in study.name
    assert study.design == "per-case" and study.created_at == START
    users = {u.username: u for u in service.list_users(CommandLine("t"))}
    assert all(users[name].role == "reviewer" and not users[name].active for name in SIMULATED_READERS)
    report = service.verify_audit_log(CommandLine("t"))
    assert report.bad_id is None and report.problem is None and report.rows > 0
    with session_factory(engine)() as session:
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.outcome != "ok")).all()
        count = len(session.scalars(select(AuditEntry.id)).all())
    assert actions == [], "no step of the simulation was refused"
    assert seed_simulated_study(simulated.settings, StudyPlan({}), START) is None, "a second seeding leaves it"
    with session_factory(engine)() as session:
        assert len(session.scalars(select(AuditEntry.id)).all()) == count
    engine.dispose()


def test_the_closed_simulated_study_is_reported(simulated: Simulated, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    line = study_line(simulated.settings)
    assert f"/study/{SIMULATED_STUDY}, 2 readings, primary endpoint edited-ml-per-minute: B − A = " in line
    assert "not evidence" in line
    assert main(["study-report", SIMULATED_STUDY, "--out", str(tmp_path)], simulated.settings) == 0
    assert "primary endpoint edited-ml-per-minute" in capsys.readouterr().out
    assert (tmp_path / f"study_{SIMULATED_STUDY}.pdf").read_bytes().startswith(b"%PDF")


def test_another_reference_on_a_swept_case_is_refused_in_one_line(simulated: Simulated, tmp_path: Path) -> None:
    """A sweep result stored without maps keeps its rows when the same reference is attached (above), but cannot be
    scored on another one: refused before anything is written."""
    labels = sitk.ReadImage(str(simulated.settings.artifacts_dir.parent / "references" / "phantom_9000.nii.gz"))
    other = sitk.GetArrayFromImage(labels)
    other[other == 1] = 0
    changed = sitk.GetImageFromArray(other)
    changed.CopyInformation(labels)
    sitk.WriteImage(changed, str(tmp_path / "other.nii.gz"))
    with pytest.raises(InputError, match=r"the sweep's \S+ result has no stored maps to score another reference on"):
        attach_references(simulated.settings.database_url, simulated.settings.artifacts_dir,
                          [AttachRequest("phantom_9000", tmp_path / "other.nii.gz", "final_clinical")],
                          DEFAULT_MAX_VOXELS, isolate=False)
