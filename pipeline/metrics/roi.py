"""The ROI of the ROI-masked metrics: voxels within r mm (Euclidean, real spacing) of a foreground seed.

The distance transform runs only inside the seed's bounding box plus an r-mm margin, in z-slabs, so its cost and
memory grow with the structures rather than with the whole volume, and stay bounded on large scans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import distance_transform_edt

from pipeline.metrics.validation import Spacing

_SLAB_VOXELS = 4_000_000


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

    def gather(self, array: NDArray[np.generic]) -> NDArray[np.generic]:
        """Values of ``array`` (shaped (..., Z, Y, X)) at ROI voxels, in raster order: shape (..., |R|)."""
        if array.shape[-3:] != self.shape:
            raise ValueError(f"array's spatial shape {array.shape[-3:]} differs from the ROI's {self.shape}")
        return array[(Ellipsis, *self.box)][..., self.local]

    def flat_indices(self) -> NDArray[np.intp]:
        """Raster (C-order) indices into the whole volume of the ROI voxels, ascending, shape (|R|,)."""
        local = np.nonzero(self.local)
        coords = tuple(axis + box.start for axis, box in zip(local, self.box, strict=True))
        return np.ravel_multi_index(coords, self.shape)

    def dense(self) -> NDArray[np.bool_]:
        """The ROI as a boolean mask of the whole volume, shape (Z, Y, X)."""
        mask = np.zeros(self.shape, dtype=bool)
        mask[self.box] = self.local
        return mask


def _bounding_box(seed: NDArray[np.bool_]) -> tuple[slice, slice, slice] | None:
    spans = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(np.any(seed, axis=other))
        if hits.size == 0:
            return None
        spans.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return (spans[0], spans[1], spans[2])


def _grow(box: tuple[slice, ...], margins: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, slice, slice]:
    grown = [
        slice(max(0, s.start - m), min(n, s.stop + m)) for s, m, n in zip(box, margins, shape, strict=True)
    ]
    return (grown[0], grown[1], grown[2])


def dilate_mm(seed: NDArray[np.bool_], spacing: Spacing, radius_mm: float) -> Roi:
    """Voxels whose Euclidean distance (mm, with ``spacing``) to the nearest ``seed`` voxel is <= ``radius_mm``.

    Args:
        seed: boolean mask shaped (Z, Y, X); must hold at least one voxel.
        spacing: voxel size (z, y, x) in mm.
        radius_mm: the distance threshold in mm, >= 0.
    """
    box = _bounding_box(seed)
    shape = (int(seed.shape[0]), int(seed.shape[1]), int(seed.shape[2]))
    if box is None:
        raise ValueError("empty ROI: the foreground seed holds no voxel")
    margins = tuple(math.floor(radius_mm / s) + 1 for s in spacing)
    box = _grow(box, margins, shape)
    sub = seed[box]
    local = np.zeros(sub.shape, dtype=bool)
    plane = sub.shape[1] * sub.shape[2]
    core = max(1, _SLAB_VOXELS // plane - 2 * margins[0])
    for start in range(0, sub.shape[0], core):
        stop = min(sub.shape[0], start + core)
        lo, hi = max(0, start - margins[0]), min(sub.shape[0], stop + margins[0])
        slab = sub[lo:hi]
        if not slab.any():
            continue
        distance = distance_transform_edt(~slab, sampling=spacing)
        local[start:stop] = distance[start - lo : stop - lo] <= radius_mm
    return Roi(shape=shape, box=box, local=local)


def whole_volume(shape: tuple[int, int, int]) -> Roi:
    """An ROI holding every voxel of a volume shaped (Z, Y, X)."""
    box = (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    return Roi(shape=shape, box=box, local=np.ones(shape, dtype=bool))
