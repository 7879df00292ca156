"""The comparison page's cost–benefit view: UEO-AUC, ECE and DSC (case-bootstrap CIs) against forward passes or
seconds per case, the Pareto front marked, the cheapest configuration within the best's CI in words, and the table
as an audited CSV export (``/export/cost.csv``) and in the audit report. The numbers come from
:func:`pipeline.store.cohort_cost.cost_benefit_rows`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import dash_bootstrap_components as dbc
from dash import Input, Output, callback, dcc, html
from dash.development.base_component import Component

from pipeline.metrics import registry
from pipeline.metrics.cost_benefit import BENEFITS, CostBenefit, cost_axis, shown_table, verdict
from pipeline.metrics.statistics import StatisticsSettings
from pipeline.store.cohort_cost import cost_benefit_rows
from pipeline.styles import style
from qa_dashboard import charts, inputs
from qa_dashboard.components import section
from qa_dashboard.config import settings
from qa_dashboard.filters import cohort_filter, filter_query
from qa_dashboard.store import get_store

AXES = {"seconds": "inference seconds per case", "passes": "forward passes per case"}


def view(export_button: Component) -> Component:
    """The view's card (its graphs fill in from the page's filters)."""
    return section(
        "Cost and benefit",
        dbc.Row([
            dbc.Col(dbc.RadioItems(id="cost-axis", value="seconds", inline=True,
                                   options=[{"label": label, "value": axis} for axis, label in AXES.items()]), md=8),
            dbc.Col(export_button, md=4, className="text-end"),
        ], className="mb-2"),
        html.P(id="cost-verdict", className="fw-semibold"),
        dbc.Row([dbc.Col(dcc.Graph(id=f"cost-{m}", config={"displaylogo": False}), lg=4) for m in BENEFITS]),
        html.Div(id="cost-table"),
        help_text="every configuration on the test cases of the chosen repeats; cohort number with its case-bootstrap "
                  "CI; seconds = what the configuration would cost alone (preprocessing, its passes, its pooling); "
                  "◆ on the Pareto front of cost and UEO-AUC",
    )


def figure(rows: Sequence[CostBenefit], metric: str, axis: str) -> dict[str, Any]:
    """One benefit against one cost: a point per configuration with its CI, the front's points joined."""
    shown = [r for r in rows if not math.isnan(getattr(r, axis)) and not math.isnan(r.benefits[metric].estimate)]
    if not shown:
        return charts.empty_figure("no measured cost or value for this selection")
    described = registry.metric(metric)
    values = [r.benefits[metric] for r in shown]
    points = {"type": "scatter", "mode": "markers+text", "name": "configurations", "showlegend": False,
              "x": [getattr(r, axis) for r in shown], "y": [v.estimate for v in values],
              "text": [r.configuration for r in shown], "textposition": "top center", "textfont": {"size": 9},
              "customdata": [r.configuration for r in shown],
              "error_y": {"type": "data", "array": [v.high - v.estimate for v in values],
                          "arrayminus": [v.estimate - v.low for v in values], "thickness": 1},
              "marker": {"color": [style(r.position).colour for r in shown],
                         "symbol": ["diamond" if r.pareto else "circle" for r in shown],
                         "size": [12 if r.pareto else 7 for r in shown]},
              "hovertemplate": "%{customdata}: %{y:.3f}<extra></extra>"}
    front = sorted((r for r in shown if r.pareto), key=lambda r: getattr(r, axis))
    line = {"type": "scatter", "mode": "lines", "name": "Pareto front (UEO-AUC)", "hoverinfo": "skip",
            "x": [getattr(r, axis) for r in front], "y": [r.benefits[metric].estimate for r in front],
            "line": {"dash": "dot", "color": "#555"}}
    title = f"{described.label} ({described.direction} is better)"
    return {"data": [line, points], "layout": charts.figure_layout(title, AXES[axis], described.label,
                                                              xaxis={"title": {"text": AXES[axis]}, "type": "log"})}


def _table(rows: Sequence[CostBenefit]) -> Component:
    shown = shown_table(rows)
    body = [html.Tr([html.Td(v) for v in values], className="table-info" if row.pareto else None)
            for row, values in zip(rows, shown.itertuples(index=False), strict=True)]
    return dbc.Table([html.Thead(html.Tr([html.Th(h) for h in shown.columns])), html.Tbody(body)], size="sm",
                     striped=True, id="cost-table-rows")


def register(filters: Sequence[Input]) -> None:
    """The view's callbacks, on the page's filter inputs."""

    @callback(Output("cost-verdict", "children"), *(Output(f"cost-{m}", "figure") for m in BENEFITS),
              Output("cost-table", "children"), Output("cost-csv-button", "href"), *filters,
              Input("cost-axis", "value"))
    def _view(protocol_id: Any, repeats: Any, start: Any, end: Any, kind: Any, key: Any, group: Any, axis: Any
              ) -> tuple[Any, ...]:
        axis = inputs.choice(axis, "cost-axis.value", tuple(AXES))
        chosen = cohort_filter(protocol_id, repeats, start, end, reference_kind=kind, stratum_key=key, group=group)
        if chosen is None:
            return ("choose a protocol", *(charts.empty_figure("choose a protocol") for _ in BENEFITS), None, "")
        store = get_store()
        statistics = StatisticsSettings(correction=settings().multiple_comparisons)
        with store.session() as session:
            rows = store.cached(session, ("cost-benefit", chosen, statistics),
                                lambda: cost_benefit_rows(session, chosen, statistics))
        if axis == "seconds" and cost_axis(rows) != "seconds":
            axis = "passes"
        return (verdict(rows, statistics.confidence), *(figure(rows, m, axis) for m in BENEFITS), _table(rows),
                f"/export/cost.csv?{filter_query(chosen)}")
