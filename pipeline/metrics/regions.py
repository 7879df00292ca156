"""Review regions: the connected components of a top-budget mask, described and ranked for the worklist.

Pure NumPy/SciPy on (Z, Y, X) arrays; no store, web or torch import.

- **Budget**: U_b and every rule of the budget (default, cap, rounding, ties, time budgets) belong to
  :mod:`pipeline.metrics.review_budget`; here U_b is an input.
- **Regions**: connected components of U_b, 26-connected by default (voxels sharing a face, an edge or a corner
  belong together; ``connectivity=6`` joins face neighbours only). Parts whose gap is at most ``merge_distance_mm``
  along every axis (the empty voxels between them × that axis's spacing; 26-connected) form one region: U_b is
  grown forward along each axis by the widest gap that fits, the grown mask's components group the U_b voxels, and
  a region holds U_b voxels only (0: no merging). Regions smaller than ``min_region_ml`` after merging are not
  listed (their voxels stay in U_b and its overlay; the case's score and flagged volume count the listed regions:
  what a person reviews).
- **Score**: the region's entropy mass, Σ_v H(v) × voxel volume = mean entropy × volume in mL. It grows with both
  how uncertain and how large a region is, so a large moderately uncertain region outranks a one-voxel speck of
  maximal entropy. Regions of a case are ranked by score (ties: larger volume, then raster order); cases by the
  sum of their regions' scores (the entropy mass of their whole U_b).
- **Slice numbers** shown to people (tables, exports, the slice browser) count from 1, as the slice browser and
  DICOM viewers do: :func:`slice_number` is the one rule; arrays, voxel coordinates and ``at=z,y,x`` addresses stay
  0-based indices.
- **Structure** of a region: the most frequent predicted foreground class among its voxels; a region without any
  predicted foreground voxel (a possible missed structure) takes the class of the nearest predicted foreground
  voxel within ``structure_search_mm`` (majority over its voxels), else class 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage


class RegionRules(Protocol):
    """What finding regions needs of the review settings (:class:`pipeline.settings.ReviewSettings` has it; the
    metric engine does not import the settings module, which imports the database URL parser)."""

    @property
    def connectivity(self) -> int: ...

    @property
    def structure_search_mm(self) -> float: ...

    @property
    def merge_distance_mm(self) -> float: ...

    @property
    def min_region_ml(self) -> float: ...


@dataclass(frozen=True)
class Region:
    """One connected component of U_b.

    Attributes:
        rank: 1 for the highest score of its case; also its value in :attr:`CaseRegions.labels`.
        class_index: the structure it belongs to (module docstring).
        voxels: its size; volume_ml: the same in mL.
        slices: first and last axial slice (z index, inclusive).
        centroid: the region's voxel (z, y, x) nearest (in mm) to its centre of mass: always inside the region.
        mean_entropy, max_entropy: over its voxels (normalised entropy, 0..1).
        score: mean entropy × volume in mL.
    """

    rank: int
    class_index: int
    voxels: int
    volume_ml: float
    slices: tuple[int, int]
    centroid: tuple[int, int, int]
    mean_entropy: float
    max_entropy: float
    score: float


@dataclass(frozen=True)
class CaseRegions:
    """The ranked regions of one case and their label map (0 outside, the region's rank inside)."""

    labels: NDArray[np.int32]
    regions: tuple[Region, ...]


def slice_number(index: int) -> int:
    """The number a slice of index ``index`` (0-based, any plane) is shown with: 1-based (module docstring)."""
    return index + 1


def slice_span(slices: tuple[int, int]) -> str:
    """A region's first–last axial slice as shown (``"12–15"``, 1-based)."""
    return f"{slice_number(slices[0])}–{slice_number(slices[1])}"


def case_score(regions: Sequence[Region]) -> float:
    """A case's score: the sum of its regions' scores (the entropy mass of its U_b, in mL)."""
    return float(sum(r.score for r in regions))


def _structures(
    labels: NDArray[np.int32], count: int, prediction: NDArray[np.integer], spacing: tuple[float, float, float],
    search_mm: float,
) -> NDArray[np.int64]:
    """The class of each labelled region 1..count (module docstring's rule)."""
    flat = np.flatnonzero(labels)
    region = labels.ravel()[flat]
    predicted = prediction.ravel()[flat].astype(np.int64)
    n_classes = int(prediction.max()) + 1 if prediction.size else 1
    votes = np.zeros((count + 1, n_classes), dtype=np.int64)
    np.add.at(votes, (region, predicted), 1)
    votes[:, 0] = 0
    classes = votes.argmax(axis=1)
    margins = [math.ceil(search_mm / s) for s in spacing]
    for number, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or votes[number].any():
            continue
        grown = tuple(slice(max(0, b.start - m), min(n, b.stop + m))
                      for b, m, n in zip(box, margins, labels.shape, strict=True))
        foreground = prediction[grown] > 0
        if not foreground.any():
            continue
        distance, nearest = ndimage.distance_transform_edt(~foreground, sampling=spacing, return_indices=True)
        inside = labels[grown] == number
        near = inside & (distance <= search_mm)
        if near.any():
            nearest_classes = prediction[grown][tuple(axis[near] for axis in nearest)].astype(np.int64)
            classes[number] = int(np.bincount(nearest_classes).argmax())
    return classes


def find_regions(
    mask: NDArray[np.bool_],
    entropy: NDArray[np.floating],
    prediction: NDArray[np.integer],
    spacing_zyx: tuple[float, float, float],
    settings: RegionRules,
) -> CaseRegions:
    """The connected components of ``mask`` (U_b), described and ranked (module docstring).

    Args:
        mask: U_b, boolean (Z, Y, X).
        entropy: normalised entropy per voxel, same shape (float16 as stored is fine).
        prediction: predicted class per voxel, same shape.
        spacing_zyx: voxel size (z, y, x) in mm.
        settings: connectivity and the structure search radius (the review settings).
    """
    if not mask.shape == entropy.shape == prediction.shape or mask.ndim != 3:
        raise ValueError(f"mask {mask.shape}, entropy {entropy.shape} and prediction {prediction.shape} must be "
                         "one (Z, Y, X) shape")
    spacing = (float(spacing_zyx[0]), float(spacing_zyx[1]), float(spacing_zyx[2]))
    reach = max(settings.structure_search_mm, settings.merge_distance_mm)
    box = _search_box(mask, [math.ceil(reach / s) for s in spacing])
    full = np.zeros(mask.shape, dtype=np.int32)
    if box is None:
        return CaseRegions(labels=full, regions=())
    labels, regions = _regions_in(mask[box], entropy[box], prediction[box], spacing, settings)
    full[box] = labels
    offset = tuple(axis.start for axis in box)
    return CaseRegions(labels=full, regions=tuple(replace(
        r, slices=(r.slices[0] + offset[0], r.slices[1] + offset[0]),
        centroid=(r.centroid[0] + offset[0], r.centroid[1] + offset[1], r.centroid[2] + offset[2]))
        for r in regions))


def _search_box(mask: NDArray[np.bool_], margins: Sequence[int]) -> tuple[slice, slice, slice] | None:
    """The mask's bounding box grown by ``margins`` voxels (the structure search's reach), clipped; None if empty.

    Regions, their structures and every tie-break are the same inside this box as in the whole volume (raster order
    is kept by a translation; the margins cover the structure search and the merging growth), and the work then
    scales with the box, not the CT."""
    extents = []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if present.size == 0:
            return None
        extents.append((int(present[0]), int(present[-1])))
    z, y, x = (slice(max(0, low - margin), min(size, high + 1 + margin))
               for (low, high), margin, size in zip(extents, margins, mask.shape, strict=True))
    return z, y, x


def _regions_in(
    mask: NDArray[np.bool_], entropy: NDArray[np.floating], prediction: NDArray[np.integer],
    spacing: tuple[float, float, float], settings: RegionRules,
) -> tuple[NDArray[np.int32], tuple[Region, ...]]:
    """:func:`find_regions` on arrays holding every U_b voxel: the label map (ranks) and the ranked regions."""
    labels, count = _components(mask, spacing, settings)
    if count == 0:
        return labels, ()
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    flat = np.flatnonzero(labels)
    region = labels.ravel()[flat]
    values = entropy.ravel()[flat].astype(np.float64)
    sizes = np.bincount(region, minlength=count + 1)
    sums = np.bincount(region, weights=values, minlength=count + 1)
    peaks = np.zeros(count + 1)
    np.maximum.at(peaks, region, values)
    coordinates = np.stack(np.unravel_index(flat, labels.shape), axis=1)
    centres = np.stack([np.bincount(region, weights=coordinates[:, a], minlength=count + 1) for a in range(3)], 1)
    centres[1:] /= sizes[1:, None]
    squared = (((coordinates - centres[region]) * np.asarray(spacing)) ** 2).sum(axis=1)
    by_region = np.lexsort((squared, region))  # per region, nearest to its centre first
    first = np.searchsorted(region[by_region], np.arange(1, count + 1))
    nearest = coordinates[by_region[first]]
    classes = _structures(labels, count, prediction, spacing, settings.structure_search_mm)
    boxes = ndimage.find_objects(labels)
    described = []
    for number in range(1, count + 1):
        box = boxes[number - 1]
        assert box is not None
        mean = float(sums[number] / sizes[number])
        volume = float(sizes[number] * voxel_ml)
        described.append((number, Region(
            rank=0, class_index=int(classes[number]), voxels=int(sizes[number]), volume_ml=volume,
            slices=(int(box[0].start), int(box[0].stop - 1)),
            centroid=(int(nearest[number - 1][0]), int(nearest[number - 1][1]), int(nearest[number - 1][2])),
            mean_entropy=mean, max_entropy=float(peaks[number]), score=mean * volume,
        )))
    described = [item for item in described if item[1].volume_ml >= settings.min_region_ml]
    described.sort(key=lambda item: (-item[1].score, -item[1].voxels, item[0]))
    relabel = np.zeros(count + 1, dtype=np.int32)
    regions = []
    for rank, (number, item) in enumerate(described, start=1):
        relabel[number] = rank
        regions.append(replace(item, rank=rank))
    return relabel[labels], tuple(regions)


def _components(mask: NDArray[np.bool_], spacing: tuple[float, float, float], settings: RegionRules
                ) -> tuple[NDArray[np.int32], int]:
    """U_b's voxels labelled by region, 1..count in raster order of each region's first (grown) voxel: connected
    components, merged where closer than ``merge_distance_mm`` (module docstring)."""
    structure = ndimage.generate_binary_structure(3, 1 if settings.connectivity == 6 else 3)
    if settings.merge_distance_mm <= 0:
        labels, count = ndimage.label(mask, structure=structure)
        return labels.astype(np.int32), int(count)
    grown = mask
    for axis, step in enumerate(spacing):
        reach = math.floor(settings.merge_distance_mm / step + 1e-9)  # the widest gap, in voxels, to bridge
        if reach > 0:  # grow forward by ``reach`` voxels: parts with a gap of at most ``reach`` voxels now touch
            grown = ndimage.maximum_filter1d(grown, size=reach + 1, axis=axis, origin=reach // 2, mode="constant",
                                             cval=False)
    grouped, _ = ndimage.label(grown, structure=structure)
    present, inverse = np.unique(np.where(mask, grouped, 0), return_inverse=True)
    labels = inverse.reshape(mask.shape).astype(np.int32)
    if present[0] != 0:  # every voxel in U_b: no background label to keep at 0
        labels += 1
    return labels, int(np.count_nonzero(present))


def rank_cases(cases: Mapping[str, Sequence[Region]]) -> list[str]:
    """Case names from the highest :func:`case_score` down (ties: larger flagged volume, then name)."""
    return sorted(cases, key=lambda name: (-case_score(cases[name]), -sum(r.volume_ml for r in cases[name]), name))
