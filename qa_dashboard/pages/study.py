"""A review study's results (approver and admin): the protocol, the per-arm numbers and the arm differences B − A
with their case-level bootstrap CIs, the pre-registered primary endpoint first (``docs/review-study.md``).

The protocol comes through :meth:`~pipeline.review.service.ReviewService.show_study`, which checks the role again
and audits the look (``study.view_allocation``: the results rest on the allocation); the numbers from
:func:`qa_dashboard.queries.study.study_analysis` (the measurements through the service too, audited as
``study.view_results``). A reviewer, or anyone else, gets the forbidden note and nothing
of the study.
"""

from __future__ import annotations

from urllib.parse import unquote

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import html
from dash.development.base_component import Component

from pipeline.errors import NotFoundError
from pipeline.review.study_report import arms_frame, difference_line, differences_frame, protocol_lines
from pipeline.review.workflow import Action, PermissionDenied, allowed
from qa_dashboard import auth, inputs
from qa_dashboard.components import guarded, not_found, number, section
from qa_dashboard.queries import study as queries
from qa_dashboard.store import Store

dash.register_page(__name__, path_template="/study/<name>", title="Review study")


def _cell(value: object) -> str:
    return number(value) if isinstance(value, float) or value is None else str(value)


def _table(frame: pd.DataFrame, table_id: str) -> Component:
    return dbc.Table([html.Thead(html.Tr([html.Th(str(c)) for c in frame.columns])),
                      html.Tbody([html.Tr([html.Td(_cell(v)) for v in row]) for row in frame.itertuples(index=False)])],
                     id=table_id, size="sm", bordered=True, className="small")


def _page(store: Store, name: str) -> Component:
    user = auth.current_user()
    if user is None:
        return not_found("Sign in again.")
    try:
        view = auth.review_service(store.engine).show_study(int(user["user_id"]), name, auth.client_ip())
    except NotFoundError:
        return not_found(f"There is no study called {name!r}.")
    except PermissionDenied:
        return _forbidden()
    try:
        analysis = queries.study_analysis(store, int(user["user_id"]), view.study)
    except PermissionDenied:
        return _forbidden()
    primary = analysis.primary
    return html.Div([
        html.H3(f"Review study — {name}"),
        dbc.Alert([html.Strong(f"Primary endpoint {primary.endpoint.value}: "),
                   html.Span(difference_line(primary, analysis.confidence))],
                  color="primary", id="study-primary", className="py-2"),
        section("Arms", _table(arms_frame(analysis), "study-arms"),
                help_text="decided readings; time in active minutes"),
        section("Differences B − A", _table(differences_frame(analysis), "study-differences"),
                help_text=f"{analysis.confidence:.0%} percentile bootstrap of cases, {analysis.n_bootstrap} "
                          f"resamples seeded with the study's seed"
                          + ("; paired by case" if primary.paired else "")),
        section("Protocol", html.Ul([html.Li(line) for line in protocol_lines(view.study.record())],
                                    className="small mb-0", id="study-protocol")),
    ])


def _forbidden() -> Component:
    return dbc.Alert("A study's results are for the approver and admin roles.", color="warning", id="forbidden")


def layout(name: str | None = None, **_query: str) -> Component:
    user = auth.current_user()
    if user is None or not allowed(user["role"], Action.VIEW_ALLOCATION):
        return _forbidden()
    if not name or len(unquote(name)) > inputs.MAX_NAME:
        return not_found("The address names no study.")
    return guarded(lambda store: _page(store, unquote(name)))
