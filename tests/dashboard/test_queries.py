"""The dashboard's queries on SQLite and PostgreSQL, against numbers recomputed here from the seeded rows."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.metrics.cohort import paired_comparison
from pipeline.metrics.settings import MetricSettings
from pipeline.store import cohort_numbers
from pipeline.store.database import alembic_config
from pipeline.store.schema import (
    WHOLE_CASE,
    CaseResult,
    CurvePoint,
    Image,
    MetricValue,
    ModelSet,
    Protocol,
    ReliabilityBin,
    StructureResult,
    TemperatureFit,
)
from qa_dashboard.queries import cohort, overview, patient, runs
from qa_dashboard.store import get_store, open_store
from tests.dashboard.conftest import PLAN, SeededStore


def _expected_results(session: Session, store: SeededStore, name: str, repeat: int) -> list[CaseResult]:
    """The results of ``name`` that count for ``repeat``, found without the dashboard's query."""
    tests = store.seeded.test_roles[repeat]
    query = (select(CaseResult).join(Image, Image.id == CaseResult.image_id)
             .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
             .where(CaseResult.configuration_id == store.seeded.configurations[name], Image.name.in_(tests)))
    if name.endswith("+TS"):
        query = query.where(TemperatureFit.protocol_id == store.seeded.protocol_id, TemperatureFit.repeat == repeat)
    else:
        query = query.where(CaseResult.temperature_fit_id.is_(None))
    return list(session.scalars(query))


def _ece(session: Session, results: list[CaseResult]) -> list[float]:
    """The stored ECE of each result, read from ``metric_values`` without the dashboard's query."""
    return [session.scalar(select(MetricValue.value).where(
        MetricValue.result_id == r.id, MetricValue.class_index == WHOLE_CASE, MetricValue.name == "ece"))
        for r in results]


def test_selection_takes_each_repeats_test_cases_and_its_own_fit(store: SeededStore) -> None:
    with get_store().session() as session:
        table = cohort_numbers.case_table(session, cohort_numbers.CohortFilter(store.seeded.protocol_id))
        for name in PLAN.configurations:
            for repeat in range(PLAN.repeats):
                rows = table[(table["configuration"] == name) & (table["repeat"] == repeat)]
                expected = _expected_results(session, store, name, repeat)
                assert sorted(rows["case"]) == store.seeded.test_roles[repeat]
                assert sorted(rows["ece"]) == pytest.approx(sorted(_ece(session, expected)))
    assert "totalseg_ct" not in set(table["case"]) and "prospective_001" not in set(table["case"])


def test_summary_is_mean_and_sd_over_repeats_of_per_repeat_means(store: SeededStore) -> None:
    with get_store().session() as session:
        overall, per_structure = cohort_numbers.summary(session, cohort_numbers.CohortFilter(store.seeded.protocol_id))
        for name in ("Base", "DE+TS"):
            means = [np.mean(_ece(session, _expected_results(session, store, name, k))) for k in range(PLAN.repeats)]
            row = overall[overall["configuration_id"] == store.seeded.configurations[name]].iloc[0]
            assert row["ece_mean"] == pytest.approx(np.mean(means))
            assert row["ece_sd"] == pytest.approx(np.std(means, ddof=1))
            assert row["n_repeats"] == PLAN.repeats
            assert row["n_cases"] == len({c for k in range(PLAN.repeats) for c in store.seeded.test_roles[k]})
            spleen = [np.mean([session.scalar(select(StructureResult.dsc).where(
                StructureResult.result_id == r.id, StructureResult.structure == "spleen"))
                for r in _expected_results(session, store, name, k)]) for k in range(PLAN.repeats)]
            structure = per_structure[(per_structure["configuration_id"] == store.seeded.configurations[name])
                                      & (per_structure["structure"] == "spleen")].iloc[0]
            assert structure["dsc_mean"] == pytest.approx(np.mean(spleen))


def test_filters_narrow_repeats_configurations_and_dates(store: SeededStore) -> None:
    protocol_id = store.seeded.protocol_id
    with get_store().session() as session:
        one = cohort_numbers.case_table(session, cohort_numbers.CohortFilter(protocol_id, repeats=(1,),
                                                             configurations=(store.seeded.configurations["DE"],)))
        assert set(one["repeat"]) == {1} and set(one["configuration"]) == {"DE"}
        assert sorted(one["case"]) == store.seeded.test_roles[1]
        # the seed processes case i on day i % 3 from 2026-11-02: phantoms 9000 and 9003 on the first day
        first_day = cohort_numbers.case_table(session, cohort_numbers.CohortFilter(protocol_id, start=date(2026, 11, 2),
                                                                   end=date(2026, 11, 2)))
        assert set(first_day["case"]) <= {"phantom_9000", "phantom_9003"} and not first_day.empty
        later = cohort_numbers.CohortFilter(protocol_id, start=date(2027, 1, 1))
        assert cohort_numbers.case_table(session, later).empty


def test_pooled_reliability_bins_are_the_sums_over_test_cases_and_repeats(store: SeededStore) -> None:
    with get_store().session() as session:
        pooled = cohort_numbers.reliability(session, cohort_numbers.CohortFilter(store.seeded.protocol_id))
        name = "Base+TS"
        ids = [r.id for k in range(PLAN.repeats) for r in _expected_results(session, store, name, k)]
        bins = session.execute(select(ReliabilityBin.bin, ReliabilityBin.count, ReliabilityBin.sum_correct)
                               .where(ReliabilityBin.result_id.in_(ids))).all()
    counts = np.zeros(15, np.int64)
    correct = np.zeros(15)
    for index, count, right in bins:
        counts[index] += count
        correct[index] += right
    result = pooled[store.seeded.configurations[name]]
    np.testing.assert_array_equal(result.count[0], counts)
    np.testing.assert_allclose(result.sum_correct[0], correct)
    assert 0 < result.ece() < 1


def test_curves_are_mean_and_sd_over_repeats(store: SeededStore) -> None:
    with get_store().session() as session:
        frame = cohort_numbers.curves(session, cohort_numbers.CohortFilter(store.seeded.protocol_id))
        per_repeat = [np.mean([session.scalar(select(CurvePoint.ueo).where(
            CurvePoint.result_id == r.id, CurvePoint.budget_index == 20)) for r in _expected_results(
            session, store, "DE", k)]) for k in range(PLAN.repeats)]
    row = frame[(frame["configuration_id"] == store.seeded.configurations["DE"]) & (frame["budget_index"] == 20)]
    assert row["budget"].iloc[0] == pytest.approx(0.02)
    assert row["ueo_mean"].iloc[0] == pytest.approx(np.mean(per_repeat))
    assert row["ueo_sd"].iloc[0] == pytest.approx(np.std(per_repeat, ddof=1))
    assert len(frame) == 51 * len(PLAN.configurations)


def test_paired_comparison_uses_each_cases_mean_over_its_repeats(store: SeededStore) -> None:
    configurations = store.seeded.configurations
    with get_store().session() as session:
        table = cohort_numbers.case_table(session, cohort_numbers.CohortFilter(store.seeded.protocol_id))
        result, values = cohort.paired(table, "ece", configurations["Base"], configurations["Base+TS"])
    means = table.groupby(["case", "configuration"])["ece"].mean().unstack()
    assert list(values["case"]) == sorted(means.index)
    expected = paired_comparison(means["Base"].to_numpy(), means["Base+TS"].to_numpy())
    assert result == expected
    assert result.mean_difference > 0  # the seed's TS halves the ECE


def test_patient_results_show_the_deployed_fit_and_the_twins_probabilities(store: SeededStore) -> None:
    with get_store().session() as session:
        case = patient.find_case(session, "phantom_9000")
        assert case is not None and case.shape_zyx == PLAN.map_shape and case.ct_path and case.reference_path
        shown = {r.configuration: r for r in patient.shown_results(session, case)}
        assert list(shown) == list(PLAN.configurations)
        fit = session.get(TemperatureFit, session.get(CaseResult, shown["DE+TS"].result_id).temperature_fit_id)
        assert fit.protocol_id is None and fit.repeat is None
        assert shown["DE+TS"].probabilities_path == shown["DE"].probabilities_path is not None
        assert shown["DE+TS"].temperature and shown["DE"].temperature is None
        assert set(shown["DE"].maps) == {"entropy", "prediction", "budget_mask", "error"}
        assert shown["DE"].mask_budget == PLAN.budget
        metrics = patient.result_metrics(session, shown["DE"].result_id)
        assert [s[0] for s in metrics.structures] == ["background", "lymph_nodes", "spleen"]
        assert metrics.flagged_ml[0.02] > 0
        prospective = patient.find_case(session, "prospective_001")
        assert prospective is not None and prospective.reference_path is None
        assert patient.find_case(session, "nobody") is None


def test_overview_and_runs(store: SeededStore) -> None:
    with get_store().session() as session:
        totals = overview.totals(session)
        rows = overview.case_rows(session)
        run_rows = runs.run_rows(session)
        failures = runs.failure_rows(session, run_rows[0]["run"])
        assert runs.failure_rows(session, run_rows[-1]["run"]) == []
        workers = runs.worker_rows(session)
    assert totals.cases == len(rows) == PLAN.patients + 2 and totals.protocols == 1
    assert totals.latest_run is not None and totals.latest_run[1] == "failed"
    assert {r["case"]: r["reference"] for r in rows}["prospective_001"] == "no"
    assert [r["status"] for r in run_rows] == ["failed", "succeeded", "succeeded"]
    assert run_rows[2]["duration"] == "0:42:00" and run_rows[0]["failed"] == 1
    assert failures == [{"run": run_rows[0]["run"], "case": "phantom_broken", "stage": "load",
                         "reason": "reference shape (40, 64, 64) differs from the CT's (48, 64, 64)",
                         "source": "/data/cohort/images/phantom_broken.nii.gz", "worker": "tcp://10.0.0.8:40123",
                         "at": "2026-11-03 22:02:00"}]
    cases = totals.cases  # every seeded case was processed by the first run, alternately on two workers
    assert workers == [
        {"run": run_rows[0]["run"], "worker": "tcp://10.0.0.8:40123", "processed": 0, "failed": 1},
        {"run": run_rows[2]["run"], "worker": "tcp://10.0.0.7:40123", "processed": (cases + 1) // 2, "failed": 0},
        {"run": run_rows[2]["run"], "worker": "tcp://10.0.0.8:40123", "processed": cases // 2, "failed": 0}]


def test_page_caches_last_until_the_batch_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'qa.sqlite3'}"
    command.upgrade(alembic_config(url), "head")
    store = open_store(url, tmp_path / "artifacts")
    calls: list[int] = []
    with store.session() as session:
        assert store.cached(session, "key", lambda: calls.append(1) or len(calls)) == 1
        assert store.cached(session, "key", lambda: calls.append(1) or len(calls)) == 1
        model_set = ModelSet(identity="x", name="m", source="s", nnunet_configuration="3d", labels=["bg", "fg"])
        session.add(model_set)
        session.flush()
        session.add(Protocol(model_set_id=model_set.id, cohort="c", seed=0, repeats=2, test_fraction=0.5))
        session.flush()
        assert store.cached(session, "key", lambda: calls.append(1) or len(calls)) == 2, "a new protocol"
        session.rollback()


def test_the_runs_page_names_the_metric_settings_a_run_used() -> None:
    assert runs.settings_text({"settings": asdict(MetricSettings())}) == "spec defaults"
    changed = asdict(MetricSettings(roi_radius_mm=10.0, ece_mode="classwise"))
    assert runs.settings_text({"settings": changed}) == "ece_mode=classwise, roi_radius_mm=10.0"
    assert runs.settings_text({"budget": 0.02}) == "" and runs.settings_text(None) == ""
