"""The slice browser's layout (``pages/patient.py`` holds its callbacks): image first. A one-line header and toolbar,
then the views filling the rest of the screen beside a scrolling side bar (``viewer_controls``).

The views sit in a stage (``viewer-stage``) whose class picks the layout (``qa-layout-<key>`` of
``viewer_controls.LAYOUTS``: the axial view large with coronal and sagittal stacked beside it, 1×1, 1×3, 2×2) and
whether configuration B is shown beside A (``qa-with-b``); ``assets/viewer.css`` draws the grids.
"""

from __future__ import annotations

import json

import dash_bootstrap_components as dbc
from dash import dcc, html
from dash.development.base_component import Component

from pipeline.metrics.review_budget import DEFAULT_FRACTION
from pipeline.review.study_blinding import NOTHING_HIDDEN, Hidden
from pipeline.review.worklist import NO_REFERENCE
from qa_dashboard import viewer
from qa_dashboard.case_context import dicom_context
from qa_dashboard.queries.patient import Case
from qa_dashboard.rendering.geometry import PLANES
from qa_dashboard.rendering.views import Slices, geometry
from qa_dashboard.viewer_address import ViewState, parse_view
from qa_dashboard.viewer_controls import available_overlays, sidebar, toolbar
from qa_dashboard.viewer_measure import measurements_box

REFERENCE_KINDS = {"final_clinical": "final clinical contour", "research": "research reference"}
GRAPH_CONFIG = {"displayModeBar": False, "scrollZoom": False, "doubleClick": False, "responsive": True}


def header(case: Case, hide_reference: bool = False) -> Component:
    """The case's name, cohort, patient, geometry and reference note on one line, and its DICOM context under it
    (``hide_reference``, a study reading: nothing about the reference, not even whether there is one)."""
    reference = "" if hide_reference else (
        (f" · {REFERENCE_KINDS[case.reference_kind]}" if case.reference_kind else "")
        + (f" · reference: {case.reference_note}" if case.reference_note else "")
        + ("" if case.reference_path else f" · {NO_REFERENCE}: error map and reference metrics unavailable"))
    return html.Div([html.Div([
        html.Span(case.name, className="fw-semibold me-2"),
        html.Span(f"{case.cohort} · patient {case.pseudonym} · "
                  f"{case.shape_zyx[2]} × {case.shape_zyx[1]} × {case.shape_zyx[0]} voxels, "
                  f"{' × '.join(f'{s:g}' for s in case.spacing_xyz)} mm" + reference, className="text-muted small"),
    ], className="qa-case-header"), dicom_context(case)], id="viewer-header")


def viewer_layout(view: viewer.CaseView, a: int, b: int | None, slices: Slices,
                  budget: float = DEFAULT_FRACTION, state: ViewState | None = None,
                  hidden: Hidden = NOTHING_HIDDEN) -> Component:
    """The whole browser for ``view`` showing configuration ``a`` (and ``b``) at ``slices`` and review ``budget``,
    with the window and level, overlays, layout and zoom of ``state`` (the address's; the defaults when None);
    ``hidden``: what a review study hides of the case (``viewer_controls.sidebar``, the header's reference)."""
    case = view.case
    state = state or parse_view({}, available_overlays(case), case.shape_zyx)
    zoom = None if state.zoom is None else {"factor": state.zoom[0], "centre": list(state.zoom[1:])}
    budget_max = max((r.mask_budget or 0.0) for r in view.results.values()) or DEFAULT_FRACTION
    return html.Div([
        header(case, hidden.reference),
        dcc.Store(id="viewer-case", data=case.name),
        dcc.Store(id="viewer-shape", data=dict(zip(PLANES, case.shape_zyx, strict=True))),
        dcc.Store(id="viewer-presets", data={k: [w, lv] for k, (_, w, lv) in viewer.PRESETS.items()}),
        dcc.Store(id="viewer-nav"), dcc.Store(id="viewer-region", data=-1), dcc.Store(id="viewer-colours"),
        dcc.Store(id="viewer-address"), dcc.Store(id="viewer-position"),
        dcc.Store(id="viewer-measure-request"), dcc.Store(id="viewer-measurements", data=[]),
        *(dcc.Store(id=f"slice-{p}", data=slices[p]) for p in PLANES),
        toolbar(view, a, b, state),
        html.Div([
            html.Div([_views("a"), _views("b")], id="viewer-stage",
                     className=f"qa-stage qa-layout-{state.grid}" + (" qa-with-b" if b is not None else ""),
                     **{"data-geometry": json.dumps({p: _geometry(case, p) for p in PLANES}),
                        "data-zoom": json.dumps(zoom)}),
            sidebar(view, budget_max, min(budget, budget_max), state, hidden),
        ], className="qa-reading", id="viewer-reading"),
        dbc.Modal([dbc.ModalHeader(dbc.ModalTitle("Keyboard and mouse")), dbc.ModalBody(dbc.Table(
            html.Tbody([html.Tr([html.Th(k), html.Td(v)]) for k, v in viewer.SHORTCUTS]), size="sm"))],
            id="viewer-help", is_open=False),
    ], id="viewer")


def _geometry(case: Case, plane: str) -> dict[str, object]:
    """What the browser's zoom needs of a view: its volume axes, flips, sizes and mm per pixel."""
    g = geometry(case, plane)
    return {"rows": g.rows_axis, "cols": g.cols_axis, "flipRows": g.flip_rows, "flipCols": g.flip_cols,
            "nRows": g.n_rows, "nCols": g.n_cols, "rowMm": g.row_mm, "colMm": g.col_mm}


def _views(side: str) -> Component:
    def graph(plane: str) -> Component:
        return html.Div(dcc.Graph(id=f"view-{side}-{plane}", config=GRAPH_CONFIG, responsive=True,
                                  figure={"data": [], "layout": {"paper_bgcolor": "#000", "plot_bgcolor": "#000",
                                                                 "xaxis": {"visible": False},
                                                                 "yaxis": {"visible": False}}},
                                  className="qa-graph"),
                        className="qa-view", tabIndex="0", **{"data-plane": plane, "data-side": side})

    # the 2×2 layout's fourth cell: under A, the readout a reader looks at beside the images (measurements and the
    # values under the pointer, mirrored from the side bar); under B, black
    fourth = html.Div([html.Div("Measurements", className="qa-measure-title"), measurements_box("viewer-measure-cell"),
                       html.Div("Under the pointer", className="qa-measure-title mt-2"),
                       html.Div("hover a view", id="viewer-probe-cell")], className="qa-blank qa-measure-cell",
                      id="viewer-readout") if side == "a" else html.Div(className="qa-blank")
    return html.Div([*(graph(p) for p in PLANES), fourth], className="qa-side",
                    id="viewer-b-column" if side == "b" else "viewer-a-column")
