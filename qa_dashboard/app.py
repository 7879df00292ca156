"""The Dash application: Dash Pages (one module per page under ``qa_dashboard/pages``), dash-bootstrap-components.

Bootstrap's CSS (5.3.6, the version dash-bootstrap-components 2.0.4 is built for) is served from ``assets/``, so
nothing is fetched from the internet. The app reads the results store (``QA_DATABASE_URL``, ``QA_ARTIFACTS_DIR``)
and never writes it. It starts whatever state the store is in: until the store exists and is at the code's schema
every page says so and names the fix (``python -m pipeline migrate``); an empty store explains how to fill it.
"""

from __future__ import annotations

from pathlib import Path

import dash
import dash_bootstrap_components as dbc
import flask
from dash import html
from dash.development.base_component import Component

from qa_dashboard import auth

DISCLAIMER = "Research and QA support software, not a medical device."
NAVIGATION = (("Overview", "/"), ("Cohort calibration", "/cohort"), ("Method comparison", "/compare"),
              ("Runs", "/runs"))


def create_app() -> dash.Dash:
    """Build the app with every page of ``qa_dashboard/pages`` registered (once per process: Dash Pages is global)."""
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder=str(Path(__file__).resolve().parent / "pages"),
        title="Uncertainty QA",
        suppress_callback_exceptions=True,
    )
    app.layout = _layout
    auth.install(app.server)
    return app


def _signed_in() -> Component:
    """Who is signed in (name and role) and the logout link; empty outside a request (layout validation)."""
    user = auth.current_user() if flask.has_request_context() else None
    if user is None:
        return html.Span(id="signed-in")
    return html.Span(
        [html.Span(user["username"], id="signed-in-user", className="fw-semibold"), " ",
         dbc.Badge(user["role"], color="secondary", id="signed-in-role", className="me-2"),
         html.A("Log out", href="/logout", id="logout", className="link-light")],
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
                        dbc.Nav([dbc.NavItem(dbc.NavLink(label, href=href, active="exact"))
                                 for label, href in NAVIGATION], className="me-auto", navbar=True),
                        dbc.Badge(DISCLAIMER, color="warning", text_color="dark", id="disclaimer"),
                        _signed_in(),
                    ],
                    fluid=True,
                ),
                color="dark", dark=True, className="mb-3",
            ),
            dbc.Container(dash.page_container, fluid=True, id="page"),
        ]
    )
