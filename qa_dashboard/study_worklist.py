"""The worklist of a reviewer with readings in an open review study (``pages/worklist.py`` shows it instead of the
general one): its own readings and nothing else, in the allocation's order (:func:`reading_order`, the same for
both arms, so the list reveals no arm before an opening). Each case links to the slice browser with the study's
configuration and budget; opening it there reveals the arm (``qa_dashboard.blinding``). Only a reading opened in
arm B (uncertainty-guided) lists its regions, ranked as the worklist ranks them at the study's budget; a reading in
arm A, or not opened yet, shows no uncertainty, no rank and no region.
"""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import html
from dash.development.base_component import Component

from pipeline.review.study_allocation import Arm
from pipeline.review.study_blinding import StudyReading, applicable_arm, reading_order
from qa_dashboard.components import LINK_RENDERER, grid, patient_href, section
from qa_dashboard.queries.worklist import load_worklist, opened, region_rows
from qa_dashboard.store import Store
from qa_dashboard.worklist_address import percent

ARMS = {None: "concealed until you open the case", Arm.STANDARD: "A · standard review",
        Arm.GUIDED: "B · uncertainty-guided"}
READING_COLUMNS = [
    {"field": "order", "headerName": "#", "width": 70, "type": "numericColumn"},
    {"field": "study", "minWidth": 140}, {"field": "period", "width": 90, "type": "numericColumn"},
    {"field": "case", "minWidth": 150, **LINK_RENDERER}, {"field": "arm", "headerName": "Arm", "minWidth": 220},
    {"field": "opened", "headerName": "First opened (UTC)", "minWidth": 160},
]
REGION_COLUMNS = [
    {"field": "case", "minWidth": 140}, {"field": "region", "headerName": "Region", "width": 95},
    {"field": "open", "width": 90, "sortable": False, "filter": False, **LINK_RENDERER},
    {"field": "opened", "headerName": "✓", "width": 60, "tooltipField": "opened_by"},
    {"field": "structure"}, {"field": "volume_ml", "headerName": "Volume mL", "type": "numericColumn"},
    {"field": "slices", "headerName": "Slices (z)"},
    {"field": "mean_entropy", "headerName": "Mean entropy", "type": "numericColumn"},
    {"field": "state"},
]


def _href(reading: StudyReading) -> str:
    budget = reading.budget
    return patient_href(reading.case, a=reading.configuration_id,
                        **({"minutes": f"{budget.value:g}"} if budget.kind == "minutes"
                           else {"budget": percent(budget.value)}))


def reading_rows(readings: tuple[StudyReading, ...]) -> list[dict[str, Any]]:
    """One row per reading, in the allocation's order, with its arm only once opened."""
    return [{"order": number, "study": r.study, "period": r.period, "case": r.case, "case_href": _href(r),
             "arm": ARMS[r.arm], "opened": "" if r.opened_at is None else f"{r.opened_at:%Y-%m-%d %H:%M}"}
            for number, r in enumerate(reading_order(readings), start=1)]


def guided_regions(store: Store, readings: tuple[StudyReading, ...]) -> list[dict[str, Any]]:
    """The regions of the cases read in arm B (opened), each at its study's configuration and budget."""
    rows: list[dict[str, Any]] = []
    for reading in reading_order(readings):
        if applicable_arm(readings, reading.case) is not Arm.GUIDED:
            continue
        try:
            worklist = load_worklist(store, reading.configuration, reading.budget, reading.case, reading.model_set)
        except LookupError:
            continue
        rows += region_rows(worklist, reading.case, opened(store, worklist))
    return rows


def study_worklist(store: Store, readings: tuple[StudyReading, ...]) -> Component:
    """The page's content for a reviewer with ``readings`` (module description)."""
    studies = sorted({r.study for r in readings})
    return html.Div([
        html.H3("Review worklist: your study readings"),
        dbc.Alert(f"You read cases of the review study {', '.join(studies)}: this list holds only your readings, in "
                  "the study's order. A case's arm shows once you open it.", color="info", id="study-worklist-note"),
        section("Readings", grid("study-readings", READING_COLUMNS, reading_rows(readings), 320),
                help_text="open each case in turn; the study fixed the order"),
        section("Regions of your uncertainty-guided readings",
                grid("study-regions", REGION_COLUMNS, guided_regions(store, readings), 260),
                help_text="arm B only, highest mean entropy × volume first within each case"),
    ], id="study-worklist")
