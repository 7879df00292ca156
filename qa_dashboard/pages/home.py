"""The overview: what the store holds, the latest run's standing against the trend levels, and every case with a link
to its slice browser and its mark when a value of it is out of its levels."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import html
from dash.development.base_component import Component

from qa_dashboard import blinding
from qa_dashboard.components import LINK_RENDERER, grid, guarded, patient_href, section
from qa_dashboard.queries.overview import case_rows, totals
from qa_dashboard.queries.trends import MARK_RULES, run_marks, worst_case_marks
from qa_dashboard.store import Store

dash.register_page(__name__, path="/", title="Uncertainty QA")

COLUMNS = [
    {"field": "case", "headerName": "Case", "pinned": "left", **LINK_RENDERER},
    {"field": "cohort"}, {"field": "patient", "headerName": "Patient (pseudonym)"},
    {"field": "reference", "headerName": "Reference"}, {"field": "note", "headerName": "Reference note", "flex": 1},
    {"field": "processed", "headerName": "Last processed"}, {"field": "results", "headerName": "Results"},
    {"field": "levels", "headerName": "Levels", "cellClassRules": MARK_RULES,
     "headerTooltip": "a value of the case out of its tolerance or beyond its action level (see Trends)"},
]


def _overview(store: Store) -> Component:
    with store.session() as session:
        counts = totals(session)
        rows = case_rows(session)
        marks = worst_case_marks(session)
        runs = run_marks(session)
    for row in rows:
        row["case_href"] = patient_href(row["case"])
        row["levels"] = marks.get(row["case"], "")
    latest = ("no run yet" if counts.latest_run is None else
              f"run {counts.latest_run[0]}: {counts.latest_run[1]} ({counts.latest_run[2]:%Y-%m-%d %H:%M})")
    if counts.latest_run is not None and counts.latest_run[0] in runs:
        latest += f", {runs[counts.latest_run[0]][0]}"
    cards = [(str(counts.patients), "patients"), (str(counts.cases), "cases"), (str(counts.results), "results"),
             (str(counts.protocols), "protocols"), (latest, "latest run")]
    return html.Div([
        dbc.Row([dbc.Col(dbc.Card(dbc.CardBody([html.H5(value, className="mb-0"), html.Small(label)])))
                 for value, label in cards], className="mb-3 g-2", id="totals"),
        section("Cases", grid("case-grid", COLUMNS, rows, 460), help_text="open a case in the slice browser"),
    ])


def layout(**_query: str) -> Component:
    return blinding.unless_in_study(lambda: guarded(_overview))
