"""The Dash application: Dash Pages (one module per page under ``qa_dashboard/pages``), dash-bootstrap-components.

Bootstrap's CSS (5.3.6, the version dash-bootstrap-components 2.0.4 is built for) is served from ``assets/``, so
nothing is fetched from the internet. The app reads the results store of its settings (``database_url``,
``artifacts_dir``); its only writes are the review workflow's (review items, sessions, login throttles, audit rows,
through ``pipeline.review.service``) and the exported files (``exports_dir``). Login, sessions and CSRF are
:mod:`qa_dashboard.auth`'s; headers and request checks :mod:`qa_dashboard.security`'s. It starts whatever state the
store is in: until the store exists and is at the code's schema every page says so and names the fix
(``python -m pipeline migrate``); an empty store explains how to fill it.
"""

from __future__ import annotations

from pathlib import Path

import dash
import dash_bootstrap_components as dbc
import flask
from dash import Input, Output, callback, html
from dash.development.base_component import Component

from pipeline.errors import UserError, http_status, one_line
from pipeline.review.workflow import Action, allowed
from pipeline.settings import Settings
from qa_dashboard import auth, blinding, config, exports, inputs, security
from qa_dashboard.case_search import search_box
from qa_dashboard.review import badge_text

DISCLAIMER = "Research and QA support software, not a medical device."
NAVIGATION = (("Overview", "/"), ("Worklist", "/worklist"), ("Cohort calibration", "/cohort"),
              ("Method comparison", "/compare"), ("Runs", "/runs"), ("Trends", "/trends"), ("Sessions", "/sessions"))
#: pages shown in the navbar only to the roles allowed to use them
RESTRICTED = ((("Audit", "/audit"), Action.VIEW_AUDIT),)


def create_app(settings: Settings | None = None) -> dash.Dash:
    """Build the app with every page of ``qa_dashboard/pages`` registered (once per process: Dash Pages is global).

    ``settings`` (default: read from the environment, :meth:`Settings.from_env`) become the dashboard's
    (:mod:`qa_dashboard.config`).
    """
    settings = settings or Settings.from_env()
    config.configure(settings)
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder=str(Path(__file__).resolve().parent / "pages"),
        title="Uncertainty QA",
        suppress_callback_exceptions=True,
    )
    app.layout = _layout
    auth.install(app.server, settings)
    security.install(app)
    app.server.before_request(blinding.check_callback)
    exports.install(app.server)
    app.server.register_error_handler(UserError, _user_error)
    return app


def _user_error(error: UserError) -> tuple[flask.Response, int]:
    """The one web handler of user errors (a page, callback or download asked for something wrong or unknown): its
    4xx status and the one-line reason as JSON, audited once (:func:`qa_dashboard.auth.refuse`) unless the review
    service audited it already. Other exceptions are internal errors: Flask logs them and answers 500."""
    if getattr(error, "audited", False):
        return flask.jsonify({"error": one_line(error)}), http_status(error)
    return auth.refuse(one_line(error), http_status(error))


def _navigation() -> list[tuple[str, str]]:
    """The navbar's pages for the signed-in user's role."""
    user = auth.current_user()
    role = user["role"] if user else ""
    return [*NAVIGATION, *(page for page, action in RESTRICTED if allowed(role, action))]


def _badge() -> Component:
    """The count of review items not reviewed yet (of the review configuration), linking to the worklist."""
    return html.A(dbc.Badge("", id="unreviewed-badge", color="info", className="ms-2"), href="/worklist",
                  title="review items of the review configuration not reviewed yet", id="unreviewed-link")


def _signed_in() -> Component:
    """Who is signed in (name and role) and the logout button, a POST form with the session's CSRF token (a link
    could be followed from another site); empty outside a request (layout validation)."""
    user = auth.current_user() if flask.has_request_context() else None
    if user is None:
        return html.Span(id="signed-in")
    logout = html.Form(
        [dash.dcc.Input(type="hidden", name=auth.CSRF_FIELD, value=auth.csrf_token()),
         html.Button("Log out", type="submit", id="logout",
                     className="btn btn-link btn-sm link-light p-0 align-baseline")],
        method="POST", action="/logout", className="d-inline")
    return html.Span(
        [html.Span(user["username"], id="signed-in-user", className="fw-semibold"), " ",
         dbc.Badge(user["role"], color="secondary", id="signed-in-role", className="me-2"), logout],
        id="signed-in", className="text-light small ms-3 text-nowrap",
    )


def _layout() -> Component:
    """The shell, built per request so the navbar names the signed-in user."""
    return html.Div(
        [
            dbc.Navbar(
                dbc.Container(
                    [
                        dbc.NavbarBrand("Budget-aware uncertainty QA", href="/"),
                        dbc.Nav([dbc.NavItem(dbc.NavLink(label, href=href, active="exact", className="text-nowrap"))
                                 for label, href in _navigation()], className="me-auto", navbar=True),
                        search_box(),
                        _badge(),
                        dbc.Badge(DISCLAIMER, color="warning", text_color="dark", id="disclaimer"),
                        _signed_in(),
                    ],
                    fluid=True, className="flex-wrap row-gap-1",
                ),
                color="dark", dark=True, className="mb-3", sticky="top",
            ),
            dbc.Container(dash.page_container, fluid=True, id="page"),
        ]
    )


@callback(Output("unreviewed-badge", "children"), Input("_pages_location", "pathname"))
def _count_unreviewed(path: object) -> str:
    inputs.optional(inputs.text, path, "pathname", 2000)
    return badge_text()
