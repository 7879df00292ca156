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
from dash import html

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
    app.layout = html.Div(
        [
            dbc.Navbar(
                dbc.Container(
                    [
                        dbc.NavbarBrand("Budget-aware uncertainty QA", href="/"),
                        dbc.Nav([dbc.NavItem(dbc.NavLink(label, href=href, active="exact"))
                                 for label, href in NAVIGATION], className="me-auto", navbar=True),
                        dbc.Badge(DISCLAIMER, color="warning", text_color="dark", id="disclaimer"),
                    ],
                    fluid=True,
                ),
                color="dark", dark=True, className="mb-3",
            ),
            dbc.Container(dash.page_container, fluid=True, id="page"),
        ]
    )
    return app
