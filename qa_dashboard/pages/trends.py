"""Trends: per configuration and quantity (:data:`pipeline.store.trends.QUANTITIES`), the value of every nightly run
over time with the tolerance band and the action levels; points out of tolerance or beyond action are marked. The
acquisition controls (:mod:`pipeline.store.strata`) add a dotted line per group of the chosen stratum (scanner,
kernel, slice thickness, …; its n in the legend and hover), or narrow the values to one group. Below,
the stored levels, and for an administrator the form that sets or clears them (every change audited; the service
refuses anyone else, whatever the browser sends)."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, ctx, dcc, html
from dash.development.base_component import Component

from pipeline.errors import UserError
from pipeline.review.workflow import Action, allowed
from pipeline.store.trend_schema import EVERY
from pipeline.store.trends import QUANTITIES, quantity
from qa_dashboard import auth, blinding, charts, inputs
from qa_dashboard.components import grid, guarded, section
from qa_dashboard.filters import (
    acquisition_choice,
    acquisition_filters,
    group_options,
    register_group_reset,
    stratum,
)
from qa_dashboard.queries.trends import choices, group_trends, level_rows, trend
from qa_dashboard.store import Store, get_store

dash.register_page(__name__, path="/trends", title="Trends", name="Trends")

BOUNDS = (("tolerance_low", "Tolerance low"), ("tolerance_high", "Tolerance high"), ("action_low", "Action low"),
          ("action_high", "Action high"))
LEVEL_COLUMNS = [{"field": "label", "headerName": "Quantity"}, {"field": "configuration"}, {"field": "structure"},
                 *({"field": f, "headerName": h, "type": "numericColumn"} for f, h in BOUNDS),
                 {"field": "updated", "headerName": "Set (UTC)"}]
MAX_BOUND = 1e12


def _options(values: list[str]) -> list[dict[str, str]]:
    return [{"label": v, "value": v} for v in values]


def _form(admin: bool) -> Component:
    why = None if admin else "only an admin sets levels"
    fields = [dbc.Col([dbc.Label(label, html_for=f"levels-{name}", className="small mb-0"),
                       dbc.Input(id=f"levels-{name}", type="number", size="sm", disabled=not admin)], md=2)
              for name, label in BOUNDS]
    return html.Div([
        dbc.Row([*fields, dbc.Col(dbc.Checkbox(id="levels-this-configuration", label="this configuration only",
                                               value=False, disabled=not admin), md=2, className="pt-4")],
                className="g-2"),
        html.Div([dbc.Button("Set levels", id="levels-save", color="primary", size="sm", className="me-1",
                             disabled=not admin, title=why),
                  dbc.Button("Clear levels", id="levels-clear", color="outline-danger", size="sm",
                             disabled=not admin, title=why)], className="mt-2"),
        html.Div(id="levels-result", className="mt-2"),
    ], id="levels-form")


def _page(store: Store) -> Component:
    with store.session() as session:
        configurations, structures = choices(session)
        rows = level_rows(session)
    user = auth.current_user()
    admin = user is not None and allowed(user["role"], Action.SET_LEVELS)
    dropdown = {"clearable": False, "className": "mb-2"}
    return html.Div([
        html.H3("Trends"),
        dcc.Store(id="trend-structures", data=structures),
        dbc.Row([
            dbc.Col([dbc.Label("Configuration"), dcc.Dropdown(id="trend-configuration", options=_options(
                configurations), value=configurations[0] if configurations else None, **dropdown)], md=3),
            dbc.Col([dbc.Label("Quantity"), dcc.Dropdown(id="trend-quantity", options=[
                {"label": q.label, "value": q.name} for q in QUANTITIES], value=QUANTITIES[0].name, **dropdown)],
                md=3),
            dbc.Col([dbc.Label("Structure"), dcc.Dropdown(id="trend-structure", options=[], value=None,
                                                          disabled=True, className="mb-2")], md=3),
        ]),
        dbc.Row(acquisition_filters("trend", {}), className="mb-2"),
        dcc.Graph(id="trend-graph", config={"displaylogo": False}),
        html.Div(id="trend-summary", className="small text-muted mb-3"),
        section("Tolerance and action levels", grid("levels-grid", LEVEL_COLUMNS, rows, 220), _form(admin),
                help_text="the levels of the quantity shown, for every configuration unless ticked; a structure's "
                          "own levels when one is chosen"),
    ], id="trends")


def layout(**_query: str) -> Component:
    return blinding.unless_in_study(lambda: guarded(_page))


def _quantity(value: Any) -> str:
    return inputs.choice(value, "trend-quantity.value", [q.name for q in QUANTITIES])


def _structure(name: str, value: Any) -> str:
    if not quantity(name).per_structure or value is None:
        return EVERY
    return inputs.text(value, "trend-structure.value", 100)


@callback(Output("trend-structure", "options"), Output("trend-structure", "value"),
          Output("trend-structure", "disabled"), Input("trend-quantity", "value"), State("trend-structures", "data"))
def _structures(name: Any, structures: Any) -> tuple[Any, Any, bool]:
    name = _quantity(name)
    if not quantity(name).per_structure:
        return [], None, True
    listed = inputs.record(structures or {}, "trend-structures.data", {name: lambda value, field: inputs.listed(
        value, field, lambda v, n: inputs.text(v, n, 100))})[name]
    return _options(listed), listed[0] if listed else None, False


@callback(Output("trend-graph", "figure"), Output("trend-summary", "children"), Output("trend-group", "options"),
          Input("trend-configuration", "value"), Input("trend-quantity", "value"), Input("trend-structure", "value"),
          Input("levels-grid", "rowData"), Input("trend-stratum", "value"), Input("trend-group", "value"))
def _chart(configuration: Any, name: Any, structure: Any, _levels: Any, key: Any, group: Any
           ) -> tuple[Any, str, Any]:
    name = _quantity(name)
    key, chosen = stratum(key, "trend-stratum.value"), acquisition_choice(key, group)
    if configuration is None:
        return charts.empty_figure("no configuration has a value yet"), "", group_options({})
    configuration = inputs.text(configuration, "trend-configuration.value", 64)
    structure = _structure(name, structure)
    item = quantity(name)
    with get_store().session() as session:
        points, levels = trend(session, configuration, name, structure, chosen)
        groups = group_trends(session, configuration, name, key, structure)
    counts = {g: max((p["n"] for p in own), default=0) for g, own in groups.items()}
    title = " ".join(p for p in (configuration, structure, item.label, chosen[1] if chosen else "") if p)
    out = [p for p in points if p["status"] != "ok"]
    summary = (f"{len(points)} run(s); " + ("no levels set" if levels is None else
                                            f"{len(out)} out of tolerance, "
                                            f"{sum(p['status'] == 'action' for p in out)} beyond action"))
    return (charts.trend_figure(points, levels, title, item.unit, None if chosen else groups), summary,
            group_options(counts))


register_group_reset("trend")


def _bound(value: Any, name: str) -> float | None:
    return None if value in (None, "") else inputs.number(value, f"levels-{name}.value", -MAX_BOUND, MAX_BOUND)


@callback(Output("levels-result", "children"), Output("levels-grid", "rowData"),
          Input("levels-save", "n_clicks"), Input("levels-clear", "n_clicks"),
          State("trend-configuration", "value"), State("trend-quantity", "value"), State("trend-structure", "value"),
          State("levels-this-configuration", "value"), *(State(f"levels-{name}", "value") for name, _ in BOUNDS),
          prevent_initial_call=True)
def _set(save: Any, clear: Any, configuration: Any, name: Any, structure: Any, own: Any, *bounds: Any
         ) -> tuple[Any, Any]:
    inputs.clicks(save, "levels-save.n_clicks")
    inputs.clicks(clear, "levels-clear.n_clicks")
    name = _quantity(name)
    key = {"configuration": inputs.text(configuration, "trend-configuration.value", 64)
           if inputs.flag(own, "levels-this-configuration.value") and configuration is not None else EVERY,
           "structure": _structure(name, structure)}
    values = {field: _bound(value, field) for (field, _label), value in zip(BOUNDS, bounds, strict=True)}
    user = auth.current_user()
    if user is None:
        return dbc.Alert("Sign in again: the session has ended.", color="danger"), dash.no_update
    service = auth.review_service(get_store().engine)
    what = " ".join(p for p in (key["configuration"] or "every configuration", key["structure"],
                                quantity(name).label) if p)
    try:
        if ctx.triggered_id == "levels-clear":
            service.clear_levels(int(user["user_id"]), name, ip=auth.client_ip(), **key)
            message = f"Cleared the levels of {what}."
        else:
            service.set_levels(int(user["user_id"]), name, values, ip=auth.client_ip(), **key)
            message = f"Set the levels of {what}."
    except UserError as error:
        return dbc.Alert(f"Refused: {error}", color="danger", id="levels-alert"), dash.no_update
    with get_store().session() as session:
        rows = level_rows(session)
    return dbc.Alert(message, color="success", id="levels-alert"), rows
