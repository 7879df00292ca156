"""The not-found page for unknown URLs (Dash Pages serves it for any path no page claims)."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import html

dash.register_page(__name__, path="/404", title="Not found")

layout = dbc.Alert(
    [html.H4("Page not found"), html.P(["Nothing lives at this address. ", html.A("Back to the start", href="/")])],
    color="secondary",
    id="not-found",
)
