"""The ROI of the ROI-masked metrics: voxels within r mm (Euclidean, real spacing) of a foreground seed.

The distance transform runs only inside boxes around the seed's connected groups, grown by r, so its cost and
memory grow with the structures rather than with the whole volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import find_objects, label

from pipeline.metrics.kernels import block_occupancy, within_radius
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.validation import Spacing

_BLOCK = 8


@dataclass(frozen=True)
class Roi:
    """A region of interest stored as a bounding box of the volume and a boolean mask inside it.

    Attributes:
        shape: (Z, Y, X) of the whole volume.
        box: one slice per axis; the ROI lies inside ``volume[box]``.
        local: boolean mask shaped like ``volume[box]``.
    """

    shape: tuple[int, int, int]
    box: tuple[slice, slice, slice]
    local: NDArray[np.bool_]

    @property
    def n_voxels(self) -> int:
        """|R|, the number of ROI voxels."""
        return int(np.count_nonzero(self.local))

    def gather(self, array: NDArray[np.generic], flat: NDArray[np.intp] | None = None) -> NDArray[np.generic]:
        """Values of ``array`` (shaped (..., Z, Y, X)) at ROI voxels, in raster order: shape (..., |R|).

        ``flat`` (from :meth:`flat_indices`) makes the cost follow |R| instead of the box, for contiguous arrays.
        """
        if array.shape[-3:] != self.shape:
            raise ValueError(f"array's spatial shape {array.shape[-3:]} differs from the ROI's {self.shape}")
        if flat is not None and array.flags.c_contiguous:
            return np.take(array.reshape(*array.shape[:-3], -1), flat, axis=-1)
        return array[(Ellipsis, *self.box)][..., self.local]

    def flat_indices(self) -> NDArray[np.intp]:
        """Raster (C-order) indices into the whole volume of the ROI voxels, ascending, shape (|R|,)."""
        local = np.flatnonzero(self.local)
        _, height, width = self.local.shape
        z, rest = np.divmod(local, height * width)
        y, x = np.divmod(rest, width)
        z += self.box[0].start
        y += self.box[1].start
        x += self.box[2].start
        return (z * self.shape[1] + y) * self.shape[2] + x

    def dense(self) -> NDArray[np.bool_]:
        """The ROI as a boolean mask of the whole volume, shape (Z, Y, X)."""
        mask = np.zeros(self.shape, dtype=bool)
        mask[self.box] = self.local
        return mask


def _grow(box: tuple[slice, ...], margins: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, slice, slice]:
    grown = [
        slice(max(0, s.start - m), min(n, s.stop + m)) for s, m, n in zip(box, margins, shape, strict=True)
    ]
    return (grown[0], grown[1], grown[2])


def _component_boxes(seed: NDArray[np.bool_], margins: tuple[int, ...]) -> list[tuple[slice, slice, slice]]:
    """Boxes (grown by ``margins`` voxels) around the connected groups of occupied ``_BLOCK``³ blocks of ``seed``."""
    groups, _ = label(block_occupancy(seed, _BLOCK), structure=np.ones((3, 3, 3), dtype=bool))
    boxes = []
    for blocks in find_objects(groups):
        voxels = tuple(
            slice(b.start * _BLOCK, min(n, b.stop * _BLOCK)) for b, n in zip(blocks, seed.shape, strict=True)
        )
        boxes.append(_grow(voxels, margins, seed.shape))
    return boxes


def dilate_mm(seed: NDArray[np.bool_], spacing: Spacing, radius_mm: float) -> Roi:
    """Voxels whose Euclidean distance (mm, with ``spacing``) to the nearest ``seed`` voxel is <= ``radius_mm``.

    The seed's occupied blocks are grouped into connected components; the compiled thresholded distance transform
    (:mod:`pipeline.metrics.kernels`) runs inside each group's box grown by the radius, and the results are OR-ed.
    Exact: a voxel within r of a seed voxel lies in the grown box of that voxel's group.

    Args:
        seed: boolean mask shaped (Z, Y, X); must hold at least one voxel.
        spacing: voxel size (z, y, x) in mm.
        radius_mm: the distance threshold in mm, >= 0.
    """
    shape = (int(seed.shape[0]), int(seed.shape[1]), int(seed.shape[2]))
    margins = tuple(math.floor(radius_mm / s) + 1 for s in spacing)
    parts = _component_boxes(seed, margins)
    if not parts:
        raise ValueError("empty ROI: the foreground seed holds no voxel")
    box = tuple(
        slice(min(p[axis].start for p in parts), max(p[axis].stop for p in parts)) for axis in range(3)
    )
    local = np.zeros(tuple(b.stop - b.start for b in box), dtype=bool)
    for part in parts:
        shifted = tuple(slice(p.start - b.start, p.stop - b.start) for p, b in zip(part, box, strict=True))
        local[shifted] |= within_radius(seed[part], spacing, radius_mm)
    return Roi(shape=shape, box=(box[0], box[1], box[2]), local=local)


def whole_volume(shape: tuple[int, int, int]) -> Roi:
    """An ROI holding every voxel of a volume shaped (Z, Y, X)."""
    box = (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    return Roi(shape=shape, box=box, local=np.ones(shape, dtype=bool))


def roi_of(prediction: NDArray[np.integer], reference: NDArray[np.integer] | None, spacing: Spacing,
           settings: MetricSettings) -> Roi:
    """The spec's ROI rule on label maps shaped (Z, Y, X): the foreground that ``settings.roi_mode`` names —
    ``union`` (prediction ∪ reference; the prediction alone without a reference, the prospective rule), ``pred``,
    ``gt`` (the reference) or ``whole_volume`` — dilated by ``roi_radius_mm``. The metric suite builds the same
    ROI from its own pass over the probabilities (a test holds the two equal)."""
    shape = (int(prediction.shape[0]), int(prediction.shape[1]), int(prediction.shape[2]))
    if settings.roi_mode == "whole_volume":
        return whole_volume(shape)
    if settings.roi_mode == "gt":
        if reference is None:
            raise ValueError("roi_mode 'gt' needs a reference")
        seed = reference > 0
    else:
        seed = prediction > 0
        if settings.roi_mode == "union" and reference is not None:
            seed |= reference > 0
    return dilate_mm(seed, spacing, settings.roi_radius_mm)
