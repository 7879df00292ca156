"""The not-found page for addresses no page claims (Dash Pages serves it for any unmatched path)."""

from __future__ import annotations

import dash
from dash.development.base_component import Component

from qa_dashboard.components import not_found

dash.register_page(__name__, path="/404", title="Not found")


def layout(**_query: str) -> Component:
    return not_found("Nothing lives at this address.")
