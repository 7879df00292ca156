"""Trends on real runs of the tiny nnU-Net demo models (committed under ``models/demo``: no training first), on SQLite
and PostgreSQL: the values per case and per run against
values computed by hand from the stored rows, and ``pipeline run``'s exit code and line against the stored levels."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.cli import main
from pipeline.errors import EXIT_OUT_OF_ACTION, EXIT_OUT_OF_TOLERANCE
from pipeline.review.service import CommandLine, ReviewService
from pipeline.settings import Settings
from pipeline.store.database import make_engine, session_factory
from pipeline.store.schema import (
    WHOLE_CASE,
    CaseResult,
    Configuration,
    MetricValue,
    Processing,
    Run,
    StructureResult,
)
from pipeline.store.trend_check import check_run
from pipeline.store.trends import case_values, run_values
from tests.io_corpus.build import DEMO_MANIFEST

BUDGET = 0.03


def _manifest(folder: Path, phantoms: Path, rows: list[tuple[str, int, bool]]) -> Path:
    """A CSV manifest of phantom cases (name, seed, with its reference)."""
    lines = ["case,ct,reference"] + [
        f"{name},{phantoms / 'images' / f'phantom_{seed}.nii.gz'},"
        + (str(phantoms / 'references' / f'phantom_{seed}.nii.gz') if reference else "")
        for name, seed, reference in rows]
    path = folder / f"{rows[0][0]}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(manifest: Path, models: Path, settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["run", str(manifest), "--models", str(models), "--cohort", "nightly", "--no-tta", "--no-progress",
                 "--budget", str(BUDGET)], settings)
    return code, capsys.readouterr().out


def _by_hand(url: str, run_id: int) -> dict[tuple[str, str, str], tuple[float, int]]:
    """(configuration, quantity, structure) → (mean, n) of the run's uncalibrated results, read row by row."""
    engine = make_engine(url)
    values: dict[tuple[str, str, str], list[float]] = {}
    with session_factory(engine)() as session:
        results = session.execute(
            select(CaseResult, Configuration.name).join(Processing, Processing.id == CaseResult.processing_id)
            .join(Configuration, Configuration.id == CaseResult.configuration_id)
            .where(Processing.run_id == run_id, CaseResult.temperature_fit_id.is_(None))).all()
        for result, configuration in results:
            def add(name: str, value: float | None, structure: str = "", c: str = configuration) -> None:
                values.setdefault((c, name, structure), [])
                if value is not None:
                    values[(c, name, structure)].append(value)

            metrics = {m.name: m.value for m in session.scalars(select(MetricValue).where(
                MetricValue.result_id == result.id, MetricValue.class_index == WHOLE_CASE))}
            add("mean_entropy_roi", metrics["mean_entropy_roi"])
            add("ece", metrics["ece"])
            add("ueo_auc", metrics["ueo_auc"])
            add("ood_rate", None if result.ood_flag is None else float(result.ood_flag))
            add("flagged_ml", math.ceil(BUDGET * result.roi_voxels - 1e-9) * result.voxel_ml)
            for row in session.scalars(select(StructureResult).where(StructureResult.result_id == result.id,
                                                                     StructureResult.class_index > 0)):
                add("predicted_volume", row.predicted_ml, row.structure)
    engine.dispose()
    return {key: (sum(v) / len(v) if v else math.nan, len(v)) for key, v in values.items()}


def test_trend_values_and_the_exit_code_of_a_run_out_of_its_levels(
    store_url: str, tmp_path: Path, phantom_folder: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    models = DEMO_MANIFEST
    settings = Settings(database_url=store_url, artifacts_dir=tmp_path / "artifacts", exports_dir=tmp_path / "x")
    first = _manifest(tmp_path, phantom_folder, [("night1_ref", 9000, True), ("night1_noref", 9001, False)])
    code, out = _run(first, models, settings, capsys)
    assert code == 0 and "level" not in out, "no level stored: the run exits as before, with no levels line"

    engine = make_engine(store_url)
    with session_factory(engine)() as session:
        run_id = session.scalars(select(Run.id)).one()
        cases = case_values(session, [run_id])
        runs = run_values(cases)
        assert check_run(session, run_id) is None
    expected = _by_hand(store_url, run_id)
    got = {(r.configuration, r.quantity, r.structure): (r.value, r.n) for r in runs.itertuples()}
    assert set(got) == set(expected) and len(got) == 3 * (5 + 2)  # Base, DE, CE × 5 case values + 2 structures
    for key, (value, n) in expected.items():
        assert got[key][1] == n, key
        assert got[key][0] == pytest.approx(value, rel=1e-9, nan_ok=True), key
    assert got[("DE", "ece", "")][1] == 1 and got[("DE", "mean_entropy_roi", "")][1] == 2  # ECE: the referenced case
    assert set(cases["case"]) == {"night1_ref", "night1_noref"}

    service = ReviewService(engine)
    entropy = got[("DE", "mean_entropy_roi", "")][0]
    service.set_levels(CommandLine("tester"), "mean_entropy_roi", {"tolerance_high": entropy / 4},
                       configuration="DE")
    service.set_levels(CommandLine("tester"), "ece", {"tolerance_high": 1.0, "action_high": 1.0})
    second = _manifest(tmp_path, phantom_folder, [("night2", 9002, True)])
    code, out = _run(second, models, settings, capsys)
    line = out.strip().splitlines()[-1]
    assert code == EXIT_OUT_OF_TOLERANCE, out
    assert line.startswith("run 2: 1 of 4 values out of tolerance, 0 beyond action: DE Mean entropy (ROI) ")
    assert (f" > {entropy / 4:g}; 1 of 1 case values out of tolerance, 0 beyond action: night2 DE Mean entropy (ROI) "
            in line)

    service.set_levels(CommandLine("tester"), "mean_entropy_roi", {"tolerance_high": entropy / 4,
                                                                   "action_high": entropy / 4}, configuration="DE")
    with session_factory(engine)() as session:
        check = check_run(session, 2)
        first_check = check_run(session, run_id)
    engine.dispose()
    assert check is not None and check.exit_code == EXIT_OUT_OF_ACTION and check.status == "action"
    assert check.line().startswith("run 2: 1 of 4 values out of tolerance, 1 beyond action: DE Mean entropy (ROI) ")
    assert first_check is not None and first_check.exit_code == EXIT_OUT_OF_ACTION
    assert {f.case for f in first_check.of(True)} <= {"night1_ref", "night1_noref"}
