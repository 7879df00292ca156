"""Migration 0014 (temperature granularity) on SQLite and PostgreSQL: stored rows become ``configuration``; the
downgrade removes the class-wise and per-scanner configurations with everything hanging off them, nothing else."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData

from pipeline.store.database import alembic_config, make_engine
from tests.store.test_migrations import METRIC_COLUMNS, NOW, RESULTS_0002, _results_at, _rows

CLASS_CONFIGURATION = {"id": 2, "model_set_id": 1, "name": "Base+TS/class", "position": 12, "members": ["fold_0"],
                       "views": [[]], "temperature_scaling": True, "temperature_granularity": "class"}
CLASS_FIT = {"id": 1, "configuration_id": 2, "protocol_id": None, "repeat": None, "temperature": 1.25,
             "nll_before": 0.5, "nll_after": 0.25, "voxels": 800, "cases": ["case-0"], "role": "deployed",
             "temperature_mode": "after_pooling", "granularity": "class", "temperatures": [1.0, 1.5, 0.75],
             "created_at": NOW}


def _class_result() -> dict[str, Any]:
    row = {k: v for k, v in RESULTS_0002[0].items() if k not in METRIC_COLUMNS}
    return row | {"id": 3, "configuration_id": 2, "temperature_fit_id": 1, "temperature": None}


def test_0014_marks_stored_rows_configuration_and_its_downgrade_removes_only_the_finer_granularities(
    empty_store_url: str,
) -> None:
    config = alembic_config(empty_store_url)
    assert ScriptDirectory.from_config(config).get_revision("0014").down_revision == "0013"
    engine, _ = _results_at(empty_store_url, "0012")
    engine.dispose()
    kept = {t: _rows(empty_store_url, t) for t in ("case_results", "structure_results", "curve_points", "artifacts",
                                                    "metric_values")}
    command.upgrade(config, "0014")
    assert [c["temperature_granularity"] for c in _rows(empty_store_url, "configurations")] == ["configuration"]
    engine = make_engine(empty_store_url)
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.begin() as connection:
        connection.execute(metadata.tables["configurations"].insert(), [CLASS_CONFIGURATION])
        connection.execute(metadata.tables["temperature_fits"].insert(), [CLASS_FIT])
        connection.execute(metadata.tables["case_results"].insert(), [_class_result()])
        connection.execute(metadata.tables["metric_values"].insert(), [
            {"result_id": 3, "class_index": -1, "name": "ece", "value": 0.03}])
        connection.execute(metadata.tables["structure_results"].insert(), [
            {"result_id": 3, "class_index": 1, "structure": "spleen", "dsc": 0.5, "predicted_ml": 2.0,
             "reference_ml": 2.5}])
        connection.execute(metadata.tables["artifacts"].insert(), [
            {"id": 2, "image_id": 1, "processing_id": 1, "result_id": 3, "configuration_id": 2, "kind": "entropy",
             "path": "case-1/class/entropy.zarr", "dtype": "float32", "shape": [48, 64, 64]}])
    engine.dispose()
    fits = _rows(empty_store_url, "temperature_fits")
    assert fits[0]["temperatures"] == [1.0, 1.5, 0.75] and fits[0]["granularity"] == "class"

    command.downgrade(config, "0012")
    assert [c["name"] for c in _rows(empty_store_url, "configurations")] == ["Base"]
    assert _rows(empty_store_url, "temperature_fits") == []
    for table, rows in kept.items():
        assert _rows(empty_store_url, table) == rows, table
    assert "temperature_granularity" not in _rows(empty_store_url, "configurations")[0]
    command.upgrade(config, "head")
