"""The navbar's case search: type a case name or a patient pseudonym (a prefix), pick a case from the list, or press
Enter to open the only match (or the case of that exact name) in its slice browser. The store is asked for at most
:data:`~qa_dashboard.queries.search.MAX_MATCHES` cases; an unknown text says that no case matches."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Input, Output, callback, clientside_callback, ctx, dcc, html, no_update
from dash.development.base_component import Component

from qa_dashboard import inputs
from qa_dashboard.components import patient_href
from qa_dashboard.queries.search import MAX_MATCHES, Matches, find_cases
from qa_dashboard.store import get_store

TYPING_PAUSE_MS = 250


def search_box() -> Component:
    """The search field and its list of matches (under the field, over the page)."""
    return html.Div([
        dbc.Input(id="case-search", type="search", placeholder="Find case or patient", size="sm",
                  debounce=TYPING_PAUSE_MS, maxLength=inputs.MAX_NAME, autoComplete="off"),
        html.Div(id="case-search-results", className="position-absolute end-0 mt-1 shadow",
                 style={"zIndex": 1100, "minWidth": "18rem"}),
        dcc.Store(id="case-search-submitted"), dcc.Location(id="case-search-nav", refresh="callback-nav"),
    ], className="position-relative ms-2", id="case-search-box",
        title="a case name or patient pseudonym, or their beginning; Enter opens the only match")


def _matches(typed: str) -> Matches:
    with get_store().session() as session:
        return find_cases(session, typed)


def _listing(typed: str, matches: Matches) -> Component:
    if not matches.cases:
        return dbc.Alert(f"No case matches {typed.strip()!r}.", color="light", className="small p-2 mb-0",
                         id="case-search-none")
    items = [dbc.ListGroupItem([html.Span(name, className="fw-semibold"),
                                html.Small(f" {cohort} · patient {pseudonym}", className="text-muted")],
                               href=patient_href(name), className="py-1 small")
             for name, pseudonym, cohort in matches.cases]
    if matches.more:
        items.append(dbc.ListGroupItem(f"more than {MAX_MATCHES} cases match: type more", disabled=True,
                                       className="py-1 small text-muted"))
    return dbc.ListGroup(items, id="case-search-list")


@callback(Output("case-search-results", "children"), Output("case-search", "value"),
          Input("case-search", "value"), Input("_pages_location", "pathname"), prevent_initial_call=True)
def _list(value: Any, path: Any) -> tuple[Component | None, Any]:
    """The matches of the text; a new page closes the list and clears the field."""
    inputs.optional(inputs.text, path, "pathname", 2000)
    if ctx.triggered_id == "_pages_location":
        return None, ""
    typed = inputs.optional(inputs.text, value, "case-search.value") or ""
    return (_listing(typed, _matches(typed)) if typed.strip() else None), no_update


# Enter sends the field's text as it is now (its ``value`` reaches the server only after the typing pause)
clientside_callback(
    "function(n) { const field = document.getElementById('case-search');"
    " return {n: n, text: field ? field.value : ''}; }",
    Output("case-search-submitted", "data"), Input("case-search", "n_submit"), prevent_initial_call=True)


@callback(Output("case-search-nav", "href"), Input("case-search-submitted", "data"), prevent_initial_call=True)
def _open(submitted: Any) -> str:
    """Enter opens the case the text names (:meth:`Matches.unique`); otherwise the list stays."""
    typed = inputs.record(submitted, "case-search-submitted.data",
                          {"n": inputs.clicks, "text": inputs.text})["text"]
    name = _matches(typed).unique(typed) if typed.strip() else None
    return patient_href(name) if name else no_update
