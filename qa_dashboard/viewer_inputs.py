"""Checks of the slice browser's callback inputs against the case they are about (``pages/patient.py``): slices inside
the volume, configurations by id, the controls' values in their ranges (:mod:`qa_dashboard.inputs`)."""

from __future__ import annotations

import re
from typing import Any

from pipeline.errors import InputError
from pipeline.metrics.review_budget import DEFAULT_FRACTION
from qa_dashboard import inputs, viewer
from qa_dashboard.queries.patient import Case
from qa_dashboard.rendering.compose import MAX_THICKNESS, OVERLAYS
from qa_dashboard.rendering.geometry import PLANES
from qa_dashboard.rendering.views import Slices

MAX_REGION = 100_000
COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def name(value: Any) -> str:
    """The case's name (``viewer-case.data``)."""
    return inputs.text(value, "viewer-case.data")


def configuration(value: Any, field: str) -> int | None:
    """A configuration id (``viewer-a`` / ``viewer-b``), or None."""
    return inputs.optional(inputs.integer, value, field)


def slices(case: Case, values: dict[str, Any]) -> Slices:
    """Slice indices of the planes (plane → value), each inside the volume."""
    counts = dict(zip(PLANES, case.shape_zyx, strict=True))
    checked = {}
    for plane, value in values.items():
        index = inputs.integer(value, f"slice-{plane}.data", -(2**31), 2**31)
        if not 0 <= index < counts[plane]:
            raise InputError(f"{plane} slice {index} is outside 0..{counts[plane] - 1} of case {case.name!r}")
        checked[plane] = index
    return checked


def budget(view: viewer.CaseView, value: Any) -> float:
    """The review budget (``viewer-budget``): a fraction up to the largest stored mask's."""
    top = max((r.mask_budget or 0.0) for r in view.results.values()) if view.results else 0.0
    return inputs.number(value or 0.0, "viewer-budget.value", 0.0, top or DEFAULT_FRACTION)


def fraction(value: Any, field: str) -> float:
    """A slider's value in [0, 1] (opacity, threshold)."""
    return inputs.number(value or 0.0, field, 0.0, 1.0)


def colour(value: Any, field: str) -> str:
    """A colour as an ``<input type=color>`` gives it: ``#rrggbb``."""
    value = inputs.text(value, field, 7)
    if not COLOUR.fullmatch(value):
        raise InputError(f"{field} must be a colour #rrggbb, got {value!r}")
    return value.lower()


def settings(view: viewer.CaseView, window_level: tuple[Any, Any], overlays: Any, structures: Any, opacity: Any,
             threshold: Any, budget_value: Any, contour: tuple[Any, Any, Any] = (None, None, None)
             ) -> viewer.Settings:
    """The viewer's controls, checked: (window, level) in HU, overlays, structures, entropy opacity and threshold,
    budget, and (thickness, fill, per-structure colours) of the contours."""
    labels = next(iter(view.results.values())).labels if view.results else ()
    window, level = window_level
    thickness, fill, colours = contour
    return viewer.Settings(
        "1",
        tuple(inputs.listed(overlays, "viewer-overlays.value", lambda v, n: inputs.choice(v, n, OVERLAYS))),
        tuple(inputs.listed(structures, "viewer-structures.value",
                            lambda v, n: inputs.integer(v, n, 1, max(len(labels) - 1, 1)))),
        fraction(opacity, "viewer-opacity.value"), fraction(threshold, "viewer-threshold.value"),
        budget(view, budget_value),
        inputs.integer(viewer.DEFAULT_THICKNESS if thickness is None else thickness, "viewer-thickness.value", 1,
                       MAX_THICKNESS),
        inputs.flag(fill, "viewer-fill.value"),
        tuple(inputs.listed(colours or [], "viewer-colours.data", colour)),
        inputs.number(viewer.PRESETS["1"][1] if window is None else window, "viewer-window.value",
                      *viewer.WINDOW_RANGE),
        inputs.number(viewer.PRESETS["1"][2] if level is None else level, "viewer-level.value", *viewer.LEVEL_RANGE))


def region(value: Any) -> int:
    """The index of the region shown last (``viewer-region``; -1 before the first)."""
    return inputs.integer(-1 if value is None else value, "viewer-region.data", -1, MAX_REGION)
