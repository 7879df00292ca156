"""The slice browser's logic behind its callbacks: settings, the views' figures, clicks and jumps, probe, metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dash import html
from dash.development.base_component import Component

from pipeline.metrics import registry
from pipeline.metrics.regions import Region, find_regions, slice_number
from pipeline.metrics.review_budget import narrow_budget_mask
from pipeline.review.study_blinding import NOTHING_HIDDEN, Hidden
from pipeline.review.worklist import EMPTY_PREDICTION, NO_REFERENCE
from qa_dashboard.blinding import SHOWN_METRICS
from qa_dashboard.components import number
from qa_dashboard.config import settings
from qa_dashboard.queries.patient import Case, ResultMetrics, ShownResult, find_case, result_metrics, shown_results
from qa_dashboard.rendering import views
from qa_dashboard.rendering.analysis import is_stored_budget, most_uncertain_slice
from qa_dashboard.rendering.compose import OVERLAYS, Style
from qa_dashboard.rendering.geometry import PLANES
from qa_dashboard.store import Store

# key → (name, window, level)
PRESETS = {"1": ("soft tissue", 400.0, 40.0), "2": ("lung", 1500.0, -600.0), "3": ("liver", 150.0, 90.0),
           "4": ("bone", 2500.0, 480.0), "5": ("brain", 80.0, 40.0)}
DEFAULT_OVERLAYS = ("reference", "prediction", "entropy", "budget", "edits")
DEFAULT_THICKNESS = 2  # pixels of a contour
WINDOW_RANGE = (1.0, 4000.0)  # HU, what the W/L inputs and right-drag allow
LEVEL_RANGE = (-1024.0, 3000.0)
SHORTCUTS = (("mouse wheel over a view", "next / previous slice of that view (the page scrolls past either end)"),
             ("Ctrl + wheel over a view", "zoom in / out at the pointer, every view alike"),
             ("drag a view", "pan (the other views follow)"), ("right-drag a view", "window (←→) / level (↑↓)"),
             ("keys", "act on the view under the mouse or with focus (click or Tab to it); nowhere else"),
             ("↑ / ↓", "previous / next slice of that view"),
             ("PgUp / PgDn", "10 slices back / forward"), ("Home / End", "first / last slice"),
             ("click in a view", "move the crosshair (the other two views) there (tool Navigate)"),
             ("D, then two clicks on a view", "distance in mm between the two voxels (the real spacing per axis)"),
             ("R or E, then drag on a view", "rectangle or ellipse: mean, SD, min, max HU, area, voxels (and the "
              "mean normalised entropy while the entropy overlay is shown)"),
             ("Esc", "back to the tool Navigate"),
             *((key, f"W/L preset {name} ({window:g}/{level:g})") for key, (name, window, level) in PRESETS.items()),
             ("?", "this list"))


@dataclass(frozen=True)
class Settings:
    """The viewer's controls: W/L preset key (or a window and level of its own), overlays, structures, entropy opacity
    and threshold, budget, contour thickness, fill and per-structure colours."""

    preset: str
    overlays: tuple[str, ...]
    structures: tuple[int, ...]
    opacity: float
    threshold: float
    budget: float
    thickness: int = DEFAULT_THICKNESS
    fill: bool = False
    colours: tuple[str, ...] = ()
    window: float | None = None
    level: float | None = None

    def style(self) -> Style:
        return Style(frozenset(o for o in self.overlays if o in OVERLAYS), tuple(sorted(self.structures)),
                     float(self.opacity), float(self.threshold), int(self.thickness), bool(self.fill), self.colours)

    def window_level(self) -> tuple[float, float]:
        _, window, level = PRESETS.get(self.preset, PRESETS["1"])
        return (window if self.window is None else self.window), (level if self.level is None else self.level)


@dataclass(frozen=True)
class CaseView:
    """A case and the result shown per configuration id."""

    case: Case
    results: dict[int, ShownResult]


def load(store: Store, name: str) -> CaseView | None:
    """The case called ``name`` with its shown results (cached until the store's version changes, which also
    empties the caches of its maps and pictures: :meth:`~qa_dashboard.store.Store.refresh`); None for an unknown
    case."""
    def read() -> CaseView | None:
        with store.session() as session:
            case = find_case(session, name)
            if case is None:
                return None
            return CaseView(case, {r.configuration_id: r for r in shown_results(session, case)})

    with store.session() as session:
        store.refresh(session)
    return store.maps.derived(("case", name), read)


def middle(case: Case) -> views.Slices:
    """The centre voxel's slices."""
    return {plane: count // 2 for plane, count in zip(PLANES, case.shape_zyx, strict=True)}


def plane_figures(store: Store, view: CaseView, plane: str, slices: views.Slices, a: int | None, b: int | None,
                  settings: Settings, marks: list[dict[str, Any]] | None = None
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The figures of ``plane`` for configuration A and B (B's is blank without B), with the traces ``marks`` (the
    measurements on this slice) over the pictures."""
    window, level = settings.window_level()
    geometry = views.geometry(view.case, plane)
    ct = views.ct_picture(store, view.case, plane, slices[plane], window, level)
    request = views.OverlayRequest(plane, slices[plane], settings.style(), round(float(settings.budget), 6))
    figures = []
    for side, chosen in (("A", a), ("B", b)):
        result = view.results.get(chosen) if chosen is not None else None
        if result is None:
            figures.append({"data": [], "layout": {"xaxis": {"visible": False}, "yaxis": {"visible": False},
                                                   "paper_bgcolor": "#000", "plot_bgcolor": "#000"}})
            continue
        overlay = views.overlay_picture(store, view.case, result, request, result.roi_voxels)
        shown = f"{slice_number(slices[plane])}/{slice_count(view.case, plane)}"
        title = f"{plane} {shown} · {side}: {result.configuration}"
        shown_figure = views.figure(geometry, [ct, overlay], slices, title, f"W {window:g} / L {level:g}",
                                    f"{view.case.name}-{plane}")
        shown_figure["data"] += marks or []
        figures.append(shown_figure)
    return figures[0], figures[1]


def slice_count(case: Case, plane: str) -> int:
    """How many slices ``plane`` has."""
    return dict(zip(PLANES, case.shape_zyx, strict=True))[plane]


def clicked(view: CaseView, plane: str, slices: views.Slices, click: dict[str, Any] | None) -> views.Slices | None:
    """The slices after a click in ``plane``: the other two planes move to the clicked voxel."""
    points = (click or {}).get("points", [])
    if not points or "x" not in points[0] or "y" not in points[0]:
        return None
    voxel = views.voxel_at(view.case, plane, slices, float(points[0]["x"]), float(points[0]["y"]))
    if voxel is None:
        return None
    return dict(zip(PLANES, voxel, strict=True))


def jump_to_most_uncertain(store: Store, result: ShownResult, slices: views.Slices) -> views.Slices | None:
    """The axial slice with the most entropy (None when the result has no entropy map)."""
    path = result.maps.get("entropy")
    return None if path is None else {**slices, "axial": most_uncertain_slice(store.maps, path)}


def regions(store: Store, view: CaseView, result: ShownResult, budget: float) -> tuple[Region, ...]:
    """The review regions of a result at a budget, ranked as the worklist ranks them (``pipeline.review``)."""
    paths = [result.maps.get(k) for k in ("entropy", "budget_mask", "prediction")]
    if None in paths or result.mask_budget is None or budget <= 0:
        return ()
    entropy_path, mask_path, prediction_path = paths

    def compute() -> tuple[Region, ...]:
        entropy = store.maps.volume(entropy_path)
        mask = store.maps.volume(mask_path).astype(bool)
        if not is_stored_budget(budget, result.mask_budget):
            mask = narrow_budget_mask(mask, entropy, result.roi_voxels, budget)
        return find_regions(mask, entropy, store.maps.volume(prediction_path), view.case.spacing_zyx,
                            settings().review).regions

    return store.maps.derived(("regions", mask_path, round(budget, 6)), compute)


def probe_table(store: Store, view: CaseView, voxel: tuple[int, int, int], shown: list[int],
                hidden: Hidden = NOTHING_HIDDEN) -> Component:
    """The probe's table: slice, voxel, mm, HU, reference label, and per configuration label, entropy, p (without
    what a review study hides, ``hidden``: the reference label in any reading, entropy and p in one read blind)."""
    results = [view.results[c] for c in shown if c in view.results]
    probe = views.probe(store, view.case, results, voxel)
    z, y, x = probe.voxel
    rows = [("slice (axial)", f"{slice_number(z)} / {view.case.shape_zyx[0]}"), ("voxel (z, y, x)", f"{z}, {y}, {x}"),
            ("position (mm, LPS)", ", ".join(f"{v:.1f}" for v in probe.position_mm)),
            ("HU", number(probe.hu, 0)), *(() if hidden.reference else (("reference", probe.reference or "—"),))]
    for item in probe.results:
        rows.append((f"{item.configuration}: predicted", item.predicted or "—"))
        if hidden.uncertainty:
            continue
        rows.append((f"{item.configuration}: entropy", number(item.entropy)))
        if item.probabilities:
            rows.append((f"{item.configuration}: p", ", ".join(f"{k} {v:.3f}" for k, v in item.probabilities.items())))
    return html.Table(html.Tbody([html.Tr([html.Th(k, className="pe-2"), html.Td(v)]) for k, v in rows]),
                      className="table table-sm small mb-0", id="viewer-probe-table")


def metrics_table(store: Store, view: CaseView, shown: list[int], budget: float,
                  hidden: Hidden = NOTHING_HIDDEN) -> Component:
    """The case's metrics for the shown configurations, side by side, without what a review study hides (``hidden``:
    in a case read blind only those of the predicted contours, :data:`~qa_dashboard.blinding.SHOWN_METRICS` and
    volumes; in any study reading none that needs the reference)."""
    results = [view.results[c] for c in shown if c in view.results]
    with store.session() as session:
        metrics = [result_metrics(session, r.result_id) for r in results]
    header = html.Tr([html.Th("metric"), *(html.Th(r.configuration) for r in results)])
    rows = _rows(metrics, budget, hidden)
    if view.case.reference_kind == "final_clinical" and not (hidden.uncertainty or hidden.reference):
        rows += _clinical_rows(metrics, budget)
    body = [html.Tr([html.Td(label, title=tip), *(html.Td(cell(m)) for m in metrics)]) for label, tip, cell in rows]
    if not hidden.uncertainty:
        body.append(html.Tr([html.Td("temperature scaling"),
                             *(html.Td(_fit_note(r, view.case.name)) for r in results)]))
    return html.Table([html.Thead(header), html.Tbody(body)], className="table table-sm small", id="viewer-metrics")


def _fit_note(result: ShownResult, case: str) -> str:
    """What the result's temperature is: none, or the deployed fit and whether this case was among its cases."""
    if result.temperature is None:
        return "none"
    included = " (this case included)" if case in result.fit_cases else ""
    shown = (f"{result.temperature:.2f}" if isinstance(result.temperature, float)
             else "(" + ", ".join(f"{t:.2f}" for t in result.temperature) + ") per class")
    return f"T = {shown}, deployed fit on {len(result.fit_cases)} cases{included}"


def _rows(metrics: list[ResultMetrics], budget: float, hidden: Hidden = NOTHING_HIDDEN) -> list[tuple[str, str, Any]]:
    """(label, tooltip, cell) rows: the registry's case-level metrics (the DSC ones with each structure's DSC and
    volumes after them), then the ROI, error and flagged volumes; none that ``hidden`` hides (derived from uncertainty,
    or from the reference: its DSC, volumes, error volume and the ROI it widens)."""
    dsc = registry.metric("dsc")  # per structure, kept in structure_results beside the volumes

    def value(metric: registry.Metric) -> tuple[str, str, Any]:
        return metric.label, metric.describe(), lambda m: (
            NO_REFERENCE if metric.needs_reference and not m.has_reference
            else number(m.values.get(metric.name), metric.digits))

    def volumes(m: ResultMetrics, i: int) -> str:
        if hidden.reference:  # nor the note that the structure is empty: with a reference, it says the reference has it
            return f"{m.structures[i][2]:.1f}"
        text = f"{m.structures[i][2]:.1f} / {number(m.structures[i][3], 1)}"
        return f"{text} · {EMPTY_PREDICTION}" if i in m.empty_structures else text

    def shows(metric: registry.Metric) -> bool:
        return not ((hidden.uncertainty and metric.name not in SHOWN_METRICS)
                    or (hidden.reference and metric.needs_reference))

    rows: list[tuple[str, str, Any]] = []
    names = [s[0] for s in metrics[0].structures[1:]] if metrics else []
    for metric in registry.case_metrics():
        if shows(metric):
            rows.append(value(metric))
        if metric.name != dsc.whole_case:
            continue
        for index, name in enumerate(names, start=1):
            if not hidden.reference:
                rows.append((f"{dsc.label} {name}", dsc.describe(),
                             lambda m, i=index: number(m.structures[i][1], dsc.digits) if m.has_reference
                             else NO_REFERENCE))
            rows.append((f"{name} mL pred" if hidden.reference else f"{name} mL pred / ref",
                         "predicted volume of the structure" if hidden.reference
                         else "predicted and reference volume of the structure", lambda m, i=index: volumes(m, i)))
    tail: list[tuple[bool, bool, tuple[str, str, Any]]] = [  # (from uncertainty, from the reference, row)
        (False, False, ("prediction", "whether the configuration predicted any foreground",
                        lambda m: EMPTY_PREDICTION if m.empty_prediction else "foreground predicted")),
        (True, False, ("out of distribution?", "mean entropy over the body ranked against the same configuration on "
                       "the calibration cohort", lambda m: m.ood)),
        (False, True, ("ROI mL", "ROI voxels × voxel volume", lambda m: number(_ml(m, "roi_voxels"), 1))),
        (False, True, ("error mL", "wrong ROI voxels × voxel volume",
                       lambda m: number(_ml(m, "error_voxels"), 1) if m.has_reference else NO_REFERENCE)),
        (True, False, (f"flagged mL at {budget * 100:.1f} %", "the review budget's flagged voxels × voxel volume",
                       lambda m: number(m.flagged_ml.get(round(budget, 6)), 1))),
    ]
    return rows + [row for uncertain, referenced, row in tail
                   if not (hidden.uncertainty and uncertain) and not (hidden.reference and referenced)]


CLINICAL_POINTS = 5  # budgets of the stored grid shown in the clinical UEO rows, evenly spaced up to its largest


def _clinical_rows(metrics: list[ResultMetrics], budget: float) -> list[tuple[str, str, Any]]:
    """The clinical UEO: the share of the clinician's edited voxels (added and removed) that the top-budget mask
    caught, at the chosen budget and at budgets spread over the stored grid. It is the stored curve's error recall:
    the edits are exactly the error set E when the reference is the final clinical contour."""
    grid = sorted(b for b in metrics[0].recall if b > 0) if metrics else []
    if not grid:
        return []
    picked = {grid[round(k * (len(grid) - 1) / (CLINICAL_POINTS - 1))] for k in range(CLINICAL_POINTS)}
    picked |= {round(budget, 6)} & set(grid)
    tip = ("clinical UEO: the share of the clinician's edited voxels (added + removed) inside the top-budget mask at "
           "this budget; with the final clinical contour as reference the error set is the edit")
    return [(f"edits caught at {b * 100:.1f} %", tip, lambda m, b=b: number(m.recall.get(b), 3))
            for b in sorted(picked)]


def _ml(metrics: ResultMetrics, key: str) -> float | None:
    voxels, voxel_ml = metrics.sizes[key], metrics.sizes["voxel_ml"]
    return None if voxels is None or voxel_ml is None else float(voxels) * float(voxel_ml)
