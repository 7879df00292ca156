"""Solids for the CT phantoms (:mod:`pipeline.phantoms.ct`): signed distances, the sampling grid, smooth fields.

A solid is a signed distance in mm (negative inside) with bounds that contain it, evaluated on the positions of a
box of a :class:`SampleGrid`. Axes are (z, y, x) in mm from the centre of the volume's first voxel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Shape3 = tuple[int, int, int]
Spacing3 = tuple[float, float, float]
Box = tuple[slice, slice, slice]
Point = tuple[float, float, float]
Array = NDArray[np.float32]
Coords = tuple[Array, Array, Array]  # z (n, 1, 1), y (1, m, 1), x (1, 1, k) positions in mm, broadcastable
SignedDistance = Callable[[Coords], Array]


@dataclass(frozen=True)
class Solid:
    """A solid: bounds (lo, hi) in mm (z, y, x) that contain it, and its signed distance (mm, < 0 inside)."""

    lo: Point
    hi: Point
    sd: SignedDistance


@dataclass(frozen=True)
class SampleGrid:
    """Sample positions in mm (from the centre of the volume's first voxel) along z, y and x."""

    axes: tuple[Array, Array, Array]

    @classmethod
    def of(cls, shape: Shape3, spacing: Spacing3, factor: int) -> SampleGrid:
        """The voxel centres (factor 1) or a grid ``factor`` times finer per axis over the same volume."""
        z, y, x = (
            (((np.arange(n * factor) + 0.5) / factor - 0.5) * step).astype(np.float32)
            for n, step in zip(shape, spacing, strict=True)
        )
        return cls(axes=(z, y, x))

    @property
    def shape(self) -> Shape3:
        return (self.axes[0].size, self.axes[1].size, self.axes[2].size)

    def box(self, shape: Solid) -> Box | None:
        """Index ranges of the samples within the shape's bounds; None when they hold no sample."""
        spans = []
        for axis, low, high in zip(self.axes, shape.lo, shape.hi, strict=True):
            start, stop = int(np.searchsorted(axis, low, "left")), int(np.searchsorted(axis, high, "right"))
            if stop <= start:
                return None
            spans.append(slice(start, stop))
        return (spans[0], spans[1], spans[2])

    def coords(self, box: Box) -> Coords:
        """Broadcastable sample positions (mm) of a box: z (n, 1, 1), y (1, m, 1), x (1, 1, k)."""
        return (
            self.axes[0][box[0]][:, None, None],
            self.axes[1][box[1]][None, :, None],
            self.axes[2][box[2]][None, None, :],
        )


@dataclass(frozen=True)
class SmoothField:
    """A smooth random field of unit variance, defined everywhere: a sum of random plane waves whose wave vectors
    are Gaussian with standard deviation 1/scale per axis (a Gaussian covariance of correlation length ``scale``).

    Attributes:
        waves: wave vectors in rad/mm, shape (K, 3) over (z, y, x).
        phases: phase of each wave in rad, shape (K,).
    """

    waves: NDArray[np.float64]
    phases: NDArray[np.float64]

    @classmethod
    def draw(cls, rng: np.random.Generator, scale: float, n_waves: int = 16) -> SmoothField:
        return cls(waves=rng.normal(0.0, 1.0 / scale, (n_waves, 3)), phases=rng.uniform(0.0, 2.0 * np.pi, n_waves))

    def sample(self, coords: Coords) -> Array:
        """The field at the positions of a box, shape of the box, float32, clipped to [-3, 3]."""
        weight = math.sqrt(2.0 / self.phases.size) * np.exp(1j * self.phases)
        z, y, x = (np.exp(1j * np.outer(self.waves[:, axis], c.ravel())) for axis, c in enumerate(coords))
        values = np.einsum("k,kz,ky,kx->zyx", weight, z, y, x, optimize=True).real
        return np.clip(values, -3.0, 3.0).astype(np.float32)


def ellipse_sd(dy: Array, dx: Array, half_y: Array | float, half_x: Array | float) -> Array:
    """Approximate signed distance (mm) to an axis-aligned ellipse: (r - 1) r / |grad r| with r its level."""
    ny, nx = dy / half_y, dx / half_x
    level = np.sqrt(ny * ny + nx * nx)
    gradient = np.sqrt((ny / half_y) ** 2 + (nx / half_x) ** 2)
    scale = np.where(gradient > 1e-9, level / np.maximum(gradient, 1e-9), np.minimum(half_y, half_x))
    return (level - 1.0) * scale


def slab_sd(z: Array, z0: float, z1: float) -> Array:
    """Signed distance (mm) along z to the slab z0 <= z <= z1."""
    return np.maximum(z0 - z, z - z1)


def rotation(about_z: float, about_y: float = 0.0, about_x: float = 0.0) -> NDArray[np.float64]:
    """Rotation matrix (3, 3) in (z, y, x) coordinates from angles (rad) about the z, y and x axes."""
    cz, sz = math.cos(about_z), math.sin(about_z)
    cy, sy = math.cos(about_y), math.sin(about_y)
    cx, sx = math.cos(about_x), math.sin(about_x)
    rot_z = np.array([[1, 0, 0], [0, cz, -sz], [0, sz, cz]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_x = np.array([[cx, -sx, 0], [sx, cx, 0], [0, 0, 1]])
    return rot_x @ rot_y @ rot_z


def ellipsoid(center: Point, semi_axes: Point, rotation: NDArray[np.float64] | None = None) -> Solid:
    """An ellipsoid: centre (z, y, x) mm, semi-axes mm, rotation (3, 3) whose columns are its axes."""
    rot = np.eye(3) if rotation is None else rotation
    axes = np.asarray(semi_axes, dtype=np.float64)
    half = np.sqrt(((rot * axes[None, :]) ** 2).sum(axis=1))
    c0, c1, c2 = (float(v) for v in center)

    def sd(c: Coords) -> Array:
        q = (c[0] - c0, c[1] - c1, c[2] - c2)
        local = [sum(float(rot[i, j]) * q[i] for i in range(3)) for j in range(3)]
        level = np.sqrt(sum((u / a) ** 2 for u, a in zip(local, axes, strict=True)))
        gradient = np.sqrt(sum((u / a**2) ** 2 for u, a in zip(local, axes, strict=True)))
        scale = np.where(gradient > 1e-9, level / np.maximum(gradient, 1e-9), axes.min())
        return ((level - 1.0) * scale).astype(np.float32)

    lo = (c0 - half[0], c1 - half[1], c2 - half[2])
    hi = (c0 + half[0], c1 + half[1], c2 + half[2])
    return Solid(lo, hi, sd)


def tube(waypoints: Sequence[tuple[float, float, float, float]]) -> Solid:
    """A tube along z through waypoints (z, y, x, radius) in mm, z increasing; its cross-sections are discs."""
    z, y, x, r = (np.array(column, dtype=np.float64) for column in zip(*waypoints, strict=True))

    def sd(c: Coords) -> Array:
        at = c[0][:, 0, 0].astype(np.float64)
        cy, cx, radius = (np.interp(at, z, v)[:, None, None] for v in (y, x, r))
        distance = np.sqrt((c[1] - cy) ** 2 + (c[2] - cx) ** 2) - radius
        return np.maximum(distance, slab_sd(c[0], float(z[0]), float(z[-1]))).astype(np.float32)

    return Solid((z[0], (y - r).min(), (x - r).min()), (z[-1], (y + r).max(), (x + r).max()), sd)


def intersection(shape: Solid, clip: Solid) -> Solid:
    """The part of ``shape`` inside ``clip``."""

    def sd(c: Coords) -> Array:
        return np.maximum(shape.sd(c), clip.sd(c))

    lo = (max(shape.lo[0], clip.lo[0]), max(shape.lo[1], clip.lo[1]), max(shape.lo[2], clip.lo[2]))
    hi = (min(shape.hi[0], clip.hi[0]), min(shape.hi[1], clip.hi[1]), min(shape.hi[2], clip.hi[2]))
    return Solid(lo, hi, sd)


def grown(shape: Solid, margin: float) -> Solid:
    """``shape`` grown outwards by ``margin`` mm (shrunk for a negative margin)."""

    def sd(c: Coords) -> Array:
        return shape.sd(c) - np.float32(margin)

    return Solid(moved(shape.lo, -margin), moved(shape.hi, margin), sd)


def lobulated(shape: Solid, field: SmoothField, amplitude: float) -> Solid:
    """``shape`` with its surface displaced by ``amplitude`` mm times a smooth field (|field| <= 3)."""

    def sd(c: Coords) -> Array:
        return shape.sd(c) + np.float32(amplitude) * field.sample(c)

    return Solid(moved(shape.lo, -3.0 * amplitude), moved(shape.hi, 3.0 * amplitude), sd)


def moved(point: Point, by: float) -> Point:
    """``point`` with ``by`` mm added on every axis."""
    return (point[0] + by, point[1] + by, point[2] + by)
