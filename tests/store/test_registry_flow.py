"""The registry is the one place a metric is declared: a metric registered there (and nowhere else) is stored by
the batch and the protocol stage, and reaches the cohort query's frames, the cohort table's columns and its CSV
(SQLite and PostgreSQL, real tiny nnU-Net models)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pipeline.batch.cases import discover
from pipeline.batch.protocol_stage import ProtocolOptions, run_protocol
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.inference.model_set import load_model_set_file
from pipeline.metrics import registry
from pipeline.metrics.cohort import summarise_repeats
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import make_engine, session_factory
from pipeline.store.schema import WHOLE_CASE, CaseResult, MetricValue, ModelSet, Protocol
from qa_dashboard import tables
from qa_dashboard.queries import cohort

EXTRA = registry.Metric(
    "error_count", "Errors (ROI)", "voxels", (0.0, None), "lower", True, "case",
    "Number of ROI voxels whose predicted class differs from the reference.", "docs/metrics.md#ece-roi", 0, False,
    lambda m: m.error_voxels)


def test_a_metric_registered_only_in_the_registry_flows_to_store_queries_table_and_csv(
    store_url: str, tmp_path: Path, phantom_folder: Path, smoke_run: tuple[Path, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "METRICS", (*registry.METRICS, EXTRA))
    artifacts = tmp_path / "artifacts"
    model_set = load_model_set_file(smoke_run[0] / "manifest.json")
    run_batch(BatchOptions(cases=tuple(discover(phantom_folder, "phantom")[:2]), model_set=model_set,
                           models_source="smoke", database_url=store_url, artifacts=artifacts, tta=False,
                           progress=False))
    engine = make_engine(store_url)
    with session_factory(engine).begin() as session:
        row = session.scalars(select(ModelSet)).one()
        run_protocol(session, ArtifactStore(artifacts), row, ProtocolOptions(cohort="phantom", repeats=2))
    with session_factory(engine)() as session:
        stored = dict(session.execute(
            select(CaseResult.id, MetricValue.value).join(MetricValue, MetricValue.result_id == CaseResult.id)
            .where(MetricValue.name == EXTRA.name, MetricValue.class_index == WHOLE_CASE)).all())
        errors = dict(session.execute(select(CaseResult.id, CaseResult.error_voxels)).all())
        assert stored == errors and len(stored) == 3 * 2 + 3 * 2 * 1 + 3 * 2  # batch, repeat tests, deployed
        protocol = session.scalars(select(Protocol)).one()
        chosen = cohort.CohortFilter(protocol.id)
        table = cohort.case_table(session, chosen)
        overall, per_structure = cohort.summary(session, chosen)
        names = dict(cohort.configurations(session, row.id))
    engine.dispose()
    assert table[EXTRA.name].notna().all() and set(table[EXTRA.name]) <= {float(v) for v in errors.values()}
    expected = summarise_repeats(table, [EXTRA.name], by=("configuration_id",)).set_index("configuration_id")
    means = overall.set_index("configuration_id")[f"{EXTRA.name}_mean"]
    assert means.to_dict() == pytest.approx(expected[f"{EXTRA.name}_mean"].to_dict())
    columns = {c["field"]: c for c in tables.column_defs()}
    assert columns[EXTRA.name]["headerName"] == "Errors (ROI)" and "toFixed(0)" in str(columns[EXTRA.name])
    rows = tables.cohort_rows(overall, per_structure, names, [tables.ALL_FOREGROUND])
    assert {r["configuration"]: r[EXTRA.name] for r in rows} == pytest.approx(
        {names[i]: v for i, v in means.to_dict().items()})
    parsed = list(csv.DictReader(io.StringIO(tables.cohort_csv(rows))))
    assert {r["configuration"]: float(r[f"{EXTRA.name}_mean"]) for r in parsed} == pytest.approx(
        {names[i]: v for i, v in means.to_dict().items()}, rel=1e-5)
