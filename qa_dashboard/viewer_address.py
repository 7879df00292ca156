"""The slice browser's view in its address, beyond the case, configurations, crosshair and budget (``pages/patient``):
``&w=WINDOW&l=LEVEL`` (HU), ``&overlays=KEY,KEY`` (``none`` for none), ``&grid=KEY`` (:data:`LAYOUTS`)
and ``&zoom=FACTOR,Z,Y,X`` (the zoom factor and its centre in voxels). ``assets/viewer_stage.js`` keeps the address
bar in step with the view (without reloading), so that a copied link opens the view as it is."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qa_dashboard import viewer

LAYOUTS = {"mpr": "1+2", "1x1": "1×1", "1x3": "1×3", "2x2": "2×2"}  # the stage's layouts, as the toolbar labels them
DEFAULT_LAYOUT = "mpr"
MAX_ZOOM = 20.0  # what the browser's Ctrl + wheel allows (viewer_stage.js)
NO_OVERLAYS = "none"


@dataclass(frozen=True)
class ViewState:
    """What the address sets of the view: window and level, overlays, layout and zoom (factor, centre z, y, x)."""

    window: float
    level: float
    overlays: tuple[str, ...]
    grid: str = DEFAULT_LAYOUT
    zoom: tuple[float, float, float, float] | None = None


def _number(value: str, what: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{what}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{what}={value!r} is not a number")
    return number


def parse_view(query: dict[str, str | None], available: tuple[str, ...], shape_zyx: tuple[int, int, int]
               ) -> ViewState:
    """The view the address asks for (defaults where it says nothing); ValueError, one line, when a value is bad.
    ``available`` are the overlays this case can show; ``shape_zyx`` bounds the zoom's centre."""
    _, window, level = viewer.PRESETS["1"]
    if query.get("w"):
        window = _number(query["w"] or "", "w")
        if not viewer.WINDOW_RANGE[0] <= window <= viewer.WINDOW_RANGE[1]:
            raise ValueError(f"w={window:g} must be a window between {viewer.WINDOW_RANGE[0]:g} and "
                             f"{viewer.WINDOW_RANGE[1]:g} HU")
    if query.get("l"):
        level = _number(query["l"] or "", "l")
        if not viewer.LEVEL_RANGE[0] <= level <= viewer.LEVEL_RANGE[1]:
            raise ValueError(f"l={level:g} must be a level between {viewer.LEVEL_RANGE[0]:g} and "
                             f"{viewer.LEVEL_RANGE[1]:g} HU")
    overlays = tuple(o for o in viewer.DEFAULT_OVERLAYS if o in available)
    if query.get("overlays"):
        asked = tuple((query["overlays"] or "").split(","))
        unknown = [o for o in asked if o not in available and o != NO_OVERLAYS]
        if unknown:
            raise ValueError(f"overlays={query['overlays']!r}: {', '.join(unknown)} is not one of this case's "
                             f"overlays ({', '.join(available)}, or {NO_OVERLAYS})")
        overlays = tuple(o for o in available if o in asked)
    grid = query.get("grid") or DEFAULT_LAYOUT
    if grid not in LAYOUTS:
        raise ValueError(f"grid={grid!r} must be one of {', '.join(LAYOUTS)}")
    return ViewState(window, level, overlays, grid, _zoom(query.get("zoom"), shape_zyx))


def _zoom(value: str | None, shape_zyx: tuple[int, int, int]) -> tuple[float, float, float, float] | None:
    if not value:
        return None
    parts = value.split(",")
    numbers = [_number(p, "zoom") for p in parts] if len(parts) == 4 else []
    if not numbers or not 1 <= numbers[0] <= MAX_ZOOM or not all(
            0 <= c <= n for c, n in zip(numbers[1:], shape_zyx, strict=True)):
        raise ValueError(f"zoom={value!r} must be FACTOR,Z,Y,X: a factor between 1 and {MAX_ZOOM:g} and a centre "
                         "inside the image (voxels)")
    factor, z, y, x = numbers
    return (factor, z, y, x) if factor > 1 else None
