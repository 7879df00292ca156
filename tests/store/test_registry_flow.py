"""The registry is the one place a metric is declared: a metric registered there (and nowhere else), case-level or
structure-level, is stored by the batch and the protocol stage, and reaches the cohort query's frames, the cohort
table's columns (a structure-level one on the structure rows) and its CSV (SQLite and PostgreSQL, real tiny nnU-Net
models)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select

from pipeline.batch.cases import discover
from pipeline.batch.protocol_stage import ProtocolOptions, run_protocol
from pipeline.batch.runner import BatchOptions, run_batch
from pipeline.inference.model_set import load_model_set_file
from pipeline.metrics import registry
from pipeline.metrics.cohort import summarise_repeats
from pipeline.store import cohort_numbers
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import make_engine, session_factory
from pipeline.store.schema import WHOLE_CASE, CaseResult, MetricValue, ModelSet, Protocol, StructureResult
from qa_dashboard import tables

EXTRA = registry.Metric(
    "error_count", "Errors (ROI)", "voxels", (0.0, None), "lower", True, "case",
    "Number of ROI voxels whose predicted class differs from the reference.", "docs/metrics.md#ece-roi", 0, False,
    lambda m: m.error_voxels)
EXTRA_STRUCTURE = registry.Metric(
    "dsc_again", "DSC again", "", (0.0, 1.0), "higher", True, "structure",
    "The DSC per structure, registered a second time.", "docs/metrics.md#dsc-per-structure", 2, False,
    lambda m: m.dsc)


def test_metrics_registered_only_in_the_registry_flow_to_store_queries_table_and_csv(
    store_url: str, tmp_path: Path, phantom_folder: Path, smoke_run: tuple[Path, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "METRICS", (*registry.METRICS, EXTRA, EXTRA_STRUCTURE))
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
        chosen = cohort_numbers.CohortFilter(protocol.id)
        table = cohort_numbers.case_table(session, chosen)
        overall, per_structure = cohort_numbers.summary(session, chosen)
        names = dict(cohort_numbers.configurations(session, row.id))
        again = {(r, c): v for r, c, v in session.execute(
            select(MetricValue.result_id, MetricValue.class_index, MetricValue.value)
            .where(MetricValue.name == EXTRA_STRUCTURE.name))}
        dsc = {(r, c): v for r, c, v in session.execute(select(
            StructureResult.result_id, StructureResult.class_index, StructureResult.dsc)
            .where(StructureResult.class_index > 0))}
        values = cohort_numbers.case_values(session, chosen)
    engine.dispose()
    _structure_metrics_reach_the_structure_rows(again, dsc, values, per_structure, names)
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


def _structure_metrics_reach_the_structure_rows(again: dict[tuple[int, int], float | None],
                                                 dsc: dict[tuple[int, int], float | None], values: Any,
                                                 per_structure: Any, names: dict[int, str]) -> None:
    """The structure-level metric is stored once per (result, foreground class), with the accessor's values; every
    structure-level metric kept in ``metric_values`` has per-structure means equal to the per-case values' and fills
    its column on the structure rows of the table and the CSV."""
    assert again == pytest.approx(dsc) and len(again) == len(dsc) > 0
    kept = [m for m in registry.structure_metrics() if m.table == "metric_values"]
    assert EXTRA_STRUCTURE in kept
    means = per_structure[per_structure["class_index"] > 0].set_index(["configuration_id", "structure"])
    rows = tables.cohort_rows(pd.DataFrame(), per_structure, names, ["lymph_nodes", "spleen"])
    parsed = list(csv.DictReader(io.StringIO(tables.cohort_csv(rows))))
    assert len(rows) == len(parsed) == 2 * len(names)
    for metric in kept:
        own = values[values["metric"] == metric.name].rename(columns={"value": metric.name})
        assert set(own["structure"]) == {"lymph_nodes", "spleen"} and own[metric.name].notna().any(), metric.name
        expected = summarise_repeats(own, [metric.name], by=("configuration_id", "structure"))
        expected = expected.set_index(["configuration_id", "structure"])[f"{metric.name}_mean"]
        assert means[f"{metric.name}_mean"].to_dict() == pytest.approx(expected.to_dict(), nan_ok=True)
        shown = {(r["configuration"], r["structure"]): r[metric.name] for r in rows}
        assert shown == pytest.approx({(names[c], s): v for (c, s), v in expected.items()}, nan_ok=True)
        assert {(r["configuration"], r["structure"]): float(r[f"{metric.name}_mean"] or "nan") for r in parsed} == \
            pytest.approx({(names[c], s): v for (c, s), v in expected.items()}, rel=1e-5, nan_ok=True)
