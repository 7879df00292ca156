"""The slice browser's layout (``pages/patient.py`` holds its callbacks): controls, legend, views, side panels."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html
from dash.development.base_component import Component

from pipeline.metrics.review_budget import DEFAULT_FRACTION
from pipeline.review.worklist import NO_REFERENCE
from qa_dashboard import viewer
from qa_dashboard.case_context import dicom_context
from qa_dashboard.queries.patient import Case
from qa_dashboard.rendering.compose import (
    ADDED_COLOUR,
    BUDGET_COLOUR,
    ERROR_COLOUR,
    OVERLAYS,
    REMOVED_COLOUR,
    colourbar_gradient,
    structure_colour,
)
from qa_dashboard.rendering.geometry import PLANE_COLOURS, PLANES
from qa_dashboard.rendering.views import Slices

OVERLAY_LABELS = {"reference": "reference contour (solid)", "prediction": "predicted contour (dashed)",
                  "entropy": "entropy heat map", "budget": "top-budget mask", "error": "error map",
                  "edits": "clinician's edits (added / removed)"}
REFERENCE_KINDS = {"final_clinical": "final clinical contour", "research": "research reference"}
GRAPH_CONFIG = {"displayModeBar": False, "scrollZoom": False, "doubleClick": False}


def header(case: Case) -> Component:
    """The case's name, cohort, patient, geometry and reference note."""
    return html.Div([
        html.H3([f"{case.name} ", html.Small(f"{case.cohort} · patient {case.pseudonym}", className="text-muted")]),
        html.P(f"{case.shape_zyx[2]} × {case.shape_zyx[1]} × {case.shape_zyx[0]} voxels, "
               f"{' × '.join(f'{s:g}' for s in case.spacing_xyz)} mm"
               + (f" · {REFERENCE_KINDS[case.reference_kind]}" if case.reference_kind else "")
               + (f" · reference: {case.reference_note}" if case.reference_note else "")
               + ("" if case.reference_path else f" · {NO_REFERENCE}: error map and reference metrics unavailable"),
               className="text-muted small mb-2"),
        dicom_context(case),
    ])


def viewer_layout(view: viewer.CaseView, a: int, b: int | None, slices: Slices,
                  budget: float = DEFAULT_FRACTION) -> Component:
    """The whole browser for ``view`` showing configuration ``a`` (and ``b``) at ``slices`` and review ``budget``."""
    case = view.case
    budget_max = max((r.mask_budget or 0.0) for r in view.results.values()) or DEFAULT_FRACTION
    return html.Div([
        header(case),
        dcc.Store(id="viewer-case", data=case.name),
        dcc.Store(id="viewer-shape", data=dict(zip(PLANES, case.shape_zyx, strict=True))),
        dcc.Store(id="viewer-nav"), dcc.Store(id="viewer-region", data=-1),
        *(dcc.Store(id=f"slice-{p}", data=slices[p]) for p in PLANES),
        _controls(view, a, b, budget_max, min(budget, budget_max)),
        dbc.Row([
            dbc.Col(_views("a"), lg=5),
            dbc.Col(_views("b"), lg=5, id="viewer-b-column"),
            dbc.Col([dbc.Card([dbc.CardHeader("Probe (hover a view)"), dbc.CardBody(
                html.Div("hover a view", id="viewer-probe", className="small"))], className="mb-2"),
                dbc.Card([dbc.CardHeader("Case metrics"), dbc.CardBody(html.Div(id="viewer-metrics-box"))])], lg=2),
        ], className="g-2"),
        dbc.Modal([dbc.ModalHeader(dbc.ModalTitle("Keyboard and mouse")), dbc.ModalBody(dbc.Table(
            html.Tbody([html.Tr([html.Th(k), html.Td(v)]) for k, v in viewer.SHORTCUTS]), size="sm"))],
            id="viewer-help", is_open=False),
    ], id="viewer")


def _views(side: str) -> Component:
    def graph(plane: str) -> Component:
        return html.Div(dcc.Graph(id=f"view-{side}-{plane}", config=GRAPH_CONFIG,
                                  figure={"data": [], "layout": {"height": viewer.VIEW_HEIGHTS[plane]}}),
                        className="qa-view", **{"data-plane": plane})

    return html.Div([graph("axial"), dbc.Row([dbc.Col(graph("coronal"), width=6), dbc.Col(graph("sagittal"), width=6)],
                                             className="g-1 mt-1")])


def _controls(view: viewer.CaseView, a: int | None, b: int | None, budget_max: float, budget: float
              ) -> Component:
    options = [{"label": r.label(len({x.model_set for x in view.results.values()}) > 1), "value": c}
               for c, r in view.results.items()]
    labels = next(iter(view.results.values())).labels
    structures = [{"label": html.Span(name, style={"color": structure_colour(i), "fontWeight": 600}), "value": i}
                  for i, name in enumerate(labels) if i > 0]
    overlays = [o for o in OVERLAYS if _available(o, view.case)]
    return dbc.Card(dbc.CardBody([
        dbc.Row([
            dbc.Col([dbc.Label("A"), dcc.Dropdown(id="viewer-a", options=options, value=a, clearable=False)], md=3),
            dbc.Col([dbc.Label("B (side by side)"), dcc.Dropdown(id="viewer-b", options=options, value=b,
                                                                 placeholder="none")], md=3),
            dbc.Col([dbc.Label("Window / level (keys 1–5)"), dcc.Dropdown(
                id="viewer-wl", clearable=False, value="1",
                options=[{"label": f"{k} · {n} {w:g}/{lv:g}", "value": k} for k, (n, w, lv) in viewer.PRESETS.items()],
            )], md=3),
            dbc.Col([dbc.Label(f"Review budget (stored mask: {budget_max * 100:.1f} %)"), dcc.Slider(
                id="viewer-budget", min=0, max=budget_max, step=0.001, value=budget,
                marks={v: f"{v * 100:.1f}%" for v in (0, budget_max / 2, budget_max)},
                tooltip={"placement": "bottom"})], md=3),
        ], className="g-2"),
        dbc.Row([
            dbc.Col([dbc.Label("Overlays"), dbc.Checklist(
                id="viewer-overlays", options=[{"label": OVERLAY_LABELS[o], "value": o} for o in overlays],
                value=[o for o in viewer.DEFAULT_OVERLAYS if o in overlays], inline=True, switch=True)], md=5),
            dbc.Col([dbc.Label("Structures"), dbc.Checklist(id="viewer-structures", options=structures,
                                                            value=[s["value"] for s in structures], inline=True)],
                    md=2),
            dbc.Col([dbc.Label("Entropy opacity"), dcc.Slider(id="viewer-opacity", min=0, max=1, step=0.05,
                                                              value=0.6, marks=None,
                                                              tooltip={"placement": "bottom"})], md=2),
            dbc.Col([dbc.Label("Transparent below entropy"), dcc.Slider(
                id="viewer-threshold", min=0, max=1, step=0.01, value=0.1, marks=None,
                tooltip={"placement": "bottom"})], md=3),
        ], className="g-2 mt-1"),
        dbc.Row([
            dbc.Col([
                dbc.Button("Most uncertain slice", id="viewer-most-uncertain", size="sm", className="me-2"),
                dbc.Button("Next uncertain region", id="viewer-next-region", size="sm", className="me-2"),
                dbc.Button("?", id="viewer-help-button", size="sm", color="secondary", title="keyboard shortcuts"),
                html.Span(id="viewer-region-info", className="ms-2 small"),
            ], md=7),
            dbc.Col(_legend(view.case.reference_kind == "final_clinical"), md=5),
        ], className="g-2 mt-2 align-items-center"),
    ]), className="mb-2")


def _available(overlay: str, case: Case) -> bool:
    """The error map needs a reference; the edits, a final clinical contour."""
    if overlay == "edits":
        return case.reference_kind == "final_clinical" and case.reference_path is not None
    return overlay != "error" or case.reference_path is not None


def _legend(final_clinical: bool) -> Component:
    def swatch(colour: str, text: str, style: str = "solid") -> Component:
        return html.Span([html.Span(className="qa-swatch", style={"borderTopColor": colour, "borderTopStyle": style,
                                                                  "boxShadow": "0 0 0 1px #555"}),
                          text], className="me-3 small")

    return html.Div([
        html.Div([html.Span("entropy 0", className="small me-1"),
                  html.Div(html.Div(id="viewer-colourbar-mask", className="qa-colourbar-mask"),
                           className="qa-colourbar", style={"background": colourbar_gradient()}, id="viewer-colourbar"),
                  html.Span("1", className="small ms-1")], className="d-flex align-items-center mb-1"),
        swatch("#555", "reference", "solid"), swatch("#555", "predicted", "dashed"),
        swatch(BUDGET_COLOUR, "budget mask"), swatch(ERROR_COLOUR, "error"),
        *((swatch(ADDED_COLOUR, "added by the clinician (under-segmented)"),
           swatch(REMOVED_COLOUR, "removed by the clinician (over-segmented)")) if final_clinical else ()),
        swatch(PLANE_COLOURS["axial"], "axial"), swatch(PLANE_COLOURS["coronal"], "coronal"),
        swatch(PLANE_COLOURS["sagittal"], "sagittal"),
    ])
