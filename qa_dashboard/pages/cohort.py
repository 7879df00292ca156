"""Cohort calibration: configuration × structure table (mean ± SD over repeats) and the reliability diagram; the
table's CSV is an audited export (``/export/cohort.csv``, reviewer and above) with the filters shown. The filters
include the acquisition (a stratum and one of its groups); the table "By acquisition" groups the filtered cases by
the chosen stratum, with n per group and each group's calibration against the rest
(:mod:`pipeline.store.cohort_strata`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, callback, dcc, html
from dash.development.base_component import Component

from pipeline.store.cohort_numbers import configurations, reliability
from pipeline.store.cohort_strata import stratified
from pipeline.store.strata import SCANNER, stratum_label
from qa_dashboard import blinding, charts, inputs
from qa_dashboard.components import export_button, grid, guarded, not_found, section, unreferenced_alert
from qa_dashboard.filters import (
    cohort_filter,
    filter_query,
    parse_protocol,
    protocol_filters,
    register_protocol_callbacks,
    stratum,
)
from qa_dashboard.queries.cohort import (
    acquisition_counts,
    protocol,
    protocols,
    reference_kind_counts,
    unreferenced_note,
)
from qa_dashboard.shown_configurations import shown_for
from qa_dashboard.store import Store, get_store
from qa_dashboard.strata_table import strata_columns, strata_rows
from qa_dashboard.tables import ALL_FOREGROUND, column_defs, load_rows

dash.register_page(__name__, path="/cohort", title="Cohort calibration", name="Cohort calibration")
PREFIX = "cohort"


def _page(store: Store, wanted: str | None) -> Component:
    with store.session() as session:
        infos = protocols(session)
        if not infos:
            return html.Div([unreferenced_alert(unreferenced_note(session)), dbc.Alert(
                ["No protocol has been run yet: ",
                 html.Code("python -m pipeline protocol --models MANIFEST --cohort NAME"),
                 " (the demo runs one)."], color="info", id="no-protocol")])
        chosen = parse_protocol(wanted, infos)
        if chosen is None:
            return not_found(f"There is no protocol {wanted!r}.")
        waiting = unreferenced_alert(unreferenced_note(session, chosen.model_set_id))
        counts = reference_kind_counts(session, chosen.id)
        choice = shown_for(store, session, chosen)
        groups = acquisition_counts(session, chosen.id, SCANNER)
    structures = [ALL_FOREGROUND, *chosen.labels[1:]]
    return html.Div([
        html.H3("Cohort calibration"),
        waiting,
        html.P("Per configuration: test cases of each repeat, mean over them, then mean ± SD over repeats (the SD says "
               "how much the number depends on the split, not how sure it is). TS configurations use each repeat's own "
               "temperature fit. ★ best: separated from every other configuration of its structure (paired bootstrap "
               "CI of the difference excludes 0 and the Holm-adjusted Wilcoxon p < 0.05); ≈ tied for best. Hover a "
               "cell for its 95 % CI (cases resampled) and n.", className="text-muted", id="cohort-legend"),
        protocol_filters(PREFIX, infos, chosen, counts, groups),
        dbc.Row([
            dbc.Col([dbc.Label("Structures"), dcc.Dropdown(
                id="cohort-structures", options=[ALL_FOREGROUND, *chosen.labels], value=structures, multi=True)],
                md=9),
            dbc.Col(export_button("cohort-csv-button"), md=3),
        ], className="g-2 mb-2"),
        html.Div(grid("cohort-grid", column_defs(), [], 420), className="mb-3"),
        section("Reliability diagram",
                dcc.Dropdown(id="cohort-diagram-configurations", options=choice.options, value=choice.shown,
                             multi=True),
                html.Small(choice.note, id="cohort-shown-note", className="text-muted"),
                dcc.Graph(id="cohort-reliability", config={"displaylogo": False}),
                help_text="pooled bins of every test case and repeat; several configurations overlaid"),
        section("By acquisition",
                html.P(id="cohort-strata-note", className="text-muted small mb-2"),
                grid("cohort-strata", strata_columns(), [], 360),
                help_text="the filtered test cases grouped by the acquisition chosen above; n per group; ΔECE: the "
                          "group's mean ROI ECE minus the other cases' with its 95 % case-bootstrap CI, "
                          "⚑ where it excludes 0"),
    ])


def layout(protocol: str | None = None, **_query: str) -> Component:
    return blinding.unless_in_study(lambda: guarded(lambda store: _page(store, protocol)))


register_protocol_callbacks(PREFIX)


@callback(Output("cohort-diagram-configurations", "options"), Output("cohort-diagram-configurations", "value"),
          Output("cohort-shown-note", "children"), Output("cohort-structures", "options"),
          Output("cohort-structures", "value"), Input(f"{PREFIX}-protocol", "value"), prevent_initial_call=True)
def _choices_of(protocol_id: Any) -> tuple[Any, ...]:
    """Another protocol (of another model set, perhaps) brings its own configurations and structures."""
    protocol_id = inputs.optional(inputs.integer, protocol_id, f"{PREFIX}-protocol.value")
    if protocol_id is None:
        return [], [], "", [], []
    store = get_store()
    with store.session() as session:
        info = protocol(session, protocol_id)
        choice = shown_for(store, session, info)
    return (choice.options, choice.shown, choice.note, [ALL_FOREGROUND, *info.labels],
            [ALL_FOREGROUND, *info.labels[1:]])


def _filter_inputs() -> list[Input]:
    return [Input(f"{PREFIX}-protocol", "value"), Input(f"{PREFIX}-repeats", "value"),
            Input(f"{PREFIX}-dates", "start_date"), Input(f"{PREFIX}-dates", "end_date"),
            Input(f"{PREFIX}-reference-kind", "value"), Input(f"{PREFIX}-stratum", "value"),
            Input(f"{PREFIX}-group", "value")]


def _structures(value: Any) -> list[str]:
    return inputs.listed(value, "cohort-structures.value", inputs.text)


@callback(Output("cohort-grid", "rowData"), *_filter_inputs(), Input("cohort-structures", "value"))
def _table(protocol_id: Any, repeats: Any, start: Any, end: Any, kind: Any, key: Any, group: Any, structures: Any
           ) -> list[dict[str, Any]]:
    chosen = cohort_filter(protocol_id, repeats, start, end, reference_kind=kind, stratum_key=key, group=group)
    structures = _structures(structures)
    if chosen is None:
        return []
    return load_rows(get_store(), chosen, structures)


@callback(Output("cohort-csv-button", "href"), *_filter_inputs(), Input("cohort-structures", "value"))
def _export_href(protocol_id: Any, repeats: Any, start: Any, end: Any, kind: Any, key: Any, group: Any,
                 structures: Any) -> str:
    chosen = cohort_filter(protocol_id, repeats, start, end, reference_kind=kind, stratum_key=key, group=group)
    if chosen is None:
        return ""
    structures_query = urlencode([("structure", s) for s in _structures(structures)])
    return f"/export/cohort.csv?{'&'.join(q for q in (filter_query(chosen), structures_query) if q)}"


@callback(Output("cohort-reliability", "figure"), *_filter_inputs(), Input("cohort-diagram-configurations", "value"))
def _diagram(protocol_id: Any, repeats: Any, start: Any, end: Any, kind: Any, key: Any, group: Any,
             chosen_configurations: Any) -> dict[str, Any]:
    chosen = cohort_filter(protocol_id, repeats, start, end, chosen_configurations or [],
                           reference_kind=kind, stratum_key=key, group=group)
    if chosen is None:
        return charts.empty_figure("choose a protocol")
    store = get_store()
    with store.session() as session:
        info = protocol(session, chosen.protocol_id)
        grid = configurations(session, info.model_set_id)
        pooled = store.cached(session, ("reliability", chosen), lambda: reliability(session, chosen))
    return charts.reliability_figure(pooled, dict(grid), {i: k for k, (i, _) in enumerate(grid)})


@callback(Output("cohort-strata", "rowData"), Output("cohort-strata-note", "children"), *_filter_inputs())
def _strata(protocol_id: Any, repeats: Any, start: Any, end: Any, kind: Any, key: Any, group: Any
            ) -> tuple[list[dict[str, Any]], str]:
    chosen = cohort_filter(protocol_id, repeats, start, end, reference_kind=kind, stratum_key=key, group=group)
    key = stratum(key, "cohort-stratum.value")
    if chosen is None:
        return [], ""
    store = get_store()
    with store.session() as session:
        frame = store.cached(session, ("strata", chosen, key), lambda: stratified(session, chosen, key))
    rows = strata_rows(frame)
    flagged = sorted({f"{r['group']} ({r['configuration']})" for r in rows if r["differs"]})
    return rows, (f"Grouped by {stratum_label(key).lower()}. Calibration differs from the rest: "
                  f"{', '.join(flagged) if flagged else 'no group'}.")
