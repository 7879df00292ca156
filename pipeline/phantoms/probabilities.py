"""Seeded synthetic probability maps of the TMLI classes, for demos and benchmarks of the metric engine.

Not CT images: a case is a reference label map and the softmax output of an imaginary segmentation model that
is good but not perfect. Classes: 0 background, 1 lymph nodes, 2 spleen.

Anatomy (a coarse caricature, positions as fractions of the volume, sizes in mm so they scale with the spacing):
the volume is taken to span neck (z = 0) to groin (z = Z-1), anterior (y = 0) to posterior, patient right (x = 0)
to patient left (radiological display). One spleen, an irregular ellipsoid 10-15 cm long, lies in the left upper
abdomen; 20-30 lymph nodes, ellipsoids 5-20 mm across, sit along the great vessels in six stations: cervical,
axillary, mediastinal, para-aortic, iliac and inguinal.

The "model": per structure, a logit that is a clipped, scaled signed distance (mm) to the reference surface,
shifted by a per-structure offset and a smooth boundary displacement (a few mm), so the prediction errs in thin
shells at the boundaries; a few small nodes are missed (a sub-threshold bump remains) and a few false-positive
blobs are added; smooth noise perturbs every logit. Probabilities are the softmax over classes.

Cost: every distance is computed inside the structure's bounding box only; the full volume is touched by one fill
and one chunked softmax pass, all in float32, so the peak memory is little more than the output itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Shape3 = tuple[int, int, int]
Spacing3 = tuple[float, float, float]
Box = tuple[slice, slice, slice]

N_CLASSES = 3
BACKGROUND, LYMPH_NODE, SPLEEN = 0, 1, 2

_LOGIT_FLOOR = -11.0  # foreground logit far from any structure (background logit is 0): p_fg ~ 2e-5
_LOGIT_CEILING = 9.0  # foreground logit deep inside a structure: p_bg ~ 1e-4
_CHUNK_VOXELS = 1 << 21  # voxels per z-chunk of the softmax pass


@dataclass(frozen=True)
class SyntheticCase:
    """One synthetic case.

    Attributes:
        probs: class probabilities, shape (3, Z, Y, X), float32, non-negative, summing to 1 over axis 0.
        labels: reference class per voxel, shape (Z, Y, X), uint8 in {0, 1, 2}.
        spacing: voxel size (z, y, x) in mm.
    """

    probs: NDArray[np.float32]
    labels: NDArray[np.uint8]
    spacing: Spacing3


@dataclass(frozen=True)
class _Ellipsoid:
    """One structure and how the model sees it.

    Attributes:
        label: class index (1 or 2).
        center: (z, y, x) in mm from the first voxel's centre.
        semi_axes: semi-axis lengths in mm, shape (3,).
        rotation: (3, 3) matrix whose columns are the ellipsoid's axes in (z, y, x) coordinates.
        irregularity: amplitude (mm) of the smooth surface displacement of the reference shape.
        in_reference: False for a false-positive blob (predicted only).
        shift: outward (< 0) or inward (> 0) shift of the predicted boundary, mm.
        wobble: standard deviation (mm) of the smooth displacement of the predicted boundary.
        width: logit transition width, mm (logit = -signed distance / width).
    """

    label: int
    center: NDArray[np.float64]
    semi_axes: NDArray[np.float64]
    rotation: NDArray[np.float64]
    irregularity: float
    in_reference: bool
    shift: float
    wobble: float
    width: float


@dataclass(frozen=True)
class _SmoothField:
    """A smooth random field of unit variance: separable Gaussian radial basis functions on a regular knot grid.

    Attributes:
        coefficients: i.i.d. standard normal weights of the knots, shape (J, K, L), float32.
        knots: knot positions in mm along z, y and x.
        scale: knot spacing and Gaussian width in mm (the correlation length).
    """

    coefficients: NDArray[np.float32]
    knots: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]
    scale: float

    def _weights(self, axis: int, positions: NDArray[np.float64]) -> NDArray[np.float32]:
        offsets = (positions[:, None] - self.knots[axis][None, :]) / self.scale
        weights = np.exp(-0.5 * offsets**2)
        weights /= np.linalg.norm(weights, axis=1, keepdims=True)
        return weights.astype(np.float32)

    def sample(self, box: Box, spacing: Spacing3) -> NDArray[np.float32]:
        """The field on the voxels of ``box``, shape of the box, float32, mean 0 and variance 1 per voxel."""
        wz, wy, wx = (self._weights(axis, _axis_mm(box[axis], spacing[axis])) for axis in range(3))
        partial = np.tensordot(wz, self.coefficients, axes=(1, 0))  # (z, K, L)
        partial = np.matmul(wy, partial)  # (z, y, L)
        return np.matmul(partial, wx.T)  # (z, y, x)


def synthetic_case(shape: Shape3, spacing: Spacing3, seed: int = 0) -> SyntheticCase:
    """A seeded synthetic case: reference labels and imperfect model probabilities of the TMLI classes.

    Args:
        shape: (Z, Y, X) voxels, each >= 1.
        spacing: voxel size (z, y, x) in mm, each > 0.
        seed: the same seed, shape and spacing give the same case.

    Returns:
        A :class:`SyntheticCase` with probs (3, Z, Y, X) float32 and labels (Z, Y, X) uint8. Structures outside
        a small volume are clipped, so a tiny volume may hold no foreground at all.
    """
    shape3, spacing3 = _check_geometry(shape, spacing)
    rng = np.random.default_rng(seed)
    extent = np.array(shape3, dtype=np.float64) * np.array(spacing3)
    structures = [_spleen(rng, extent), *_lymph_nodes(rng, extent), *_false_positives(rng, extent)]
    shape_field = _smooth_field(rng, extent, scale=12.0)
    boundary_field = _smooth_field(rng, extent, scale=15.0)
    noise_fields = (_smooth_field(rng, extent, scale=40.0), _smooth_field(rng, extent, scale=40.0))
    noise_amplitude = float(rng.uniform(0.6, 1.0))

    labels = np.zeros(shape3, dtype=np.uint8)
    probs = np.empty((N_CLASSES, *shape3), dtype=np.float32)
    probs[BACKGROUND] = 0.0
    probs[1:] = _LOGIT_FLOOR
    for structure in structures:
        _paint(structure, probs, labels, spacing3, shape_field, boundary_field)
    _softmax_with_noise(probs, spacing3, noise_fields, noise_amplitude)
    return SyntheticCase(probs=probs, labels=labels, spacing=spacing3)


def _check_geometry(shape: Shape3, spacing: Spacing3) -> tuple[Shape3, Spacing3]:
    if len(shape) != 3 or any(int(n) < 1 for n in shape):
        raise ValueError(f"shape must be 3 positive voxel counts (Z, Y, X), got {shape}")
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be 3 finite values > 0 mm (z, y, x), got {spacing}")
    return (int(shape[0]), int(shape[1]), int(shape[2])), (float(spacing[0]), float(spacing[1]), float(spacing[2]))


def _axis_mm(span: slice, step: float) -> NDArray[np.float64]:
    """Positions in mm of the voxel centres of one axis span."""
    return np.arange(span.start, span.stop, dtype=np.float64) * step


def _smooth_field(rng: np.random.Generator, extent: NDArray[np.float64], scale: float) -> _SmoothField:
    """A unit-variance field with correlation length ``scale`` mm covering a volume of ``extent`` mm."""
    knots = tuple(np.arange(-2.0 * scale, float(length) + 2.0 * scale + scale, scale) for length in extent)
    sizes = tuple(k.size for k in knots)
    coefficients = rng.standard_normal(sizes, dtype=np.float32)
    return _SmoothField(coefficients=coefficients, knots=(knots[0], knots[1], knots[2]), scale=scale)


def _rotation(angles: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rotation matrix from three angles (radians) about the z, y and x axes, applied in that order."""
    cz, sz = math.cos(angles[0]), math.sin(angles[0])
    cy, sy = math.cos(angles[1]), math.sin(angles[1])
    cx, sx = math.cos(angles[2]), math.sin(angles[2])
    about_z = np.array([[1, 0, 0], [0, cz, -sz], [0, sz, cz]])
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    about_x = np.array([[cx, -sx, 0], [sx, cx, 0], [0, 0, 1]])
    return about_x @ about_y @ about_z


def _random_rotation(rng: np.random.Generator) -> NDArray[np.float64]:
    """A uniformly random rotation (QR of a Gaussian matrix with the sign fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _spleen(rng: np.random.Generator, extent: NDArray[np.float64]) -> _Ellipsoid:
    """The spleen: left upper abdomen, long axis 10-15 cm tilted from z towards posterior, slightly lobulated."""
    where = np.array([0.40, 0.62, 0.72])
    center = where * extent + rng.normal(0.0, 8.0, 3)
    semi_axes = np.array([rng.uniform(50.0, 75.0), rng.uniform(30.0, 40.0), rng.uniform(18.0, 25.0)])
    # angles about z (in-plane), y (long axis towards lateral) and x (long axis towards posterior)
    tilt = np.radians([0.0, -20.0, 35.0]) + rng.normal(0.0, math.radians(8.0), 3)
    return _Ellipsoid(
        label=SPLEEN,
        center=center,
        semi_axes=semi_axes,
        rotation=_rotation(tilt),
        irregularity=float(rng.uniform(2.0, 4.0)),
        in_reference=True,
        shift=float(np.clip(rng.normal(0.0, 1.0), -2.5, 2.5)),
        wobble=1.8,
        width=float(rng.uniform(0.5, 0.9)),
    )


# Nodal stations along the great vessels: (name, start (z, y, x), end (z, y, x) as volume fractions, bilateral).
# Right-side coordinates; bilateral stations are mirrored to the left (x -> 1 - x).
_STATIONS: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float], bool], ...] = (
    ("cervical", (0.03, 0.45, 0.38), (0.13, 0.50, 0.36), True),
    ("axillary", (0.15, 0.50, 0.22), (0.21, 0.55, 0.18), True),
    ("mediastinal", (0.17, 0.45, 0.50), (0.33, 0.50, 0.50), False),
    ("para-aortic", (0.40, 0.58, 0.53), (0.64, 0.56, 0.51), False),
    ("iliac", (0.67, 0.55, 0.45), (0.82, 0.50, 0.36), True),
    ("inguinal", (0.86, 0.35, 0.33), (0.96, 0.30, 0.30), True),
)


def _station_point(
    rng: np.random.Generator, station: int, extent: NDArray[np.float64], jitter: float
) -> NDArray[np.float64]:
    """A random point (mm) along one station's vessel segment, on a random side, jittered by ``jitter`` mm."""
    _, start, end, bilateral = _STATIONS[station]
    where = np.array(start) + rng.uniform() * (np.array(end) - np.array(start))
    if bilateral and rng.uniform() < 0.5:
        where[2] = 1.0 - where[2]
    return where * extent + rng.normal(0.0, jitter, 3)


def _node_semi_axes(rng: np.random.Generator, low: float, high: float) -> NDArray[np.float64]:
    """Semi-axes (mm) of a node whose long diameter is log-uniform in [low, high] mm."""
    long_diameter = math.exp(rng.uniform(math.log(low), math.log(high)))
    return 0.5 * long_diameter * np.array([1.0, rng.uniform(0.55, 0.9), rng.uniform(0.45, 0.8)])


def _lymph_nodes(rng: np.random.Generator, extent: NDArray[np.float64]) -> list[_Ellipsoid]:
    """20-30 reference nodes (two or more per station); two to four of the smallest are missed by the model."""
    n_nodes = int(rng.integers(20, 31))
    base = 2 * len(_STATIONS)
    counts = 2 + rng.multinomial(n_nodes - base, np.full(len(_STATIONS), 1.0 / len(_STATIONS)))
    stations = np.repeat(np.arange(len(_STATIONS)), counts)
    axes = [_node_semi_axes(rng, 5.0, 20.0) for _ in stations]
    n_missed = int(rng.integers(2, 5))
    smallest = np.argsort([float(a.min()) for a in axes])[: max(n_missed, len(axes) // 2)]
    missed = set(rng.choice(smallest, size=n_missed, replace=False).tolist())
    nodes = []
    for index, (station, semi_axes) in enumerate(zip(stations, axes, strict=True)):
        shift = float(np.clip(rng.normal(0.0, 0.6), -1.5, 1.5))
        if index in missed:
            shift = float(semi_axes.min() + rng.uniform(0.5, 2.5))
        nodes.append(
            _Ellipsoid(
                label=LYMPH_NODE,
                center=_station_point(rng, int(station), extent, jitter=6.0),
                semi_axes=semi_axes,
                rotation=_random_rotation(rng),
                irregularity=float(0.1 * semi_axes.min()),
                in_reference=True,
                shift=shift,
                wobble=0.8,
                width=float(rng.uniform(0.3, 0.6)),
            )
        )
    return nodes


def _false_positives(rng: np.random.Generator, extent: NDArray[np.float64]) -> list[_Ellipsoid]:
    """Two to four small node-like blobs near the stations, and sometimes a splenule-like blob of class 2."""
    blobs = []
    for _ in range(int(rng.integers(2, 5))):
        station = int(rng.integers(len(_STATIONS)))
        blobs.append(
            _Ellipsoid(
                label=LYMPH_NODE,
                center=_station_point(rng, station, extent, jitter=15.0),
                semi_axes=_node_semi_axes(rng, 4.0, 10.0),
                rotation=_random_rotation(rng),
                irregularity=0.3,
                in_reference=False,
                shift=float(rng.uniform(-1.0, 0.5)),
                wobble=0.8,
                width=float(rng.uniform(0.3, 0.6)),
            )
        )
    if rng.uniform() < 0.5:
        direction = rng.normal(0.0, 1.0, 3)
        direction /= np.linalg.norm(direction)
        center = np.array([0.40, 0.62, 0.72]) * extent + 85.0 * direction
        blobs.append(
            _Ellipsoid(
                label=SPLEEN,
                center=center,
                semi_axes=rng.uniform(4.0, 8.0, 3),
                rotation=_random_rotation(rng),
                irregularity=0.5,
                in_reference=False,
                shift=0.0,
                wobble=1.0,
                width=float(rng.uniform(0.5, 0.9)),
            )
        )
    return blobs


def _bounding_box(structure: _Ellipsoid, spacing: Spacing3, shape: Shape3) -> Box | None:
    """Voxel box holding every voxel whose logit can exceed the floor; None when it misses the volume."""
    reach = (
        abs(_LOGIT_FLOOR) * structure.width
        + abs(structure.shift)
        + 3.0 * (structure.irregularity + structure.wobble)
    )
    # The distance estimate underestimates true distances outside by up to ~25 %: grow the margin to match.
    half = float(structure.semi_axes.max()) + 1.5 * reach
    spans = []
    for axis in range(3):
        lo = max(0, math.floor((structure.center[axis] - half) / spacing[axis]))
        hi = min(shape[axis], math.ceil((structure.center[axis] + half) / spacing[axis]) + 1)
        if lo >= hi:
            return None
        spans.append(slice(lo, hi))
    return (spans[0], spans[1], spans[2])


def _ellipsoid_distance(structure: _Ellipsoid, box: Box, spacing: Spacing3) -> NDArray[np.float32]:
    """Approximate signed distance (mm, negative inside) to the ellipsoid's surface on the voxels of ``box``.

    Uses k0 (k0 - 1) / k1 with k0 = |u / a| and k1 = |u / a^2| (u: local coordinates, a: semi-axes): exact along
    the axes and near the surface, smooth everywhere; shape of the box, float32.
    """
    offsets = [
        (_axis_mm(box[axis], spacing[axis]) - structure.center[axis]).astype(np.float32) for axis in range(3)
    ]
    grids = (offsets[0][:, None, None], offsets[1][None, :, None], offsets[2][None, None, :])
    k0_squared = np.zeros(tuple(s.stop - s.start for s in box), dtype=np.float32)
    k1_squared = np.zeros_like(k0_squared)
    for k in range(3):
        rot = structure.rotation[:, k].astype(np.float32)
        local = rot[0] * grids[0] + rot[1] * grids[1] + rot[2] * grids[2]
        local /= np.float32(structure.semi_axes[k])
        k0_squared += local * local
        local /= np.float32(structure.semi_axes[k])
        k1_squared += local * local
    k0 = np.sqrt(k0_squared, out=k0_squared)
    k1 = np.sqrt(k1_squared, out=k1_squared)
    np.maximum(k1, np.float32(1e-6), out=k1)
    distance = k0 * (k0 - np.float32(1.0))
    distance /= k1
    np.maximum(distance, np.float32(-structure.semi_axes.min()), out=distance)
    return distance


def _paint(
    structure: _Ellipsoid,
    probs: NDArray[np.float32],
    labels: NDArray[np.uint8],
    spacing: Spacing3,
    shape_field: _SmoothField,
    boundary_field: _SmoothField,
) -> None:
    """Add one structure to the reference labels (if it is real) and to its class's logit map (max over structures).

    ``probs`` holds logits (3, Z, Y, X) at this point; labels already painted are never overwritten.
    """
    box = _bounding_box(structure, spacing, labels.shape)
    if box is None:
        return
    distance = _ellipsoid_distance(structure, box, spacing)
    distance += np.float32(structure.irregularity) * shape_field.sample(box, spacing)
    if structure.in_reference:
        region = labels[box]
        region[(distance < 0) & (region == BACKGROUND)] = structure.label
    distance += np.float32(structure.shift)
    distance += np.float32(structure.wobble) * boundary_field.sample(box, spacing)
    logit = np.multiply(distance, np.float32(-1.0 / structure.width), out=distance)
    np.clip(logit, _LOGIT_FLOOR, _LOGIT_CEILING, out=logit)
    target = probs[structure.label][box]
    np.maximum(target, logit, out=target)


def _softmax_with_noise(
    logits: NDArray[np.float32], spacing: Spacing3, noise: tuple[_SmoothField, _SmoothField], amplitude: float
) -> None:
    """In place, z-chunk by z-chunk: add smooth noise to the foreground logits, then softmax over classes."""
    depth, rows, cols = logits.shape[1:]
    step = max(1, _CHUNK_VOXELS // (rows * cols))
    for z0 in range(0, depth, step):
        box = (slice(z0, min(depth, z0 + step)), slice(0, rows), slice(0, cols))
        chunk = logits[:, box[0]]
        for c, field in enumerate(noise, start=1):
            chunk[c] += np.float32(amplitude) * field.sample(box, spacing)
        chunk -= chunk.max(axis=0, keepdims=True)
        np.exp(chunk, out=chunk)
        chunk /= chunk.sum(axis=0, keepdims=True)
