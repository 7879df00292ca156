"""The slice browser's view in its address, beyond the case, configurations, crosshair and budget (``pages/patient``):
``&w=WINDOW&l=LEVEL`` (HU), ``&overlays=KEY,KEY`` (``none`` for none), ``&grid=KEY`` (:data:`LAYOUTS`),
``&zoom=FACTOR,Z,Y,X`` (the zoom factor and its centre in voxels), and the contours' ``&thickness=PIXELS``,
``&fill=1`` and ``&colours=RRGGBB,RRGGBB`` (one per structure, in class order). ``assets/viewer_stage.js`` keeps the
address bar in step with the view (without reloading), so that a copied link opens the view as it is."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from qa_dashboard import viewer
from qa_dashboard.queries.patient import Case
from qa_dashboard.rendering.compose import MAX_THICKNESS
from qa_dashboard.rendering.geometry import PLANES
from qa_dashboard.rendering.views import Slices

LAYOUTS = {"mpr": "1+2", "1x1": "1×1", "1x3": "1×3", "2x2": "2×2"}  # the stage's layouts, as the toolbar labels them
DEFAULT_LAYOUT = "mpr"
MAX_ZOOM = 20.0  # what the browser's Ctrl + wheel allows (viewer_stage.js)
NO_OVERLAYS = "none"
MAX_DIGITS = 9  # of an id or a voxel index in the address
MAX_COLOURS = 20
HEX = re.compile(r"[0-9a-fA-F]{6}")


@dataclass(frozen=True)
class ViewState:
    """What the address sets of the view: window and level, overlays, layout, zoom (factor, centre z, y, x) and the
    contours' thickness, fill and colours ("#rrggbb" per structure; empty: the default palette)."""

    window: float
    level: float
    overlays: tuple[str, ...]
    grid: str = DEFAULT_LAYOUT
    zoom: tuple[float, float, float, float] | None = None
    thickness: int = viewer.DEFAULT_THICKNESS
    fill: bool = False
    colours: tuple[str, ...] = ()


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
    return ViewState(window, level, overlays, grid, _zoom(query.get("zoom"), shape_zyx), *_contours(query))


def _contours(query: dict[str, str | None]) -> tuple[int, bool, tuple[str, ...]]:
    """(thickness, fill, colours) of the address."""
    thickness = query.get("thickness") or str(viewer.DEFAULT_THICKNESS)
    if not thickness.isdigit() or not 1 <= int(thickness) <= MAX_THICKNESS:
        raise ValueError(f"thickness={thickness!r} must be a contour width of 1 to {MAX_THICKNESS} pixels")
    fill = query.get("fill") or "0"
    if fill not in ("0", "1"):
        raise ValueError(f"fill={fill!r} must be 1 (fill the predicted structures) or 0")
    colours = tuple((query.get("colours") or "").split(",")) if query.get("colours") else ()
    if len(colours) > MAX_COLOURS or not all(HEX.fullmatch(c) for c in colours):
        raise ValueError(f"colours={query.get('colours')!r} must be colours RRGGBB (hexadecimal), one per structure, "
                         "separated by commas")
    return int(thickness), fill == "1", tuple(f"#{c.lower()}" for c in colours)


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


def parse_choice(value: str | None, view: viewer.CaseView) -> tuple[bool, int | None]:
    """(valid, configuration id) of an ``a`` / ``b`` query value."""
    if value is None or value == "":
        return True, None
    if not value.isdigit() or len(value) > MAX_DIGITS or int(value) not in view.results:
        return False, None
    return True, int(value)


def parse_at(value: str | None, case: Case) -> tuple[bool, Slices]:
    """(valid, slices) of an ``at=z,y,x`` query value (voxel indices); the centre when absent."""
    if not value:
        return True, viewer.middle(case)
    parts = value.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and len(p.strip()) <= MAX_DIGITS for p in parts):
        return False, {}
    position = dict(zip(PLANES, (int(p) for p in parts), strict=True))
    inside = all(position[p] < n for p, n in zip(PLANES, case.shape_zyx, strict=True))
    return inside, position
