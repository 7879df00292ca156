"""Voxel maps in and out: probability and label maps from ``.npy``, nnU-Net ``.npz`` or NIfTI files with their
voxel spacing, and maps written as NIfTI on a CT's geometry.

Array axes follow SimpleITK/NumPy order: probabilities (C, Z, Y, X), labels (Z, Y, X), spacing (z, y, x) in mm.
Every reading failure is an :class:`~pipeline.errors.InputError` whose message names the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from pipeline.errors import InputError

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class LoadedMap:
    """An array read from a file, with the spacing (z, y, x) in mm that the file records (None for .npy)."""

    array: NDArray[np.generic]
    spacing: tuple[float, float, float] | None
    path: Path


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI_SUFFIXES)


def _read_npy(path: Path) -> NDArray[np.generic]:
    with path.open("rb") as handle:
        if handle.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
            raise InputError(f"{path}: not a .npy file (no NumPy header)")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise InputError(f"{path}: not a readable .npy array ({error})") from error
    if not isinstance(array, np.ndarray):
        raise InputError(f"{path}: expected a single .npy array")
    return array


def _read_nifti(path: Path) -> tuple[NDArray[np.generic], tuple[float, float, float]]:
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise InputError(f"{path}: not a readable NIfTI image ({first_line})") from error
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = np.moveaxis(array, -1, 0)
    spacing_xyz = image.GetSpacing()
    return array, (float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0]))


def _read_npz_probabilities(path: Path) -> NDArray[np.generic]:
    """The ``probabilities`` array of nnU-Net's ``--save_probabilities`` output (its .pkl is not read)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "probabilities" not in archive.files:
                raise InputError(f"{path}: no 'probabilities' array (found {archive.files})")
            return archive["probabilities"]
    except (OSError, EOFError) as error:
        raise InputError(f"{path}: not a readable .npz archive ({error})") from error


def read_map(path: Path) -> LoadedMap:
    """Read ``path`` (.npy, nnU-Net .npz, .nii or .nii.gz); NIfTI spacing comes from its header."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        return LoadedMap(_read_npy(path), None, path)
    if path.suffix.lower() == ".npz":
        return LoadedMap(_read_npz_probabilities(path), None, path)
    if _is_nifti(path):
        array, spacing = _read_nifti(path)
        return LoadedMap(array, spacing, path)
    raise InputError(f"{path}: unsupported file type (expected .npy, .npz, .nii or .nii.gz)")


def read_probabilities(path: Path) -> LoadedMap:
    """A class-probability map shaped (C, Z, Y, X) as float32 (float16 input is widened, float64 kept)."""
    loaded = read_map(path)
    array = loaded.array
    if array.ndim != 4:
        raise InputError(f"{path}: probabilities must be 4-D (C, Z, Y, X), got shape {array.shape}")
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    if array.dtype not in (np.float32, np.float64):
        raise InputError(f"{path}: probabilities must be floating point, got {array.dtype}")
    return LoadedMap(array, loaded.spacing, path)


def read_labels(path: Path) -> LoadedMap:
    """A label map shaped (Z, Y, X) with an integer dtype (whole-valued floats are accepted and converted)."""
    loaded = read_map(path)
    array = loaded.array
    if array.ndim != 3:
        raise InputError(f"{path}: labels must be 3-D (Z, Y, X), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise InputError(f"{path}: labels must be whole numbers, found fractional or non-finite values")
        array = array.astype(np.int64)
    elif not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise InputError(f"{path}: labels must be integers, got {array.dtype}")
    return LoadedMap(array, loaded.spacing, path)


def write_probabilities(path: Path, probs: NDArray[np.floating], reference: sitk.Image, description: str = "") -> None:
    """Write class probabilities (C, Z, Y, X) as a 4-D NIfTI on ``reference``'s grid (4th axis = class), with
    ``description`` in the header's ``descrip`` field (80 characters at most)."""
    grid = tuple(reversed(reference.GetSize()))
    if probs.shape[1:] != grid:
        raise ValueError(f"probabilities {probs.shape[1:]} do not match the CT grid {grid}")
    image = sitk.GetImageFromArray(probs.astype(np.float32), isVector=False)
    image.SetSpacing((*reference.GetSpacing(), 1.0))
    image.SetOrigin((*reference.GetOrigin(), 0.0))
    direction = np.eye(4)
    direction[:3, :3] = np.reshape(reference.GetDirection(), (3, 3))
    image.SetDirection(direction.ravel().tolist())
    if description:
        image.SetMetaData("ITK_FileNotes", description[:80])
    sitk.WriteImage(image, str(path), useCompression=True)


def export_nifti(
    array: NDArray[np.generic], path: Path, spacing: list[float], origin: list[float], direction: list[float]
) -> Path:
    """Write a (Z, Y, X) map as NIfTI on the original CT geometry (SimpleITK order: spacing, origin (x, y, z))."""
    if array.ndim != 3:
        raise ValueError(f"NIfTI export takes one (Z, Y, X) map, got shape {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(float(d) for d in direction))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path
