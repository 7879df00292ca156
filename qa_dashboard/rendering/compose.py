"""One view's pictures: the CT under a window/level (grey PNG) and the chosen overlays (RGBA PNG) drawn over it.

Overlays, bottom to top: the entropy heat map (inferno, perceptual; transparent below the threshold), the error
map (orange fill), the clinician's edits when the reference is the final clinical contour (:func:`edits`: added
voxels green, removed voxels magenta), the top-budget mask (yellow dotted outline, the colour OHIF gives regions of
interest, never a structure's), then per structure an optional translucent fill of the predicted structure (as Slicer
fills segments), the reference contour (solid outline) and the predicted contour (dashed outline) in the structure's
colour, ``Style.thickness`` pixels wide. Small images are enlarged by an integer factor first (nearest neighbour, so
voxels stay square) so the outlines stay thin.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from plotly.colors import hex_to_rgb, sequential

OVERLAYS = ("reference", "prediction", "entropy", "budget", "error", "edits")
STRUCTURE_COLOURS = ("#00e5ff", "#ff4dff", "#7dff7a", "#4d7cff", "#ff9f9f", "#b388ff")
BUDGET_COLOUR = "#ffeb00"
FILL_ALPHA = 0.3
MAX_THICKNESS = 4
ERROR_COLOUR = "#ff7a00"
ERROR_ALPHA = 0.45
ADDED_COLOUR = "#00e676"  # in the final contour, not predicted: under-segmentation
REMOVED_COLOUR = "#ff00a8"  # predicted, not in the final contour: over-segmentation
TARGET_PIXELS = 512


def _lut(colours: list[str]) -> NDArray[np.uint8]:
    stops = np.array([hex_to_rgb(c) for c in colours], dtype=np.float64)
    at = np.linspace(0, 1, len(colours))
    grid = np.linspace(0, 1, 256)
    return np.stack([np.interp(grid, at, stops[:, k]) for k in range(3)], axis=1).round().astype(np.uint8)


ENTROPY_COLOURS = list(sequential.Inferno)
ENTROPY_LUT = _lut(ENTROPY_COLOURS)


def structure_colour(class_index: int, colours: tuple[str, ...] = ()) -> str:
    """The colour of foreground class ``class_index`` (1, 2, …): the chosen one in ``colours`` (by class - 1) when
    given, else the default palette's."""
    if 0 < class_index <= len(colours) and colours[class_index - 1]:
        return colours[class_index - 1]
    return STRUCTURE_COLOURS[(class_index - 1) % len(STRUCTURE_COLOURS)]


@dataclass(frozen=True)
class Style:
    """What shapes the overlay picture besides the maps (hashable: part of the render cache key)."""

    overlays: frozenset[str]
    structures: tuple[int, ...]
    opacity: float
    threshold: float
    thickness: int = 1
    fill: bool = False
    colours: tuple[str, ...] = ()  # per foreground class (1, 2, …), "#rrggbb"; empty: the default palette


@dataclass(frozen=True)
class Layers:
    """The 2-D overlay slices of one view, in display orientation, all of ``shape``; None where a map is absent."""

    shape: tuple[int, int]
    reference: NDArray[np.uint8] | None = None
    prediction: NDArray[np.uint8] | None = None
    entropy: NDArray[np.floating] | None = None
    budget: NDArray[np.bool_] | None = None
    error: NDArray[np.bool_] | None = None


def scale_for(shape: tuple[int, int]) -> int:
    """The integer enlargement that brings the longer side near ``TARGET_PIXELS`` (1 for real CT)."""
    return int(max(1, min(8, TARGET_PIXELS // max(shape))))


def window_level(ct: NDArray[np.generic], window: float, level: float) -> NDArray[np.uint8]:
    """Grey levels of HU values: [level - window/2, level + window/2] mapped linearly onto 0..255."""
    low = level - window / 2
    scaled = (ct.astype(np.float32) - np.float32(low)) * np.float32(255.0 / max(window, 1e-6))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _erode(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def outline(mask: NDArray[np.bool_], width: int = 1) -> NDArray[np.bool_]:
    """The pixels of ``mask`` within ``width`` 4-neighbour steps of its outside (an inner outline)."""
    inner = mask
    for _ in range(max(1, width)):
        inner = _erode(inner)
    return mask & ~inner


@lru_cache(maxsize=16)
def _dashes(shape: tuple[int, int], period: int) -> NDArray[np.bool_]:
    """Diagonal stripes, ``period`` pixels on and ``period`` off: what keeps of an outline makes it dashed."""
    rows, cols = np.indices(shape, sparse=True)
    return ((rows + cols) // period) % 2 == 0


DASH = 6  # pixels of a predicted contour's dash
DOT = 2  # pixels of the budget outline's dot


def _enlarge(array: NDArray[np.generic], scale: int) -> NDArray[np.generic]:
    return array if scale == 1 else np.repeat(np.repeat(array, scale, axis=0), scale, axis=1)


def ct_layer(ct: NDArray[np.generic], window: float, level: float, scale: int) -> NDArray[np.uint8]:
    """The grey CT picture (rows × scale, columns × scale)."""
    return window_level(_enlarge(ct, scale), window, level)


def edits(reference: NDArray[np.integer], prediction: NDArray[np.integer], structures: tuple[int, ...]
          ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """The clinician's edits of the prediction, when ``reference`` is the final clinical contour (same shape, class
    indices): ``added`` voxels are in one of ``structures`` in the reference and predicted otherwise
    (under-segmentation), ``removed`` voxels are predicted as one of them and are otherwise in the reference
    (over-segmentation). A voxel moved from one structure to another is both. Their union, over every structure, is
    the error set E of the spec."""
    wrong = reference != prediction
    return wrong & np.isin(reference, structures), wrong & np.isin(prediction, structures)


def _tint(rgba: NDArray[np.uint8], where: NDArray[np.bool_], colour: str, alpha: float) -> None:
    """Blend ``colour`` at opacity ``alpha`` over what ``rgba`` already holds at ``where`` ("over" compositing)."""
    below = rgba[where].astype(np.float32)
    below_alpha = below[:, 3:] / 255
    total = alpha + below_alpha * (1 - alpha)
    tint = np.array(hex_to_rgb(colour), np.float32)
    mixed = (tint * alpha + below[:, :3] * below_alpha * (1 - alpha)) / total
    rgba[where] = np.concatenate([mixed, total * 255], axis=1).round().astype(np.uint8)


def overlay_layer(layers: Layers, style: Style, scale: int) -> NDArray[np.uint8] | None:
    """The overlays as an RGBA picture drawn over the CT (None when no overlay is on)."""
    shape = tuple(s * scale for s in layers.shape)
    rgba = np.zeros((*shape, 4), np.uint8)
    drawn = False
    if "entropy" in style.overlays and layers.entropy is not None:
        entropy = _enlarge(layers.entropy, scale)
        shown = entropy >= style.threshold
        rgba[shown, :3] = ENTROPY_LUT[np.clip(entropy[shown].astype(np.float32) * 255, 0, 255).astype(np.uint8)]
        rgba[shown, 3] = round(style.opacity * 255)
        drawn = True
    if "error" in style.overlays and layers.error is not None:
        _tint(rgba, _enlarge(layers.error, scale).astype(bool), ERROR_COLOUR, ERROR_ALPHA)
        drawn = True
    if "edits" in style.overlays and layers.reference is not None and layers.prediction is not None:
        added, removed = edits(_enlarge(layers.reference, scale), _enlarge(layers.prediction, scale),
                               style.structures)
        _tint(rgba, removed, REMOVED_COLOUR, ERROR_ALPHA)
        _tint(rgba, added, ADDED_COLOUR, ERROR_ALPHA)
        drawn = True
    width = max(1, min(MAX_THICKNESS, style.thickness))
    if "budget" in style.overlays and layers.budget is not None:
        budget_outline = outline(_enlarge(layers.budget, scale).astype(bool), width)
        _paint(rgba, budget_outline & _dashes(shape, DOT), BUDGET_COLOUR)
        drawn = True
    predicted = "prediction" in style.overlays and layers.prediction is not None
    dashes = _dashes(shape, DASH + width) if predicted else None
    contours = "reference" in style.overlays and layers.reference is not None
    for class_index in style.structures:
        colour = structure_colour(class_index, style.colours)
        if style.fill and (predicted or contours):
            filled = layers.prediction if predicted else layers.reference
            _tint(rgba, _enlarge(filled == class_index, scale), colour, FILL_ALPHA)
        if contours:
            _paint(rgba, outline(_enlarge(layers.reference == class_index, scale), width), colour)
        if dashes is not None:
            _paint(rgba, outline(_enlarge(layers.prediction == class_index, scale), width) & dashes, colour)
        drawn = drawn or contours or predicted
    return rgba if drawn else None


def _paint(rgba: NDArray[np.uint8], where: NDArray[np.bool_], colour: str) -> None:
    rgba[where] = (*hex_to_rgb(colour), 255)


def png_uri(picture: NDArray[np.uint8]) -> str:
    """A ``data:image/png;base64,…`` URI of a grey (2-D) or RGBA picture (fast, lossless compression)."""
    buffer = io.BytesIO()
    Image.fromarray(picture, "L" if picture.ndim == 2 else "RGBA").save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def colourbar_gradient() -> str:
    """The entropy colour map as a CSS linear gradient (the colour bar beside the viewer)."""
    stops = ", ".join(f"{c} {100 * i / (len(ENTROPY_COLOURS) - 1):.0f}%" for i, c in enumerate(ENTROPY_COLOURS))
    return f"linear-gradient(to right, {stops})"
