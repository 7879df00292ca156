"""Method comparison: budget curves with bands, AUC distributions, a paired comparison with a clickable scatter, and
what each configuration costs and buys (:mod:`qa_dashboard.cost_view`)."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dcc, html, no_update
from dash.development.base_component import Component

from pipeline.errors import InputError
from pipeline.metrics import registry
from pipeline.store.cohort_numbers import case_metrics, case_table, configurations, curves
from pipeline.store.strata import SCANNER, image_groups, stratum_label
from qa_dashboard import blinding, charts, cost_view, inputs
from qa_dashboard.cell_statistics import family_adjusted_p
from qa_dashboard.components import export_button, guarded, not_found, patient_href, section, unreferenced_alert
from qa_dashboard.config import settings
from qa_dashboard.filters import cohort_filter, parse_protocol, protocol_filters, register_protocol_callbacks, stratum
from qa_dashboard.queries.cohort import (
    acquisition_counts,
    paired,
    paired_by_group,
    per_case,
    protocol,
    reference_kind_counts,
    unreferenced_note,
)
from qa_dashboard.queries.cohort import protocols as list_protocols
from qa_dashboard.shown_configurations import shown_for
from qa_dashboard.store import Store, get_store

dash.register_page(__name__, path="/compare", title="Method comparison", name="Method comparison")
PREFIX = "compare"
BOXES = tuple(m.name for m in registry.case_metrics() if m.boxplot)  # fixed when the callbacks are registered
PAIRED_DEFAULT = "ece"
GRAPH_CONFIG = {"displaylogo": False}


def _page(store: Store, wanted: str | None) -> Component:
    with store.session() as session:
        infos = list_protocols(session)
        if not infos:
            return html.Div([unreferenced_alert(unreferenced_note(session)), dbc.Alert(
                ["No protocol has been run yet: ",
                 html.Code("python -m pipeline protocol --models MANIFEST --cohort NAME"),
                 "."], color="info", id="no-protocol")])
        chosen = parse_protocol(wanted, infos)
        if chosen is None:
            return not_found(f"There is no protocol {wanted!r}.")
        waiting = unreferenced_alert(unreferenced_note(session, chosen.model_set_id))
        counts = reference_kind_counts(session, chosen.id)
        groups = acquisition_counts(session, chosen.id, SCANNER)
        choice = shown_for(store, session, chosen)
    dropdown = {"options": choice.options, "clearable": False}
    return html.Div([
        html.H3("Method comparison"),
        waiting,
        protocol_filters(PREFIX, infos, chosen, counts, groups),
        dbc.Label("Configurations"),
        dcc.Dropdown(id="compare-configurations", options=choice.options, value=choice.shown, multi=True),
        html.Small(choice.note, id="compare-shown-note", className="text-muted d-block mb-3"),
        dbc.Row([dbc.Col(dcc.Graph(id=f"compare-{m}", config=GRAPH_CONFIG), lg=4) for m in charts.CURVE_LABELS]),
        dbc.Row([dbc.Col(dcc.Graph(id=f"compare-{m}-box", config=GRAPH_CONFIG), lg=6) for m in BOXES]),
        section(
            "Paired comparison on the same cases",
            dbc.Row([
                dbc.Col([dbc.Label("A"), dcc.Dropdown(id="compare-a", value=choice.best, **dropdown)],
                        md=4),
                dbc.Col([dbc.Label("B"), dcc.Dropdown(id="compare-b", value=choice.reference, **dropdown)],
                        md=4),
                dbc.Col([dbc.Label("Metric"), dcc.Dropdown(
                    id="compare-metric", options=[{"label": m.label, "value": m.name, "title": m.describe()}
                                                  for m in registry.case_metrics()],
                    value=PAIRED_DEFAULT, clearable=False)], md=4),
            ], className="g-2 mb-2"),
            dbc.Row([dbc.Col(html.Div(id="compare-paired-summary"), md=4),
                     dbc.Col(dcc.Graph(id="compare-scatter", config=GRAPH_CONFIG), md=8)]),
            help_text="each case's mean over the repeats it was tested in (below: per group of the acquisition chosen "
                      "above, with its n); bootstrap CI of the mean difference "
                      "(10 000 resamples) and Wilcoxon signed-rank test",
        ),
        cost_view.view(export_button("cost-csv-button")),
        dcc.Location(id="compare-nav", refresh="callback-nav"),
    ])


def layout(protocol: str | None = None, **_query: str) -> Component:
    return blinding.unless_in_study(lambda: guarded(lambda store: _page(store, protocol)))


register_protocol_callbacks(PREFIX)


@callback(Output("compare-configurations", "options"), Output("compare-configurations", "value"),
          Output("compare-shown-note", "children"), Output("compare-a", "options"), Output("compare-a", "value"),
          Output("compare-b", "options"), Output("compare-b", "value"), Input(f"{PREFIX}-protocol", "value"),
          prevent_initial_call=True)
def _choices_of(protocol_id: Any) -> tuple[Any, ...]:
    """Another protocol (of another model set, perhaps) brings its own configurations, shown as at first view."""
    protocol_id = inputs.optional(inputs.integer, protocol_id, f"{PREFIX}-protocol.value")
    if protocol_id is None:
        return [], [], "", [], None, [], None
    store = get_store()
    with store.session() as session:
        choice = shown_for(store, session, protocol(session, protocol_id))
    return (choice.options, choice.shown, choice.note, choice.options, choice.best, choice.options,
            choice.reference)


FILTERS = [Input(f"{PREFIX}-protocol", "value"), Input(f"{PREFIX}-repeats", "value"),
           Input(f"{PREFIX}-dates", "start_date"), Input(f"{PREFIX}-dates", "end_date"),
           Input(f"{PREFIX}-reference-kind", "value"), Input(f"{PREFIX}-stratum", "value"),
           Input(f"{PREFIX}-group", "value")]
cost_view.register(FILTERS)


def _configuration(value: Any, field: str, names: dict[int, str]) -> int:
    """A configuration id of the protocol's model set (InputError otherwise)."""
    checked = inputs.integer(value, field)
    if checked not in names:
        raise InputError(f"{field}: configuration #{checked} is not one of this protocol's")
    return checked


def _grid(session: Any, protocol_id: int) -> tuple[dict[int, str], dict[int, int]]:
    grid = configurations(session, protocol(session, protocol_id).model_set_id)
    return dict(grid), {i: k for k, (i, _) in enumerate(grid)}


@callback(*(Output(f"compare-{m}", "figure") for m in charts.CURVE_LABELS), *FILTERS,
          Input("compare-configurations", "value"))
def _curves(protocol_id: Any, repeats: Any, start: Any, end: Any, kind: Any, key: Any, group: Any, shown: Any
            ) -> tuple[dict[str, Any], ...]:
    chosen = cohort_filter(protocol_id, repeats, start, end, shown or [], kind, key, group)
    if chosen is None:
        return tuple(charts.empty_figure("choose a protocol") for _ in charts.CURVE_LABELS)
    store = get_store()
    with store.session() as session:
        names, positions = _grid(session, chosen.protocol_id)
        frame = store.cached(session, ("curves", chosen), lambda: curves(session, chosen))
    return tuple(charts.curve_figure(frame, m, names, positions) for m in charts.CURVE_LABELS)


@callback(*(Output(f"compare-{m}-box", "figure") for m in BOXES), *FILTERS, Input("compare-configurations", "value"))
def _distributions(protocol_id: Any, repeats: Any, start: Any, end: Any, kind: Any, key: Any, group: Any, shown: Any
                   ) -> tuple[dict[str, Any], ...]:
    chosen = cohort_filter(protocol_id, repeats, start, end, shown or [], kind, key, group)
    if chosen is None:
        return tuple(charts.empty_figure("choose a protocol") for _ in BOXES)
    store = get_store()
    with store.session() as session:
        names, positions = _grid(session, chosen.protocol_id)
        cases = store.cached(session, ("cases", chosen), lambda: case_table(session, chosen))
    return tuple(charts.distribution_figure(per_case(cases, m), registry.metric(m).label, names, positions)
                 for m in BOXES)


@callback(Output("compare-paired-summary", "children"), Output("compare-scatter", "figure"), *FILTERS,
          Input("compare-a", "value"), Input("compare-b", "value"), Input("compare-metric", "value"),
          Input("compare-configurations", "value"))
def _paired(protocol_id: Any, repeats: Any, start: Any, end: Any, kind: Any, key: Any, group: Any, a: Any, b: Any,
            metric: Any, shown: Any) -> tuple[Component, dict[str, Any]]:
    """A − B on the same cases; its Wilcoxon p is adjusted over every pair of the configurations shown (with A and
    B), the family a reader compares by eye."""
    a, b = inputs.optional(inputs.integer, a, "compare-a.value"), inputs.optional(inputs.integer, b, "compare-b.value")
    metric = inputs.optional(inputs.choice, metric, "compare-metric.value", case_metrics())
    shown = inputs.listed(shown, "compare-configurations.value", inputs.integer)
    key = stratum(key, "compare-stratum.value")
    family = sorted({*shown, *(c for c in (a, b) if c is not None)})
    chosen = cohort_filter(protocol_id, repeats, start, end, family, kind, key, group)
    if chosen is None or a is None or b is None or metric is None:
        return html.Span("choose a protocol, A, B and a metric"), charts.empty_figure("nothing to compare")
    store = get_store()
    with store.session() as session:
        names, _ = _grid(session, chosen.protocol_id)
        a, b = _configuration(a, "compare-a.value", names), _configuration(b, "compare-b.value", names)
        cases = store.cached(session, ("cases", chosen), lambda: case_table(session, chosen))
        groups = image_groups(session, key, {int(i) for i in cases["image_id"]})
    result, values = paired(cases, metric, a, b)
    correction = settings().multiple_comparisons
    own, count = family_adjusted_p(per_case(cases, metric), a, b, family, correction)
    label = registry.metric(metric).label
    rows = charts.paired_summary(result, label, names[a], names[b], own, count, correction)
    rows += [(f"{stratum_label(key)} {group} (n = {c.n})", charts.difference(c))
             for group, c in paired_by_group(cases, metric, a, b, groups).items()]
    table = dbc.Table([html.Tbody([html.Tr([html.Th(k), html.Td(v)]) for k, v in rows])], size="sm",
                      id="compare-paired-table")
    return table, charts.paired_figure(values, label, names[a], names[b])


@callback(Output("compare-nav", "href"), Input("compare-scatter", "clickData"), State("compare-a", "value"),
          State("compare-b", "value"), prevent_initial_call=True)
def _open_case(click: Any, a: Any, b: Any) -> str:
    a, b = inputs.optional(inputs.integer, a, "compare-a.value"), inputs.optional(inputs.integer, b, "compare-b.value")
    inputs.point(click, "compare-scatter.clickData")
    points = click["points"] if click else []
    case = next((p.get("customdata") for p in points if isinstance(p, dict) and p.get("customdata")), None)
    return patient_href(inputs.text(case, "compare-scatter customdata"), a=a, b=b) if case else no_update
