"""Voxel maps in and out: probability and label maps from ``.npy``, nnU-Net ``.npz`` or NIfTI files with their
voxel spacing, and maps written as NIfTI on a CT's geometry.

Array axes follow SimpleITK/NumPy order: probabilities (C, Z, Y, X), labels (Z, Y, X), spacing (z, y, x) in mm.
Headers are checked before any voxel is read (a size over ``max_voxels`` values is refused, ``QA_MAX_VOXELS``), and
the data must be as long as the header declares (:mod:`pipeline.io.integrity`): a truncated .npy, a .npz whose
CRC fails, a NIfTI cut short are refused, never read as zeros. Every reading failure is an
:class:`~pipeline.errors.InputError` whose message names the file.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from pipeline.errors import InputError
from pipeline.io.geometry import Geometry
from pipeline.io.integrity import check_declared, first_line, is_nifti, npy_header, read_image_file
from pipeline.settings import DEFAULT_MAX_VOXELS

_NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class LoadedMap:
    """An array read from a file, with the spacing (z, y, x) in mm and the grid that the file records (None for
    .npy and .npz)."""

    array: NDArray[np.generic]
    spacing: tuple[float, float, float] | None
    path: Path
    geometry: Geometry | None = None


def _read_npy(path: Path, max_voxels: int) -> NDArray[np.generic]:
    """The array of a .npy file whose header is checked first (size limit) and whose data is exactly as long as
    the header declares."""
    with path.open("rb") as handle:
        if handle.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
            raise InputError(f"{path}: not a .npy file (no NumPy header)")
        handle.seek(0)
        shape, dtype = npy_header(path, handle)
        check_declared(path, shape, max_voxels)
        declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        present = path.stat().st_size - handle.tell()
    if present != declared:
        raise InputError(f"{path}: the .npy header declares {shape} {dtype} ({declared} bytes), the file holds "
                         f"{present} bytes of data ({'truncated' if present < declared else 'longer than declared'})")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise InputError(f"{path}: not a readable .npy array ({error})") from error
    if not isinstance(array, np.ndarray):
        raise InputError(f"{path}: expected a single .npy array")
    return array


def _read_nifti(path: Path, max_voxels: int) -> tuple[NDArray[np.generic], tuple[float, float, float], Geometry]:
    image = read_image_file(path, "NIfTI image", max_voxels)
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = np.moveaxis(array, -1, 0)
    spacing_xyz = image.GetSpacing()
    return array, (float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0])), Geometry.of(image)


def _read_npz_probabilities(path: Path, max_voxels: int) -> NDArray[np.generic]:
    """The ``probabilities`` array of nnU-Net's ``--save_probabilities`` output (its .pkl is not read); the member's
    header is checked before its data is read, and zip checks the data's CRC while reading it."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = {name.removesuffix(".npy"): name for name in archive.namelist()}
            if "probabilities" not in names:
                raise InputError(f"{path}: no 'probabilities' array (found {list(names)})")
            with archive.open(names["probabilities"]) as member:
                shape, _ = npy_header(path, member)
                check_declared(path, shape, max_voxels)
        with np.load(path, allow_pickle=False) as archive:
            return archive["probabilities"]
    except InputError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as error:
        raise InputError(f"{path}: not a readable .npz archive ({first_line(error)})") from error


def read_map(path: Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> LoadedMap:
    """Read ``path`` (.npy, nnU-Net .npz, .nii or .nii.gz); NIfTI spacing and grid come from its header; a header
    declaring more than ``max_voxels`` values is refused before anything is allocated."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        return LoadedMap(_read_npy(path, max_voxels), None, path)
    if path.suffix.lower() == ".npz":
        return LoadedMap(_read_npz_probabilities(path, max_voxels), None, path)
    if is_nifti(path):
        array, spacing, geometry = _read_nifti(path, max_voxels)
        return LoadedMap(array, spacing, path, geometry)
    raise InputError(f"{path}: unsupported file type (expected .npy, .npz, .nii or .nii.gz)")


def read_probabilities(path: Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> LoadedMap:
    """A class-probability map shaped (C, Z, Y, X) as float32 (float16 input is widened, float64 kept)."""
    loaded = read_map(path, max_voxels)
    array = loaded.array
    if array.ndim != 4:
        raise InputError(f"{path}: probabilities must be 4-D (C, Z, Y, X), got shape {array.shape}")
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    if array.dtype not in (np.float32, np.float64):
        raise InputError(f"{path}: probabilities must be floating point, got {array.dtype}")
    return LoadedMap(array, loaded.spacing, path, loaded.geometry)


def read_labels(path: Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> LoadedMap:
    """A label map shaped (Z, Y, X) with an integer dtype (whole-valued floats are accepted and converted)."""
    loaded = read_map(path, max_voxels)
    array = loaded.array
    if array.ndim != 3:
        raise InputError(f"{path}: labels must be 3-D (Z, Y, X), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise InputError(f"{path}: labels must be whole numbers, found fractional or non-finite values")
        array = array.astype(np.int64)
    elif not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise InputError(f"{path}: labels must be integers, got {array.dtype}")
    return LoadedMap(array, loaded.spacing, path, loaded.geometry)


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
