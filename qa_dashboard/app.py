"""The Dash application: Dash Pages (one module per page under ``qa_dashboard/pages``), one component library."""

from __future__ import annotations

from pathlib import Path

import dash
import dash_bootstrap_components as dbc
from dash import html

DISCLAIMER = "Research and QA support software, not a medical device."


def create_app() -> dash.Dash:
    """Build the app with every page of ``qa_dashboard/pages`` registered."""
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder=str(Path(__file__).resolve().parent / "pages"),
        external_stylesheets=[dbc.themes.BOOTSTRAP],
        title="Uncertainty QA",
        suppress_callback_exceptions=True,
    )
    app.layout = dbc.Container(
        [
            dbc.NavbarSimple(
                brand="Budget-aware uncertainty QA",
                children=[dbc.Badge(DISCLAIMER, color="warning", text_color="dark", className="ms-2", id="disclaimer")],
                color="dark",
                dark=True,
            ),
            html.Main(dash.page_container, className="mt-3"),
        ],
        fluid=True,
    )
    return app
