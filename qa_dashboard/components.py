"""Pieces every page uses: the store guard with its empty states, not-found, number formatting, grid defaults and
metric headers."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import html
from dash.development.base_component import Component

from pipeline.errors import StoreNotReadyError
from pipeline.metrics import registry
from pipeline.review.workflow import Action, allowed
from qa_dashboard import auth
from qa_dashboard.store import MIGRATE_HINT, Store, get_store, has_results

log = logging.getLogger(__name__)

#: where the dashboard serves ``docs/metrics.md`` (``pages/docs.py``)
DOCS_PATH = "/docs/metrics"
#: every grid's columns: text and headers wrap onto more lines (rows and the header grow to fit) rather than being
#: cut, and an undefined value (null, NaN) reads "—" unless the column formats its values itself
DEFAULT_COLUMN = {"sortable": True, "resizable": True, "filter": True, "minWidth": 90, "wrapText": True,
                  "autoHeight": True, "wrapHeaderText": True, "autoHeaderHeight": True,
                  "valueFormatter": {"function": "params.value == null || Number.isNaN(params.value) ? '—' : "
                                                 "String(params.value)"}}
#: a column whose text links to the row's ``<field>_href`` (``assets/grid_links.js``): the text is never markup
LINK_RENDERER = {"cellRenderer": "QaLink"}


def store_not_ready(error: StoreNotReadyError) -> Component:
    """The alert shown on every page while the store is missing, unreachable or behind the code's schema."""
    return dbc.Alert(
        [
            html.H4("The results store is not ready", className="alert-heading"),
            html.P(str(error), className="font-monospace small"),
            html.P(["Create or upgrade it with ", html.Code(MIGRATE_HINT),
                    " (same QA_DATABASE_URL as this app), then reload this page."]),
        ],
        color="danger", id="store-not-ready",
    )


def empty_store() -> Component:
    """The alert of a store with no results yet: how to fill it."""
    return dbc.Alert(
        [
            html.H4("No results to show yet", className="alert-heading"),
            html.P("The store is ready but the nightly batch has not stored any case yet."),
            html.Ul([
                html.Li([html.Code("make demo"), ": the demo models on phantoms and a real CT, then this dashboard."]),
                html.Li([html.Code("python -m pipeline run COHORT_FOLDER --models MANIFEST --cohort NAME"),
                         ": your cases; then ",
                         html.Code("python -m pipeline protocol --models MANIFEST --cohort NAME"),
                         " for the cohort pages."]),
            ]),
        ],
        color="info", id="empty-state",
    )


def not_found(what: str) -> Component:
    """The not-found content (unknown patient, malformed address)."""
    return dbc.Alert(
        [html.H4("Not found"), html.P([what, " ", html.A("Back to the overview", href="/")])],
        color="secondary", id="not-found",
    )


def guarded(build: Callable[[Store], Component]) -> Component:
    """``build(store)`` when the store is ready and holds results; otherwise the state's explanation."""
    try:
        store = get_store()
    except StoreNotReadyError as error:
        log.warning("store not ready: %s", error)
        return store_not_ready(error)
    with store.session() as session:
        if not has_results(session):
            return empty_store()
    return build(store)


def unreferenced_alert(note: str) -> Component:
    """The cases with no reference yet, counted and named (``note``; nothing when empty), on the pages of reference
    metrics."""
    if not note:
        return html.Div(id="unreferenced-cases")
    return dbc.Alert(note, color="warning", id="unreferenced-cases", className="small")


def number(value: float | None, digits: int = 3) -> str:
    """A metric for display; an em dash for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def patient_href(name: str, **query: Any) -> str:
    """The slice browser's address of a case (name and query values URL-encoded)."""
    extra = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items() if v is not None)
    return f"/patient/{quote(name, safe='')}" + (f"?{extra}" if extra else "")


def section(title: str, *children: Component, help_text: str | None = None) -> Component:
    """A titled card."""
    header = [html.Span(title, className="fw-semibold")]
    if help_text:
        header.append(html.Small(f" — {help_text}", className="text-muted"))
    return dbc.Card([dbc.CardHeader(header), dbc.CardBody(list(children))], className="mb-3")


def metric_header(metric: registry.Metric, tooltip: str | None = None) -> dict[str, Any]:
    """A metric column's header: the registry's label, and on hover ``tooltip`` (default: the metric's definition,
    range and direction) with a link to the metric's section of the metrics document (:data:`DOCS_PATH`)."""
    return {"headerName": metric.label, "headerTooltip": tooltip or metric.describe(),
            "tooltipComponent": "QaTooltip", "tooltipComponentParams": {"href": docs_href(metric)}}


def docs_href(metric: registry.Metric) -> str:
    """The dashboard's address of the metric's section of ``docs/metrics.md``."""
    return f"{DOCS_PATH}#{metric.anchor.partition('#')[2]}"


def grid(grid_id: str, columns: list[dict[str, Any]], rows: list[dict[str, Any]], height: int,
         **options: Any) -> Component:
    """A sortable, filterable ag-grid sized to its container (columns wrap, :data:`DEFAULT_COLUMN`); ``options`` go
    to ``dashGridOptions``. Tooltips show after 300 ms and stay while the pointer is on them (a link in one can be
    followed)."""
    return dag.AgGrid(id=grid_id, columnDefs=columns, rowData=rows, defaultColDef=DEFAULT_COLUMN,
                      columnSize="responsiveSizeToFit", style={"height": f"{height}px", "width": "100%"},
                      dashGridOptions={"animateRows": False, "tooltipShowDelay": 300, "tooltipInteraction": True,
                                       **options})


def export_button(button_id: str) -> Component:
    """A CSV download (an audited export; its address comes from a callback): for the roles that may export."""
    user = auth.current_user()
    may = user is not None and allowed(user["role"], Action.EXPORT)
    return dbc.Button("Export CSV", id=button_id, color="secondary", className="mt-4", href="",
                      external_link=True, disabled=not may,
                      title=None if may else "exports need the reviewer, approver or admin role")
