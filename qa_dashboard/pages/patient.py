"""The patient slice browser: three planes per configuration, overlays, probe, metrics (layout: ``viewer_layout``).

Address: ``/patient/<name>?a=ID&b=ID&at=z,y,x`` — configurations A and B by id, the crosshair's voxel;
``&budget=PERCENT`` the review budget (default 2 %), which the views, the review panel and the downloads share, or
``&minutes=M`` alone (a study reading's link) a time budget per patient, opened at the fraction of this case's ROI it
becomes at the review rate in force (the worklist's conversion); without either, a study reading's budget, else 2 %;
``&region=RANK`` (the worklist's region links, with the list's ``&minutes=`` for a time budget) times the work on that
region (``qa_dashboard.review``) and shows the way through the list (``qa_dashboard.region_nav``);
``&w=&l=&overlays=&grid=&zoom=&thickness=&fill=&colours=`` the rest of the view (``qa_dashboard.viewer_address``),
kept in the address bar as the view changes so that a copied link reproduces it.
Pictures are rendered on the server from the stored maps (``qa_dashboard.rendering``); the browser only receives two
PNGs per view. Wheel and keys are turned into updates of ``viewer-nav`` by ``assets/viewer.js``, whose clientside
``navigate`` moves the slice; each plane's callback then redraws that plane, and only moves the crosshair of the
other two. The measurement tools (``qa_dashboard.viewer_measure``) are drawn on the slice they were made on. Below
the views, the review panel (``qa_dashboard.review``) lists this case's items under configuration A with the
workflow's actions, and the case's downloads (review regions as NIfTI, and as an RTSTRUCT for DICOM cases).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote, unquote, urlencode

import dash
import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Input, Output, Patch, State, callback, clientside_callback, ctx, html
from dash.development.base_component import Component

from pipeline.metrics.regions import slice_number, slice_span
from pipeline.metrics.review_budget import Budget
from pipeline.review.study_allocation import Arm
from pipeline.review.study_blinding import NOTHING_HIDDEN, Hidden
from pipeline.review.workflow import Action, WorkflowError, allowed
from qa_dashboard import auth, blinding, inputs, review, viewer, viewer_client  # noqa: F401 (registers callbacks)
from qa_dashboard import viewer_inputs as checked
from qa_dashboard import viewer_measure as measurements
from qa_dashboard.components import guarded, not_found, number, section
from qa_dashboard.queries.worklist import budget_fraction
from qa_dashboard.region_nav import region_nav
from qa_dashboard.rendering import views
from qa_dashboard.rendering.geometry import PLANES
from qa_dashboard.store import Store, get_store
from qa_dashboard.viewer_address import MAX_DIGITS, parse_at, parse_choice, parse_view
from qa_dashboard.viewer_controls import available_overlays
from qa_dashboard.viewer_layout import header, viewer_layout
from qa_dashboard.worklist_address import parse_budget

dash.register_page(__name__, path_template="/patient/<name>", title="Slice browser")
SIDES = ("a", "b")


def _page(store: Store, name: str, query: dict[str, str | None]) -> Component:
    view = viewer.load(store, name)
    if view is None:
        return not_found(f"There is no case called {name!r}.")
    try:
        arm = blinding.open_case(name)
    except WorkflowError as error:
        return dbc.Alert(str(error), color="warning", id="study-refused")
    hidden = blinding.hiding(name)
    valid_a, a = parse_choice(query.get("a"), view)
    valid_b, b = parse_choice(query.get("b"), view)
    valid_at, slices = parse_at(query.get("at"), view.case)
    if not (valid_a and valid_b):
        return not_found(f"The configuration asked for ({query.get('a') or query.get('b')!r}) has no result for "
                         f"case {name!r}.")
    if not valid_at:
        return not_found(f"at={query.get('at')!r} is not a voxel z,y,x inside case {name!r}.")
    if not view.results:
        return html.Div([header(view.case, hidden.reference),
                         dbc.Alert("The batch stored no result for this case yet.", color="info")])
    if view.case.ct_path is None:
        return html.Div([header(view.case, hidden.reference),
                         dbc.Alert("The batch stored no CT map for this case: run the batch again.", color="warning")])
    with_maps = [c for c, r in view.results.items() if "entropy" in r.maps]
    studied = [r for r in blinding.readings(name) if r.configuration_id in view.results]
    shown = a if a is not None else ([r.configuration_id for r in studied] or with_maps or list(view.results))[0]
    try:
        # the list's budget: the address's, else a study reading's (an address without one), else the default
        addressed = bool(query.get("budget") or query.get("minutes")) or not studied
        listed = parse_budget(query.get("budget"), query.get("minutes")) if addressed else studied[0].budget
        # the page's budget: the case's percentage when given (a region link's), else the list's, a time budget as
        # this case's fraction at the rate in force (a study reading's link: ``&minutes=`` alone)
        opened = parse_budget(query.get("budget"), None) if query.get("budget") else listed
        fraction = budget_fraction(store, view.results[shown].configuration, opened, name,
                                   view.results[shown].model_set_identity)
        state = parse_view(query, blinding.shown_overlays(available_overlays(view.case), hidden),
                           view.case.shape_zyx)
    except (ValueError, LookupError) as error:
        return not_found(str(error))
    fraction = min(fraction, max((r.mask_budget or 0.0) for r in view.results.values()) or fraction)
    region = None if hidden.uncertainty else _region(query.get("region"), fraction)
    # a study reading is not a step through the general worklist: no "next region" of cases outside the study
    nav = [] if region is None or arm is not None else [region_nav(store, view, shown, region["rank"], listed)]
    return html.Div([*nav, *_study_note(arm, listed, fraction),
                     viewer_layout(view, shown, b, slices, fraction, state, hidden),
                     _review(view, shown, fraction, region, hidden)])


def _study_note(arm: Arm | None, budget: Budget, fraction: float) -> list[Component]:
    """A line saying that this case is a study reading, and in which arm (revealed: the user opened it); in arm B at
    which ``budget`` (a time budget with the ``fraction`` of this case's ROI it became)."""
    if arm is None:
        return []
    shown = budget.describe() + (f" ({100 * fraction:.3g} % of this case's ROI voxels)" if budget.kind == "minutes"
                                 else "")
    text = ("standard review (arm A): the CT and the predicted contours, nothing derived from uncertainty"
            if arm is Arm.STANDARD else
            f"uncertainty-guided review (arm B): the entropy overlay and the budget regions at {shown}")
    return [dbc.Alert(f"Review study reading · {text}", color="info", className="py-1 small", id="study-arm")]


def _review(view: viewer.CaseView, configuration_id: int, fraction: float,
            region: dict[str, Any] | None = None, hidden: Hidden = NOTHING_HIDDEN) -> Component:
    """The review panel of this case under configuration A at the viewer's budget (its structures' items and the
    workflow's actions), and the case's downloads (none when the case is read blind)."""
    data = _scope(view, configuration_id, fraction)
    return section("Review", review.panel(data, _rows(data), height=200, region=region),
                   html.Div(_downloads(view, data, hidden.uncertainty), id="case-downloads", className="mt-2"),
                   help_text="this case's structures under configuration A; approval needs a second user")


def _scope(view: viewer.CaseView, configuration_id: int, fraction: float) -> dict[str, Any]:
    """The review panel's scope: this case under configuration ``configuration_id`` at the viewer's budget."""
    shown = view.results[configuration_id]
    return review.scope(shown.configuration, Budget("fraction", round(fraction, 6)), view.case.name, case_only=True,
                        model_set=shown.model_set_identity)


def _downloads(view: viewer.CaseView, data: dict[str, Any], hidden: bool) -> Component:
    """The case's review regions as NIfTI (and as an RTSTRUCT for a DICOM case) at the viewer's budget; nothing
    for a case read blind (the regions are derived from uncertainty)."""
    user = auth.current_user()
    if hidden or user is None or not allowed(user["role"], Action.EXPORT):
        return html.Span()
    query = urlencode({"configuration": data["configuration"], "model_set": data.get("model_set") or "",
                       "kind": data["kind"], "value": data["value"]})
    name = quote(view.case.name, safe="")
    links = [("Regions + entropy (NIfTI)", f"/export/regions/{name}.zip?{query}", "download-regions")]
    if view.case.source_kind == "dicom":
        links.append(("Regions as RTSTRUCT", f"/export/rtstruct/{name}.dcm?{query}", "download-rtstruct"))
    return html.Div([html.Small(f"Downloads ({data['configuration']}, {review.scope_budget(data).describe()}): ",
                                className="text-muted me-1", id="download-budget"),
                     *(dbc.Button(label, href=href, external_link=True, color="outline-primary", size="sm",
                                  className="me-1", id=ident) for label, href, ident in links)])


def _rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return review.scope_rows(data)
    except LookupError:
        return []


def layout(name: str | None = None, a: str | None = None, b: str | None = None, at: str | None = None,
           region: str | None = None, budget: str | None = None, minutes: str | None = None, w: str | None = None,
           l: str | None = None, overlays: str | None = None, grid: str | None = None,  # noqa: E741
           zoom: str | None = None, thickness: str | None = None, fill: str | None = None,
           colours: str | None = None, **_query: str) -> Component:
    if not name:
        return not_found("The address names no case.")
    query = {"a": a, "b": b, "at": at, "region": region, "budget": budget, "minutes": minutes, "w": w, "l": l,
             "overlays": overlays, "grid": grid, "zoom": zoom, "thickness": thickness, "fill": fill,
             "colours": colours}
    if len(unquote(name)) > inputs.MAX_NAME or any(v is not None and len(v) > 100 for v in query.values()):
        return not_found("The address is malformed: a value is too long.")
    return guarded(lambda store: _page(store, unquote(name), query))


def _region(rank: str | None, fraction: float) -> dict[str, Any] | None:
    """The region the page was opened at (``region=RANK``, from the worklist, at the page's budget), when given."""
    if not (rank or "").isdigit() or len(rank or "") > MAX_DIGITS or int(rank or 0) < 1 or fraction <= 0:
        return None
    return review.region_data(int(rank or 0), fraction)


SETTINGS = [Input("viewer-window", "value"), Input("viewer-level", "value"), Input("viewer-overlays", "value"),
            Input("viewer-structures", "value"), Input("viewer-opacity", "value"), Input("viewer-threshold", "value"),
            Input("viewer-budget", "value"), Input("viewer-thickness", "value"), Input("viewer-fill", "value"),
            Input("viewer-colours", "data"), Input("viewer-measurements", "data")]
SLICES = [State(f"slice-{p}", "data") for p in PLANES]


def _shapes_patch(shapes: list[dict[str, Any]]) -> Patch:
    patch = Patch()
    patch["layout"]["shapes"] = shapes
    return patch


def _register_plane(plane: str) -> None:
    others = [p for p in PLANES if p != plane]

    @callback(Output(f"view-a-{plane}", "figure"), Output(f"view-b-{plane}", "figure"),
              Input(f"slice-{plane}", "data"), *(Input(f"slice-{p}", "data") for p in others),
              Input("viewer-a", "value"), Input("viewer-b", "value"), *SETTINGS, State("viewer-case", "data"))
    def _draw(index: Any, first: Any, second: Any, a: Any, b: Any, window: Any, level: Any, overlays: Any,
              structures: Any, opacity: Any, threshold: Any, budget: Any, thickness: Any, fill: Any, colours: Any,
              kept: Any, name: Any) -> tuple[Any, Any]:
        store = get_store()
        view = viewer.load(store, checked.name(name))
        if view is None:
            return dash.no_update, dash.no_update
        slices = checked.slices(view.case, {plane: index, others[0]: first, others[1]: second})
        a, b = checked.configuration(a, "viewer-a.value"), checked.configuration(b, "viewer-b.value")
        settings = checked.settings(view, (window, level), overlays, structures, opacity, threshold, budget,
                                    (thickness, fill, colours))
        triggered = {t.split(".")[0] for t in ctx.triggered_prop_ids}
        if triggered and triggered <= {f"slice-{p}" for p in others}:
            shapes = views.crosshair(views.geometry(view.case, plane), slices)
            return _shapes_patch(shapes), _shapes_patch(shapes) if b is not None else dash.no_update
        # a forged request's hidden overlays (uncertainty, reference) are dropped, not drawn
        settings = replace(settings, overlays=blinding.shown_overlays(settings.overlays,
                                                                      blinding.hiding(view.case.name)))
        marks = measurements.traces(measurements.records(kept), plane, slices[plane])
        return viewer.plane_figures(store, view, plane, slices, a, b, settings, marks)


for _plane in PLANES:
    _register_plane(_plane)

clientside_callback(
    ClientsideFunction("qa", "navigate"),
    *(Output(f"slice-{p}", "data", allow_duplicate=True) for p in PLANES),
    Input("viewer-nav", "data"), *SLICES, State("viewer-shape", "data"), prevent_initial_call=True,
)
clientside_callback("function(n) { return n > 0; }", Output("viewer-help", "is_open"),
                    Input("viewer-help-button", "n_clicks"), prevent_initial_call=True)


@callback(*(Output(f"slice-{p}", "data", allow_duplicate=True) for p in PLANES), Output("viewer-region", "data"),
          Output("viewer-region-info", "children"),
          *(Input(f"view-{s}-{p}", "clickData") for s in SIDES for p in PLANES),
          Input("viewer-most-uncertain", "n_clicks"), Input("viewer-next-region", "n_clicks"),
          *SLICES, State("viewer-a", "value"), State("viewer-budget", "value"), State("viewer-region", "data"),
          State("viewer-case", "data"), prevent_initial_call=True)
def _locate(*values: Any) -> tuple[Any, ...]:
    clicks = dict(zip((f"view-{s}-{p}" for s in SIDES for p in PLANES), values[:6], strict=True))
    for graph, click in clicks.items():
        inputs.point(click, f"{graph}.clickData")
    for count, button in zip(values[6:8], ("viewer-most-uncertain", "viewer-next-region"), strict=True):
        inputs.clicks(count, f"{button}.n_clicks")
    axial, coronal, sagittal, a, budget, region, name = values[8:]
    store = get_store()
    view = viewer.load(store, checked.name(name))
    unchanged = (dash.no_update,) * 5
    if view is None:
        return unchanged
    slices = checked.slices(view.case, {"axial": axial, "coronal": coronal, "sagittal": sagittal})
    a, region = checked.configuration(a, "viewer-a.value"), checked.region(region)
    budget = checked.budget(view, budget)
    if a not in view.results:
        return unchanged
    trigger = ctx.triggered_id
    if trigger in ("viewer-most-uncertain", "viewer-next-region") and blinding.hides(view.case.name):
        raise blinding.refuse(view.case.name, "the jump to uncertain slices and regions")
    moved: views.Slices | None = None
    info: Any = dash.no_update
    if trigger in clicks:
        moved = viewer.clicked(view, trigger.split("-")[2], slices, clicks[trigger])
    elif trigger == "viewer-most-uncertain":
        moved = viewer.jump_to_most_uncertain(store, view.results[a], slices)
        info = ("no entropy map stored" if moved is None
                else f"most uncertain axial slice: {slice_number(moved['axial'])}")
    elif trigger == "viewer-next-region":
        found = viewer.regions(store, view, view.results[a], budget)
        if not found:
            return *(dash.no_update,) * 4, "no uncertain region at this budget"
        region = (region + 1) % len(found)
        chosen = found[region]
        moved = dict(zip(PLANES, chosen.centroid, strict=True))
        info = (f"region {region + 1} of {len(found)}: {chosen.volume_ml:.2f} mL, slices "
                f"{slice_span(chosen.slices)}, mean entropy {chosen.mean_entropy:.2f}")
    if moved is None:
        return *(dash.no_update,) * 4, info
    return (*(moved[p] if moved[p] != slices[p] else dash.no_update for p in PLANES), region, info)


@callback(Output("viewer-probe", "children"), Output("viewer-probe-cell", "children"),
          *(Input(f"view-{s}-{p}", "hoverData") for s in SIDES for p in PLANES),
          *SLICES, State("viewer-a", "value"), State("viewer-b", "value"), State("viewer-case", "data"),
          prevent_initial_call=True)
def _probe(*values: Any) -> Any:
    hovers = {f"view-{s}-{p}": inputs.point(v, f"view-{s}-{p}.hoverData")
              for (s, p), v in zip(((s, p) for s in SIDES for p in PLANES), values[:6], strict=True)}
    axial, coronal, sagittal, a, b, name = values[6:]
    trigger = ctx.triggered_id
    point = hovers.get(trigger) if isinstance(trigger, str) else None
    if point is None:
        return dash.no_update, dash.no_update
    store = get_store()
    view = viewer.load(store, checked.name(name))
    if view is None:
        return dash.no_update, dash.no_update
    slices = checked.slices(view.case, {"axial": axial, "coronal": coronal, "sagittal": sagittal})
    a, b = checked.configuration(a, "viewer-a.value"), checked.configuration(b, "viewer-b.value")
    voxel = views.voxel_at(view.case, trigger.split("-")[2], slices, *point)
    if voxel is None:
        return dash.no_update, dash.no_update
    table = viewer.probe_table(store, view, voxel, [c for c in (a, b) if c is not None],
                               blinding.hiding(view.case.name))
    return table, html.Table(table.children, className=table.className)  # the 2×2 cell's copy, without the id


@callback(Output("viewer-metrics-box", "children"), Input("viewer-a", "value"), Input("viewer-b", "value"),
          Input("viewer-budget", "value"), State("viewer-case", "data"))
def _metrics(a: Any, b: Any, budget: Any, name: Any) -> Any:
    a, b = checked.configuration(a, "viewer-a.value"), checked.configuration(b, "viewer-b.value")
    store = get_store()
    view = viewer.load(store, checked.name(name))
    if view is None:
        return dash.no_update
    return viewer.metrics_table(store, view, [c for c in (a, b) if c is not None], checked.budget(view, budget),
                                blinding.hiding(view.case.name))


@callback(Output("viewer-colourbar-mask", "style"), Output("viewer-colourbar", "title"),
          Input("viewer-threshold", "value"), Input("viewer-opacity", "value"))
def _colourbar(threshold: Any, opacity: Any) -> tuple[dict[str, str], str]:
    threshold = checked.fraction(threshold, "viewer-threshold.value")
    opacity = checked.fraction(opacity, "viewer-opacity.value")
    return ({"width": f"{threshold * 100:.0f}%"},
            f"transparent below {number(threshold, 2)}, opacity {number(opacity * 100, 0)} %")


@callback(Output("review-scope", "data", allow_duplicate=True), Output("review-items", "rowData", allow_duplicate=True),
          Output("case-downloads", "children"), Input("viewer-a", "value"), Input("viewer-budget", "value"),
          State("viewer-case", "data"), prevent_initial_call=True)
def _review_scope(a: Any, budget: Any, name: Any) -> tuple[Any, Any, Any]:
    """The review panel and the downloads follow configuration A and the viewer's budget (one budget on the page)."""
    a = checked.configuration(a, "viewer-a.value")
    view = viewer.load(get_store(), checked.name(name))
    if view is None or a not in view.results:
        return dash.no_update, dash.no_update, dash.no_update
    data = _scope(view, a, checked.budget(view, budget))
    return data, _rows(data), _downloads(view, data, blinding.hides(view.case.name))
