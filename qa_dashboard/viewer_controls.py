"""The slice browser's controls, kept out of the image's way: a one-line toolbar above the views (configurations,
window/level, layout, fullscreen, zoom reset, link, help) and a scrolling side bar beside them (overlays, contours,
entropy, budget, legend, jumps, probe, metrics)."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html
from dash.development.base_component import Component

from pipeline.review.study_blinding import NOTHING_HIDDEN, Hidden
from qa_dashboard import viewer
from qa_dashboard.blinding import shown_overlays
from qa_dashboard.queries.patient import Case
from qa_dashboard.rendering.compose import MAX_THICKNESS, OVERLAYS, structure_colour
from qa_dashboard.viewer_address import LAYOUTS, ViewState
from qa_dashboard.viewer_legend import colourbar, legend
from qa_dashboard.viewer_measure import TOOL_LABELS, measurements_box

OVERLAY_LABELS = {"reference": "reference contour", "prediction": "predicted contour",
                  "entropy": "entropy heat map", "budget": "top-budget mask", "error": "error map",
                  "edits": "clinician's edits (added / removed)"}


def toolbar(view: viewer.CaseView, a: int | None, b: int | None, state: ViewState) -> Component:
    """One row: A, B, W/L preset with the window and level of ``state``, the tool (navigate or measure), its
    layout, fullscreen, zoom reset, copy link, help."""
    options = [{"label": r.label(len({x.model_set for x in view.results.values()}) > 1), "value": c}
               for c, r in view.results.items()]
    window, level = state.window, state.level
    preset = next((k for k, (_, w, lv) in viewer.PRESETS.items() if (w, lv) == (window, level)), None)

    def field(label: str, control: Component, width: str) -> Component:
        return html.Div([html.Span(label, className="qa-tool-label"), control], className="qa-tool",
                        style={"width": width})

    return html.Div([
        field("A", dcc.Dropdown(id="viewer-a", options=options, value=a, clearable=False), "13rem"),
        field("B", dcc.Dropdown(id="viewer-b", options=options, value=b, placeholder="none"), "11rem"),
        field("W/L", dcc.Dropdown(id="viewer-wl", clearable=False, value=preset, searchable=False,
                                   placeholder="custom", options=[
            {"label": f"{k} · {n} {w:g}/{lv:g}", "value": k} for k, (n, w, lv) in viewer.PRESETS.items()]), "13rem"),
        field("W", dbc.Input(id="viewer-window", type="number", value=window, min=viewer.WINDOW_RANGE[0],
                             max=viewer.WINDOW_RANGE[1], step=1, size="sm", debounce=True), "5.5rem"),
        field("L", dbc.Input(id="viewer-level", type="number", value=level, min=viewer.LEVEL_RANGE[0],
                             max=viewer.LEVEL_RANGE[1], step=1, size="sm", debounce=True), "5.5rem"),
        dbc.RadioItems(id="viewer-tool", options=[{"label": label, "value": key} for key, label in TOOL_LABELS.items()],
                       value="navigate", inline=True, className="btn-group btn-group-sm qa-buttons ms-1",
                       inputClassName="btn-check", labelClassName="btn btn-outline-secondary btn-sm",
                       labelCheckedClassName="active"),
        dbc.RadioItems(id="viewer-grid", options=[{"label": v, "value": k} for k, v in LAYOUTS.items()],
                       value=state.grid, inline=True, className="btn-group btn-group-sm qa-buttons ms-1",
                       inputClassName="btn-check", labelClassName="btn btn-outline-secondary btn-sm",
                       labelCheckedClassName="active"),
        dbc.Button("Fullscreen", id="viewer-fullscreen", size="sm", color="outline-dark", className="ms-1",
                   title="the views fill the screen (Esc leaves)"),
        dbc.Button("Reset zoom", id="viewer-reset-zoom", size="sm", color="outline-dark", className="ms-1"),
        dbc.Button("Copy link", id="viewer-copy-link", size="sm", color="outline-dark", className="ms-1",
                   title="an address that opens this view as it is"),
        dbc.Button("?", id="viewer-help-button", size="sm", color="secondary", className="ms-1",
                   title="keyboard and mouse"),
    ], className="qa-toolbar", id="viewer-toolbar")


def sidebar(view: viewer.CaseView, budget_max: float, budget: float, state: ViewState,
            hidden: Hidden = NOTHING_HIDDEN) -> Component:
    """The side bar: overlays and structures with their colours, contours, entropy, the review ``budget`` (of at most
    the stored mask's ``budget_max``), measurements, legend, jumps, probe and metrics (it scrolls on its own, beside
    the views); overlays and contours as ``state`` (the address's) sets them. ``hidden`` (what a review study hides):
    no overlay it hides is offered (nor its legend), and for a case read blind the entropy, budget and jump controls
    are left out of sight (kept in the page, disabled, since the callbacks name them; the server refuses them)."""
    labels = next(iter(view.results.values())).labels
    overlays = shown_overlays(available_overlays(view.case), hidden)
    blind = hidden.uncertainty
    out_of_sight = {"display": "none"} if blind else None
    structures = [{"label": name, "value": i} for i, name in enumerate(labels) if i > 0]
    colours = [html.Div([
        dbc.Input(type="color", id={"type": "viewer-colour", "index": i}, value=structure_colour(i, state.colours),
                  className="qa-colour"),
        html.Span(name, className="small ms-1")], className="d-flex align-items-center me-2")
        for i, name in enumerate(labels) if i > 0]
    return html.Div([
        _group("Overlays", dbc.Checklist(
            id="viewer-overlays", options=[{"label": OVERLAY_LABELS[o], "value": o} for o in overlays],
            value=list(state.overlays), switch=True)),
        _group("Structures", dbc.Checklist(id="viewer-structures", options=structures,
                                           value=[s["value"] for s in structures], inline=True),
               html.Div(colours, className="d-flex flex-wrap mt-1", id="viewer-colour-pickers")),
        _group("Contours", html.Div([html.Span("thickness (px)", className="small"), dcc.Slider(
            id="viewer-thickness", min=1, max=MAX_THICKNESS, step=1, value=state.thickness,
            marks={k: str(k) for k in range(1, MAX_THICKNESS + 1)})]),
               dbc.Switch(id="viewer-fill", label="fill the predicted structures", value=state.fill)),
        html.Div([
            _group("Entropy", colourbar(), html.Span("opacity", className="small"), dcc.Slider(
                id="viewer-opacity", min=0, max=1, step=0.05, value=0.6, marks=None, disabled=blind,
                tooltip={"placement": "bottom"}), html.Span("transparent below", className="small"), dcc.Slider(
                id="viewer-threshold", min=0, max=1, step=0.01, value=0.1, marks=None, disabled=blind,
                tooltip={"placement": "bottom"})),
            _group(f"Review budget (stored mask: {budget_max * 100:.1f} %)", dcc.Slider(
                id="viewer-budget", min=0, max=budget_max, step=0.001, value=budget, disabled=blind,
                marks={v: f"{v * 100:.1f}%" for v in (0, budget_max / 2, budget_max)},
                tooltip={"placement": "bottom"})),
            _group("Go to", dbc.Button("Most uncertain slice", id="viewer-most-uncertain", size="sm",
                                       className="me-1", disabled=blind),
                   dbc.Button("Next uncertain region", id="viewer-next-region", size="sm", disabled=blind),
                   html.Div(id="viewer-region-info", className="small mt-1")),
        ], id="viewer-uncertainty-controls", style=out_of_sight),
        _group("Measurements", measurements_box("viewer-measure-list"),
               dbc.Button("Clear measurements", id="viewer-measure-clear", size="sm", color="outline-secondary")),
        _group("Legend", legend(view.case.reference_kind == "final_clinical", hidden)),
        _group("Probe (hover a view)", html.Div("hover a view", id="viewer-probe", className="small")),
        _group("Case metrics", html.Div(id="viewer-metrics-box")),
    ], className="qa-sidebar", id="viewer-sidebar")


def _group(title: str, *children: Component) -> Component:
    return html.Div([html.Div(title, className="qa-group-title"), *children], className="qa-group")


def available_overlays(case: Case) -> tuple[str, ...]:
    """The overlays ``case`` can show: the error map needs a reference; the edits, a final clinical contour."""
    def available(overlay: str) -> bool:
        if overlay == "edits":
            return case.reference_kind == "final_clinical" and case.reference_path is not None
        return overlay != "error" or case.reference_path is not None

    return tuple(o for o in OVERLAYS if available(o))
