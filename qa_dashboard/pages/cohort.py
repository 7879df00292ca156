"""Cohort calibration: configuration × structure table (mean ± SD over repeats) and the reliability diagram."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dcc, html
from dash.development.base_component import Component

from pipeline.metrics.statistics import StatisticsSettings
from qa_dashboard import charts
from qa_dashboard.cell_statistics import cell_statistics
from qa_dashboard.components import grid, guarded, not_found, section
from qa_dashboard.config import settings
from qa_dashboard.filters import cohort_filter, parse_protocol, protocol_filters, register_protocol_callbacks
from qa_dashboard.queries.cohort import case_values, configurations, protocol, protocols, reliability, summary
from qa_dashboard.store import Store, get_store
from qa_dashboard.tables import ALL_FOREGROUND, cohort_csv, cohort_rows, column_defs, table_metrics

dash.register_page(__name__, path="/cohort", title="Cohort calibration", name="Cohort calibration")
PREFIX = "cohort"


def _page(store: Store, wanted: str | None) -> Component:
    with store.session() as session:
        infos = protocols(session)
        if not infos:
            return dbc.Alert(["No protocol has been run yet: ",
                              html.Code("python -m pipeline protocol --models MANIFEST --cohort NAME"),
                              " (the demo runs one)."], color="info", id="no-protocol")
        chosen = parse_protocol(wanted, infos)
        if chosen is None:
            return not_found(f"There is no protocol {wanted!r}.")
        config_options = [{"label": n, "value": i} for i, n in configurations(session, chosen.model_set_id)]
    structures = [ALL_FOREGROUND, *chosen.labels[1:]]
    return html.Div([
        html.H3("Cohort calibration"),
        html.P("Per configuration: test cases of each repeat, mean over them, then mean ± SD over repeats (the SD says "
               "how much the number depends on the split, not how sure it is). TS configurations use each repeat's own "
               "temperature fit. ★ best: separated from every other configuration of its structure (paired bootstrap "
               "CI of the difference excludes 0 and the Holm-adjusted Wilcoxon p < 0.05); ≈ tied for best. Hover a "
               "cell for its 95 % CI (cases resampled) and n.", className="text-muted", id="cohort-legend"),
        protocol_filters(PREFIX, infos, chosen),
        dbc.Row([
            dbc.Col([dbc.Label("Structures"), dcc.Dropdown(
                id="cohort-structures", options=[ALL_FOREGROUND, *chosen.labels], value=structures, multi=True)],
                md=9),
            dbc.Col(dbc.Button("Export CSV", id="cohort-csv-button", color="secondary", className="mt-4"), md=3),
        ], className="g-2 mb-2"),
        dcc.Download(id="cohort-csv"),
        html.Div(grid("cohort-grid", column_defs(), [], 420, tooltipShowDelay=300), className="mb-3"),
        section("Reliability diagram",
                dcc.Dropdown(id="cohort-diagram-configurations", options=config_options,
                             value=[o["value"] for o in config_options][:charts.SHOWN_AT_FIRST], multi=True),
                dcc.Graph(id="cohort-reliability", config={"displaylogo": False}),
                help_text="pooled bins of every test case and repeat; several configurations overlaid"),
    ])


def layout(protocol: str | None = None, **_query: str) -> Component:
    return guarded(lambda store: _page(store, protocol))


register_protocol_callbacks(PREFIX)


def _filter_inputs() -> list[Input]:
    return [Input(f"{PREFIX}-protocol", "value"), Input(f"{PREFIX}-repeats", "value"),
            Input(f"{PREFIX}-dates", "start_date"), Input(f"{PREFIX}-dates", "end_date")]


@callback(Output("cohort-grid", "rowData"), *_filter_inputs(), Input("cohort-structures", "value"))
def _table(protocol_id: int | None, repeats: list[int] | None, start: str | None, end: str | None,
           structures: list[str] | None) -> list[dict[str, Any]]:
    chosen = cohort_filter(protocol_id, repeats, start, end)
    if chosen is None:
        return []
    store = get_store()
    with store.session() as session:
        info = protocol(session, chosen.protocol_id)
        names = dict(configurations(session, info.model_set_id))
        overall, per_structure = store.cached(session, ("summary", chosen), lambda: summary(session, chosen))
        statistics = StatisticsSettings(correction=settings().multiple_comparisons)
        stats = store.cached(session, ("cell-statistics", chosen, statistics), lambda: cell_statistics(
            case_values(session, chosen), table_metrics(), statistics))
    return cohort_rows(overall, per_structure, names, structures or [], stats)


@callback(Output("cohort-reliability", "figure"), *_filter_inputs(), Input("cohort-diagram-configurations", "value"))
def _diagram(protocol_id: int | None, repeats: list[int] | None, start: str | None, end: str | None,
             chosen_configurations: list[int] | None) -> dict[str, Any]:
    chosen = cohort_filter(protocol_id, repeats, start, end, chosen_configurations or [])
    if chosen is None:
        return charts.empty_figure("choose a protocol")
    store = get_store()
    with store.session() as session:
        info = protocol(session, chosen.protocol_id)
        grid = configurations(session, info.model_set_id)
        pooled = store.cached(session, ("reliability", chosen), lambda: reliability(session, chosen))
    return charts.reliability_figure(pooled, dict(grid), {i: k for k, (i, _) in enumerate(grid)})


@callback(Output("cohort-csv", "data"), Input("cohort-csv-button", "n_clicks"), State("cohort-grid", "rowData"),
          prevent_initial_call=True)
def _export(_clicks: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return dcc.send_string(cohort_csv(rows or []), "cohort_calibration.csv")
