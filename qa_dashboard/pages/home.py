"""The landing page: what the dashboard will show, and how to fill it while the store is empty."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import html

dash.register_page(__name__, path="/", title="Uncertainty QA")

layout = dbc.Alert(
    [
        html.H4("No results to show yet", className="alert-heading"),
        html.P(
            "This dashboard reads the results store of the nightly pipeline (cohort calibration, method comparison, "
            "patient slice browser, review worklist). The store is not part of this version yet."
        ),
        html.P(
            [
                "Meanwhile the pipeline runs from the command line: ",
                html.Code("make demo"),
                ", ",
                html.Code("python -m pipeline evaluate --probs P --reference R"),
                " and ",
                html.Code("python -m pipeline predict --models M --ct CT --out DIR"),
                " (see the README).",
            ]
        ),
    ],
    color="info",
    id="empty-state",
)
