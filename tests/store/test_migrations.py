"""Alembic migrations on SQLite and PostgreSQL: empty → head → empty, data kept through upgrades, head checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, inspect, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from pipeline.metrics.levels import Levels
from pipeline.store.database import (
    StoreNotReadyError,
    alembic_config,
    check_at_head,
    current_revision,
    make_engine,
    session_factory,
)
from pipeline.store.review_schema import AuditEntry, ReviewItem, User
from pipeline.store.schema import Base, Configuration, Image, ModelSet, Patient, Run
from pipeline.store.trend_schema import TrendLevel


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    names = set(inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    return names


def test_upgrade_to_head_creates_the_schema_and_downgrade_removes_it(empty_store_url: str) -> None:
    config = alembic_config(empty_store_url)
    command.upgrade(config, "head")
    assert _tables(empty_store_url) == set(Base.metadata.tables)
    engine = make_engine(empty_store_url)
    check_at_head(engine)
    engine.dispose()
    command.downgrade(config, "base")
    assert _tables(empty_store_url) == set()
    command.upgrade(config, "head")
    assert _tables(empty_store_url) == set(Base.metadata.tables)


def test_models_and_migrations_agree(store_url: str) -> None:
    """``alembic check``: autogenerate finds nothing to add, so the ORM and the migrations describe one schema."""
    command.check(alembic_config(store_url))


NOW = datetime(2026, 11, 29, tzinfo=UTC)
# Rows valid at the FIRST revision (0001), inserted through the tables reflected at that revision, so this seed
# stays valid whatever later migrations change.
SEED_0001: dict[str, dict[str, Any]] = {
    "patients": {"id": 1, "pseudonym": "P-001", "mrn_hash": "ab" * 32, "created_at": NOW},
    "images": {"id": 1, "patient_id": 1, "name": "case-1", "cohort": "phantom", "source_kind": "image",
               "source_path": "/data/case-1.nii.gz", "size": [64, 64, 48], "spacing": [7.0, 7.0, 12.0],
               "origin": [0.0, 0.0, 0.0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1], "content_hash": "c" * 64,
               "created_at": NOW, "updated_at": NOW},
    "model_sets": {"id": 1, "identity": "0123456789abcdef", "name": "demo", "source": "models/demo/manifest.json",
                   "nnunet_configuration": "3d_tiny", "labels": ["background", "lymph_nodes", "spleen"],
                   "created_at": NOW},
    "configurations": {"id": 1, "model_set_id": 1, "name": "Base", "position": 0, "members": ["fold_0"],
                       "views": [[]], "temperature_scaling": False},
    "runs": {"id": 1, "kind": "run", "status": "succeeded", "started_at": NOW, "host": "h", "pid": 1,
             "code_version": "0.1.0+x", "cases_total": 1, "cases_done": 1, "cases_skipped": 0, "cases_failed": 0,
             "options": {}},
}


def _seed_first_revision(url: str) -> None:
    engine = make_engine(url)
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.begin() as connection:
        for table, row in SEED_0001.items():
            connection.execute(metadata.tables[table].insert(), [row])
    engine.dispose()


def test_every_migration_step_keeps_stored_rows(empty_store_url: str) -> None:
    """Rows written at the first revision survive every later upgrade up to head."""
    config = alembic_config(empty_store_url)
    revisions = [r.revision for r in reversed(list(ScriptDirectory.from_config(config).walk_revisions()))]
    assert revisions[0] == "0001"
    command.upgrade(config, revisions[0])
    _seed_first_revision(empty_store_url)
    for revision in revisions[1:]:
        command.upgrade(config, revision)
    engine = make_engine(empty_store_url)
    with session_factory(engine)() as session:
        image = session.scalars(select(Image)).one()
        assert image.spacing == [7.0, 7.0, 12.0] and image.patient.pseudonym == "P-001"
        counts = {table.__name__: len(session.scalars(select(table)).all())
                  for table in (Patient, Image, ModelSet, Configuration, Run)}
        assert session.scalars(select(Configuration)).one().name == "Base"
    with session_factory(engine).begin() as session:  # the review tables (0002) work with the rows of 0001
        user = User(username="rita", password_hash="scrypt:x", role="reviewer")
        session.add(user)
        session.flush()
        session.add_all([ReviewItem(image_id=1, configuration_id=1, class_index=1, structure="lymph_nodes",
                                    state="in_review", reviewer_id=user.id),
                         AuditEntry(actor_id=user.id, actor="rita", action="review.start_review", outcome="ok",
                                    object_type="review_item", object_id="1/1/1", after={"state": "in_review"})])
    with session_factory(engine)() as session:
        assert session.scalars(select(ReviewItem)).one().version == 1
    engine.dispose()
    assert counts == {"Patient": 1, "Image": 1, "ModelSet": 1, "Configuration": 1, "Run": 1}
    command.downgrade(config, revisions[0])  # and a downgrade back to the first revision keeps its rows
    assert {"users", "review_items", "audit_log"}.isdisjoint(_tables(empty_store_url))
    assert [row["name"] for row in _rows(empty_store_url, "images")] == ["case-1"]


METRIC_COLUMNS = ("dsc_mean_fg", "ece", "brier", "nll", "ueo_auc", "fp_tp_auc", "fn_tn_auc", "mean_entropy_roi")
# Two results at 0002: one with a reference (its FN-TN AUC NaN, stored NULL) and one without (reference metrics NULL)
RESULTS_0002: list[dict[str, Any]] = [
    {"id": 1, "processing_id": 1, "image_id": 1, "configuration_id": 1, "has_reference": True, "roi_voxels": 800,
     "error_voxels": 40, "voxel_ml": 0.5, "seconds": 0.25, "dsc_mean_fg": 0.8125, "ece": 0.0625, "brier": 0.125,
     "nll": 0.375, "ueo_auc": 0.1875, "fp_tp_auc": 0.75, "fn_tn_auc": None, "mean_entropy_roi": 0.09375},
    {"id": 2, "processing_id": 1, "image_id": 1, "configuration_id": 1, "has_reference": False, "roi_voxels": 640,
     "error_voxels": None, "voxel_ml": 0.5, "seconds": 0.5, "mean_entropy_roi": 0.15625,
     **dict.fromkeys(METRIC_COLUMNS[:-1])},
]
CHILDREN_0002: dict[str, list[dict[str, Any]]] = {
    "processings": [{"id": 1, "image_id": 1, "model_set_id": 1, "run_id": 1, "input_hash": "d" * 64,
                     "code_version": "0.1.0+x", "forward_passes": 1, "seconds_inference": 1.0,
                     "seconds_metrics": 0.5, "seconds_storage": 0.25, "completed_at": NOW}],
    "case_results": RESULTS_0002,
    "structure_results": [{"result_id": r, "class_index": 1, "structure": "spleen", "dsc": 0.5, "predicted_ml": 2.0,
                           "reference_ml": 2.5} for r in (1, 2)],
    "curve_points": [{"result_id": r, "budget_index": 0, "budget": 0.0, "ueo": 0.0, "recall": 0.0,
                      "precision": None, "flagged_ml": 0.0} for r in (1, 2)],
    "reliability_bins": [{"result_id": 1, "group": 0, "bin": 3, "count": 7, "sum_confidence": 1.5,
                          "sum_correct": 1.0}],
    "artifacts": [{"id": 1, "image_id": 1, "processing_id": 1, "result_id": 2, "configuration_id": 1,
                   "kind": "entropy", "path": "case-1/entropy.zarr", "dtype": "float16", "shape": [48, 64, 64]}],
}


def _rows(url: str, table: str) -> list[dict[str, Any]]:
    """Every row of ``table`` (reflected as it is now), as dicts in primary-key order."""
    engine = make_engine(url)
    metadata = MetaData()
    metadata.reflect(engine, only=[table])
    reflected = metadata.tables[table]
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(
            select(reflected).order_by(*reflected.primary_key.columns))]
    engine.dispose()
    return rows


def test_metric_columns_move_to_metric_values_and_back_with_every_row(empty_store_url: str) -> None:
    """0003 moves each metric column of case_results into metric_values rows (NULL kept) and drops the columns;
    its downgrade restores them from the rows. No child row of case_results is lost either way (on SQLite the
    table is recreated, which would cascade to them with foreign keys on)."""
    config = alembic_config(empty_store_url)
    command.upgrade(config, "0002")
    _seed_first_revision(empty_store_url)
    engine = make_engine(empty_store_url)
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.begin() as connection:
        for table, rows in CHILDREN_0002.items():
            connection.execute(metadata.tables[table].insert(), rows)
    engine.dispose()
    children = {t: _rows(empty_store_url, t) for t in CHILDREN_0002 if t != "case_results"}
    expected = sorted((r["id"], -1, name, r[name]) for r in RESULTS_0002 for name in METRIC_COLUMNS)

    command.upgrade(config, "0003")
    values = sorted((v["result_id"], v["class_index"], v["name"], v["value"])
                    for v in _rows(empty_store_url, "metric_values"))
    assert values == expected
    results = _rows(empty_store_url, "case_results")
    assert not set(METRIC_COLUMNS) & set(results[0])
    assert [(r["id"], r["roi_voxels"], r["error_voxels"]) for r in results] == [(1, 800, 40), (2, 640, None)]
    assert {t: _rows(empty_store_url, t) for t in children} == children

    command.downgrade(config, "0002")
    assert "metric_values" not in _tables(empty_store_url)
    restored = _rows(empty_store_url, "case_results")
    assert [{k: r[k] for k in RESULTS_0002[0]} for r in restored] == RESULTS_0002
    engine = make_engine(empty_store_url)
    nullable = {c["name"]: c["nullable"] for c in inspect(engine).get_columns("case_results")}
    engine.dispose()
    assert nullable["mean_entropy_roi"] is False and nullable["ece"] is True
    assert {t: _rows(empty_store_url, t) for t in children} == children

    command.upgrade(config, "head")
    assert sorted((v["result_id"], v["class_index"], v["name"], v["value"])
                  for v in _rows(empty_store_url, "metric_values")) == expected


def test_a_store_below_head_is_refused_naming_the_command(empty_store_url: str) -> None:
    engine = make_engine(empty_store_url)
    assert current_revision(engine) is None
    with pytest.raises(StoreNotReadyError, match=r"is empty.*alembic upgrade head"):
        check_at_head(engine)
    engine.dispose()


def test_an_unreachable_store_is_refused_with_its_url() -> None:
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(StoreNotReadyError, match="cannot open the store postgresql"):
        check_at_head(engine)
    engine.dispose()


def test_0007_adds_the_empty_prediction_flags_and_ood_columns_and_drops_them_keeping_every_row(
    empty_store_url: str,
) -> None:
    """Results stored before 0007 read as not empty and not yet scored; a downgrade keeps every row."""
    config = alembic_config(empty_store_url)
    command.upgrade(config, "0006")
    _seed_first_revision(empty_store_url)
    engine = make_engine(empty_store_url)
    metadata = MetaData()
    metadata.reflect(engine)
    results = [{k: v for k, v in r.items() if k not in METRIC_COLUMNS} for r in RESULTS_0002]
    with engine.begin() as connection:
        connection.execute(metadata.tables["processings"].insert(), CHILDREN_0002["processings"])
        connection.execute(metadata.tables["case_results"].insert(), results)
        connection.execute(metadata.tables["structure_results"].insert(), CHILDREN_0002["structure_results"])
    engine.dispose()
    command.upgrade(config, "0007")
    upgraded = _rows(empty_store_url, "case_results")
    assert [{k: r[k] for k in results[0]} for r in upgraded] == results
    assert all(not r["empty_prediction"] and r["ood_entropy"] is None and r["ood_flag"] is None for r in upgraded)
    assert all(not r["empty_prediction"] for r in _rows(empty_store_url, "structure_results"))
    command.downgrade(config, "0006")
    downgraded = _rows(empty_store_url, "case_results")
    assert [{k: r[k] for k in results[0]} for r in downgraded] == results
    assert not {"empty_prediction", "ood_entropy", "ood_flag"} & set(downgraded[0])
    assert _rows(empty_store_url, "structure_results") == CHILDREN_0002["structure_results"]


def test_reference_history_migrates_up_and_down_keeping_the_images(empty_store_url: str) -> None:
    """0008 adds ``reference_attachments`` beside the rows of 0001; its downgrade drops only the history."""
    config = alembic_config(empty_store_url)
    command.upgrade(config, "0001")
    _seed_first_revision(empty_store_url)
    command.upgrade(config, "0008")
    engine = make_engine(empty_store_url)
    metadata = MetaData()
    metadata.reflect(engine, only=["reference_attachments"])
    attachment = {"id": 1, "image_id": 1, "kind": "final_clinical", "source": "/tps/RS.dcm",
                  "source_format": "rtstruct", "reference_hash": "e" * 64, "actor": "cli:physicist",
                  "attached_at": NOW, "superseded_at": None, "results": 6,
                  "replaced": {"reference_hash": None, "results": []}}
    with engine.begin() as connection:
        connection.execute(metadata.tables["reference_attachments"].insert(), [attachment])
    engine.dispose()
    assert _rows(empty_store_url, "reference_attachments")[0]["replaced"] == attachment["replaced"]
    engine = make_engine(empty_store_url)
    with pytest.raises(IntegrityError, match="ck_reference_attachments_kind"), engine.begin() as connection:
        connection.execute(metadata.tables["reference_attachments"].insert(), [attachment | {"id": 2, "kind": "x"}])
    engine.dispose()
    command.downgrade(config, "0007")
    assert "reference_attachments" not in _tables(empty_store_url)
    assert [r["name"] for r in _rows(empty_store_url, "images")] == ["case-1"]
    command.upgrade(config, "head")
    assert _rows(empty_store_url, "reference_attachments") == []


RITA = {"id": 1, "username": "rita", "password_hash": "x", "role": "reviewer", "active": True, "created_at": NOW}


def _results_at(url: str, revision: str) -> tuple[Engine, MetaData]:
    """The store at ``revision`` holding the first revision's rows and the results of :data:`CHILDREN_0002` (metric
    columns left out: they live in ``metric_values`` from 0003); its engine and reflected tables."""
    command.upgrade(alembic_config(url), revision)
    _seed_first_revision(url)
    engine = make_engine(url)
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.begin() as connection:
        for table, rows in CHILDREN_0002.items():
            connection.execute(metadata.tables[table].insert(), [{k: v for k, v in r.items() if k not in METRIC_COLUMNS}
                                                                 for r in rows])
    return engine, metadata


def test_0009_adds_review_time_and_stored_regions_and_its_downgrade_keeps_everything_else(
    empty_store_url: str,
) -> None:
    """0009 creates ``result_regions`` and ``review_time`` beside the stored rows; its downgrade drops only them (the
    regions can be recomputed from the maps; the measured times go with the tables)."""
    config = alembic_config(empty_store_url)
    below = ScriptDirectory.from_config(config).get_revision("0009").down_revision
    engine, metadata = _results_at(empty_store_url, "0009")
    with engine.begin() as connection:
        connection.execute(metadata.tables["users"].insert(), [RITA])
        connection.execute(metadata.tables["result_regions"].insert(), [{
            "result_id": 1, "budget": 0.02, "connectivity": 26, "structure_search_mm": 30.0,
            "regions": [[1, 2, 40, 0.5, [3, 5], [4, 10, 12], 0.4, 0.9, 0.2]]}])
        connection.execute(metadata.tables["review_time"].insert(), [{
            "image_id": 1, "configuration_id": 1, "class_index": 2, "user_id": 1, "region_rank": None,
            "budget": None, "flagged_ml": 0.5, "opened_at": NOW, "last_active_at": NOW, "closed_at": NOW,
            "seconds": 42.0}])
    engine.dispose()
    assert _rows(empty_store_url, "result_regions")[0]["regions"][0][5] == [4, 10, 12]
    assert _rows(empty_store_url, "review_time")[0]["seconds"] == 42.0
    kept = {t: _rows(empty_store_url, t) for t in ("case_results", "artifacts", "users", "images")}

    command.downgrade(config, below)
    assert {"result_regions", "review_time"}.isdisjoint(_tables(empty_store_url))
    assert {t: _rows(empty_store_url, t) for t in kept} == kept
    command.upgrade(config, "head")
    assert _rows(empty_store_url, "result_regions") == [] and _rows(empty_store_url, "review_time") == []
    assert {t: [{k: row[k] for k in rows[0]} for row in _rows(empty_store_url, t)] for t, rows in kept.items()} == kept
    assert {row["acquisition"] for row in _rows(empty_store_url, "images")} == {None}, "0012: nothing known yet"


def test_0010_adds_trend_levels_and_its_downgrade_keeps_every_other_row(empty_store_url: str) -> None:
    """0010 creates the empty ``trend_levels``; levels stored there go with the downgrade (their history stays in the
    audit log), every other row stays, and the upgrade after it works again."""
    config = alembic_config(empty_store_url)
    command.upgrade(config, "0001")
    _seed_first_revision(empty_store_url)
    command.upgrade(config, "0010")
    before = {t: _rows(empty_store_url, t) for t in SEED_0001}
    assert _rows(empty_store_url, "trend_levels") == []
    engine = make_engine(empty_store_url)
    with session_factory(engine).begin() as session:
        session.add(TrendLevel(quantity="mean_entropy_roi", configuration="DE", structure="", tolerance_high=0.3,
                               action_high=0.4, updated_at=NOW))
    with session_factory(engine)() as session:
        assert session.scalars(select(TrendLevel)).one().levels() == Levels(None, 0.3, None, 0.4)
    engine.dispose()
    command.downgrade(config, str(ScriptDirectory.from_config(config).get_revision("0010").down_revision))
    assert "trend_levels" not in _tables(empty_store_url)
    assert {t: _rows(empty_store_url, t) for t in SEED_0001} == before
    command.upgrade(config, "0010")
    assert _rows(empty_store_url, "trend_levels") == []


def _region_row(result: int, budget: float) -> dict[str, Any]:
    return {"result_id": result, "budget": budget, "connectivity": 26, "structure_search_mm": 30.0,
            "regions": [[1, 2, 40, 0.5, [3, 5], [4, 10, 12], 0.4, 0.9, budget]]}


def test_0011_keys_stored_regions_by_budget_and_its_downgrade_keeps_the_run_budgets_row(
    empty_store_url: str,
) -> None:
    """0011 keeps the one row per result 0009 stored and lets a result hold regions at several budgets; the downgrade
    keeps per result the row at its stored mask's budget (else its smallest), every other table untouched."""
    config = alembic_config(empty_store_url)
    engine, metadata = _results_at(empty_store_url, "0010")
    with engine.begin() as connection:
        connection.execute(metadata.tables["artifacts"].insert(), [{
            "id": 2, "image_id": 1, "processing_id": 1, "result_id": 2, "configuration_id": 1, "kind": "budget_mask",
            "path": "case-1/budget_mask.zarr", "dtype": "uint8", "shape": [48, 64, 64], "budget": 0.03}])
        connection.execute(metadata.tables["result_regions"].insert(), [_region_row(1, 0.02), _region_row(2, 0.03)])
    engine.dispose()
    kept = {t: _rows(empty_store_url, t) for t in ("case_results", "artifacts", "images")}

    command.upgrade(config, "0011")
    assert _rows(empty_store_url, "result_regions") == [_region_row(1, 0.02), _region_row(2, 0.03)]
    engine = make_engine(empty_store_url)
    metadata = MetaData()
    metadata.reflect(engine, only=["result_regions"])
    with engine.begin() as connection:
        connection.execute(metadata.tables["result_regions"].insert(), [
            _region_row(1, 0.005), _region_row(1, 0.05), _region_row(2, 0.01), _region_row(2, 0.05)])
    with pytest.raises(IntegrityError), engine.begin() as connection:  # still one row per result and budget
        connection.execute(metadata.tables["result_regions"].insert(), [_region_row(1, 0.05)])
    engine.dispose()

    command.downgrade(config, "0010")
    # result 2's mask was stored at 3 %: that row; result 1 has no mask artifact: its smallest budget
    assert _rows(empty_store_url, "result_regions") == [_region_row(1, 0.005), _region_row(2, 0.03)]
    assert {t: _rows(empty_store_url, t) for t in kept} == kept
    command.upgrade(config, "head")
    assert [(r["budget"], r["merge_distance_mm"], r["min_region_ml"]) for r in _rows(empty_store_url, "result_regions")
            ] == [(0.005, 0.0, 0.0), (0.03, 0.0, 0.0)], "0012: stored regions were found without merging"


def test_0012_adds_acquisition_and_region_merge_settings_and_its_downgrade_drops_merged_regions(
    empty_store_url: str,
) -> None:
    """0012 gives images an empty ``acquisition`` and stored regions the merge settings 0, 0 (found unmerged); its
    downgrade drops the regions found with merging (the older code would read them as unmerged) and keeps the rest."""
    config = alembic_config(empty_store_url)
    engine, metadata = _results_at(empty_store_url, "0011")
    with engine.begin() as connection:
        connection.execute(metadata.tables["result_regions"].insert(), [_region_row(1, 0.02)])
    engine.dispose()
    command.upgrade(config, "0012")
    assert [(r["merge_distance_mm"], r["min_region_ml"]) for r in _rows(empty_store_url, "result_regions")] == [
        (0.0, 0.0)]
    engine = make_engine(empty_store_url)
    metadata = MetaData()
    metadata.reflect(engine, only=["result_regions", "images"])
    acquisition = {"manufacturer": "SIEMENS", "slice_thickness_mm": 2.5}
    with engine.begin() as connection:
        connection.execute(metadata.tables["result_regions"].insert(), [
            _region_row(1, 0.03) | {"merge_distance_mm": 10.0, "min_region_ml": 0.05}])
        connection.execute(metadata.tables["images"].update().values(acquisition=acquisition))
    engine.dispose()
    assert _rows(empty_store_url, "images")[0]["acquisition"] == acquisition
    command.downgrade(config, "0011")
    assert _rows(empty_store_url, "result_regions") == [_region_row(1, 0.02)]
    assert "acquisition" not in _rows(empty_store_url, "images")[0]


def test_0013_removes_the_study_date_from_stored_acquisitions_and_keeps_the_rest(empty_store_url: str) -> None:
    """The study date (an identifier of the visit) leaves every stored acquisition; a record with nothing else becomes
    NULL; other keys and the other images stay as they were; the downgrade changes nothing."""
    engine, metadata = _results_at(empty_store_url, "0012")
    images = metadata.tables["images"]
    with engine.begin() as connection:
        ids = list(connection.execute(select(images.c.id).order_by(images.c.id)).scalars())
        connection.execute(images.update().where(images.c.id == ids[0]).values(
            acquisition={"study_date": "2022-12-08", "manufacturer": "SIEMENS", "kvp": 120.0}))
        if len(ids) > 1:
            connection.execute(images.update().where(images.c.id == ids[1]).values(
                acquisition={"study_date": "2001-11-27"}))
    engine.dispose()
    before = {row["id"]: row for row in _rows(empty_store_url, "images")}
    command.upgrade(alembic_config(empty_store_url), "0013")
    after = {row["id"]: row for row in _rows(empty_store_url, "images")}
    assert after[ids[0]]["acquisition"] == {"manufacturer": "SIEMENS", "kvp": 120.0}
    if len(ids) > 1:
        assert after[ids[1]]["acquisition"] is None
    for image_id in ids[2:]:
        assert after[image_id] == before[image_id]
    assert {k: v for k, v in after[ids[0]].items() if k != "acquisition"} == {
        k: v for k, v in before[ids[0]].items() if k != "acquisition"}
    command.downgrade(alembic_config(empty_store_url), "0012")
    assert {row["id"]: row for row in _rows(empty_store_url, "images")} == after


def test_0015_adds_the_worker_of_processed_and_failed_cases_and_its_downgrade_keeps_every_row(
    empty_store_url: str,
) -> None:
    """0015 gives every stored processing and case failure the worker NULL (the batch's own process, where they
    ran); its downgrade drops the column and keeps the rows."""
    config = alembic_config(empty_store_url)
    engine, metadata = _results_at(empty_store_url, "0012")
    with engine.begin() as connection:
        connection.execute(metadata.tables["case_failures"].insert(), [{
            "id": 1, "run_id": 1, "case_name": "case-2", "source": "/data/case-2.nii.gz", "stage": "read",
            "reason": "not a readable CT", "at": NOW}])
    engine.dispose()
    processings = _rows(empty_store_url, "processings")
    command.upgrade(config, "0015")
    assert _rows(empty_store_url, "processings") == [row | {"worker": None} for row in processings]
    assert [row["worker"] for row in _rows(empty_store_url, "case_failures")] == [None]
    engine = make_engine(empty_store_url)
    metadata = MetaData()
    metadata.reflect(engine, only=["processings"])
    with engine.begin() as connection:
        connection.execute(metadata.tables["processings"].update().values(worker="tcp://10.0.0.7:40123"))
    engine.dispose()
    command.downgrade(config, "0012")
    assert _rows(empty_store_url, "processings") == processings
    assert [row["case_name"] for row in _rows(empty_store_url, "case_failures")] == ["case-2"]


def test_0017_adds_the_study_tables_with_their_triggers_and_its_downgrade_keeps_every_other_row(
    empty_store_url: str,
) -> None:
    """0017 creates the four empty study tables (immutable once a study is stored: only closing and a first opening
    are allowed); its downgrade drops them and their triggers, keeping every other row, and the upgrade works again."""
    config = alembic_config(empty_store_url)
    below = str(ScriptDirectory.from_config(config).get_revision("0017").down_revision)
    engine, metadata = _results_at(empty_store_url, "0017")
    with engine.begin() as connection:
        connection.execute(metadata.tables["users"].insert(), [RITA])
        connection.execute(metadata.tables["studies"].insert(), [{
            "id": 1, "name": "pilot", "configuration_id": 1, "budget_kind": "fraction", "budget_value": 0.02,
            "case_source": {"cases": ["case-1"]}, "design": "per-case", "washout_days": None,
            "endpoint": "minutes-per-case", "seed": 1, "allocation_method": "m", "allocation_digest": "d" * 64,
            "created_by_id": None, "created_by": "cli:x", "created_at": NOW}])
        connection.execute(metadata.tables["study_cases"].insert(), [{"study_id": 1, "image_id": 1}])
        connection.execute(metadata.tables["study_reviewers"].insert(), [{"study_id": 1, "user_id": 1}])
        connection.execute(metadata.tables["study_assignments"].insert(), [{
            "id": 1, "study_id": 1, "image_id": 1, "user_id": 1, "arm": "B", "period": 1, "position": 1}])
    studies = metadata.tables["studies"]
    with pytest.raises(DBAPIError, match="immutable"), engine.begin() as connection:
        connection.execute(studies.update().values(seed=2))
    with pytest.raises(IntegrityError, match="ck_studies_washout"), engine.begin() as connection:
        connection.execute(studies.insert(), [{**_rows(empty_store_url, "studies")[0], "id": 2, "name": "x",
                                               "design": "crossover"}])
    engine.dispose()
    kept = {t: _rows(empty_store_url, t) for t in ("case_results", "images", "users", "configurations")}
    command.downgrade(config, below)
    assert {"studies", "study_cases", "study_reviewers", "study_assignments"}.isdisjoint(_tables(empty_store_url))
    assert {t: _rows(empty_store_url, t) for t in kept} == kept
    command.upgrade(config, "head")
    assert _rows(empty_store_url, "studies") == []
