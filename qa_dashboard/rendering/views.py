"""The slice browser's server side: pictures of one view, its Plotly figure, the crosshair and the hover probe.

A view's figure holds two pictures (the grey CT and an RGBA overlay, PNG data URIs) placed in millimetres from the
image's top-left corner, so the shape of voxels is kept and hover positions convert back to voxels. Pictures are
cached per store under everything that shapes them; the CT picture is shared by the two configurations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.metrics.temperature import apply_temperature
from qa_dashboard.queries.patient import Case, ShownResult
from qa_dashboard.rendering.analysis import budget_indices, is_stored_budget, mask_plane
from qa_dashboard.rendering.compose import Layers, Style, ct_layer, overlay_layer, png_uri, scale_for
from qa_dashboard.rendering.geometry import AXIS_PLANE, EDGE_LETTERS, PLANE_COLOURS, ViewGeometry, view_geometry
from qa_dashboard.store import Store

TITLE_MARGIN = 18  # pixels above the image for the view's title
Slices = dict[str, int]  # plane → slice index: axial = z, coronal = y, sagittal = x


def geometry(case: Case, plane: str) -> ViewGeometry:
    return view_geometry(plane, case.shape_zyx, case.spacing_zyx, case.direction)


def display_slice(store: Store, path: str, view: ViewGeometry, index: int) -> NDArray[np.generic]:
    """Slice ``index`` of the map at ``path`` as ``view`` shows it (display rows × columns)."""
    return _oriented(store.maps.plane(path, view.plane, index), view)


def _oriented(plane: NDArray[np.generic], view: ViewGeometry) -> NDArray[np.generic]:
    """A slice as the artifact store reads it, flipped as the view shows it."""
    if view.flip_rows:
        plane = plane[..., ::-1, :]
    if view.flip_cols:
        plane = plane[..., ::-1]
    return plane


def ct_picture(store: Store, case: Case, plane: str, index: int, window: float, level: float) -> str | None:
    """The grey CT picture of one slice (None when the case has no stored CT)."""
    if case.ct_path is None:
        return None
    path, view = case.ct_path, geometry(case, plane)
    key = ("ct", path, plane, index, window, level)
    return store.maps.rendered(key, lambda: png_uri(
        ct_layer(display_slice(store, path, view, index), window, level, scale_for((view.n_rows, view.n_cols)))))


@dataclass(frozen=True)
class OverlayRequest:
    """The overlays of one result on one slice, at a review budget."""

    plane: str
    index: int
    style: Style
    budget: float


def _budget_layer(store: Store, case: Case, result: ShownResult, view: ViewGeometry, index: int, budget: float,
                  roi_voxels: int) -> NDArray[np.bool_] | None:
    mask_path, entropy_path = result.maps.get("budget_mask"), result.maps.get("entropy")
    if mask_path is None or result.mask_budget is None:
        return None
    if is_stored_budget(budget, result.mask_budget) or entropy_path is None:
        return display_slice(store, mask_path, view, index).astype(bool)
    indices = budget_indices(store.maps, entropy_path, mask_path, roi_voxels, budget)
    return _oriented(mask_plane(indices, case.shape_zyx, view.plane, index), view)


def overlay_picture(store: Store, case: Case, result: ShownResult, request: OverlayRequest, roi_voxels: int
                    ) -> str | None:
    """The RGBA overlay picture of ``result`` (None when no overlay is on or none of its maps is stored)."""
    key = ("overlay", result.result_id, tuple(sorted(result.maps.items())), case.reference_path, request)

    def render() -> str:
        view = geometry(case, request.plane)
        on = request.style.overlays

        def read(path: str | None, wanted: bool) -> NDArray[np.generic] | None:
            return display_slice(store, path, view, request.index) if wanted and path is not None else None

        layers = Layers(
            (view.n_rows, view.n_cols),
            reference=read(case.reference_path, bool({"reference", "edits"} & on)),
            prediction=read(result.maps.get("prediction"), bool({"prediction", "edits"} & on)),
            entropy=read(result.maps.get("entropy"), "entropy" in on),
            budget=_budget_layer(store, case, result, view, request.index, request.budget, roi_voxels)
            if "budget" in on else None,
            error=read(result.maps.get("error"), "error" in on),
        )
        picture = overlay_layer(layers, request.style, scale_for((view.n_rows, view.n_cols)))
        return "" if picture is None else png_uri(picture)

    return store.maps.rendered(key, render) or None


def crosshair(view: ViewGeometry, slices: Slices) -> list[dict[str, Any]]:
    """The two lines marking the other planes (in their colours) and the view's frame (in its own)."""
    row, col = view.flip(slices[AXIS_PLANE[view.rows_axis]], slices[AXIS_PLANE[view.cols_axis]])
    y, x = (row + 0.5) * view.row_mm, (col + 0.5) * view.col_mm
    width, height = view.n_cols * view.col_mm, view.n_rows * view.row_mm
    line = {"type": "line", "xref": "x", "yref": "y", "layer": "above"}
    return [
        {**line, "x0": 0, "x1": width, "y0": y, "y1": y,
         "line": {"color": PLANE_COLOURS[AXIS_PLANE[view.rows_axis]], "width": 1}},
        {**line, "x0": x, "x1": x, "y0": 0, "y1": height,
         "line": {"color": PLANE_COLOURS[AXIS_PLANE[view.cols_axis]], "width": 1}},
        {"type": "rect", "xref": "x domain", "yref": "y domain", "x0": 0, "x1": 1, "y0": 0, "y1": 1,
         "line": {"color": PLANE_COLOURS[view.plane], "width": 3}},
    ]


def figure(view: ViewGeometry, pictures: list[str | None], slices: Slices, title: str, readout: str = "",
           revision: str = "") -> dict[str, Any]:
    """The Plotly figure of one view: its pictures, crosshair, orientation letters, title and ``readout`` (the W/L,
    bottom left). It fills its graph; a pan or zoom of the user's is kept while ``revision`` stays the same."""
    scale = scale_for((view.n_rows, view.n_cols))
    width_mm, height_mm = view.n_cols * view.col_mm, view.n_rows * view.row_mm
    data = [{"type": "image", "source": uri, "x0": view.col_mm / (2 * scale), "dx": view.col_mm / scale,
             "y0": view.row_mm / (2 * scale), "dy": view.row_mm / scale, "zsmooth": "fast", "hoverinfo": "none",
             "name": name}
            for uri, name in zip(pictures, ("ct", "overlay"), strict=False) if uri]
    top, bottom, left, right = EDGE_LETTERS[view.plane]
    letter = {"xref": "x domain", "yref": "y domain", "showarrow": False, "font": {"color": "#d0d0d0", "size": 13}}
    annotations = [
        {**letter, "x": 0.5, "y": 1, "yanchor": "top", "text": top},
        {**letter, "x": 0.5, "y": 0, "yanchor": "bottom", "text": bottom},
        {**letter, "x": 0, "y": 0.5, "xanchor": "left", "text": left},
        {**letter, "x": 1, "y": 0.5, "xanchor": "right", "text": right},
        {**letter, "xref": "paper", "yref": "paper", "x": 0, "y": 1, "xanchor": "left", "yanchor": "bottom",
         "text": title, "font": {"color": PLANE_COLOURS[view.plane], "size": 12}},
        {**letter, "x": 0, "y": 0, "xanchor": "left", "yanchor": "bottom", "text": readout, "name": "readout",
         "font": {"color": "#f0f0f0", "size": 12}},
    ]
    return {
        "data": data,
        "layout": {
            "autosize": True, "margin": {"l": 0, "r": 0, "t": TITLE_MARGIN, "b": 0}, "paper_bgcolor": "#000",
            "plot_bgcolor": "#000", "dragmode": "pan", "hovermode": "closest", "showlegend": False,
            "uirevision": revision,
            "xaxis": {"visible": False, "range": [0, width_mm], "constrain": "domain"},
            "yaxis": {"visible": False, "range": [height_mm, 0], "scaleanchor": "x", "constrain": "domain"},
            "shapes": crosshair(view, slices), "annotations": annotations,
        },
    }


def voxel_at(case: Case, plane: str, slices: Slices, x_mm: float, y_mm: float) -> tuple[int, int, int] | None:
    """The voxel (z, y, x) under a point of a view (figure coordinates), or None outside the image."""
    return geometry(case, plane).voxel(slices[plane], x_mm, y_mm)


def patient_mm(case: Case, z: int, y: int, x: int) -> tuple[float, float, float]:
    """The patient (LPS) position in mm of voxel (z, y, x)."""
    direction = np.asarray(case.direction, np.float64).reshape(3, 3)
    offset = np.array([x, y, z], np.float64) * np.asarray(case.spacing_xyz, np.float64)
    position = np.asarray(case.origin_xyz, np.float64) + direction @ offset
    return float(position[0]), float(position[1]), float(position[2])


@dataclass(frozen=True)
class ResultProbe:
    """One result's values at a voxel."""

    configuration: str
    predicted: str | None
    entropy: float | None
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Probe:
    """The values at one voxel: where it is, its HU, the reference label, and each shown result's values."""

    voxel: tuple[int, int, int]
    position_mm: tuple[float, float, float]
    hu: float | None
    reference: str | None
    results: list[ResultProbe]


def probe(store: Store, case: Case, results: list[ShownResult], voxel: tuple[int, int, int]) -> Probe:
    """Read the voxel (z, y, x) from the CT, the reference and each result's maps (axial slices, cached)."""
    z, y, x = voxel

    def value(path: str | None) -> Any:
        return None if path is None else store.maps.plane(path, "axial", z)[..., y, x]

    labels = results[0].labels if results else ()
    hu = value(case.ct_path)
    reference = value(case.reference_path)
    probes = []
    for result in results:
        predicted, entropy = value(result.maps.get("prediction")), value(result.maps.get("entropy"))
        probabilities: dict[str, float] = {}
        stored = value(result.probabilities_path)
        if stored is not None:
            vector = np.asarray(stored, np.float64)[:, None]
            vector = apply_temperature(vector / vector.sum(), result.temperature)[:, 0]
            probabilities = {name: float(p) for name, p in zip(result.labels, vector, strict=True)}
        probes.append(ResultProbe(result.configuration, None if predicted is None else result.labels[int(predicted)],
                                  None if entropy is None else float(entropy), probabilities))
    return Probe(voxel, patient_mm(case, z, y, x), None if hu is None else float(hu),
                 None if reference is None or not labels else labels[int(reference)], probes)
