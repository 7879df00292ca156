"""The review worklist: for a configuration and a review budget, the cases most likely to hold contour errors, their
ranked regions (each opens the slice browser at the region), the review items with the workflow's actions, and the
exports to the clinic.

Address: ``/worklist?configuration=NAME&budget=PERCENT`` (the menu offers the budgets the batch stores regions at,
``ReviewSettings.region_budgets``; another percentage is computed from the maps) or ``&minutes=M`` (a time budget
per patient, converted at the review rate in force and capped at the run's budget range, 5 % by default: computed
from the maps), and ``&model_set=`` (a model
set's name or identity; default the newest with results: results of two model sets are never mixed). Without a
configuration, the review configuration (``QA_REVIEW_CONFIGURATION``, else the newest model set's first) is shown at
the default budget (2 %). Each case shows its expected review minutes (flagged mL × the review rate in force: the
department's measured median seconds per mL, or the placeholder until enough reviews are measured, labelled so), and
the list its total. The controls keep the address in step without a reload (``qa_dashboard.worklist_address``); each
region links to the slice browser with the same budget and a way back, and is ticked once a reviewer opened it.
The acquisition controls show each case's group (scanner, kernel, slice thickness, …; ``unknown`` where not
stated) in the case grid and narrow the lists to one group, each offered with its n of cases
(:mod:`pipeline.store.strata`); the worklist exports (CSV, Excel) follow the group (``&stratum=KEY&group=NAME``), the
audit report keeps the whole list.
A reviewer with readings in an open review study gets its study readings instead (``qa_dashboard.study_worklist``),
and this page's callbacks refuse it the general list (403): it would show the uncertainty of its blind readings.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dcc, html
from dash.development.base_component import Component

from pipeline.metrics.review_budget import Budget, ReviewRate
from pipeline.review.workflow import Action, allowed
from pipeline.review.worklist import Worklist, default_configuration, in_group
from pipeline.store.strata import SCANNER, group_counts, stratum_label
from qa_dashboard import auth, blinding, inputs
from qa_dashboard.components import LINK_RENDERER, grid, guarded, not_found, section
from qa_dashboard.config import settings
from qa_dashboard.filters import (
    EVERY_SCAN,
    acquisition_choice,
    acquisition_filters,
    group_options,
    register_group_reset,
    stratum,
)
from qa_dashboard.queries.trends import MARK_RULES, case_marks
from qa_dashboard.queries.worklist import (
    STATE_BADGE_RENDERER,
    acquisition_groups,
    case_rows,
    configurations,
    expected_minutes,
    item_rows,
    load_worklist,
    model_sets,
    opened,
    rate_in_force,
    region_rows,
)
from qa_dashboard.review import MAX_MINUTES, checked_scope, panel, scope, scope_budget
from qa_dashboard.store import Store, get_store
from qa_dashboard.study_worklist import study_worklist
from qa_dashboard.worklist_address import DEFAULT_PERCENT, MAX_PERCENT, parse_budget, worklist_search

dash.register_page(__name__, path="/worklist", title="Review worklist", name="Worklist")

CASE_COLUMNS = [
    {"field": "rank", "headerName": "#", "width": 70, "type": "numericColumn"},
    {"field": "case", "minWidth": 150, **LINK_RENDERER},
    {"field": "acquisition", "headerName": "Acquisition", "minWidth": 150,
     "headerTooltip": "the case's group in the acquisition chosen above (unknown: its scan does not state it)"},
    {"field": "status", **STATE_BADGE_RENDERER},
    {"field": "unreviewed", "headerName": "Unreviewed items", "type": "numericColumn"},
    {"field": "regions", "type": "numericColumn", "width": 100},
    {"field": "flagged_ml", "headerName": "Flagged mL", "type": "numericColumn"},
    {"field": "expected_minutes", "headerName": "Expected min", "type": "numericColumn",
     "headerTooltip": "flagged mL × the review rate in force (see the line above the table)"},
    {"field": "score", "headerName": "Score (entropy·mL)", "type": "numericColumn"},
    {"field": "expected_recall", "headerName": "Expected errors captured %", "type": "numericColumn",
     "headerTooltip": "the cohort's mean error recall at this budget (reference-backed cases); —: no estimate"},
    {"field": "budget_pct", "headerName": "Budget % of ROI", "type": "numericColumn"},
    {"field": "capped", "width": 90},
    {"field": "reference", "headerName": "Reference", "width": 140,
     "cellClassRules": {"text-warning fw-semibold": "params.value !== 'yes'"}},
    {"field": "prediction", "headerName": "Prediction", "minWidth": 200,
     "headerTooltip": "the configuration predicted no foreground: every structure must be reviewed whole",
     "cellClassRules": {"text-danger fw-semibold": "params.value !== ''"}},
    {"field": "ood", "headerName": "Out of distribution?", "minWidth": 240,
     "headerTooltip": "mean entropy over the body ranked against the same configuration on the calibration cohort",
     "cellClassRules": {"text-danger fw-semibold": "params.data.ood_flag"}},
    {"field": "levels", "headerName": "Levels", "cellClassRules": MARK_RULES,
     "headerTooltip": "a value of the case out of its tolerance or beyond its action level (see Trends)"},
]
REGION_COLUMNS = [
    {"field": "case_rank", "headerName": "#", "width": 70, "type": "numericColumn"},
    {"field": "case", "minWidth": 140}, {"field": "region", "headerName": "Region", "width": 95},
    {"field": "open", "width": 90, "sortable": False, "filter": False, **LINK_RENDERER},
    {"field": "opened", "headerName": "✓", "width": 60, "tooltipField": "opened_by",
     "headerTooltip": "ticked once a reviewer opened the region in the slice browser (first: on hover)"},
    {"field": "structure"}, {"field": "volume_ml", "headerName": "Volume mL", "type": "numericColumn"},
    {"field": "slices", "headerName": "Slices (z)"},
    {"field": "mean_entropy", "headerName": "Mean entropy", "type": "numericColumn"},
    {"field": "max_entropy", "headerName": "Max entropy", "type": "numericColumn"},
    {"field": "state", **STATE_BADGE_RENDERER},
]


def export_links(configuration: str, budget: Budget, model_set: str = "", key: str = SCANNER,
                 group: str = EVERY_SCAN) -> Component:
    """The worklist and report downloads (served by ``qa_dashboard.exports``), for roles that may export: the
    worklist's narrowed to the acquisition ``group`` of the stratum ``key`` unless every scan, the report whole."""
    user = auth.current_user()
    if user is None or not allowed(user["role"], Action.EXPORT):
        return html.Small("Exports need the reviewer, approver or admin role.", className="text-muted",
                          id="export-links")
    query = urlencode({"configuration": configuration, "model_set": model_set, "kind": budget.kind,
                       "value": budget.value})
    listed = query if group == EVERY_SCAN else f"{query}&{urlencode({'stratum': key, 'group': group})}"
    links = [("Worklist CSV", f"/export/worklist.csv?{listed}"), ("Worklist Excel", f"/export/worklist.xlsx?{listed}"),
             ("Audit report PDF", f"/export/report.pdf?{query}")]
    return html.Div([dbc.Button(label, href=href, external_link=True, color="outline-primary", size="sm",
                                className="me-1", id=f"export-{label.split()[-1].lower()}")
                     for label, href in links], id="export-links")


def _content(whole: Worklist, rate: ReviewRate, key: str = SCANNER, group: str = EVERY_SCAN) -> Component:
    """The lists of ``whole``, each case with its group in the stratum ``key``, narrowed to ``group`` unless every
    scan."""
    groups = acquisition_groups(get_store(), whole, key)
    worklist = whole if group == EVERY_SCAN else in_group(whole, groups, group)
    warnings = [dbc.Alert(["Left out (maps missing): ", html.Ul([html.Li(line) for line in worklist.skipped])],
                          color="warning", id="worklist-skipped")] if worklist.skipped else []
    budget = worklist.budget
    with get_store().session() as session:
        marks = case_marks(session)
    cases = case_rows(worklist, rate)
    regions = region_rows(worklist, ticks=opened(get_store(), worklist))
    images = {case.case: case.image_id for case in worklist.cases}
    for row in cases:
        row["levels"] = marks.get((row["name"], worklist.configuration), "")
        row["acquisition"] = groups.get(images[row["name"]], "")
    return html.Div([
        *warnings,
        html.P(f"{len(worklist.cases)} case(s), {worklist.unreviewed()} item(s) not reviewed yet · "
               f"{worklist.configuration} at {budget.describe()}{_rounding(budget)}"
               f"{'' if group == EVERY_SCAN else f' · {stratum_label(key)}: {group} only'}", id="worklist-summary",
               className="text-muted"),
        dcc.Store(id="worklist-group-counts", data=group_counts(groups)),
        html.P([html.Span(f"Expected review time: {expected_minutes(worklist, rate):.1f} min for the list",
                          className="fw-semibold"), f" ({rate.label()})"], id="worklist-time"),
        section("Cases", grid("worklist-cases", CASE_COLUMNS, cases, 260, rowSelection={
            "mode": "singleRow", "checkboxes": False, "enableClickSelection": True}),
            help_text="highest entropy mass first; select a case to narrow the lists below, click its name to open it"),
        section("Regions", grid("worklist-regions", REGION_COLUMNS, regions, 300),
                help_text="connected parts of the top-budget mask, highest mean entropy × volume first"),
        section("Review", panel(scope(worklist.configuration, budget, model_set=worklist.model_set),
                                item_rows(worklist)),
                help_text="select items, then act; approval needs a second user with the approver role"),
        section("Exports", export_links(worklist.configuration, budget, worklist.model_set, key, group)),
    ])


def _rounding(budget: Budget) -> str:
    """How a time budget became each case's percentage (the rule: :meth:`Budget.fraction`)."""
    if budget.kind == "fraction":
        return ""
    steps = ", ".join(f"{100 * b:g}" for b in settings().review.region_budgets)
    return f" (per case: the share of its ROI within the minutes, rounded down to {steps} %)"


def budget_choices(percent: float) -> list[dict[str, Any]]:
    """The budget menu: the review settings' ``region_budgets`` (stored by the batch: the list opens without reading
    a map), and ``percent`` when the address asked for another one (computed from the maps, said so)."""
    stored = {round(100 * b, 6) for b in settings().review.region_budgets}
    return [{"label": f"{value:g} %" if value in stored else f"{value:g} % (from the maps: slower)", "value": value}
            for value in sorted({*stored, round(percent, 6)})]


def _page(store: Store, configuration: str | None, budget: Budget, model_set: str | None) -> Component:
    readings = blinding.readings()
    if readings:
        return study_worklist(store, readings)
    with store.session() as session:
        sets = model_sets(session)
        by_name = {name: identity for identity, name in sets}
        chosen_set = by_name.get(model_set or "", model_set) or (sets[0][0] if sets else None)
        if chosen_set not in {identity for identity, _ in sets}:
            return not_found(f"There is no model set {model_set!r} with stored results "
                             f"(stored: {', '.join(name for _, name in sets)}).")
        names = configurations(session, chosen_set)
        chosen = configuration or default_configuration(session, settings().review_configuration)
    if chosen not in names:
        return not_found(f"There is no stored result of configuration {chosen!r} (stored: {', '.join(names)}).")
    percent = 100 * budget.value if budget.kind == "fraction" else DEFAULT_PERCENT
    several = {} if len(sets) > 1 else {"display": "none"}
    return html.Div([
        dcc.Location(id="worklist-url", refresh=False),
        html.H3("Review worklist"),
        dbc.Row([
            dbc.Col([dbc.Label("Model set"), dcc.Dropdown(
                [{"label": f"{name} · {identity}", "value": identity} for identity, name in sets], chosen_set,
                id="worklist-model-set", clearable=False)], lg=3, style=several),
            dbc.Col([dbc.Label("Configuration"), dcc.Dropdown(names, chosen, id="worklist-configuration",
                                                              clearable=False)], lg=3),
            dbc.Col([dbc.Label("Budget"), dbc.RadioItems(
                options=[{"label": "% of ROI voxels", "value": "fraction"},
                         {"label": "minutes per patient", "value": "minutes"}],
                value=budget.kind, id="worklist-kind", inline=True)], lg=3),
            dbc.Col([dbc.Label("Percent of ROI voxels"), dcc.Dropdown(
                budget_choices(percent), percent, id="worklist-percent", clearable=False,
                disabled=budget.kind == "minutes")], lg=2),
            dbc.Col([dbc.Label("Minutes per patient"), dbc.Input(
                id="worklist-minutes", type="number", min=0, step=0.5, disabled=budget.kind == "fraction",
                value=budget.value if budget.kind == "minutes" else 5)], lg=2),
        ], className="mb-2 g-3", id="worklist-controls"),
        dbc.Row(acquisition_filters("worklist", {}), className="mb-3 g-3"),
        dcc.Loading(html.Div(_content(load_worklist(store, chosen, budget, model_set=chosen_set),
                                      rate_in_force(store)), id="worklist-content")),
    ])


def layout(configuration: str | None = None, budget: str | None = None, minutes: str | None = None,
           model_set: str | None = None, **_query: str) -> Component:
    if any(value is not None and len(value) > inputs.MAX_NAME for value in (configuration, budget, minutes, model_set)):
        return not_found("The address is malformed: a value is too long.")
    try:
        parsed = parse_budget(budget, minutes)
    except ValueError as error:
        return not_found(str(error))
    return guarded(lambda store: _page(store, configuration, parsed, model_set))


@callback(Output("worklist-content", "children"), Output("worklist-url", "search"),
          Input("worklist-configuration", "value"), Input("worklist-kind", "value"), Input("worklist-percent", "value"),
          Input("worklist-minutes", "value"), Input("worklist-model-set", "value"), Input("worklist-stratum", "value"),
          Input("worklist-group", "value"), prevent_initial_call=True)
def _reload(configuration: Any, kind: Any, percent: Any, minutes: Any, model_set: Any, key: Any, group: Any
            ) -> tuple[Component, Any]:
    """The list at the controls' configuration and budget, and the same in the address (no reload: a copied or
    bookmarked address opens this list)."""
    if blinding.in_study():
        raise blinding.refuse(None, "the general worklist")
    configuration = inputs.text(configuration, "worklist-configuration.value")
    kind = inputs.choice(kind, "worklist-kind.value", ("fraction", "minutes"))
    percent = inputs.optional(inputs.number, percent, "worklist-percent.value", 0.0, MAX_PERCENT)
    minutes = inputs.optional(inputs.number, minutes, "worklist-minutes.value", 0.0, MAX_MINUTES)
    model_set = inputs.optional(inputs.text, model_set, "worklist-model-set.value")
    key, group = stratum(key, "worklist-stratum.value"), (acquisition_choice(key, group) or ("", EVERY_SCAN))[1]
    value = (minutes or 0.0) if kind == "minutes" else round(float(percent or 0.0) / 100, 6)
    try:
        budget = Budget(kind, float(value))
        return (_content(load_worklist(get_store(), configuration, budget, model_set=model_set),
                         rate_in_force(get_store()), key, group), worklist_search(configuration, budget, model_set))
    except (ValueError, LookupError) as error:
        return dbc.Alert(str(error), color="danger", id="worklist-error"), dash.no_update


@callback(Output("worklist-percent", "disabled"), Output("worklist-minutes", "disabled"),
          Input("worklist-kind", "value"), prevent_initial_call=True)
def _budget_kind(kind: Any) -> tuple[bool, bool]:
    kind = inputs.choice(kind, "worklist-kind.value", ("fraction", "minutes"))
    return kind == "minutes", kind != "minutes"


@callback(Output("worklist-regions", "rowData"), Output("review-items", "rowData", allow_duplicate=True),
          Output("review-scope", "data"), Input("worklist-cases", "selectedRows"), State("review-scope", "data"),
          prevent_initial_call=True)
def _narrow(selected: Any, data: Any) -> tuple[Any, Any, Any]:
    if blinding.in_study():
        raise blinding.refuse(None, "the general worklist")
    rows = inputs.listed(selected, "worklist-cases.selectedRows",
                         lambda row, name: inputs.record(row, name, {"name": inputs.text}), 1)
    case = rows[0]["name"] if rows else None
    data = checked_scope(data)
    worklist = load_worklist(get_store(), data["configuration"], scope_budget(data), model_set=data.get("model_set"))
    return (region_rows(worklist, case, opened(get_store(), worklist)), item_rows(worklist, case),
            {**data, "case": case})


@callback(Output("worklist-group", "options"), Input("worklist-group-counts", "data"))
def _group_choices(counts: Any) -> list[dict[str, object]]:
    """The group menu: the listed cases' groups in the chosen stratum, each with its n."""
    checked = {inputs.text(name, "worklist-group-counts key"): inputs.integer(n, "worklist-group-counts value")
               for name, n in (counts or {}).items()} if isinstance(counts, dict) else {}
    return group_options(checked)


register_group_reset("worklist")
