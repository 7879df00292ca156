"""Every consumer shows exactly the registry's metrics, with the registry's labels, formats and tooltips: the cohort
queries' frames, the cohort table and its CSV, the store's per-case rows, the slice browser's metrics and the
comparison page's metric choice (on a seeded store of each backend)."""

from __future__ import annotations

import csv
import io

import dash

from pipeline.metrics import registry
from pipeline.store import cohort_numbers
from pipeline.store.cohort_rows import deployed_case_rows, latest_protocol, protocol_case_rows
from qa_dashboard import tables, viewer
from qa_dashboard.queries import patient
from qa_dashboard.store import get_store
from tests.dashboard.conftest import PLAN, SeededStore
from tests.dashboard.test_app import _by_id, _page


def test_frames_carry_every_case_level_metric_of_the_registry(store: SeededStore) -> None:
    names = list(registry.names(registry.case_metrics()))
    with get_store().session() as session:
        chosen = cohort_numbers.CohortFilter(store.seeded.protocol_id)
        table = cohort_numbers.case_table(session, chosen)
        overall, _ = cohort_numbers.summary(session, chosen)
        protocol = latest_protocol(session)
        assert protocol is not None
        rows = protocol_case_rows(session, protocol)
        real = deployed_case_rows(session, "real")
        case = patient.find_case(session, "prospective_001")
        assert case is not None
        shown = patient.shown_results(session, case)[0]
        values = patient.result_metrics(session, shown.result_id).values
    assert list(table.columns) == ["repeat", "image_id", "case", "configuration_id", "configuration", "position",
                                   *names]
    assert [c for c in overall.columns if c.endswith("_mean")] == [f"{n}_mean" for n in names]
    assert list(rows.columns) == ["repeat", "case", "configuration", "position", *names]
    assert list(real.columns) == ["case", "configuration", "position", *names] and len(real) == len(PLAN.configurations)
    assert list(values) == names
    assert values["ece"] is None and values["mean_entropy_roi"] is not None, "no reference: only label-free values"
    assert rows[names].notna().all().all() and table[names].notna().all().all()


def test_the_cohort_table_and_csv_take_columns_labels_and_tooltips_from_the_registry(store: SeededStore) -> None:
    folding = {m.whole_case: m for m in registry.structure_metrics() if m.whole_case}  # its structure metric's column
    expected = [*(folding.get(m.name, m) for m in registry.case_metrics()),
                *(m for m in registry.structure_metrics() if not m.whole_case)]
    columns = {c["field"]: c for c in tables.column_defs()}
    assert list(columns)[2:-2] == [m.name for m in expected]
    for metric in expected:
        column = columns[metric.name]
        assert column["headerName"] == metric.label
        assert metric.definition in column["headerTooltip"] and metric.range_text() in column["headerTooltip"]
        assert column["tooltipComponentParams"]["href"] == "/docs/metrics#" + metric.anchor.partition("#")[2]
        assert f"toFixed({metric.digits})" in column["valueFormatter"]["function"]
    with get_store().session() as session:
        overall, per_structure = cohort_numbers.summary(session, cohort_numbers.CohortFilter(store.seeded.protocol_id))
        names = dict(cohort_numbers.configurations(session, store.seeded.model_set_id))
    rows = tables.cohort_rows(overall, per_structure, names, [tables.ALL_FOREGROUND, "spleen"])
    header = next(csv.reader(io.StringIO(tables.cohort_csv(rows))))
    stats = ("mean", "sd", "low", "high", "n", "mark")
    assert header == ["configuration", "structure", *(f"{m.name}_{s}" for m in expected for s in stats), "n_cases",
                      "n_repeats"]
    whole = [r for r in rows if r["structure"] == tables.ALL_FOREGROUND]
    assert all(r["mean_entropy_roi"] is not None and r["mean_entropy_roi_best"] is False for r in whole), \
        "a descriptive metric has no best value"


def test_the_slice_browser_and_the_comparison_page_list_the_registrys_metrics(dash_app: dash.Dash,
                                                                               store: SeededStore) -> None:
    app_store = get_store()
    view = viewer.load(app_store, "phantom_9000")
    assert view is not None
    text = str(viewer.metrics_table(app_store, view, [store.seeded.configurations["DE"]], PLAN.budget))
    for metric in registry.case_metrics():
        assert metric.label in text and metric.describe() in text, metric.name
    assert f"{registry.metric('dsc').label} spleen" in text
    dropdown = _by_id(_page("/compare"), "compare-metric")
    assert [o["value"] for o in dropdown.options] == list(registry.names(registry.case_metrics()))
    assert [o["label"] for o in dropdown.options] == [m.label for m in registry.case_metrics()]
