"""Review regions stored at batch time, on SQLite and PostgreSQL: the batch's rows (its own functions on the metric
suite's maps) hold, at each of the review settings' region budgets, the regions the worklist and the slice browser
compute from the stored maps; the worklist reads them at those budgets (and at a time budget, rounded down to them)
without reading a map, computes other budgets from the maps, and a store without stored regions (written before
revision 0009) still gets its worklist from the maps."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from sqlalchemy import Engine, delete, select

from pipeline.batch.maps import map_artifacts, result_prefix, result_regions
from pipeline.batch.outcomes import Outcome, evaluate_configuration, result_row, structure_rows, value_rows
from pipeline.batch.persist import ResultRows, write_results
from pipeline.cli import main
from pipeline.errors import InputError
from pipeline.metrics.regions import Region, find_regions
from pipeline.metrics.review_budget import Budget
from pipeline.metrics.settings import DEFAULT_SETTINGS
from pipeline.review.region_refresh import RefreshSummary, refresh_regions
from pipeline.review.worklist import Worklist, build_worklist, case_regions, deployed_results
from pipeline.settings import ReviewSettings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import session_factory
from pipeline.store.schema import Artifact, Configuration, Image, ModelSet, Patient, Processing
from pipeline.store.stored_regions import ResultRegions
from tests.review.conftest import LABELS

BUDGET = 0.02
SPACING_XYZ = (0.8, 0.8, 2.5)


def _probabilities(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled probabilities (3, 16, 48, 48) of two blurred structures, and a reference shifted from them."""
    rng = np.random.default_rng(seed)
    reference = np.zeros((16, 48, 48), dtype=np.uint8)
    reference[4:12, 10:26, 10:24] = 2
    reference[6:10, 30:38, 30:37] = 1
    logits = np.stack([gaussian_filter((np.roll(reference, 1 + seed, axis=2) == c).astype(np.float32), 1.2)
                       for c in range(3)]) * 6 + rng.normal(0, 0.3, (3, *reference.shape))
    probabilities = np.exp(logits - logits.max(axis=0))
    return (probabilities / probabilities.sum(axis=0)).astype(np.float32), reference


def _batch_case(engine: Engine, artifacts: ArtifactStore, seed: int) -> None:
    """Store one case the way ``pipeline.batch.process`` does: its reference, the metric suite's maps, rows and stored
    regions."""
    probabilities, reference = _probabilities(seed)
    spacing = (SPACING_XYZ[2], SPACING_XYZ[1], SPACING_XYZ[0])
    result = evaluate_configuration(probabilities, reference, spacing, DEFAULT_SETTINGS, None, BUDGET)
    outcome = Outcome("DE", None, result, True, 0.0, None)
    with session_factory(engine).begin() as session:
        model_set = session.scalar(select(ModelSet))
        if model_set is None:
            model_set = ModelSet(identity="stored", name="stored", source="t", nnunet_configuration="3d",
                                 labels=LABELS)
            model_set.configurations = [Configuration(name="DE", position=0, members=["m"], views=[[]],
                                                      temperature_scaling=False)]
            session.add(model_set)
            session.flush()
        image = Image(patient=Patient(pseudonym=f"P{seed}"), name=f"case-{seed}", cohort="c", source_kind="image",
                      source_path="/x", size=list(reference.shape[::-1]), spacing=list(SPACING_XYZ),
                      origin=[0.0] * 3, direction=[1, 0, 0, 0, 1, 0, 0, 0, 1], content_hash="0" * 64)
        session.add(image)
        session.flush()
        processing = Processing(image_id=image.id, model_set_id=model_set.id, input_hash="1" * 64,
                                code_version="t", forward_passes=1, seconds_inference=0.0, seconds_metrics=0.0,
                                seconds_storage=0.0)
        session.add(processing)
        session.flush()
        session.add(Artifact(image_id=image.id, processing_id=processing.id, kind="reference",
                             path=artifacts.write(f"{image.name}/reference.zarr", reference), dtype="uint8",
                             shape=list(reference.shape)))
        write_results(session, image, processing.id, [ResultRows(
            configuration_id=model_set.configurations[0].id, temperature_fit_id=None, result=result_row(outcome),
            values=value_rows(outcome), structures=structure_rows(outcome, tuple(LABELS), None), curve=[], bins=[],
            artifacts=map_artifacts(artifacts, result_prefix(image.name, "stored", "DE", None), outcome),
            regions=result_regions(outcome, spacing))])


@pytest.fixture
def stored(engine: Engine, tmp_path: Path) -> ArtifactStore:
    artifacts = ArtifactStore(tmp_path / "artifacts")
    for seed in (1, 2, 3):
        _batch_case(engine, artifacts, seed)
    return artifacts


def _worklist(engine: Engine, artifacts: ArtifactStore, budget: Budget) -> Worklist:
    with session_factory(engine)() as session:
        return build_worklist(session, artifacts, "DE", budget, ReviewSettings())


def _regions(engine: Engine, artifacts: ArtifactStore, budget: Budget) -> dict[str, tuple[Region, ...]]:
    worklist = _worklist(engine, artifacts, budget)
    assert not worklist.skipped, worklist.skipped
    return {case.case: case.regions for case in worklist.cases}


def test_stored_regions_are_the_ones_computed_from_the_stored_maps(
    engine: Engine, stored: ArtifactStore, tmp_path: Path
) -> None:
    budgets = ReviewSettings().region_budgets
    with session_factory(engine)() as session:
        rows = session.scalars(select(ResultRegions)).all()
        assert sorted({row.budget for row in rows}) == sorted(budgets) and len(rows) == 3 * len(budgets)
    from_store = {b: _regions(engine, stored, Budget("fraction", b)) for b in budgets}
    assert all(all(found.values()) and len(found) == 3 for found in from_store.values())
    assert all(len(from_store[b]["case-1"]) >= 1 for b in budgets)
    shutil.rmtree(tmp_path / "artifacts")  # at a stored budget the worklist reads no map at all
    for b in budgets:
        assert _regions(engine, ArtifactStore(tmp_path / "artifacts"), Budget("fraction", b)) == from_store[b]
    timed = _worklist(engine, ArtifactStore(tmp_path / "artifacts"), Budget("minutes", 0.5))
    assert not timed.skipped and len(timed.cases) == 3, "a time budget rounds down to a stored budget"
    for case in timed.cases:  # 0.5 min at 30 s/mL = 1 mL of a ~52 mL ROI: 1.9 %, rounded down to 1 %
        assert (case.fraction, case.capped) == (0.01, False) and case.regions == from_store[0.01][case.case]
    elsewhere = _worklist(engine, ArtifactStore(tmp_path / "artifacts"), Budget("fraction", 0.013))
    assert not elsewhere.cases and len(elsewhere.skipped) == 3, "another budget needs the maps"


def test_a_store_without_stored_regions_computes_them_from_the_maps(engine: Engine, stored: ArtifactStore) -> None:
    """At every stored budget — below the stored mask's (narrowed from it) and above it (the ROI regrown) — the
    worklist's map path finds the regions the batch stored."""
    budgets = ReviewSettings().region_budgets
    from_store = {b: _regions(engine, stored, Budget("fraction", b)) for b in budgets}
    with session_factory(engine).begin() as session:
        session.execute(delete(ResultRegions))  # as a store written before revision 0009
    for b in budgets:
        assert _regions(engine, stored, Budget("fraction", b)) == from_store[b], f"the map path at {b}"
    from_store = from_store[BUDGET]
    with session_factory(engine)() as session:  # and so does the slice browser's (the stored mask as it is)
        for image in session.scalars(select(Image)):
            folder = f"{image.name}/stored/DE"
            found = find_regions(stored.read(f"{folder}/budget_mask.zarr").astype(bool),
                                 stored.read(f"{folder}/entropy.zarr"), stored.read(f"{folder}/prediction.zarr"),
                                 (SPACING_XYZ[2], SPACING_XYZ[1], SPACING_XYZ[0]), ReviewSettings())
            assert found.regions == from_store[image.name]
            assert int((found.labels > 0).sum()) == sum(r.voxels for r in from_store[image.name])


def test_other_region_settings_do_not_take_the_stored_regions(engine: Engine, stored: ArtifactStore) -> None:
    face = ReviewSettings(connectivity=6)
    with session_factory(engine)() as session:
        worklist = build_worklist(session, stored, "DE", Budget("fraction", BUDGET), face)
        computed = {case.case: case.regions for case in worklist.cases}
    with session_factory(engine).begin() as session:
        session.execute(delete(ResultRegions))
    with session_factory(engine)() as session:
        assert {c.case: c.regions for c in build_worklist(session, stored, "DE", Budget("fraction", BUDGET),
                                                           face).cases} == computed


def _stored_rows(engine: Engine) -> dict[tuple[int, float], tuple[int, float, float, list]]:
    with session_factory(engine)() as session:
        return {(r.result_id, r.budget): (r.connectivity, r.merge_distance_mm, r.min_region_ml, r.regions)
                for r in session.scalars(select(ResultRegions))}


def test_refresh_regions_stores_what_the_batch_stores_once_and_follows_new_settings(
    engine: Engine, stored: ArtifactStore, tmp_path: Path
) -> None:
    """A store whose results hold no regions, or regions found with other settings (as before revisions 0011 and
    0012), gets the batch's rows from the maps; a second call has nothing to do; other settings are followed; a
    result whose maps are gone is named and the others are stored."""
    batch = _stored_rows(engine)
    with session_factory(engine).begin() as session:
        session.execute(delete(ResultRegions))
        session.add(ResultRegions(result_id=min(r for r, _ in batch), budget=BUDGET, connectivity=26,
                                  structure_search_mm=10.0, merge_distance_mm=0.0, min_region_ml=0.0,
                                  regions=[]))  # found unmerged
    sessions = session_factory(engine)
    assert refresh_regions(sessions, stored, ReviewSettings()) == RefreshSummary(3, 3, ())
    assert _stored_rows(engine) == batch
    assert refresh_regions(sessions, stored, ReviewSettings()) == RefreshSummary(3, 0, ())
    face = ReviewSettings(connectivity=6)
    assert refresh_regions(sessions, stored, face, configuration="DE") == RefreshSummary(3, 3, ())
    assert {c for c, *_ in _stored_rows(engine).values()} == {6}
    with pytest.raises(InputError, match="'D E': no such configuration"):
        refresh_regions(sessions, stored, face, configuration="D E")
    with session_factory(engine)() as session:
        assert {case.case: case.regions for case in build_worklist(session, stored, "DE", Budget("fraction", BUDGET),
                                                                    face).cases} == {
            case: regions for case, regions in _regions_with(engine, stored, face).items()}
    shutil.rmtree(tmp_path / "artifacts" / "case-3")
    summary = refresh_regions(sessions, stored, ReviewSettings())
    assert (summary.results, summary.refreshed, len(summary.failed)) == (3, 2, 1)
    assert summary.failed[0].startswith("case-3 / DE: ") and "1 failed" in summary.describe()


def _regions_with(engine: Engine, artifacts: ArtifactStore, settings: ReviewSettings
                  ) -> dict[str, tuple[Region, ...]]:
    """The regions the worklist's map path finds with ``settings`` (stored rows set aside)."""
    with session_factory(engine)() as session:
        refs = {ref.image.name: ref for ref in deployed_results(session, "DE")}
        return {name: case_regions(session, artifacts, ref, Budget("fraction", BUDGET), settings)[0].regions
                for name, ref in refs.items()}


def test_the_refresh_regions_command_says_what_it_stored(engine: Engine, stored: ArtifactStore, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    with session_factory(engine).begin() as session:
        session.execute(delete(ResultRegions))
    monkeypatch.setenv("QA_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("QA_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    assert main(["refresh-regions", "--configuration", "DE"]) == 0
    assert "stored the regions of 3 of 3 result(s) with maps; 0 were up to date, 0 failed" in capsys.readouterr().out
    assert main(["refresh-regions"]) == 0
    assert "of 3 result(s) with maps; 3 were up to date" in capsys.readouterr().out
