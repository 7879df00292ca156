"""Batch runs: status, counts, duration, whether a value of the run is out of its trend levels; below, the cases per
worker (``run --cluster``) and the failed cases with their worker (of the selected run, or of every run)."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, callback, html
from dash.development.base_component import Component

from qa_dashboard import blinding, inputs
from qa_dashboard.components import grid, guarded, section
from qa_dashboard.queries.runs import failure_rows, run_rows, worker_rows
from qa_dashboard.queries.trends import MARK_RULES, run_marks
from qa_dashboard.store import Store, get_store

dash.register_page(__name__, path="/runs", title="Runs", name="Runs")

RUN_COLUMNS = [
    {"field": "run", "headerName": "Run", "type": "numericColumn", "width": 90},
    {"field": "kind", "width": 100},
    {"field": "status", "width": 120, "minWidth": 110,
     "cellClassRules": {"text-danger fw-semibold": "params.value === 'failed'",
                        "text-warning fw-semibold": "params.value === 'interrupted'",
                        "text-success": "params.value === 'succeeded'"}},
    {"field": "levels", "headerName": "Levels", "width": 150, "cellClassRules": MARK_RULES,
     "tooltipField": "levels_line",
     "headerTooltip": "a value of the run out of its tolerance or beyond its action level (see Trends)"},
    {"field": "started", "minWidth": 110}, {"field": "duration", "minWidth": 100},
    *({"field": f, "type": "numericColumn", "width": 100} for f in ("total", "done", "skipped", "failed")),
    {"field": "settings", "headerName": "Metric settings", "tooltipField": "settings", "minWidth": 110,
     "headerTooltip": "the metric settings the run used: the fields that differ from the spec's defaults"},
    {"field": "summary", "headerName": "Error summary", "flex": 1, "minWidth": 120}, {"field": "host"},
    {"field": "code"},
]
FAILURE_COLUMNS = [{"field": "run", "width": 90}, {"field": "case"}, {"field": "stage", "width": 110},
                   {"field": "reason", "flex": 2}, {"field": "worker", "minWidth": 120},
                   {"field": "source", "flex": 1}, {"field": "at"}]
WORKER_COLUMNS = [{"field": "run", "width": 90},
                  {"field": "worker", "flex": 1,
                   "headerTooltip": "the Dask worker; in-process: the batch's own process"},
                  *({"field": f, "type": "numericColumn", "width": 120} for f in ("processed", "failed"))]


def _page(store: Store) -> Component:
    with store.session() as session:
        runs = run_rows(session)
        failures = failure_rows(session)
        workers = worker_rows(session)
        marks = run_marks(session)
    for row in runs:
        row["levels"], row["levels_line"] = marks.get(row["run"], ("", ""))
    if not runs:
        return dbc.Alert(["No batch has run yet: ", html.Code("python -m pipeline run COHORT --models MANIFEST"),
                          "."], color="info", id="no-runs")
    return html.Div([
        html.H3("Runs"),
        section("Batch runs", grid("runs-grid", RUN_COLUMNS, runs, 320, rowSelection={
            "mode": "singleRow", "checkboxes": False, "enableClickSelection": True}),
            help_text="select a run to see only its failed cases"),
        section("Cases per worker", grid("workers-grid", WORKER_COLUMNS, workers, 200),
                help_text="processed: the run's cases whose stored results are still that run's"),
        section("Failed cases", html.Div(id="failures-title", className="small text-muted mb-1"),
                grid("failures-grid", FAILURE_COLUMNS, failures, 300)),
    ])


def layout(**_query: str) -> Component:
    return blinding.unless_in_study(lambda: guarded(_page))


@callback(Output("failures-grid", "rowData"), Output("failures-title", "children"), Output("workers-grid", "rowData"),
          Input("runs-grid", "selectedRows"), prevent_initial_call=True)
def _failures_of(selected: Any) -> tuple[list[dict[str, Any]], str, list[dict[str, Any]]]:
    rows = inputs.listed(selected, "runs-grid.selectedRows", lambda row, name: inputs.record(
        row, name, {"run": inputs.integer}), 1)
    run = rows[0]["run"] if rows else None
    with get_store().session() as session:
        rows = failure_rows(session, run)
        workers = worker_rows(session, run)
    return rows, ("every run" if run is None else f"run {run}") + f": {len(rows)} failed case(s)", workers
