"""The slice browser's legend: the entropy colour bar (ticks, unit, the transparent range hatched) and the overlays'
swatches in the colours and line styles the pictures use (``rendering.compose``)."""

from __future__ import annotations

from dash import html
from dash.development.base_component import Component

from pipeline.review.study_blinding import NOTHING_HIDDEN, Hidden
from qa_dashboard.rendering.compose import (
    ADDED_COLOUR,
    BUDGET_COLOUR,
    ERROR_COLOUR,
    REMOVED_COLOUR,
    colourbar_gradient,
)
from qa_dashboard.rendering.geometry import PLANE_COLOURS

TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
UNIT = "normalised entropy (0–1)"


def colourbar() -> Component:
    """The entropy colour bar: the inferno ramp with ticks at quarters and the unit; the range below the
    transparency threshold is hatched (``viewer-colourbar-mask``, set by the threshold's callback)."""
    ticks = [html.Span(f"{t:g}", className="qa-tick", style={"left": f"{100 * t:g}%"}) for t in TICKS]
    return html.Div([
        html.Div(html.Div(id="viewer-colourbar-mask", className="qa-colourbar-mask"), className="qa-colourbar",
                 style={"background": colourbar_gradient()}, id="viewer-colourbar"),
        html.Div(ticks, className="qa-ticks"),
        html.Div(UNIT, className="small text-muted text-center", id="viewer-colourbar-unit"),
    ], className="mb-2")


def legend(final_clinical: bool, hidden: Hidden = NOTHING_HIDDEN) -> Component:
    """Swatches of the contours, masks, edits and crosshair planes, without those a review study hides (``hidden``:
    the top-budget mask of a case read blind, the reference's contour, error and edits of any study reading)."""
    def swatch(colour: str, text: str, style: str = "solid") -> Component:
        return html.Div([html.Span(className="qa-swatch", style={"borderTopColor": colour, "borderTopStyle": style}),
                         text], className="small")

    reference = not hidden.reference
    return html.Div([
        *((swatch("#00e5ff", "reference contour (solid)"),) if reference else ()),
        swatch("#00e5ff", "predicted contour (dashed)", "dashed"),
        *(() if hidden.uncertainty else (swatch(BUDGET_COLOUR, "top-budget mask (yellow, dotted)", "dotted"),)),
        *((swatch(ERROR_COLOUR, "error"),) if reference else ()),
        *((swatch(ADDED_COLOUR, "added by the clinician (under-segmented)"),
           swatch(REMOVED_COLOUR, "removed by the clinician (over-segmented)")) if final_clinical and reference
          else ()),
        html.Div([html.Span("crosshair: ", className="small"),
                  *(html.Span(p, className="small me-1", style={"color": PLANE_COLOURS[p]}) for p in PLANE_COLOURS)]),
    ], id="viewer-legend")
