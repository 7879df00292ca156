"""The slice browser's way through the worklist when opened from one of its regions: where this region stands in the
list, how many regions are ticked, "next region" (the list's next row, maybe of the next case) and "back to list"
(the list's address, same configuration and budget: ``qa_dashboard.worklist_address``)."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import html
from dash.development.base_component import Component

from pipeline.metrics.review_budget import Budget
from qa_dashboard import viewer
from qa_dashboard.queries.worklist import load_worklist, opened, region_rows
from qa_dashboard.store import Store
from qa_dashboard.worklist_address import worklist_href


def region_nav(store: Store, view: viewer.CaseView, configuration_id: int, rank: int, listed: Budget) -> Component:
    """The bar above the views for region ``rank`` of this case under configuration ``configuration_id``, in the
    worklist at ``listed`` (the list's budget: the case's fraction, or the list's minutes per patient)."""
    shown = view.results[configuration_id]
    back = dbc.Button("← Back to list", href=worklist_href(shown.configuration, listed, shown.model_set_identity),
                      size="sm", color="outline-secondary", className="me-2", id="region-back")
    try:
        worklist = load_worklist(store, shown.configuration, listed, model_set=shown.model_set_identity)
    except LookupError as error:
        return _bar([back, html.Span(str(error), className="small text-danger")])
    rows = region_rows(worklist, ticks=opened(store, worklist))
    here = next((i for i, row in enumerate(rows) if (row["case"], row["region"]) == (view.case.name, rank)), None)
    if here is None:
        return _bar([back, html.Span(f"region {rank} of {view.case.name} is not on the list at "
                                     f"{listed.describe()}", className="small text-warning")])
    following = rows[here + 1] if here + 1 < len(rows) else None
    ahead = (dbc.Button(f"Next region → ({following['case']} #{following['region']})", href=following["open_href"],
                        size="sm", color="primary", className="me-2", id="region-next")
             if following else html.Span("last region of the list", className="small me-2", id="region-next"))
    ticked = sum(bool(row["opened"]) for row in rows)
    return _bar([back, ahead, html.Span(
        f"region {rank} of {view.case.name} ({rows[here]['structure']}, slices {rows[here]['slices']}) · "
        f"{here + 1} of {len(rows)} in the list at {listed.describe()} · {ticked} opened",
        className="small", id="region-position")])


def _bar(children: list[Component]) -> Component:
    return html.Div(children, id="region-nav", className="d-flex align-items-center flex-wrap mb-2")
