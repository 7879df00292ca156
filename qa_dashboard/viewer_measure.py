"""The slice browser's measurement tools around the pure ``rendering.measure``: a distance (two clicks) and the HU
statistics of a rectangle or an ellipse (a drag) on any view, drawn on the image with their values and listed in the
side bar and in the 2×2 layout's fourth cell.

``assets/viewer_measure.js`` sends what was drawn (tool, plane, side, two points in figure mm) to the store
``viewer-measure-request``; :func:`_measure` checks it, measures it on the CT slice shown and keeps the result in
``viewer-measurements`` (the last :data:`MAX_MEASUREMENTS`), which the views draw on the slice it was made on
(:func:`traces`). A point off the image is said in one line in the list; a malformed request is a user error (400).
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, callback, ctx, html
from dash.development.base_component import Component

from pipeline.errors import InputError
from pipeline.metrics.regions import slice_number
from qa_dashboard import blinding, inputs, viewer
from qa_dashboard import viewer_inputs as checked
from qa_dashboard.components import number
from qa_dashboard.rendering import measure, views
from qa_dashboard.rendering.geometry import PLANES, ViewGeometry
from qa_dashboard.store import Store, get_store

TOOL_LABELS = {"navigate": "Navigate", "distance": "Distance", "rectangle": "Rectangle", "ellipse": "Ellipse"}
COLOUR = "#00dc00"  # Cornerstone's (OHIF's) colour of a selected measurement: apart from contours, mask, crosshair
MAX_MEASUREMENTS = 10
HINT = ("Distance (D): click two points. Rectangle (R) or Ellipse (E): drag. Esc: back to Navigate. Keys act on the "
        "view with focus.")
SIDES = ("a", "b")


def _point(value: Any, name: str) -> tuple[float, float]:
    values = inputs.listed(value, name, lambda v, n: inputs.number(v, n, -1e7, 1e7), 2)
    if len(values) != 2:
        raise InputError(f"{name} must be a point [x, y] in mm, not {len(values)} numbers")
    return values[0], values[1]


def _points(value: Any, name: str) -> tuple[measure.Point, measure.Point]:
    points = inputs.listed(value, name, _point, 2)
    if len(points) != 2:
        raise InputError(f"{name} must hold two points, not {len(points)}")
    return points[0], points[1]


def checked_request(value: Any) -> dict[str, Any]:
    """What the browser drew (``viewer-measure-request``), checked: tool, plane, side and two points (mm)."""
    return inputs.record(value, "viewer-measure-request.data", {
        "tool": lambda v, n: inputs.choice(v, n, measure.TOOLS), "plane": lambda v, n: inputs.choice(v, n, PLANES),
        "side": lambda v, n: inputs.choice(v, n, SIDES), "points": _points})


def records(value: Any) -> list[dict[str, Any]]:
    """The measurements kept in ``viewer-measurements``, checked."""
    def rows(v: Any, n: str) -> list[list[str]]:
        return inputs.listed(v, n, lambda r, m: inputs.listed(r, m, lambda t, k: inputs.text(t, k, 120), 2), 12)

    return inputs.listed(value, "viewer-measurements.data", lambda v, n: inputs.record(v, n, {
        "tool": lambda t, k: inputs.choice(t, k, measure.TOOLS), "plane": lambda t, k: inputs.choice(t, k, PLANES),
        "index": inputs.integer, "points": _points, "label": lambda t, k: inputs.text(t, k, 120),
        "title": lambda t, k: inputs.text(t, k, 120), "rows": rows}), MAX_MEASUREMENTS)


def measure_one(store: Store, view: viewer.CaseView, request: dict[str, Any], slices: views.Slices,
                configuration: int | None, entropy_shown: bool) -> dict[str, Any]:
    """The measurement asked for by ``request`` (checked) on the slice shown of its plane, with the mean entropy of
    ``configuration``'s map in a region when ``entropy_shown``; ValueError (one line) for a point off the image."""
    plane, tool, points = request["plane"], request["tool"], request["points"]
    geometry, index, case = views.geometry(view.case, plane), slices[plane], view.case
    title = f"{TOOL_LABELS[tool]} · {plane} {slice_number(index)}"
    if tool == "distance":
        start, end = (measure.voxel_of(geometry, index, p) for p in points)
        mm = measure.distance_mm(start, end, case.spacing_zyx)
        centres = [_centre(geometry, voxel) for voxel in (start, end)]
        return {"tool": tool, "plane": plane, "index": index, "points": centres, "label": f"{mm:.1f} mm",
                "title": title, "rows": [["distance", f"{mm:.2f} mm"], ["from voxel (z, y, x)", _voxel(start)],
                                         ["to voxel (z, y, x)", _voxel(end)]]}
    mask = measure.region_mask(geometry, points, tool)
    if case.ct_path is None:
        raise ValueError(f"case {case.name!r} has no stored CT to measure")
    result = view.results.get(configuration) if configuration is not None else None
    entropy_path = result.maps.get("entropy") if result is not None and entropy_shown else None
    stats = measure.region_stats(
        views.display_slice(store, case.ct_path, geometry, index), mask, geometry.row_mm * geometry.col_mm,
        None if entropy_path is None else views.display_slice(store, entropy_path, geometry, index))
    rows = [["mean", f"{number(stats.mean, 1)} HU"], ["SD", f"{number(stats.sd, 1)} HU"],
            ["min", f"{number(stats.minimum, 1)} HU"], ["max", f"{number(stats.maximum, 1)} HU"],
            ["area", measure.area_text(stats.area_mm2)], ["voxels", str(stats.voxels)]]
    if stats.entropy is not None and result is not None:
        rows.append([f"mean entropy ({result.configuration})", f"{stats.entropy:.3f}"])
    return {"tool": tool, "plane": plane, "index": index, "points": [list(p) for p in points], "title": title,
            "label": f"{number(stats.mean, 1)} ± {number(stats.sd, 1)} HU · {measure.area_text(stats.area_mm2)}",
            "rows": rows}


def _centre(geometry: ViewGeometry, voxel: measure.Voxel) -> list[float]:
    """Figure mm of a voxel's centre in a view."""
    row, col = geometry.flip(voxel[geometry.rows_axis], voxel[geometry.cols_axis])
    return [(col + 0.5) * geometry.col_mm, (row + 0.5) * geometry.row_mm]


def _voxel(voxel: measure.Voxel) -> str:
    return ", ".join(str(v) for v in voxel)


def traces(kept: list[dict[str, Any]], plane: str, index: int) -> list[dict[str, Any]]:
    """Plotly traces of the measurements made on slice ``index`` of ``plane``: the line or outline and its value."""
    drawn = []
    for item in kept:
        if item["plane"] != plane or item["index"] != index:
            continue
        if item["tool"] == "distance":
            xs, ys = [p[0] for p in item["points"]], [p[1] for p in item["points"]]
        else:
            xs, ys = measure.outline_points(item["points"], item["tool"])
        drawn.append({"type": "scatter", "x": xs, "y": ys, "mode": "lines+markers+text", "name": "measurement",
                      "text": [""] * (len(xs) - 1) + [item["label"]], "textposition": "top right",
                      "textfont": {"color": COLOUR, "size": 13}, "line": {"color": COLOUR, "width": 2},
                      "marker": {"color": COLOUR, "size": 5 if item["tool"] == "distance" else 1},
                      "hoverinfo": "skip", "showlegend": False, "cliponaxis": False})
    return drawn


def measurements_box(ident: str, kept: list[dict[str, Any]] | None = None, message: str = "") -> Component:
    """The measurements, newest first, each with its values; ``message`` (a point off the image) above them."""
    items = [html.Div([html.Div(f"{len(kept or []) - i}. {item['title']}", className="fw-semibold"),
                       html.Table(html.Tbody([html.Tr([html.Th(k, className="pe-2 fw-normal"), html.Td(v)])
                                              for k, v in item["rows"]]), className="table table-sm small mb-1")])
             for i, item in enumerate(reversed(kept or []))]
    return html.Div([html.Div(message, className="text-danger small qa-measure-message") if message else None,
                     *items, html.Div(HINT, className="small text-muted")], id=ident)


@callback(Output("viewer-measurements", "data"), Output("viewer-measure-list", "children"),
          Output("viewer-measure-cell", "children"), Input("viewer-measure-request", "data"),
          Input("viewer-measure-clear", "n_clicks"), *(State(f"slice-{p}", "data") for p in PLANES),
          State("viewer-a", "value"), State("viewer-b", "value"), State("viewer-overlays", "value"),
          State("viewer-measurements", "data"), State("viewer-case", "data"), prevent_initial_call=True)
def _measure(request: Any, clear: Any, axial: Any, coronal: Any, sagittal: Any, a: Any, b: Any, overlays: Any,
             kept: Any, name: Any) -> tuple[Any, Any, Any]:
    inputs.clicks(clear, "viewer-measure-clear.n_clicks")
    kept = records(kept)
    view = viewer.load(get_store(), checked.name(name))
    if view is None:
        return dash.no_update, dash.no_update, dash.no_update
    message = ""
    if ctx.triggered_id == "viewer-measure-clear":
        kept = []
    elif request is not None:
        asked = checked_request(request)
        slices = checked.slices(view.case, {"axial": axial, "coronal": coronal, "sagittal": sagittal})
        chosen = checked.configuration(a if asked["side"] == "a" else b, f"viewer-{asked['side']}.value")
        shown = inputs.listed(overlays, "viewer-overlays.value", lambda v, n: inputs.text(v, n, 20))
        try:
            entropy = "entropy" in blinding.shown_overlays(shown, blinding.hiding(view.case.name))
            kept = [*kept, measure_one(get_store(), view, asked, slices, chosen, entropy)]
        except ValueError as error:
            message = str(error)
        kept = kept[-MAX_MEASUREMENTS:]
    children = measurements_box("", kept, message).children
    return kept, children, children
