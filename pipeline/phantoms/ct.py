"""Seeded CT-like phantoms of the trunk, neck to groin, to train and test the project's own nnU-Net models.

A phantom is a CT volume in Hounsfield units with the TMLI classes (0 background, 1 lymph nodes, 2 spleen) in two
versions: ``truth``, the labels of the anatomy as rendered, and ``labels``, an observer's reference contour of it
(small boundary shifts and a smooth boundary wobble of a few mm, now and then a missed node), which is what
training and evaluation use, as with real delineations.

Axes and frame (as in :mod:`pipeline.phantoms.probabilities`): arrays are (Z, Y, X); z runs from the neck (z = 0)
to the groin, y from anterior to posterior, x from the patient's right to left. Positions along z are fractions
``f`` of the volume's z extent; sizes are in mm, and sizes along z scale with that extent relative to the nominal
564 mm of the default geometry, so a shorter volume holds a shorter trunk.

Anatomy (HU): air -1000; the body, an elliptic cylinder whose half-widths vary with f, is a subcutaneous fat
shell (-100), a muscle wall (45) and a cavity: neck muscle, mediastinal fat, or textured bowel and mesentery
(-20 ± 40). Lungs (-840), heart, liver (60), kidneys (~165), bladder, psoas; spine, ribs, iliac wings and femora
(cortex 600-800, marrow 250-400); contrast-enhanced vessels (arteries 170-210, veins 130-160) along z: carotids
and jugulars, aorta with its bifurcation into the iliac and femoral arteries, IVC and iliac veins. The spleen
(115-140 HU, 110-650 mL, lobulated) lies in the left upper abdomen; 12-25 lymph nodes (80-105 HU, semi-axes
12-20 mm in-plane and 20-32 mm along z: bulky, so that a tiny network learns them in minutes) sit in fat pads
beside the vessels of six stations: cervical, axillary, mediastinal, para-aortic, iliac and inguinal. Every
patient differs in size, fat, organ position and size, contrast, node count and noise (10-20 HU).

Rendering: each structure is a signed distance (mm, negative inside), painted in order on a grid 2x finer per axis
and averaged down to the voxel grid, which gives partial-volume edges; correlated Gaussian noise is added last.
``truth`` is the majority label of the fine samples of a voxel; ``labels`` thresholds the same signed distances at
the voxel centres, moved by the observer's shift and wobble. A 48 x 64 x 64 phantom takes about 0.2 s.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter

log = logging.getLogger(__name__)

Shape3 = tuple[int, int, int]
Spacing3 = tuple[float, float, float]
Box = tuple[slice, slice, slice]
Point = tuple[float, float, float]
Array = NDArray[np.float32]
Coords = tuple[Array, Array, Array]  # z (n, 1, 1), y (1, m, 1), x (1, 1, k) positions in mm, broadcastable
SignedDistance = Callable[[Coords], Array]

BACKGROUND, LYMPH_NODES, SPLEEN = 0, 1, 2
LABELS: dict[str, int] = {"background": BACKGROUND, "lymph_nodes": LYMPH_NODES, "spleen": SPLEEN}
DEFAULT_SHAPE: Shape3 = (48, 64, 64)
DEFAULT_SPACING: Spacing3 = (12.0, 7.0, 7.0)
FILE_ENDING = ".nii.gz"

_NOMINAL_LENGTH_MM = 564.0  # z extent of the default geometry; sizes along z scale with the actual extent
_FINE = 2  # supersampling factor per axis of the rendering grid
_AIR, _FAT, _MUSCLE = -1000.0, -100.0, 45.0
_HU_MIN, _HU_MAX = -1024, 3071


@dataclass(frozen=True)
class Phantom:
    """One seeded phantom.

    Attributes:
        ct: CT volume in HU, shape (Z, Y, X), int16.
        labels: the observer's reference label map, shape (Z, Y, X), uint8 in {0, 1, 2}; train and evaluate on it.
        truth: the labels of the rendered anatomy, shape (Z, Y, X), uint8 in {0, 1, 2}.
        spacing: voxel size (z, y, x) in mm.
        seed: the seed that generated it.
    """

    ct: NDArray[np.int16]
    labels: NDArray[np.uint8]
    truth: NDArray[np.uint8]
    spacing: Spacing3
    seed: int


@dataclass(frozen=True)
class _Shape:
    """A solid: bounds (lo, hi) in mm (z, y, x) that contain it, and its signed distance (mm, < 0 inside)."""

    lo: Point
    hi: Point
    sd: SignedDistance


@dataclass(frozen=True)
class _Grid:
    """Sample positions in mm (from the centre of the volume's first voxel) along z, y and x."""

    axes: tuple[Array, Array, Array]

    @classmethod
    def of(cls, shape: Shape3, spacing: Spacing3, factor: int) -> _Grid:
        """The voxel centres (factor 1) or a grid ``factor`` times finer per axis over the same volume."""
        z, y, x = (
            (((np.arange(n * factor) + 0.5) / factor - 0.5) * step).astype(np.float32)
            for n, step in zip(shape, spacing, strict=True)
        )
        return cls(axes=(z, y, x))

    @property
    def shape(self) -> Shape3:
        return (self.axes[0].size, self.axes[1].size, self.axes[2].size)

    def box(self, shape: _Shape) -> Box | None:
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
class _SmoothField:
    """A smooth random field of unit variance, defined everywhere: a sum of random plane waves whose wave vectors
    are Gaussian with standard deviation 1/scale per axis (a Gaussian covariance of correlation length ``scale``).

    Attributes:
        waves: wave vectors in rad/mm, shape (K, 3) over (z, y, x).
        phases: phase of each wave in rad, shape (K,).
    """

    waves: NDArray[np.float64]
    phases: NDArray[np.float64]

    @classmethod
    def draw(cls, rng: np.random.Generator, scale: float, n_waves: int = 16) -> _SmoothField:
        return cls(waves=rng.normal(0.0, 1.0 / scale, (n_waves, 3)), phases=rng.uniform(0.0, 2.0 * np.pi, n_waves))

    def sample(self, coords: Coords) -> Array:
        """The field at the positions of a box, shape of the box, float32, clipped to [-3, 3]."""
        weight = math.sqrt(2.0 / self.phases.size) * np.exp(1j * self.phases)
        z, y, x = (np.exp(1j * np.outer(self.waves[:, axis], c.ravel())) for axis, c in enumerate(coords))
        values = np.einsum("k,kz,ky,kx->zyx", weight, z, y, x, optimize=True).real
        return np.clip(values, -3.0, 3.0).astype(np.float32)


class _Canvas:
    """The fine-grid HU volume being painted, and which class owns each fine sample (the last painter wins)."""

    def __init__(self, grid: _Grid) -> None:
        self.grid = grid
        self.hu = np.full(grid.shape, _AIR, dtype=np.float32)
        self.owner = np.zeros(grid.shape, dtype=np.uint8)

    def paint(self, shape: _Shape, value: float | Array, label: int = BACKGROUND) -> None:
        """Set the samples inside ``shape`` to ``value`` (HU, or a fine-grid HU volume to copy from)."""
        box = self.grid.box(shape)
        if box is None:
            return
        inside = shape.sd(self.grid.coords(box)) < 0.0
        self.hu[box][inside] = value if isinstance(value, float) else value[box][inside]
        self.owner[box][inside] = label


@dataclass(frozen=True)
class _Body:
    """The patient's trunk: an elliptic cylinder with layers, half-widths interpolated along z.

    Attributes:
        length: z extent of the volume in mm; f = z / length.
        zscale: length / the nominal 564 mm (multiplies sizes along z).
        center: (y, x) of the body axis in mm.
        scale: (y, x) factors from nominal to this patient's in-plane offsets (organ and vessel positions).
        f: knots along z as fractions, shape (n,).
        half_x, half_y: body half-widths (mm) at the knots, shape (n,).
        fat, muscle: subcutaneous fat and muscle wall thickness (mm) at the knots, shape (n,).
    """

    length: float
    zscale: float
    center: tuple[float, float]
    scale: tuple[float, float]
    f: NDArray[np.float64]
    half_x: NDArray[np.float64]
    half_y: NDArray[np.float64]
    fat: NDArray[np.float64]
    muscle: NDArray[np.float64]

    def z(self, f: float) -> float:
        """The z position (mm) of the fraction f of the volume's z extent."""
        return f * self.length

    def cavity(self, f: float) -> tuple[float, float]:
        """Half-widths (y, x) in mm of the body cavity at fraction f."""
        inset = np.interp(f, self.f, self.fat) + np.interp(f, self.f, self.muscle)
        return float(np.interp(f, self.f, self.half_y) - inset), float(np.interp(f, self.f, self.half_x) - inset)

    def point(self, f: float, dy: float, dx: float) -> Point:
        """The position (z, y, x) in mm of nominal offsets (dy, dx) mm from the body axis at fraction f."""
        return (self.z(f), self.center[0] + dy * self.scale[0], self.center[1] + dx * self.scale[1])

    def tube(self, waypoints: Sequence[tuple[float, float, float, float]]) -> _Shape:
        """A tube through waypoints (f, dy, dx, radius): nominal offsets from the body axis, radius in mm."""
        return _tube([(*self.point(f, dy, dx), r) for f, dy, dx, r in waypoints])

    def layer(self, inset: str, f_range: tuple[float, float] = (0.0, 1.0)) -> _Shape:
        """The body ("skin"), the inside of the fat shell ("wall") or the cavity ("cavity") within f_range."""
        knots = np.zeros_like(self.f)
        if inset in ("wall", "cavity"):
            knots = knots + self.fat
        if inset == "cavity":
            knots = knots + self.muscle
        z0, z1 = self.z(f_range[0]), self.z(f_range[1])
        cy, cx = self.center

        def sd(c: Coords) -> Array:
            f = c[0][:, 0, 0].astype(np.float64) / self.length
            half_y = np.maximum(np.interp(f, self.f, self.half_y) - np.interp(f, self.f, knots), 1.0)[:, None, None]
            half_x = np.maximum(np.interp(f, self.f, self.half_x) - np.interp(f, self.f, knots), 1.0)[:, None, None]
            inside = _ellipse_sd(c[1] - cy, c[2] - cx, half_y, half_x)
            return np.maximum(inside, _slab_sd(c[0], z0, z1)).astype(np.float32)

        reach = (float(self.half_y.max()), float(self.half_x.max()))
        return _Shape((z0, cy - reach[0], cx - reach[1]), (z1, cy + reach[0], cx + reach[1]), sd)


@dataclass(frozen=True)
class _Vessels:
    """Centre lines of the great vessels as waypoint arrays (z, y, x, radius) in mm, one tube each."""

    tubes: dict[str, tuple[NDArray[np.float64], ...]]

    def at(self, name: str, f: float, body: _Body) -> tuple[float, float, float]:
        """Centre (y, x) and radius (mm) of a vessel at fraction f (clamped to its ends)."""
        z, y, x, r = self.tubes[name]
        at = body.z(f)
        return float(np.interp(at, z, y)), float(np.interp(at, z, x)), float(np.interp(at, z, r))


def generate_phantom(seed: int, shape: Shape3 = DEFAULT_SHAPE, spacing: Spacing3 = DEFAULT_SPACING) -> Phantom:
    """A seeded CT-like phantom of the trunk with its lymph nodes and spleen (see the module's description).

    Args:
        seed: the random seed; the same seed, shape and spacing give the same phantom, bit for bit.
        shape: voxels (Z, Y, X), neck to groin along Z.
        spacing: voxel size (z, y, x) in mm.

    Returns:
        A :class:`Phantom`: ct (Z, Y, X) int16 HU, labels and truth (Z, Y, X) uint8, spacing (z, y, x) mm.
    """
    shape3, spacing3 = _check_geometry(shape, spacing)
    rng = np.random.default_rng(seed)
    body = _draw_body(rng, shape3, spacing3)
    vessels = _draw_vessels(rng, body)
    canvas = _Canvas(_Grid.of(shape3, spacing3, _FINE))
    coarse = _Grid.of(shape3, spacing3, 1)
    textures = _textures(rng, coarse)

    _paint_trunk(canvas, body, rng, textures)
    _paint_organs(canvas, body, rng, textures)
    spleen = _spleen(rng, body)
    nodes = _nodes(rng, body, vessels)
    for node in nodes:
        canvas.paint(_grown(node, float(rng.uniform(6.0, 10.0))), _FAT)
    _paint_bones(canvas, body, rng)
    _paint_vessels(canvas, vessels, rng)
    canvas.paint(spleen, float(rng.uniform(115.0, 140.0)), SPLEEN)
    for node in nodes:
        canvas.paint(node, float(rng.uniform(80.0, 105.0)), LYMPH_NODES)

    ct = _finish_ct(canvas.hu, shape3, rng)
    truth = _majority_labels(canvas.owner, shape3)
    labels = _observer_reference(rng, coarse, spleen, nodes)
    return Phantom(ct=ct, labels=labels, truth=truth, spacing=spacing3, seed=int(seed))


def case_identifier(case_prefix: str, seed: int) -> str:
    """The nnU-Net case identifier of the phantom generated with ``seed``: ``<prefix>_<seed, 5 digits>``."""
    return f"{case_prefix}_{seed:05d}"


def write_nnunet_raw(
    folder: Path, phantoms: Sequence[Phantom], dataset_id: int, name: str, case_prefix: str
) -> Path:
    """Write phantoms as an nnU-Net v2 raw dataset and return its folder, ``folder/Dataset<id:03d>_<name>``.

    Writes imagesTr/<case>_0000.nii.gz (CT, int16 HU), labelsTr/<case>.nii.gz (the observer reference, uint8) with
    the phantom's spacing, and dataset.json (channel 0 "CT", the TMLI labels, numTraining, file_ending ".nii.gz").
    Cases are named by seed (:func:`case_identifier`), so the names are deterministic; duplicate seeds are refused.
    """
    identifiers = [case_identifier(case_prefix, p.seed) for p in phantoms]
    if len(set(identifiers)) != len(identifiers):
        raise ValueError(f"duplicate phantom seeds: {sorted(p.seed for p in phantoms)}")
    dataset = Path(folder) / f"Dataset{dataset_id:03d}_{name}"
    (dataset / "imagesTr").mkdir(parents=True, exist_ok=True)
    (dataset / "labelsTr").mkdir(parents=True, exist_ok=True)
    for identifier, phantom in zip(identifiers, phantoms, strict=True):
        image_file = dataset / "imagesTr" / f"{identifier}_0000{FILE_ENDING}"
        label_file = dataset / "labelsTr" / f"{identifier}{FILE_ENDING}"
        sitk.WriteImage(_image(phantom.ct, phantom.spacing), str(image_file))
        sitk.WriteImage(_image(phantom.labels, phantom.spacing), str(label_file))
    description = {
        "name": name,
        "description": "Seeded CT-like phantoms (pipeline.phantoms.ct); labels are the observer reference.",
        "channel_names": {"0": "CT"},
        "labels": dict(LABELS),
        "numTraining": len(phantoms),
        "file_ending": FILE_ENDING,
        "seeds": [p.seed for p in phantoms],
    }
    (dataset / "dataset.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %d phantoms to %s", len(phantoms), dataset)
    return dataset


def _image(array: NDArray[np.generic], spacing: Spacing3) -> sitk.Image:
    """A SimpleITK image of a (Z, Y, X) array; SimpleITK takes the spacing as (x, y, z)."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((spacing[2], spacing[1], spacing[0]))
    return image


def _check_geometry(shape: Shape3, spacing: Spacing3) -> tuple[Shape3, Spacing3]:
    if len(shape) != 3 or any(int(n) < 4 for n in shape):
        raise ValueError(f"shape must be 3 voxel counts >= 4 (Z, Y, X), got {shape}")
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be 3 finite values > 0 mm (z, y, x), got {spacing}")
    return (int(shape[0]), int(shape[1]), int(shape[2])), (float(spacing[0]), float(spacing[1]), float(spacing[2]))


def _ellipse_sd(dy: Array, dx: Array, half_y: Array | float, half_x: Array | float) -> Array:
    """Approximate signed distance (mm) to an axis-aligned ellipse: (r - 1) r / |grad r| with r its level."""
    ny, nx = dy / half_y, dx / half_x
    level = np.sqrt(ny * ny + nx * nx)
    gradient = np.sqrt((ny / half_y) ** 2 + (nx / half_x) ** 2)
    scale = np.where(gradient > 1e-9, level / np.maximum(gradient, 1e-9), np.minimum(half_y, half_x))
    return (level - 1.0) * scale


def _slab_sd(z: Array, z0: float, z1: float) -> Array:
    """Signed distance (mm) along z to the slab z0 <= z <= z1."""
    return np.maximum(z0 - z, z - z1)


def _rotation(about_z: float, about_y: float = 0.0, about_x: float = 0.0) -> NDArray[np.float64]:
    """Rotation matrix (3, 3) in (z, y, x) coordinates from angles (rad) about the z, y and x axes."""
    cz, sz = math.cos(about_z), math.sin(about_z)
    cy, sy = math.cos(about_y), math.sin(about_y)
    cx, sx = math.cos(about_x), math.sin(about_x)
    rot_z = np.array([[1, 0, 0], [0, cz, -sz], [0, sz, cz]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_x = np.array([[cx, -sx, 0], [sx, cx, 0], [0, 0, 1]])
    return rot_x @ rot_y @ rot_z


def _ellipsoid(center: Point, semi_axes: Point, rotation: NDArray[np.float64] | None = None) -> _Shape:
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
    return _Shape(lo, hi, sd)


def _tube(waypoints: Sequence[tuple[float, float, float, float]]) -> _Shape:
    """A tube along z through waypoints (z, y, x, radius) in mm, z increasing; its cross-sections are discs."""
    z, y, x, r = (np.array(column, dtype=np.float64) for column in zip(*waypoints, strict=True))

    def sd(c: Coords) -> Array:
        at = c[0][:, 0, 0].astype(np.float64)
        cy, cx, radius = (np.interp(at, z, v)[:, None, None] for v in (y, x, r))
        distance = np.sqrt((c[1] - cy) ** 2 + (c[2] - cx) ** 2) - radius
        return np.maximum(distance, _slab_sd(c[0], float(z[0]), float(z[-1]))).astype(np.float32)

    return _Shape((z[0], (y - r).min(), (x - r).min()), (z[-1], (y + r).max(), (x + r).max()), sd)


def _intersection(shape: _Shape, clip: _Shape) -> _Shape:
    """The part of ``shape`` inside ``clip``."""

    def sd(c: Coords) -> Array:
        return np.maximum(shape.sd(c), clip.sd(c))

    lo = (max(shape.lo[0], clip.lo[0]), max(shape.lo[1], clip.lo[1]), max(shape.lo[2], clip.lo[2]))
    hi = (min(shape.hi[0], clip.hi[0]), min(shape.hi[1], clip.hi[1]), min(shape.hi[2], clip.hi[2]))
    return _Shape(lo, hi, sd)


def _grown(shape: _Shape, margin: float) -> _Shape:
    """``shape`` grown outwards by ``margin`` mm (shrunk for a negative margin)."""

    def sd(c: Coords) -> Array:
        return shape.sd(c) - np.float32(margin)

    return _Shape(_moved(shape.lo, -margin), _moved(shape.hi, margin), sd)


def _lobulated(shape: _Shape, field: _SmoothField, amplitude: float) -> _Shape:
    """``shape`` with its surface displaced by ``amplitude`` mm times a smooth field (|field| <= 3)."""

    def sd(c: Coords) -> Array:
        return shape.sd(c) + np.float32(amplitude) * field.sample(c)

    return _Shape(_moved(shape.lo, -3.0 * amplitude), _moved(shape.hi, 3.0 * amplitude), sd)


def _moved(point: Point, by: float) -> Point:
    """``point`` with ``by`` mm added on every axis."""
    return (point[0] + by, point[1] + by, point[2] + by)


def _draw_body(rng: np.random.Generator, shape: Shape3, spacing: Spacing3) -> _Body:
    """Body size, fat and muscle per patient; knots from neck (f = 0) through shoulders, chest, abdomen, pelvis."""
    f = np.array([0.0, 0.09, 0.14, 0.30, 0.50, 0.70, 0.86, 1.0])
    half_x = np.array([70.0, 70.0, 160.0, 165.0, 155.0, 158.0, 170.0, 165.0])
    half_y = np.array([65.0, 65.0, 105.0, 110.0, 112.0, 112.0, 108.0, 100.0])
    fat = np.array([5.0, 5.0, 12.0, 12.0, 20.0, 20.0, 22.0, 22.0])
    muscle = np.array([30.0, 30.0, 14.0, 14.0, 12.0, 12.0, 14.0, 14.0])
    length = (shape[0] - 1) * spacing[0]
    width = min(shape[1] * spacing[1], shape[2] * spacing[2])
    obesity = float(rng.uniform(0.5, 1.6))  # multiplies the subcutaneous fat, which adds to the body's size
    size = float(np.clip(rng.normal(1.0, 0.05), 0.9, 1.1))
    aspect = float(np.clip(rng.normal(1.0, 0.05), 0.9, 1.1))
    widest = float((half_x * size + (obesity - 1.0) * fat).max())
    fit = min(1.0, 0.45 * width / widest)  # keep 10 % of the field of view free on each side
    scale = (size * aspect * fit, size * fit)
    center = (
        (shape[1] - 1) * spacing[1] / 2.0 + float(rng.normal(0.0, 4.0)),
        (shape[2] - 1) * spacing[2] / 2.0 + float(rng.normal(0.0, 4.0)),
    )
    return _Body(
        length=length,
        zscale=length / _NOMINAL_LENGTH_MM,
        center=center,
        scale=scale,
        f=f,
        half_x=half_x * scale[1] + (obesity - 1.0) * fat * fit,
        half_y=half_y * scale[0] + (obesity - 1.0) * fat * fit,
        fat=fat * obesity * fit,
        muscle=muscle * fit,
    )


def _draw_vessels(rng: np.random.Generator, body: _Body) -> _Vessels:
    """Carotids, jugulars, aorta, IVC, iliac and femoral vessels; the aorta bifurcates at f ~ 0.72."""
    bifurcation = float(rng.uniform(0.69, 0.75))
    spread = float(rng.uniform(0.9, 1.1))
    tubes: dict[str, list[tuple[float, float, float, float]]] = {
        "aorta": [(0.15, 15.0, 10.0, 12.0), (0.45, 25.0, 12.0, 11.0), (bifurcation, 14.0, 8.0, 10.0)],
        "ivc": [(0.38, 10.0, -22.0, 12.0), (bifurcation + 0.02, 18.0, -18.0, 11.0)],
    }
    for side, sign in (("right", -1.0), ("left", 1.0)):
        tubes[f"carotid_{side}"] = [(0.0, -5.0, 22.0 * sign, 4.5), (0.15, 0.0, 24.0 * sign, 5.0)]
        tubes[f"jugular_{side}"] = [(0.0, 0.0, 33.0 * sign, 6.0), (0.15, 5.0, 36.0 * sign, 7.0)]
        tubes[f"iliac_artery_{side}"] = [
            (bifurcation, 14.0, 8.0 * sign, 8.0),
            (0.86, 20.0, 55.0 * spread * sign, 7.0),
            (0.96, -55.0, 75.0 * spread * sign, 6.0),
            (1.0, -62.0, 78.0 * spread * sign, 6.0),
        ]
        tubes[f"iliac_vein_{side}"] = [
            (bifurcation + 0.02, 26.0, -10.0 + 10.0 * sign, 9.0),
            (0.86, 32.0, 52.0 * spread * sign, 8.0),
            (0.96, -42.0, 68.0 * spread * sign, 7.5),
            (1.0, -50.0, 70.0 * spread * sign, 7.5),
        ]
    absolute = {name: [(*body.point(f, dy, dx), r) for f, dy, dx, r in points] for name, points in tubes.items()}
    return _Vessels(tubes={name: tuple(np.array(v) for v in zip(*r, strict=True)) for name, r in absolute.items()})


def _textures(rng: np.random.Generator, coarse: _Grid) -> dict[str, Array]:
    """Fine-grid HU textures (bowel, lung), built on the voxel grid and repeated (they are smooth)."""
    box: Box = (slice(None), slice(None), slice(None))
    textures = {}
    for name, scale, amplitude, base in (("bowel", 15.0, 40.0, -20.0), ("lung", 10.0, 25.0, -840.0)):
        field = base + amplitude * _SmoothField.draw(rng, scale).sample(coarse.coords(box))
        for axis in range(3):
            field = np.repeat(field, _FINE, axis=axis)
        textures[name] = field.astype(np.float32)
    return textures


def _paint_trunk(canvas: _Canvas, body: _Body, rng: np.random.Generator, textures: dict[str, Array]) -> None:
    """Body fat, muscle wall, and the cavity: neck muscle, mediastinal fat, bowel and mesentery below; trachea."""
    diaphragm = float(rng.uniform(0.42, 0.46))
    canvas.paint(body.layer("skin"), _FAT)
    canvas.paint(body.layer("wall"), _MUSCLE)
    canvas.paint(body.layer("cavity", (0.11, diaphragm)), -90.0)
    canvas.paint(body.layer("cavity", (diaphragm, 1.0)), textures["bowel"])
    canvas.paint(body.tube([(0.0, -15.0, 0.0, 8.0), (0.24, 10.0, -3.0, 9.0)]), _AIR)


def _paint_organs(canvas: _Canvas, body: _Body, rng: np.random.Generator, textures: dict[str, Array]) -> None:
    """Lungs, heart, liver, kidneys, psoas and bladder, each clipped to the body cavity."""
    cavity = body.layer("cavity")
    zs = body.zscale
    lung_top, lung_bottom = float(rng.uniform(0.11, 0.13)), float(rng.uniform(0.43, 0.47))
    f_mid = 0.5 * (lung_top + lung_bottom)
    cav_y, cav_x = body.cavity(0.3)
    for sign in (-1.0, 1.0):
        lung = _ellipsoid(
            (body.z(f_mid), body.center[0] + 0.05 * cav_y, body.center[1] + sign * 0.55 * cav_x),
            (0.5 * (lung_bottom - lung_top) * body.length + 15.0 * zs, 0.9 * cav_y, 0.42 * cav_x),
        )
        canvas.paint(_intersection(lung, cavity), textures["lung"])
    heart = _ellipsoid(body.point(0.37, -22.0, 18.0), (50.0 * zs, 50.0, 62.0), _rotation(0.3))
    canvas.paint(_intersection(heart, cavity), float(rng.uniform(100.0, 140.0)))

    f_liver = float(rng.uniform(0.51, 0.55))
    cav_y, cav_x = body.cavity(f_liver)
    size = float(rng.uniform(0.85, 1.15))
    liver = _ellipsoid(
        (body.z(f_liver), body.center[0] - 0.05 * cav_y, body.center[1] - 0.42 * cav_x),
        (85.0 * zs * size, 0.8 * cav_y * size, 0.55 * cav_x * size),
        _rotation(float(rng.normal(0.0, 0.1))),
    )
    canvas.paint(_intersection(liver, cavity), float(rng.uniform(55.0, 70.0)))

    kidney_hu = float(rng.uniform(150.0, 180.0))
    for sign, f_kidney in ((-1.0, 0.60), (1.0, 0.58)):
        kidney = _ellipsoid(
            body.point(f_kidney + float(rng.normal(0.0, 0.01)), 42.0, sign * 62.0),
            (48.0 * zs, 26.0, 24.0),
            _rotation(sign * 0.35),
        )
        canvas.paint(_intersection(kidney, cavity), kidney_hu)
        psoas = body.tube([(0.58, 45.0, sign * 30.0, 8.0), (0.75, 45.0, sign * 48.0, 18.0),
                           (0.86, 30.0, sign * 68.0, 16.0)])
        canvas.paint(psoas, _MUSCLE)
    fill = float(rng.uniform(0.7, 1.3))
    bladder = _ellipsoid(body.point(0.92, -35.0, 0.0), (30.0 * zs * fill, 35.0 * fill, 45.0 * fill))
    canvas.paint(_intersection(bladder, cavity), float(rng.uniform(5.0, 20.0)))


def _paint_bones(canvas: _Canvas, body: _Body, rng: np.random.Generator) -> None:
    """Spine (vertebral bodies, canal, posterior elements), ribs, iliac wings, femoral heads and shafts."""
    bone = float(rng.uniform(600.0, 800.0))
    marrow = float(rng.uniform(250.0, 400.0))
    spine = [(0.0, 20.0, 10.0), (0.12, 40.0, 14.0), (0.30, 55.0, 16.0), (0.60, 50.0, 22.0), (0.88, 65.0, 25.0)]
    canvas.paint(body.tube([(f, dy, 0.0, r + 2.0) for f, dy, r in spine]), bone)
    canvas.paint(body.tube([(f, dy, 0.0, r) for f, dy, r in spine]), marrow)
    canvas.paint(body.tube([(f, dy + r + 8.0, 0.0, 7.0) for f, dy, r in spine[:-1]]), 20.0)
    canvas.paint(body.tube([(f, dy + r + 22.0, 0.0, 8.0) for f, dy, r in spine[:-1]]), bone)
    canvas.paint(_ribs(body, float(rng.uniform(0.0, 30.0))), bone)
    for sign in (-1.0, 1.0):
        _, cav_x = body.cavity(0.80)
        wing = _ellipsoid((body.z(0.80), body.point(0.8, 25.0, 0.0)[1], body.center[1] + sign * 0.62 * cav_x),
                          (40.0 * body.zscale, 55.0, 9.0), _rotation(-sign * 0.6))
        canvas.paint(wing, bone)
        _, cav_x = body.cavity(0.94)
        head = (body.z(0.94), body.center[0], body.center[1] + sign * 0.6 * cav_x)
        canvas.paint(_ellipsoid(head, (24.0, 24.0, 24.0)), bone)
        shaft = [(head[0], head[1], head[2], 14.0), (body.z(1.0) + 10.0, head[1], head[2] + sign * 10.0, 14.0)]
        canvas.paint(_tube(shaft), bone)
        canvas.paint(_tube([(z, y, x, r - 6.0) for z, y, x, r in shaft]), marrow)


def _ribs(body: _Body, phase: float) -> _Shape:
    """Ribs in the middle of the thoracic muscle wall (f 0.14-0.47): bands 12 mm thick every 30 mm along z (both
    scaled), sloping down anteriorly by 0.4 mm per mm, so that an axial slice cuts them into arcs."""
    wall = body.layer("wall")
    z0, z1 = body.z(0.14), body.z(0.47)
    period, half = 30.0 * body.zscale, 6.0 * body.zscale
    mid_wall = float(np.interp(0.3, body.f, body.muscle)) / 2.0

    def sd(c: Coords) -> Array:
        along = c[0] + 0.4 * (c[1] - body.center[0])
        band = np.abs(np.mod(along - phase, period) - period / 2.0) - half
        ring = np.abs(wall.sd(c) + mid_wall) - 5.0
        return np.maximum(np.maximum(ring, band), _slab_sd(c[0], z0, z1)).astype(np.float32)

    return _Shape((z0, wall.lo[1], wall.lo[2]), (z1, wall.hi[1], wall.hi[2]), sd)


def _paint_vessels(canvas: _Canvas, vessels: _Vessels, rng: np.random.Generator) -> None:
    """Contrast-filled arteries and veins."""
    artery, vein = float(rng.uniform(170.0, 210.0)), float(rng.uniform(130.0, 160.0))
    for name, (z, y, x, r) in vessels.tubes.items():
        hu = vein if name.startswith(("jugular", "ivc", "iliac_vein")) else artery
        canvas.paint(_tube(list(zip(z, y, x, r, strict=True))), hu)


def _spleen(rng: np.random.Generator, body: _Body) -> _Shape:
    """The spleen: 110-650 mL (log-normal around 230 mL) before clipping, lobulated, left upper abdomen."""
    volume = float(np.clip(rng.lognormal(math.log(230e3), 0.35), 110e3, 650e3))  # mm^3
    ratio_y, ratio_x = float(rng.uniform(0.65, 0.85)), float(rng.uniform(0.38, 0.5))
    long_axis = (3.0 * volume / (4.0 * math.pi * ratio_y * ratio_x)) ** (1.0 / 3.0)
    f = float(rng.uniform(0.48, 0.52))
    cav_y, cav_x = body.cavity(f)
    center = (
        body.z(f),
        body.center[0] + 0.30 * cav_y + float(rng.normal(0.0, 5.0)),
        body.center[1] + 0.58 * cav_x + float(rng.normal(0.0, 5.0)),
    )
    rotation = _rotation(float(rng.uniform(0.45, 0.8)), 0.0, float(rng.uniform(-0.25, 0.25)))
    shape = _ellipsoid(center, (long_axis * body.zscale, long_axis * ratio_y, long_axis * ratio_x), rotation)
    lobulated = _lobulated(shape, _SmoothField.draw(rng, 20.0), float(rng.uniform(2.0, 4.0)))
    return _intersection(lobulated, body.layer("cavity"))


# Nodal stations beside vessels: (f range, vessels, directions (deg) from the vessel, in-plane semi-axes (mm),
# nodes per vessel). Direction 0 points to the patient's left (+x), 90 posterior (+y), 180 right, 270 anterior;
# for the right-sided vessels and the IVC the directions are mirrored. Axillary nodes: see _axillary_nodes.
_STATIONS: tuple[tuple[tuple[float, float], tuple[str, ...], tuple[float, float], tuple[float, float], int], ...] = (
    ((0.02, 0.11), ("jugular_left", "jugular_right"), (-30.0, 100.0), (12.0, 16.0), 3),  # cervical
    ((0.17, 0.32), ("aorta",), (200.0, 300.0), (14.0, 20.0), 3),  # mediastinal
    ((0.52, 0.68), ("aorta", "ivc"), (-60.0, 20.0), (14.0, 20.0), 2),  # para-aortic
    ((0.77, 0.88), ("iliac_artery_left", "iliac_artery_right"), (150.0, 280.0), (14.0, 20.0), 2),  # iliac
    ((0.93, 0.99), ("iliac_artery_left", "iliac_artery_right"), (-80.0, 0.0), (14.0, 20.0), 2),  # inguinal
)


def _nodes(rng: np.random.Generator, body: _Body, vessels: _Vessels) -> list[_Shape]:
    """Lymph nodes of the six stations (12-25 in all), each clipped to 4 mm inside the skin."""
    inside = _grown(body.layer("skin"), -4.0)
    nodes = []
    for (f0, f1), vessel_names, (a0, a1), (s0, s1), most in _STATIONS:
        for vessel in vessel_names:
            for _ in range(int(rng.integers(1, most + 1))):
                f = float(rng.uniform(f0, f1))
                cy, cx, radius = vessels.at(vessel, f, body)
                semi = (float(rng.uniform(20.0, 32.0)) * body.zscale, float(rng.uniform(s0, s1)),
                        float(rng.uniform(s0, s1)))
                angle = math.radians(float(rng.uniform(a0, a1)))
                if vessel.endswith("right") or vessel == "ivc":
                    angle = math.pi - angle
                gap = radius + max(semi[1:]) + float(rng.uniform(2.0, 6.0))
                center = (body.z(f), cy + gap * math.sin(angle), cx + gap * math.cos(angle))
                tilt = _rotation(float(rng.uniform(0.0, math.pi)), 0.0, float(rng.normal(0.0, 0.2)))
                nodes.append(_intersection(_ellipsoid(center, semi, tilt), inside))
    nodes.extend(_axillary_nodes(rng, body, inside))
    return nodes


def _axillary_nodes(rng: np.random.Generator, body: _Body, inside: _Shape) -> list[_Shape]:
    """One or two axillary nodes per side, in the lateral chest wall under the subcutaneous fat."""
    nodes = []
    for sign in (-1.0, 1.0):
        for _ in range(int(rng.integers(1, 3))):
            f = float(rng.uniform(0.15, 0.24))
            half_x = float(np.interp(f, body.f, body.half_x) - np.interp(f, body.f, body.fat))
            half_y = float(np.interp(f, body.f, body.half_y))
            semi = (float(rng.uniform(20.0, 30.0)) * body.zscale, float(rng.uniform(13.0, 18.0)),
                    float(rng.uniform(13.0, 18.0)))
            center = (body.z(f), body.center[0] + float(rng.uniform(-0.3, 0.2)) * half_y,
                      body.center[1] + sign * (half_x - float(rng.uniform(10.0, 20.0))))
            nodes.append(_intersection(_ellipsoid(center, semi), inside))
    return nodes


def _finish_ct(fine_hu: Array, shape: Shape3, rng: np.random.Generator) -> NDArray[np.int16]:
    """Average the fine grid down to voxels (partial volume), add correlated noise (10-20 HU), round to int16."""
    ct = fine_hu.reshape(shape[0], _FINE, shape[1], _FINE, shape[2], _FINE).mean(axis=(1, 3, 5))
    sigma = float(rng.uniform(10.0, 20.0))
    noise = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma=0.6)
    ct = ct + noise * (sigma / max(float(noise.std()), 1e-6))
    return np.clip(np.rint(ct), _HU_MIN, _HU_MAX).astype(np.int16)


def _majority_labels(owner: NDArray[np.uint8], shape: Shape3) -> NDArray[np.uint8]:
    """Voxel labels from the fine samples: nodes where >= half of a voxel's samples are node, else spleen where
    >= half are spleen, else background."""
    blocks = owner.reshape(shape[0], _FINE, shape[1], _FINE, shape[2], _FINE)
    half = _FINE**3 / 2.0
    nodes = (blocks == LYMPH_NODES).sum(axis=(1, 3, 5)) >= half
    spleen = (blocks == SPLEEN).sum(axis=(1, 3, 5)) >= half
    return np.where(nodes, LYMPH_NODES, np.where(spleen, SPLEEN, BACKGROUND)).astype(np.uint8)


def _observer_reference(
    rng: np.random.Generator, grid: _Grid, spleen: _Shape, nodes: Sequence[_Shape]
) -> NDArray[np.uint8]:
    """The observer's contours at the voxel centres: each structure's surface moved outwards by a per-structure
    shift (mean 0.5 mm, SD 1 mm) plus a smooth wobble (1-2.5 mm SD for the spleen, 1 mm for nodes); in 30 % of
    the cases the smallest node is missed."""
    wobble = _SmoothField.draw(rng, 25.0)
    labels = np.zeros(grid.shape, dtype=np.uint8)
    _contour(labels, grid, spleen, SPLEEN, float(rng.normal(0.5, 1.0)), float(rng.uniform(1.0, 2.5)), wobble)
    volumes = [math.prod(h - lo for lo, h in zip(n.lo, n.hi, strict=True)) for n in nodes]
    missed = int(np.argmin(volumes)) if rng.uniform() < 0.3 else -1
    for index, node in enumerate(nodes):
        shift = float(rng.normal(0.5, 1.0))
        if index != missed:
            _contour(labels, grid, node, LYMPH_NODES, shift, 1.0, wobble)
    return labels


def _contour(
    labels: NDArray[np.uint8], grid: _Grid, shape: _Shape, label: int, shift: float, wobble: float,
    field: _SmoothField,
) -> None:
    """Mark the voxels whose centre lies inside ``shape`` moved outwards by shift + wobble * field (mm)."""
    box = grid.box(_grown(shape, max(shift + 3.0 * wobble, 0.0)))
    if box is None:
        return
    coords = grid.coords(box)
    inside = shape.sd(coords) < shift + wobble * field.sample(coords)
    labels[box][inside] = label
