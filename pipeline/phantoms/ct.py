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

Rendering: each structure is a signed distance (mm, negative inside; :mod:`pipeline.phantoms.solids`), painted
in order on a grid 2x finer per axis; a simulated scanner (:mod:`pipeline.phantoms.scanners`: slice thickness,
kernel sharpness, noise level; the default, A, is the rendering the demo models were trained on) averages it down to
the voxel grid, which gives partial-volume edges, and adds correlated Gaussian noise last.
``truth`` is the majority label of the fine samples of a voxel; ``labels`` thresholds the same signed distances at
the voxel centres, moved by the observer's shift and wobble. A 48 x 64 x 64 phantom takes about 0.2 s.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from pipeline.phantoms import solids
from pipeline.phantoms.scanners import DEFAULT_SCANNER, Scanner, reconstruct, with_noise
from pipeline.phantoms.solids import Array, Box, Coords, Point, Shape3, Spacing3

log = logging.getLogger(__name__)

BACKGROUND, LYMPH_NODES, SPLEEN = 0, 1, 2
LABELS: dict[str, int] = {"background": BACKGROUND, "lymph_nodes": LYMPH_NODES, "spleen": SPLEEN}
DEFAULT_SHAPE: Shape3 = (48, 64, 64)
DEFAULT_SPACING: Spacing3 = (12.0, 7.0, 7.0)
FILE_ENDING = ".nii.gz"

_NOMINAL_LENGTH_MM = 564.0  # z extent of the default geometry; sizes along z scale with the actual extent
_FINE = 2  # supersampling factor per axis of the rendering grid
_AIR, _FAT, _MUSCLE = -1000.0, -100.0, 45.0


@dataclass(frozen=True)
class Phantom:
    """One seeded phantom.

    Attributes:
        ct: CT volume in HU, shape (Z, Y, X), int16.
        labels: the observer's reference label map, shape (Z, Y, X), uint8 in {0, 1, 2}; train and evaluate on it.
        truth: the labels of the rendered anatomy, shape (Z, Y, X), uint8 in {0, 1, 2}.
        spacing: voxel size (z, y, x) in mm.
        seed: the seed that generated it.
        scanner: the simulated scanner that made its CT (:mod:`pipeline.phantoms.scanners`).
    """

    ct: NDArray[np.int16]
    labels: NDArray[np.uint8]
    truth: NDArray[np.uint8]
    spacing: Spacing3
    seed: int
    scanner: Scanner = DEFAULT_SCANNER

    def acquisition(self) -> dict[str, str | float]:
        """What its scanner's header states for it (keys of :data:`pipeline.io.acquisition.FIELDS`)."""
        return self.scanner.acquisition(self.spacing)


class _Canvas:
    """The fine-grid HU volume being painted, and which class owns each fine sample (the last painter wins)."""

    def __init__(self, grid: solids.SampleGrid) -> None:
        self.grid = grid
        self.hu = np.full(grid.shape, _AIR, dtype=np.float32)
        self.owner = np.zeros(grid.shape, dtype=np.uint8)

    def paint(self, shape: solids.Solid, value: float | Array, label: int = BACKGROUND) -> None:
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

    def tube(self, waypoints: Sequence[tuple[float, float, float, float]]) -> solids.Solid:
        """A tube through waypoints (f, dy, dx, radius): nominal offsets from the body axis, radius in mm."""
        return solids.tube([(*self.point(f, dy, dx), r) for f, dy, dx, r in waypoints])

    def layer(self, inset: str, f_range: tuple[float, float] = (0.0, 1.0)) -> solids.Solid:
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
            inside = solids.ellipse_sd(c[1] - cy, c[2] - cx, half_y, half_x)
            return np.maximum(inside, solids.slab_sd(c[0], z0, z1)).astype(np.float32)

        reach = (float(self.half_y.max()), float(self.half_x.max()))
        return solids.Solid((z0, cy - reach[0], cx - reach[1]), (z1, cy + reach[0], cx + reach[1]), sd)


@dataclass(frozen=True)
class _Vessels:
    """Centre lines of the great vessels as waypoint arrays (z, y, x, radius) in mm, one tube each."""

    tubes: dict[str, tuple[NDArray[np.float64], ...]]

    def at(self, name: str, f: float, body: _Body) -> tuple[float, float, float]:
        """Centre (y, x) and radius (mm) of a vessel at fraction f (clamped to its ends)."""
        z, y, x, r = self.tubes[name]
        at = body.z(f)
        return float(np.interp(at, z, y)), float(np.interp(at, z, x)), float(np.interp(at, z, r))


def generate_phantom(seed: int, shape: Shape3 = DEFAULT_SHAPE, spacing: Spacing3 = DEFAULT_SPACING,
                     scanner: Scanner = DEFAULT_SCANNER) -> Phantom:
    """A seeded CT-like phantom of the trunk with its lymph nodes and spleen (see the module's description).

    Args:
        seed: the random seed; the same seed, shape, spacing and scanner give the same phantom, bit for bit (the same
            seed on another scanner: the same anatomy and references, another CT).
        shape: voxels (Z, Y, X), neck to groin along Z.
        spacing: voxel size (z, y, x) in mm.
        scanner: the simulated scanner (:mod:`pipeline.phantoms.scanners`; default A).

    Returns:
        A :class:`Phantom`: ct (Z, Y, X) int16 HU, labels and truth (Z, Y, X) uint8, spacing (z, y, x) mm.
    """
    shape3, spacing3 = _check_geometry(shape, spacing)
    rng = np.random.default_rng(seed)
    body = _draw_body(rng, shape3, spacing3)
    vessels = _draw_vessels(rng, body)
    canvas = _Canvas(solids.SampleGrid.of(shape3, spacing3, _FINE))
    coarse = solids.SampleGrid.of(shape3, spacing3, 1)
    textures = _textures(rng, coarse)

    _paint_trunk(canvas, body, rng, textures)
    _paint_organs(canvas, body, rng, textures)
    spleen = _spleen(rng, body)
    nodes = _nodes(rng, body, vessels)
    for node in nodes:
        canvas.paint(solids.grown(node, float(rng.uniform(6.0, 10.0))), _FAT)
    _paint_bones(canvas, body, rng)
    _paint_vessels(canvas, vessels, rng)
    canvas.paint(spleen, float(rng.uniform(115.0, 140.0)), SPLEEN)
    for node in nodes:
        canvas.paint(node, float(rng.uniform(80.0, 105.0)), LYMPH_NODES)

    ct = with_noise(reconstruct(canvas.hu, shape3, spacing3, _FINE, scanner), rng, scanner)
    truth = _majority_labels(canvas.owner, shape3)
    labels = _observer_reference(rng, coarse, spleen, nodes)
    return Phantom(ct=ct, labels=labels, truth=truth, spacing=spacing3, seed=int(seed), scanner=scanner)


def case_identifier(case_prefix: str, seed: int) -> str:
    """The nnU-Net case identifier of the phantom generated with ``seed``: ``<prefix>_<seed, 5 digits>``."""
    return f"{case_prefix}_{seed:05d}"


def write_nnunet_raw(folder: Path, phantoms: Sequence[Phantom], dataset_id: int, name: str, case_prefix: str) -> Path:
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


def _textures(rng: np.random.Generator, coarse: solids.SampleGrid) -> dict[str, Array]:
    """Fine-grid HU textures (bowel, lung), built on the voxel grid and repeated (they are smooth)."""
    box: Box = (slice(None), slice(None), slice(None))
    textures = {}
    for name, scale, amplitude, base in (("bowel", 15.0, 40.0, -20.0), ("lung", 10.0, 25.0, -840.0)):
        field = base + amplitude * solids.SmoothField.draw(rng, scale).sample(coarse.coords(box))
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
        lung = solids.ellipsoid(
            (body.z(f_mid), body.center[0] + 0.05 * cav_y, body.center[1] + sign * 0.55 * cav_x),
            (0.5 * (lung_bottom - lung_top) * body.length + 15.0 * zs, 0.9 * cav_y, 0.42 * cav_x),
        )
        canvas.paint(solids.intersection(lung, cavity), textures["lung"])
    heart = solids.ellipsoid(body.point(0.37, -22.0, 18.0), (50.0 * zs, 50.0, 62.0), solids.rotation(0.3))
    canvas.paint(solids.intersection(heart, cavity), float(rng.uniform(100.0, 140.0)))

    f_liver = float(rng.uniform(0.51, 0.55))
    cav_y, cav_x = body.cavity(f_liver)
    size = float(rng.uniform(0.85, 1.15))
    liver = solids.ellipsoid(
        (body.z(f_liver), body.center[0] - 0.05 * cav_y, body.center[1] - 0.42 * cav_x),
        (85.0 * zs * size, 0.8 * cav_y * size, 0.55 * cav_x * size),
        solids.rotation(float(rng.normal(0.0, 0.1))),
    )
    canvas.paint(solids.intersection(liver, cavity), float(rng.uniform(55.0, 70.0)))

    kidney_hu = float(rng.uniform(150.0, 180.0))
    for sign, f_kidney in ((-1.0, 0.60), (1.0, 0.58)):
        kidney = solids.ellipsoid(
            body.point(f_kidney + float(rng.normal(0.0, 0.01)), 42.0, sign * 62.0),
            (48.0 * zs, 26.0, 24.0),
            solids.rotation(sign * 0.35),
        )
        canvas.paint(solids.intersection(kidney, cavity), kidney_hu)
        psoas = body.tube(
            [(0.58, 45.0, sign * 30.0, 8.0), (0.75, 45.0, sign * 48.0, 18.0), (0.86, 30.0, sign * 68.0, 16.0)]
        )
        canvas.paint(psoas, _MUSCLE)
    fill = float(rng.uniform(0.7, 1.3))
    bladder = solids.ellipsoid(body.point(0.92, -35.0, 0.0), (30.0 * zs * fill, 35.0 * fill, 45.0 * fill))
    canvas.paint(solids.intersection(bladder, cavity), float(rng.uniform(5.0, 20.0)))


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
        wing = solids.ellipsoid(
            (body.z(0.80), body.point(0.8, 25.0, 0.0)[1], body.center[1] + sign * 0.62 * cav_x),
            (40.0 * body.zscale, 55.0, 9.0),
            solids.rotation(-sign * 0.6),
        )
        canvas.paint(wing, bone)
        _, cav_x = body.cavity(0.94)
        head = (body.z(0.94), body.center[0], body.center[1] + sign * 0.6 * cav_x)
        canvas.paint(solids.ellipsoid(head, (24.0, 24.0, 24.0)), bone)
        shaft = [(head[0], head[1], head[2], 14.0), (body.z(1.0) + 10.0, head[1], head[2] + sign * 10.0, 14.0)]
        canvas.paint(solids.tube(shaft), bone)
        canvas.paint(solids.tube([(z, y, x, r - 6.0) for z, y, x, r in shaft]), marrow)


def _ribs(body: _Body, phase: float) -> solids.Solid:
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
        return np.maximum(np.maximum(ring, band), solids.slab_sd(c[0], z0, z1)).astype(np.float32)

    return solids.Solid((z0, wall.lo[1], wall.lo[2]), (z1, wall.hi[1], wall.hi[2]), sd)


def _paint_vessels(canvas: _Canvas, vessels: _Vessels, rng: np.random.Generator) -> None:
    """Contrast-filled arteries and veins."""
    artery, vein = float(rng.uniform(170.0, 210.0)), float(rng.uniform(130.0, 160.0))
    for name, (z, y, x, r) in vessels.tubes.items():
        hu = vein if name.startswith(("jugular", "ivc", "iliac_vein")) else artery
        canvas.paint(solids.tube(list(zip(z, y, x, r, strict=True))), hu)


def _spleen(rng: np.random.Generator, body: _Body) -> solids.Solid:
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
    rotation = solids.rotation(float(rng.uniform(0.45, 0.8)), 0.0, float(rng.uniform(-0.25, 0.25)))
    shape = solids.ellipsoid(center, (long_axis * body.zscale, long_axis * ratio_y, long_axis * ratio_x), rotation)
    lobulated = solids.lobulated(shape, solids.SmoothField.draw(rng, 20.0), float(rng.uniform(2.0, 4.0)))
    return solids.intersection(lobulated, body.layer("cavity"))


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


def _nodes(rng: np.random.Generator, body: _Body, vessels: _Vessels) -> list[solids.Solid]:
    """Lymph nodes of the six stations (12-25 in all), each clipped to 4 mm inside the skin."""
    inside = solids.grown(body.layer("skin"), -4.0)
    nodes = []
    for (f0, f1), vessel_names, (a0, a1), (s0, s1), most in _STATIONS:
        for vessel in vessel_names:
            for _ in range(int(rng.integers(1, most + 1))):
                f = float(rng.uniform(f0, f1))
                cy, cx, radius = vessels.at(vessel, f, body)
                semi = (
                    float(rng.uniform(20.0, 32.0)) * body.zscale,
                    float(rng.uniform(s0, s1)),
                    float(rng.uniform(s0, s1)),
                )
                angle = math.radians(float(rng.uniform(a0, a1)))
                if vessel.endswith("right") or vessel == "ivc":
                    angle = math.pi - angle
                gap = radius + max(semi[1:]) + float(rng.uniform(2.0, 6.0))
                center = (body.z(f), cy + gap * math.sin(angle), cx + gap * math.cos(angle))
                tilt = solids.rotation(float(rng.uniform(0.0, math.pi)), 0.0, float(rng.normal(0.0, 0.2)))
                nodes.append(solids.intersection(solids.ellipsoid(center, semi, tilt), inside))
    nodes.extend(_axillary_nodes(rng, body, inside))
    return nodes


def _axillary_nodes(rng: np.random.Generator, body: _Body, inside: solids.Solid) -> list[solids.Solid]:
    """One or two axillary nodes per side, in the lateral chest wall under the subcutaneous fat."""
    nodes = []
    for sign in (-1.0, 1.0):
        for _ in range(int(rng.integers(1, 3))):
            f = float(rng.uniform(0.15, 0.24))
            half_x = float(np.interp(f, body.f, body.half_x) - np.interp(f, body.f, body.fat))
            half_y = float(np.interp(f, body.f, body.half_y))
            semi = (
                float(rng.uniform(20.0, 30.0)) * body.zscale,
                float(rng.uniform(13.0, 18.0)),
                float(rng.uniform(13.0, 18.0)),
            )
            center = (
                body.z(f),
                body.center[0] + float(rng.uniform(-0.3, 0.2)) * half_y,
                body.center[1] + sign * (half_x - float(rng.uniform(10.0, 20.0))),
            )
            nodes.append(solids.intersection(solids.ellipsoid(center, semi), inside))
    return nodes


def _majority_labels(owner: NDArray[np.uint8], shape: Shape3) -> NDArray[np.uint8]:
    """Voxel labels from the fine samples: nodes where >= half of a voxel's samples are node, else spleen where
    >= half are spleen, else background."""
    blocks = owner.reshape(shape[0], _FINE, shape[1], _FINE, shape[2], _FINE)
    half = _FINE**3 / 2.0
    nodes = (blocks == LYMPH_NODES).sum(axis=(1, 3, 5)) >= half
    spleen = (blocks == SPLEEN).sum(axis=(1, 3, 5)) >= half
    return np.where(nodes, LYMPH_NODES, np.where(spleen, SPLEEN, BACKGROUND)).astype(np.uint8)


def _observer_reference(
    rng: np.random.Generator, grid: solids.SampleGrid, spleen: solids.Solid, nodes: Sequence[solids.Solid]
) -> NDArray[np.uint8]:
    """The observer's contours at the voxel centres: each structure's surface moved outwards by a per-structure
    shift (mean 0.5 mm, SD 1 mm) plus a smooth wobble (1-2.5 mm SD for the spleen, 1 mm for nodes); in 30 % of
    the cases the smallest node is missed."""
    wobble = solids.SmoothField.draw(rng, 25.0)
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
    labels: NDArray[np.uint8],
    grid: solids.SampleGrid,
    shape: solids.Solid,
    label: int,
    shift: float,
    wobble: float,
    field: solids.SmoothField,
) -> None:
    """Mark the voxels whose centre lies inside ``shape`` moved outwards by shift + wobble * field (mm)."""
    box = grid.box(solids.grown(shape, max(shift + 3.0 * wobble, 0.0)))
    if box is None:
        return
    coords = grid.coords(box)
    inside = shape.sd(coords) < shift + wobble * field.sample(coords)
    labels[box][inside] = label
